"""How much of the internet a list of networks covers: meaning, not spelling.

0.0.0.0/0 is easy to refuse by its spelling; 0.0.0.0/1 plus 128.0.0.0/1, a few dozen /8s, ::/1
plus 8000::/1 or [::ffff:0:0]/96 (every IPv4 address, written as IPv6) say the same thing in
other words. So the keys that open something to their networks (mynetworks: relaying without
a password; adminCidrs: SSH; spfExtra: sending as our domains) are judged by the union of
what they cover, counted once.

The threshold, WIDE_SHARE: a list is too wide when the globally routable addresses it covers
reach 1/256 of its family's globally routable space, about a public /8 in IPv4 (14.5 million
of the 3.7 billion routable addresses) and a /11 in IPv6 (2000::/3 is the routable space).
That is more than any one network holds, so such a list can only be a share of the internet
at large; below it lie every real office, provider or sender range (the largest mail senders
publish IPv4 /14s and IPv6 /36s in SPF; RIRs hand out at most /12s of IPv6). Private,
loopback, documentation and other special-purpose ranges count for nothing: no stranger
connects from them, so 10.0.0.0/8 or all of RFC 1918 stays acceptable for mynetworks.

IPv6 prefixes that carry IPv4 addresses (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96,
NAT64 64:ff9b::/96, 6to4 2002::/16) count for the IPv4 addresses they carry as well.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from fractions import Fraction
from typing import Union

# Union, not `|`: a module-level alias is evaluated at import, and the self-check imports this
# on the host's python3, which is 3.9 on CentOS Stream 9 (render.SHIPPED_PYTHON).
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

WIDE_SHARE = Fraction(1, 256)

# IANA's special-purpose IPv4 ranges that no stranger connects from (RFC 6890 and successors),
# plus multicast and the reserved 240/4.
_NOT_GLOBAL_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4"))
# IPv6: only global unicast routes on the internet; its documentation prefix does not.
_GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")
_NOT_GLOBAL_V6 = (ipaddress.IPv6Network("2001:db8::/32"),)
# IPv6 prefixes that embed an IPv4 address: (prefix, bit offset of the IPv4 address).
_IPV4_CARRIERS = tuple((ipaddress.IPv6Network(n), offset) for n, offset in (
    ("::ffff:0:0/96", 96), ("::/96", 96), ("64:ff9b::/96", 96), ("2002::/16", 16)))

GLOBAL_V4 = 2**32 - sum(n.num_addresses for n in _NOT_GLOBAL_V4)
GLOBAL_V6 = _GLOBAL_V6.num_addresses - sum(n.num_addresses for n in _NOT_GLOBAL_V6)


@dataclasses.dataclass(frozen=True)
class Coverage:
    """Globally routable addresses covered, per family, each counted once (plus `extra_*`
    addresses whose place is unknown, e.g. an SPF a/24 around records we cannot see)."""

    v4: int
    v6: int

    @property
    def v4_share(self) -> Fraction:
        return Fraction(self.v4, GLOBAL_V4)

    @property
    def v6_share(self) -> Fraction:
        return Fraction(self.v6, GLOBAL_V6)

    def wide_families(self) -> list[str]:
        """"IPv4" and/or "IPv6" when the coverage reaches WIDE_SHARE of that family."""
        return [name for name, share in (("IPv4", self.v4_share), ("IPv6", self.v6_share)) if share >= WIDE_SHARE]

    def describe(self) -> str:
        parts = []
        for name, share in (("IPv4", self.v4_share), ("IPv6", self.v6_share)):
            if share >= WIDE_SHARE:
                parts.append(f"{_percent(share)} of the routable {name} internet")
        return " and ".join(parts)


def _percent(share: Fraction) -> str:
    value = float(share * 100)
    return f"{value:.0f}%" if value >= 1 else f"{value:.2g}%"


def carried_ipv4(net: ipaddress.IPv6Network) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks an IPv6 network covers through the prefixes that embed IPv4."""
    out = []
    for carrier, offset in _IPV4_CARRIERS:
        if carrier.subnet_of(net):
            out.append(ipaddress.IPv4Network("0.0.0.0/0"))
        elif net.subnet_of(carrier):
            length = min(net.prefixlen - carrier.prefixlen, 32)
            bits = (int(net.network_address) >> (128 - offset - 32)) & 0xFFFFFFFF
            out.append(ipaddress.IPv4Network((bits, length), strict=False))
    return out


def _overlap(a: Network, b: Network) -> int:
    """Addresses two CIDR blocks share: the smaller one when nested, else none."""
    if a.version != b.version:
        return 0
    if a.subnet_of(b):  # type: ignore[arg-type]
        return a.num_addresses
    if b.subnet_of(a):  # type: ignore[arg-type]
        return b.num_addresses
    return 0


def coverage(networks: Iterable[Network], extra_v4: int = 0, extra_v6: int = 0) -> Coverage:
    """The globally routable addresses the networks cover, counted once per family."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for net in networks:
        if isinstance(net, ipaddress.IPv4Network):
            v4.append(net)
        else:
            v6.append(net)
            v4 += carried_ipv4(net)
    count4 = 0
    for net4 in ipaddress.collapse_addresses(v4):
        count4 += net4.num_addresses - sum(_overlap(net4, n) for n in _NOT_GLOBAL_V4)
    count6 = 0
    for net6 in ipaddress.collapse_addresses(v6):
        count6 += _overlap(net6, _GLOBAL_V6) - sum(_overlap(net6, n) for n in _NOT_GLOBAL_V6)
    return Coverage(min(count4 + extra_v4, GLOBAL_V4), min(count6 + extra_v6, GLOBAL_V6))
