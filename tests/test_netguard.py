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
        ("2001:db8::1", True),  # documentation: routed nowhere, so never a real git host
        ("::ffff:8.8.8.8", False),
        # not globally routable, or carrying an address that is not (issue 12)
        ("64:ff9b::7f00:1", True),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of the metadata address
        ("64:ff9b:1::1", True),
        ("2002:7f00:1::", True),  # 6to4 of 127.0.0.1
        ("2002:808:808::", True),  # 6to4 as a whole (a relay would connect for us)
        ("::7f00:1", True),  # IPv4-compatible ::127.0.0.1
        ("::a9fe:a9fe", True),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", True),  # Teredo
        ("198.18.0.1", True),
        ("198.19.255.254", True),
        ("198.20.0.1", False),  # just outside 198.18.0.0/15
        ("224.0.0.1", True),
        ("239.255.255.250", True),
        ("ff02::1", True),
        ("ff0e::1", True),  # global-scope multicast is still not a git host
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("192.0.0.8", True),
        ("192.0.2.1", True),
        ("192.88.99.1", True),
        ("198.51.100.1", True),
        ("203.0.113.1", True),
        ("100::1", True),
        ("fec0::1", True),
        ("2a00:1450:4001::1", False),
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


def _sample_addresses():
    """Addresses around the edges of every network Python's ipaddress calls private or
    reserved, plus a deterministic spread over the whole address spaces."""
    import ipaddress
    import random

    rng = random.Random(12)
    special = [
        *ipaddress.IPv4Address(0)._constants._private_networks,
        *ipaddress.IPv6Address(0)._constants._private_networks,
        ipaddress.IPv4Address(0)._constants._multicast_network,
        ipaddress.IPv4Address(0)._constants._reserved_network,
        ipaddress.IPv6Address(0)._constants._multicast_network,
        *ipaddress.IPv6Address(0)._constants._reserved_networks,
    ]
    for net in special:
        for offset in {0, min(1, net.num_addresses - 1), net.num_addresses // 2,
                       net.num_addresses - 1}:
            yield str(net[offset])
    for _ in range(4000):
        yield str(ipaddress.IPv4Address(rng.getrandbits(32)))
        yield str(ipaddress.IPv6Address(rng.getrandbits(128)))


def test_default_list_blocks_whatever_is_not_globally_routable():
    import ipaddress

    for address in _sample_addresses():
        ip = ipaddress.ip_address(address)
        if not ip.is_global or ip.is_multicast:
            assert netguard.blocked_address(address, DEFAULT), address


def test_embedded_ipv4_is_checked_even_when_the_prefix_is_allowed():
    # an operator's own list without the translation prefixes still refuses what they carry
    loopback = netguard.parse_networks(["127.0.0.0/8"])
    for address in ["64:ff9b::7f00:1", "2002:7f00:1::", "::7f00:1", "::ffff:127.0.0.1"]:
        assert netguard.blocked_address(address, loopback), address
    assert not netguard.blocked_address("64:ff9b::808:808", loopback)


@pytest.mark.parametrize(
    ("host", "ascii"),
    [
        ("github.com", "github.com"),
        ("GitHub.COM", "github.com"),
        ("github.com.", "github.com"),
        # IDNA 2008 non-transitional, as curl's libidn2: not IDNA 2003's "strasse"
        ("straße.example", "xn--strae-oqa.example"),
        ("STRASSE.example", "strasse.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("ｇｉｔｈｕｂ．ｃｏｍ", "github.com"),  # full-width letters and dot
        ("github。com", "github.com"),  # ideographic full stop separates labels too
        ("１２７.０.０.１", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("[0:0:0:0:0:ffff:7f00:1]", "[::ffff:7f00:1]"),
        ("xn--strae-oqa.example", "xn--strae-oqa.example"),
        ("my_host.example", "my_host.example"),
    ],
)
def test_ascii_host_is_the_name_curl_looks_up(host, ascii):
    assert netguard.ascii_host(host) == ascii


@pytest.mark.parametrize(
    "host",
    ["%31%32%37.0.0.1", "%78n--strae-oqa.example", "git%2ehub.com", "[::1%25eth0]",
     "a..b", "exa mple.com", "ex!ample.com", "[not-v6]", "999.0.0.1",
     "a/b.example", "\u2488.example"],
)
def test_ascii_host_refuses_other_spellings(host):
    with pytest.raises(LaunchError) as info:
        netguard.ascii_host(host)
    assert info.value.status_code == 400
