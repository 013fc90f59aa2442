"""Networks no session, build step or fetch of a user's URL may reach: everything that is not
globally routable (private, loopback, link-local with the cloud metadata address, shared,
documentation, benchmarking, multicast, reserved), and the IPv6 forms that embed an IPv4
address a translator or relay would connect to (NAT64, 6to4, IPv4-compatible).

One list for the SSRF guard (repos/netguard.py) and the one-box egress rules
(platform/isolation.py).
"""

NOT_GLOBAL_NETWORKS = [
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",
    "100.64.0.0/10",  # carrier-grade NAT
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local, includes the cloud metadata address 169.254.169.254
    "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
    "::/96",  # unspecified, loopback and IPv4-compatible IPv6 (::a.b.c.d)
    "64:ff9b::/96",  # NAT64: a translator would connect to the embedded IPv4 address
    "64:ff9b:1::/48",  # local-use NAT64
    "100::/64",  # discard-only
    "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32
    "2001:db8::/32",  # documentation
    "2002::/16",  # 6to4: embeds an IPv4 address a relay would connect to
    "3fff::/20",  # documentation
    "5f00::/16",  # segment routing
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
]
