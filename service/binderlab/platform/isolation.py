"""One-box session isolation: the session network and the egress rules around it.

Sessions and build steps run a repository's code. On Docker's default bridge they can talk
to each other (inter-container traffic is on), reach every service the host offers on the
bridge gateway (a local registry, the hub's own port), and the cloud metadata address. So:

- sessions get a network of their own with inter-container traffic off
  (``com.docker.network.bridge.enable_icc=false``) and a bridge interface with a fixed name
  (``binderlab0``) that firewall rules can name;
- ``egress_rules`` are iptables rules, in two chains of binderlab's own so they can be
  checked and replaced as a whole: BINDERLAB-INPUT (to the host itself: only the hub's
  ports from the session bridge, nothing new from the build bridge) and BINDERLAB-EGRESS,
  jumped to from Docker's DOCKER-USER chain (forwarded: no link-local, private or other
  non-public ranges, whatever the destination port).

``python -m binderlab.platform.isolation apply|check`` creates the network and installs or
checks the rules (deploy/docker's unit runs ``apply`` before the service starts, as root);
``check_rules`` is what /health can call.
"""

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

SESSION_NETWORK = "binderlab-sessions"
SESSION_BRIDGE = "binderlab0"
BUILD_BRIDGE = "docker0"  # repo2docker's build steps run on the engine's default bridge
ICC = "com.docker.network.bridge.enable_icc"
BRIDGE_NAME = "com.docker.network.bridge.name"
# written by `apply`/`check` (root), read by the service (/health), which cannot run iptables
STATUS_FILE = "/run/binderlab-isolation.json"
INPUT_CHAIN = "BINDERLAB-INPUT"
EGRESS_CHAIN = "BINDERLAB-EGRESS"

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def ensure_session_network(client, name: str = SESSION_NETWORK,
                           bridge: str = SESSION_BRIDGE) -> dict:
    """The session network (created when missing); ValueError if one of that name lets
    containers talk to each other. ``client`` is a docker.DockerClient."""
    import docker.errors

    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        network = client.networks.create(
            name, driver="bridge", options={ICC: "false", BRIDGE_NAME: bridge},
            labels={"binderlab.role": "sessions"})
        network.reload()
    options = network.attrs.get("Options") or {}
    if options.get(ICC, "true") != "false":
        raise ValueError(f"Docker network {name!r} allows traffic between containers; "
                         f"remove it (docker network rm {name}) and let binderlab create it.")
    return network.attrs


def egress_rules(session_bridge: str = SESSION_BRIDGE, build_bridge: str = BUILD_BRIDGE,
                 hub_ports: Sequence[int] = (8081,),
                 blocked: Sequence[str] | None = None) -> list[list[str]]:
    """iptables arguments (without the ``iptables`` itself), in order.

    ``hub_ports``: ports on the host sessions may open (JupyterHub's API, for logged-in
    sessions); ``blocked``: IPv4 networks no session or build step may reach through the
    host (default: the SSRF guard's list: link-local with the metadata address, private,
    carrier-grade NAT, reserved).
    """
    if blocked is None:
        from binderlab.platform.networks import NOT_GLOBAL_NETWORKS as blocked
    # multicast and reserved are not routed anyway; the rest is what the SSRF guard refuses
    v4 = [n for n in blocked if ":" not in n and not n.startswith(("224.", "240."))]
    rules: list[list[str]] = [["-N", INPUT_CHAIN], ["-N", EGRESS_CHAIN],
                              ["-F", INPUT_CHAIN], ["-F", EGRESS_CHAIN]]
    for bridge in (session_bridge, build_bridge):
        rules.append(["-A", INPUT_CHAIN, "-i", bridge, "-m", "conntrack", "--ctstate",
                      "ESTABLISHED,RELATED", "-j", "RETURN"])
    for port in hub_ports:
        rules.append(["-A", INPUT_CHAIN, "-i", session_bridge, "-p", "tcp", "--dport",
                      str(port), "-j", "RETURN"])
    for bridge in (session_bridge, build_bridge):
        rules.append(["-A", INPUT_CHAIN, "-i", bridge, "-j", "DROP"])
        for network in v4:
            rules.append(["-A", EGRESS_CHAIN, "-i", bridge, "-d", network, "-j", "DROP"])
    rules.append(["-A", EGRESS_CHAIN, "-j", "RETURN"])
    return rules


