"""The mail host's DNS in Cloudflare: its A record and one MX per mail domain."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pulumi
import pulumi_cloudflare as cloudflare

from mailserver import plan
from mailserver.settings import Settings

# The plan is pure and wants a string, but the address is only known after the EIP exists:
# plan with this marker, then put the real address wherever the marker landed.
IP_PLACEHOLDER = "{public_ip}"


def _fill(text: str, ip: str) -> str:
    return text.replace(IP_PLACEHOLDER, ip)


@dataclasses.dataclass(frozen=True)
class MailDnsArgs:
    settings: Settings
    public_ip: pulumi.Input[str]


class MailDns(pulumi.ComponentResource):
    records: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: MailDnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:MailDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ip = pulumi.Output.from_input(args.public_ip)

        created = []
        for rec in plan.dns_records(args.settings, IP_PLACEHOLDER):
            content: pulumi.Input[str] = rec.content
            if IP_PLACEHOLDER in rec.content:
                content = ip.apply(functools.partial(_fill, rec.content))
            created.append(cloudflare.DnsRecord(
                f"{name}-{rec.name}",
                zone_id=rec.zone_id,
                name=rec.fqdn,
                type=rec.type,
                content=content,
                priority=rec.priority,
                ttl=rec.ttl,
                proxied=rec.proxied,
                opts=child,
            ))

        self.records = pulumi.Output.from_input(
            [{"name": r.name, "type": r.type, "content": r.content} for r in created]
        )
        self.register_outputs({"records": self.records})
