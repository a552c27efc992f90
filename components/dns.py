"""The mail host's DNS in Cloudflare: A, MX, SPF, DMARC, DKIM, CAA and client SRV records."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_cloudflare as cloudflare

from mailserver.core import records
from mailserver.core.settings import Settings

# The plan is pure and wants a string, but the address is only known after the EIP exists:
# plan with this marker, then put the real address wherever the marker landed.
IP_PLACEHOLDER = "{public_ip}"
SECONDARY_IP_PLACEHOLDER = "{secondary_ip}"


def _fill(text: str, ips: list[str]) -> str:
    return text.replace(IP_PLACEHOLDER, ips[0]).replace(SECONDARY_IP_PLACEHOLDER, ips[1])


@dataclasses.dataclass(frozen=True)
class MailDnsArgs:
    settings: Settings
    public_ip: pulumi.Input[str]
    # The secondary MX's address (secondaryMx), or None.
    secondary_ip: pulumi.Input[str] | None = None
    # (domain, selector) -> public key PEM, from DkimKeys
    dkim_public_keys: Mapping[tuple[str, str], pulumi.Input[str]] = dataclasses.field(default_factory=dict)


def _data(rec: records.Record) -> dict[str, Any]:
    return dict(rec.data)


def _dkim_txt(public_key_pem: str) -> str:
    return records.txt(records.dkim(public_key_pem))


def _planned(args: MailDnsArgs) -> list[tuple[records.Record, pulumi.Input[str]]]:
    """Each planned record with its content: the address filled in once known, DKIM keys once made."""
    s = args.settings
    ips = pulumi.Output.all(args.public_ip, args.secondary_ip or "")
    planned: list[tuple[records.Record, pulumi.Input[str]]] = []
    for rec in records.planned_records(s, IP_PLACEHOLDER, SECONDARY_IP_PLACEHOLDER):
        content: pulumi.Input[str] = rec.content
        if IP_PLACEHOLDER in rec.content or SECONDARY_IP_PLACEHOLDER in rec.content:
            content = ips.apply(functools.partial(_fill, rec.content))
        planned.append((rec, content))
    for (domain, selector), pem in args.dkim_public_keys.items():
        rec = records.dkim_record(s, domain, selector, "")
        planned.append((rec, pulumi.Output.from_input(pem).apply(_dkim_txt)))
    return planned


class MailDns(pulumi.ComponentResource):
    records: pulumi.Output[list[dict[str, Any]]]
    a_record: cloudflare.DnsRecord
    secondary_a_record: cloudflare.DnsRecord | None

    def __init__(self, name: str, args: MailDnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:MailDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.secondary_a_record = None
        created = []
        for rec, content in _planned(args):
            created.append(cloudflare.DnsRecord(
                f"{name}-{rec.name}",
                zone_id=rec.zone_id,
                name=rec.fqdn,
                type=rec.type,
                # SRV and CAA go to Cloudflare as structured data; it derives their content.
                content=None if rec.data else content,
                data=cloudflare.DnsRecordDataArgs(**_data(rec)) if rec.data else None,
                priority=rec.priority,
                ttl=rec.ttl,
                proxied=rec.proxied,
                opts=child,
            ))
            if rec.type == "A" and rec.name == "a-host":
                self.a_record = created[-1]
            elif rec.type == "A":
                self.secondary_a_record = created[-1]

        self.records = pulumi.Output.from_input(
            [{"name": r.name, "type": r.type, "content": r.content} for r in created]
        )
        self.register_outputs({"records": self.records})
