"""Refuse destinations that a public service must not be made to contact (SSRF).

A launch request names a git host; without this check anyone could make binderlab probe
its own loopback services, the private network or a cloud metadata address.
"""

import asyncio
import ipaddress
import socket

from binderlab.errors import LaunchError

DEFAULT_BLOCKED_NETWORKS = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local, includes the cloud metadata address 169.254.169.254
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "::/128",
    "fc00::/7",
    "fe80::/10",
]


def parse_networks(cidrs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def blocked_address(address: str, networks) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks if net.version == ip.version)


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
