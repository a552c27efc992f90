"""The security group's rules, from the port table: every enabled public mail port from
anywhere, SSH only from adminCidrs, and the egress the host needs. Pure: components/host.py
turns them into resources."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Literal

from mailserver.core import catalog
from mailserver.core.settings import Settings

WORLD_V4 = "0.0.0.0/0"
WORLD_V6 = "::/0"
@dataclasses.dataclass(frozen=True)
class Rule:
    name: str  # stable resource name suffix
    direction: Literal["ingress", "egress"]
    protocol: str  # tcp | udp
    from_port: int
    to_port: int
    cidr: str
    description: str

    @property
    def is_ipv6(self) -> bool:
        return ipaddress.ip_network(self.cidr).version == 6


def firewall_rules(s: Settings, role: catalog.Role = "primary") -> tuple[Rule, ...]:
    """Security-group rules: every enabled public mail port of the host's role from anywhere
    (IPv4 and IPv6; the secondary MX serves port 25 alone), SSH only from adminCidrs, and the
    egress the host needs. Nothing else."""
    rules: list[Rule] = []
    for svc in catalog.role_services(s.services, role):
        cidrs = s.admin_cidrs if svc.admin_only else (WORLD_V4, WORLD_V6)
        for cidr in cidrs:
            fam = "v6" if ipaddress.ip_network(cidr).version == 6 else "v4"
            suffix = "" if not svc.admin_only else f"-{_slug(cidr)}"
            rules.append(Rule(f"in-{svc.name}-{svc.port}-{fam}{suffix}", "ingress", "tcp", svc.port, svc.port,
                              cidr, svc.description))
    for proto, lo, hi in catalog.EGRESS:
        for cidr in (WORLD_V4, WORLD_V6):
            fam = "v6" if ":" in cidr else "v4"
            rules.append(Rule(f"out-{proto}-{lo}-{fam}", "egress", proto, lo, hi, cidr, f"outbound {proto}/{lo}"))
    return tuple(rules)


def self_check_egress(s: Settings) -> tuple[tuple[str, int, str], ...]:
    """(name, port, description) of the egress the daily self-check needs beyond catalog.EGRESS:
    it probes its own public mail ports through its Elastic IP, and the group lets out only what
    the host sends to the world (SMTP, DNS, HTTP(S), NTP), not IMAP or POP3. Only to its own
    address: components/host.py makes each rule for <Elastic IP>/32 once the address exists.
    None without selfCheck."""
    if not s.self_check:
        return ()
    opened = {lo for proto, lo, _ in catalog.EGRESS if proto == "tcp"}
    return tuple((f"out-self-{svc.name}-{svc.port}", svc.port, f"self-check probe of {svc.name} on its own address")
                 for svc in s.services if not svc.admin_only and svc.port not in opened)


def _slug(cidr: str) -> str:
    return cidr.replace(":", "-").replace(".", "-").replace("/", "-")