def jumps(chain_for_forward: str = "DOCKER-USER") -> list[list[str]]:
    """Where the chains are entered: first in INPUT, first in Docker's DOCKER-USER."""
    return [["INPUT", "-j", INPUT_CHAIN], [chain_for_forward, "-j", EGRESS_CHAIN]]


def _iptables(args: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)


def apply_rules(rules: list[list[str]], run: Runner = _iptables,
                forward_chain: str = "DOCKER-USER") -> None:
    """Install ``rules`` (idempotent: the chains are flushed and refilled)."""
    for args in rules:
        result = run(args)
        if result.returncode and not (args[0] == "-N" and "exists" in result.stderr):
            raise RuntimeError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    if run(["-L", forward_chain, "-n"]).returncode:
        # DOCKER-USER exists once the engine started with iptables on; before, make it
        run(["-N", forward_chain])
    for jump in jumps(forward_chain):
        if run(["-C", *jump]).returncode:
            result = run(["-I", *jump[:1], "1", *jump[1:]])
            if result.returncode:
                raise RuntimeError(f"iptables -I {' '.join(jump)}: {result.stderr.strip()}")


def check_rules(rules: list[list[str]], run: Runner = _iptables,
                forward_chain: str = "DOCKER-USER") -> list[str]:
    """What is missing (empty: all in place), for /health and ``check``."""
    problems = []
    for jump in jumps(forward_chain):
        if run(["-C", *jump]).returncode:
            problems.append(f"no jump to {jump[-1]} in {jump[0]}")
    for args in rules:
        if args[0] == "-A" and run(["-C", *args[1:]]).returncode:
            problems.append("missing rule: " + " ".join(args[1:]))
    return problems


def network_problems(client, name: str = SESSION_NETWORK) -> list[str]:
    """What is wrong with the session network, from the engine's view (no root needed)."""
    import docker.errors

    try:
        options = client.networks.get(name).attrs.get("Options") or {}
    except docker.errors.NotFound:
        return [f"session network {name} does not exist"]
    if options.get(ICC, "true") != "false":
        return [f"session network {name} allows traffic between sessions"]
    return []


def write_status(path: str, problems: list[str]) -> None:
    with open(path, "w") as f:
        json.dump({"checked": time.time(), "problems": problems}, f)


def read_status(path: str = STATUS_FILE, max_age: float = 0) -> list[str]:
    """The last ``apply``/``check`` result as problems ([] = rules in place); for /health.
    ``max_age`` > 0: a result older than that many seconds is a problem too."""
    try:
        with open(path) as f:
            status = json.load(f)
    except (OSError, ValueError):
        return [f"no egress rule status at {path} (run python -m binderlab.platform."
                "isolation apply as root)"]
    problems = list(status.get("problems", []))
    if max_age and time.time() - float(status.get("checked", 0)) > max_age:
        problems.append(f"egress rules last checked more than {max_age:g} s ago")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m binderlab.platform.isolation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["apply", "check"])
    parser.add_argument("--network", default=SESSION_NETWORK,
                        help=f"session network name (default {SESSION_NETWORK})")
    parser.add_argument("--bridge", default=SESSION_BRIDGE,
                        help=f"its bridge interface (default {SESSION_BRIDGE})")
    parser.add_argument("--build-bridge", default=BUILD_BRIDGE,
                        help=f"the build steps' bridge (default {BUILD_BRIDGE})")
    parser.add_argument("--hub-port", type=int, action="append",
                        help="host port sessions may reach (the hub API; default 8081)")
    parser.add_argument("--status-file", default=STATUS_FILE,
                        help=f"where the result is written for /health (default {STATUS_FILE}"
                        "; empty: nowhere)")
    args = parser.parse_args(argv)
    rules = egress_rules(args.bridge, args.build_bridge, args.hub_port or [8081])
    if args.action == "apply":
        import docker

        ensure_session_network(docker.from_env(), args.network, args.bridge)
        apply_rules(rules)
    problems = check_rules(rules)
    if args.status_file:
        write_status(args.status_file, problems)
    if args.action == "apply" and not problems:
        print(f"session network {args.network} ({args.bridge}) and egress rules in place")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
