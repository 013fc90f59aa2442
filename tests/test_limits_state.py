"""Rate-limit state against an attacker with many addresses, tickets and page views:
tickets bound to the client, page views limited, IPv6 counted per /64, bounded expiring
state. The limits object itself, no network (timing of the checks: bench/limits.py)."""

import time

import pytest

from binderlab.errors import LaunchError
from binderlab.launch import limits as limits_module
from binderlab.launch.limits import LaunchLimits

SPEC = "gh/owner/repo/main"


def test_ticket_is_bound_to_the_client_it_was_issued_to():
    limits = LaunchLimits()
    ticket = limits.issue_ticket(SPEC, "198.51.100.7")
    assert not limits.redeem_ticket(ticket, SPEC, "203.0.113.9")  # minted elsewhere
    assert not limits.redeem_ticket(ticket, SPEC, "")
    assert limits.redeem_ticket(ticket, SPEC, "198.51.100.7")
    v6 = limits.issue_ticket(SPEC, "2001:db8:1:2::10")
    assert not limits.redeem_ticket(v6, SPEC, "2001:db8:1:3::10")  # another /64
    assert limits.redeem_ticket(v6, SPEC, "2001:db8:1:2:ffff::1")  # the same /64


def test_page_views_per_client_are_limited():
    limits = LaunchLimits(page_views_per_client=5)
    tickets = [limits.issue_ticket(SPEC, "198.51.100.7") for _ in range(7)]
    assert all(tickets[:5]) and tickets[5:] == ["", ""]
    assert limits.issue_ticket(SPEC, "198.51.100.8")  # another client is not affected
    assert all(limits.redeem_ticket(t, SPEC, "198.51.100.7") for t in tickets[:5])


@pytest.mark.parametrize(("client", "key"), [
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("fe80::1%eth0", "fe80::/64"),
    ("not an address", "not an address"),
])
def test_client_key(client, key):
    assert LaunchLimits.client_key(client) == key


def test_ipv6_clients_are_limited_per_64():
    limits = LaunchLimits(per_client=3)
    for host in (1, 2, 3):
        limits.check_rate(f"2001:db8:0:7::{host:x}", "gh/o/r", from_page=False)
    with pytest.raises(LaunchError) as e:
        limits.check_rate("2001:db8:0:7:ffff:ffff:ffff:ffff", "gh/o/r", from_page=False)
    assert e.value.status_code == 429
    limits.check_rate("2001:db8:0:8::1", "gh/o/r", from_page=False)  # the next /64


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_state_expires_and_stays_bounded(monkeypatch):
    """60,000 clients, then the window passes: later checks forget the expired ones a few
    at a time (no rebuild of the whole table); past max_tracked_clients the least recently
    seen are forgotten first."""
    clock = Clock()
    monkeypatch.setattr(limits_module.time, "monotonic", clock)
    limits = LaunchLimits(per_client=5, window=600, max_tracked_clients=50_000)
    for i in range(60_000):
        limits.check_rate(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", "gh/o/r", False)
    assert len(limits._recent) <= 50_000 + 1
    clock.now += 601
    for i in range(30_000):
        limits.check_rate(f"172.16.{i >> 8}.{i & 255}", "gh/o/r", False)
    # each check dropped up to two expired clients: after 25,000 checks none was left
    assert not any(c.startswith("10.") for (c, _) in limits._recent)
    assert len(limits._recent) == 30_000
    # a client still limited keeps its count through all of it
    for _ in range(5):
        limits.check_rate("192.0.2.1", "gh/o/r", False)
    for i in range(1000):
        limits.check_rate(f"198.18.{i >> 8}.{i & 255}", "gh/o/r", False)
    with pytest.raises(LaunchError):
        limits.check_rate("192.0.2.1", "gh/o/r", False)


def test_used_tickets_are_forgotten_once_expired(monkeypatch):
    limits = LaunchLimits(ticket_max_age=60)
    tickets = [limits.issue_ticket(SPEC, "198.51.100.7") for _ in range(100)]
    for t in tickets:
        assert limits.redeem_ticket(t, SPEC, "198.51.100.7")
    later = time.time() + 61
    monkeypatch.setattr(limits_module.time, "time", lambda: later)
    fresh = limits.issue_ticket(SPEC, "198.51.100.7")
    assert limits.redeem_ticket(fresh, SPEC, "198.51.100.7")
    assert list(limits._used_tickets) == [fresh]


def test_default_session_quota_is_sized_to_the_host():
    import os
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limits = LaunchLimits()
    assert limits.max_sessions == max(2, memory // (1 << 30)) > 0
    with pytest.raises(LaunchError) as e:
        limits.check_quota(limits.max_sessions, 0, "gh/o/r")
    assert e.value.status_code == 503
    assert LaunchLimits(max_sessions=0).max_sessions == 0  # the operator can turn it off
