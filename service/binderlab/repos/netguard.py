"""Refuse destinations that a public service must not be made to contact (SSRF).

A launch request names a git host; without this check anyone could make binderlab probe
its own loopback services, the private network or a cloud metadata address.
"""

import asyncio
import ipaddress
import re
import socket

import idna

from binderlab.errors import LaunchError
from binderlab.platform.networks import NOT_GLOBAL_NETWORKS

# Everything that is not globally routable (IANA's special-purpose registries), so the list
# an operator reads is the whole rule. Python's ``is_global`` alone is not enough: it calls
# NAT64, 6to4, IPv4-compatible IPv6 and multicast "global", and each of those can carry a
# loopback or metadata address to a gateway that unwraps it.
DEFAULT_BLOCKED_NETWORKS = NOT_GLOBAL_NETWORKS  # c.BinderLab.blocked_networks' default


def parse_networks(cidrs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def blocked_address(address: str, networks) -> bool:
    """Whether ``address`` (or an IPv4 address it carries) is in ``networks``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scope id names no other host
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        # an IPv4 address inside an IPv6 one is checked too, so an operator who unblocks
        # a translation prefix does not also unblock 127.0.0.1 behind it
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo or (None, None))[1]
        if embedded is None and (ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1)):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            candidates.append(embedded)
    return any(c in net for c in candidates for net in networks if net.version == c.version)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# what curl reads as an IPv4 address: up to four dot-separated numbers, decimal, octal or hex
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}")
_ASCII_HOST = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def ascii_host(host: str) -> str:
    """The host name exactly as git (through curl) will look it up, or LaunchError(400).

    curl converts a non-ASCII name with libidn2 (IDNA 2008, UTS 46 non-transitional:
    ``straße`` becomes ``xn--strae-oqa``), while Python's resolver uses IDNA 2003
    (``strasse``): checked and contacted would be two different names. So the name is
    converted here once, the way curl does, and the caller hands git the converted URL
    and pins exactly that name. Full-width letters, digits and dots are mapped by the same
    rules (``１２７.０.０.１`` is 127.0.0.1); a numeric host in any of the forms curl accepts
    (``2130706433``, ``0x7f.1``) becomes its dotted address; percent-encoded names and
    trailing dots are refused or removed, so one host has one spelling.
    """
    if "%" in host:
        raise LaunchError("Percent-encoded host names are not accepted: write the host name "
                          "as it is.", 400)
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host.strip('[]')).compressed}]"
        except ValueError:
            raise LaunchError(f"Not a valid IPv6 address: {host!r}.", 400) from None
    name = host
    if not host.isascii():
        try:
            name = idna.uts46_remap(host, std3_rules=True, transitional=False)
            name = name.removesuffix(".")
            name = idna.encode(name, uts46=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as e:
            raise LaunchError(f"Not a valid international host name: {host!r} ({e}).",
                              400) from None
    name = name.lower().removesuffix(".")
    if _NUMERIC_HOST.fullmatch(name):
        try:
            return socket.inet_ntoa(socket.inet_aton(name))
        except OSError:
            raise LaunchError(f"Not a valid IPv4 address: {host!r}.", 400) from None
    if not _ASCII_HOST.fullmatch(name) or len(name) > 253:
        raise LaunchError(f"Not a valid host name: {host!r}.", 400)
    return name


async def check_host(host: str, port: int, networks) -> str | None:
    """Raise LaunchError if ``host`` resolves to any address in ``networks``; return the
    address that was checked, for the caller to pin (None when nothing is blocked).

    Every resolved address is checked, not only the first: a name with one public and one
    loopback address is refused. Pinning the checked address for the connection (git's
    http.curloptResolve) closes the window in which DNS could answer differently
    (DNS rebinding).
    """
    if not networks:
        return None
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise LaunchError(f"Cannot resolve host {host!r}: {e.strerror}", 400) from None
    for info in infos:
        address = info[4][0]
        if blocked_address(address, networks):
            raise LaunchError(
                f"Host {host!r} resolves to {address}, an address this service does not "
                "contact (loopback, private or link-local). An operator can change "
                "c.BinderLab.blocked_networks.",
                403,
            )
    return infos[0][4][0] if infos else None
