"""netguard: which addresses a launch may make binderlab contact (SSRF). No network."""

import socket
from types import SimpleNamespace

import pytest

from binderlab.errors import LaunchError
from binderlab.repos import netguard

DEFAULT = netguard.parse_networks(netguard.DEFAULT_BLOCKED_NETWORKS)


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("0.0.0.0", True),
        ("10.1.2.3", True),
        ("100.64.0.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("192.168.1.1", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("fd00::1", True),
        ("fc00::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:7f00:1", True),
        ("::ffff:169.254.169.254", True),
        ("::ffff:10.0.0.1", True),
        ("8.8.8.8", False),
        ("140.82.112.3", False),
        ("172.32.0.1", False),  # just outside 172.16.0.0/12
        ("100.128.0.1", False),  # just outside 100.64.0.0/10
        ("2606:4700:4700::1111", False),
        ("2001:db8::1", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_blocked_address_default_networks(address, blocked):
    assert netguard.blocked_address(address, DEFAULT) is blocked


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254"])
def test_blocked_address_no_networks_allows_everything(address):
    assert netguard.blocked_address(address, []) is False


def test_blocked_address_custom_networks():
    networks = netguard.parse_networks(["203.0.113.0/24", "2001:db8::/32"])
    assert netguard.blocked_address("203.0.113.7", networks)
    assert netguard.blocked_address("::ffff:203.0.113.7", networks)
    assert netguard.blocked_address("2001:db8::5", networks)
    assert not netguard.blocked_address("127.0.0.1", networks)


def test_parse_networks_accepts_host_bits():
    [net] = netguard.parse_networks(["10.1.2.3/8"])
    assert str(net) == "10.0.0.0/8"


def test_parse_networks_refuses_garbage():
    with pytest.raises(ValueError):
        netguard.parse_networks(["not-a-network"])


@pytest.mark.parametrize(
    ("host", "addresses"),
    [("localhost", {"127.0.0.1", "::1"}), ("127.0.0.1", {"127.0.0.1"}), ("::1", {"::1"})],
)
async def test_check_host_refuses_loopback(host, addresses):
    with pytest.raises(LaunchError) as info:
        await netguard.check_host(host, None, DEFAULT)
    assert info.value.status_code == 403
    assert repr(host) in str(info.value)
    assert any(a in str(info.value) for a in addresses)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "no-such-host.invalid"])
async def test_check_host_without_networks_allows_everything(host, monkeypatch):
    # not even resolved: nothing to compare the addresses with
    monkeypatch.setattr(netguard, "asyncio", None)
    assert await netguard.check_host(host, 443, []) is None


def _fake_dns(monkeypatch, result):
    """Make check_host's getaddrinfo answer ``result`` (a list of addresses, or an error)."""
    seen = []

    async def getaddrinfo(host, port, **kwargs):
        seen.append((host, port))
        if isinstance(result, Exception):
            raise result
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in result]

    loop = SimpleNamespace(getaddrinfo=getaddrinfo)
    monkeypatch.setattr(netguard, "asyncio", SimpleNamespace(get_running_loop=lambda: loop))
    return seen


async def test_check_host_checks_every_address(monkeypatch):
    _fake_dns(monkeypatch, ["140.82.112.3", "10.0.0.5"])
    with pytest.raises(LaunchError) as info:
        await netguard.check_host("rebind.example", 443, DEFAULT)
    assert info.value.status_code == 403
    assert "10.0.0.5" in str(info.value)


async def test_check_host_allows_public_addresses(monkeypatch):
    seen = _fake_dns(monkeypatch, ["140.82.112.3", "2606:4700:4700::1111"])
    # the checked address comes back, for git to connect to it and nothing else
    assert await netguard.check_host("github.com", 443, DEFAULT) == "140.82.112.3"
    assert seen == [("github.com", 443)]


async def test_check_host_refuses_mapped_metadata_address(monkeypatch):
    _fake_dns(monkeypatch, ["::ffff:169.254.169.254"])
    with pytest.raises(LaunchError) as info:
        await netguard.check_host("metadata.example", 80, DEFAULT)
    assert info.value.status_code == 403


async def test_check_host_unresolvable_is_400(monkeypatch):
    _fake_dns(monkeypatch, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(LaunchError) as info:
        await netguard.check_host("no-such-host.invalid", 443, DEFAULT)
    assert info.value.status_code == 400
    assert "no-such-host.invalid" in str(info.value)
    assert "Name or service not known" in str(info.value)


def test_pinned_address_is_what_git_connects_to():
    from binderlab.repos import gitcmd

    assert gitcmd.pin_config("github.com", 443, "140.82.112.3") == (
        "http.curloptResolve=github.com:443:140.82.112.3",)
    assert gitcmd.pin_config("h.example", 443, "2606:4700::1") == (
        "http.curloptResolve=h.example:443:[2606:4700::1]",)
    assert gitcmd.pin_config("h.example", 443, None) == ()
