"""The whole mail server: host, DNS and provisioning, wired together."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi

from mailserver.render import Bundle
from mailserver.settings import Secrets, Settings

from .dns import MailDns, MailDnsArgs
from .host import MailHost, MailHostArgs
from .provision import MailProvision, MailProvisionArgs


@dataclasses.dataclass(frozen=True)
class MailServerArgs:
    settings: Settings
    secrets: Secrets
    bundle: Bundle


class MailServer(pulumi.ComponentResource):
    host: MailHost
    dns: MailDns
    provision: MailProvision
    public_ip: pulumi.Output[str]
    private_key: pulumi.Output[str] | None
    dns_records: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: MailServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:MailServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.host = MailHost(f"{name}-host", MailHostArgs(settings=args.settings, bundle=args.bundle), opts=child)
        self.dns = MailDns(f"{name}-dns", MailDnsArgs(settings=args.settings, public_ip=self.host.public_ip),
                           opts=child)
        self.provision = MailProvision(
            f"{name}-provision",
            MailProvisionArgs(
                settings=args.settings,
                secrets=args.secrets,
                bundle=args.bundle,
                host=self.host.public_ip,
                instance_id=self.host.instance_id,
                private_key=self.host.private_key,
            ),
            opts=child,
        )

        self.public_ip = self.host.public_ip
        self.private_key = self.host.private_key
        self.dns_records = self.dns.records
        self.register_outputs({
            "public_ip": self.public_ip,
            "instance_id": self.host.instance_id,
            "ami_id": self.host.ami_id,
            "private_key": self.private_key,
            "dns_records": self.dns_records,
        })
