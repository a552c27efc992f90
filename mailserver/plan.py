"""Pure plans the Pulumi components turn into resources: firewall rules, DNS records, names,
client settings. No Pulumi here, so each plan has plain unit tests; the components only wire.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Literal

from . import catalog
from .settings import Settings

WORLD_V4 = "0.0.0.0/0"
WORLD_V6 = "::/0"
DNS_TTL = 300  # short enough to fix a mistake quickly, long enough to cache


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


def firewall_rules(s: Settings) -> tuple[Rule, ...]:
    """Security-group rules: every enabled public mail port from anywhere (IPv4 and IPv6),
    SSH only from adminCidrs, and the egress the host needs. Nothing else."""
    rules: list[Rule] = []
    for svc in s.services:
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


def _slug(cidr: str) -> str:
    return cidr.replace(":", "-").replace(".", "-").replace("/", "-")


@dataclasses.dataclass(frozen=True)
class Record:
    name: str  # resource name suffix
    zone_id: str
    fqdn: str  # full name, never "@" (Cloudflare returns FQDNs; relative names drift)
    type: str
    content: str
    priority: int | None = None
    ttl: int = DNS_TTL
    proxied: bool = False  # Cloudflare cannot proxy SMTP/IMAP: mail records are DNS-only


def dns_records(s: Settings, public_ip: str) -> tuple[Record, ...]:
    """The A record of the mail host and one MX per mail domain, each in its own zone."""
    records = [Record("a-host", s.zone_id(s.hostname_zone), s.hostname, "A", public_ip)]
    for d in s.domains:
        records.append(Record(f"mx-{d}", s.zone_id(d), d, "MX", s.hostname, priority=10))
    return tuple(records)


def client_settings(s: Settings) -> dict[str, dict[str, object]]:
    """What a mail client needs, per protocol, from the port table."""
    out: dict[str, dict[str, object]] = {}
    for svc in s.services:
        if svc.admin_only or not svc.auth:
            continue
        security = "SSL/TLS" if svc.tls == "implicit" else "STARTTLS"
        out[svc.name] = {"host": s.hostname, "port": svc.port, "security": security,
                         "username": "your full e-mail address", "auth": "normal password"}
    return out


def ssh_command(s: Settings, ip: str) -> str:
    return f"ssh {s.ssh_user}@{ip}"


PORT25_WARNING = (
    "AWS blocks outbound port 25 on new accounts: this server receives mail but cannot deliver "
    "to other servers until AWS approves the 'Request to remove email sending limitations' form "
    "(it also sets the reverse DNS). Until then outgoing mail waits in the queue."
)
