"""The whole mail server: host, DNS and provisioning, wired together."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pulumi_aws as aws

from mailserver.core.preflight import Placement
from mailserver.core.render import Bundle
from mailserver.core.settings import Secrets, Settings

from .dkim import DkimKeys, DkimKeysArgs
from .dns import MailDns, MailDnsArgs
from .host import MailHost, MailHostArgs
from .provision import MailProvision, MailProvisionArgs
from .ses import SesRelay, SesRelayArgs
from .storage import MailStorage, MailStorageArgs
from .web import MailWeb, MailWebArgs


@dataclasses.dataclass(frozen=True)
class MailServerArgs:
    settings: Settings
    secrets: Secrets
    bundle: Bundle
    # The image and the mail volume's zone, checked against the account before any resource.
    placement: Placement


class MailServer(pulumi.ComponentResource):
    storage: MailStorage
    host: MailHost
    dns: MailDns
    provision: MailProvision
    dkim: DkimKeys
    web: MailWeb
    ptr: aws.ec2.EipDomainName
    ses: SesRelay | None
    public_ip: pulumi.Output[str]
    private_key: pulumi.Output[str] | None
    dns_records: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: MailServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:MailServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # The mail volume first: the instance goes where the volume is.
        self.storage = MailStorage(f"{name}-storage", MailStorageArgs(
            settings=args.settings, availability_zone=args.placement.availability_zone), opts=child)
        self.host = MailHost(f"{name}-host", MailHostArgs(
            settings=args.settings, bundle=args.bundle, ami_id=args.placement.ami_id,
            availability_zone=self.storage.availability_zone,
            data_volume_id=self.storage.volume_id), opts=child)
        self.dkim = DkimKeys(f"{name}-dkim", DkimKeysArgs(settings=args.settings), opts=child)
        self.dns = MailDns(f"{name}-dns", MailDnsArgs(settings=args.settings, public_ip=self.host.public_ip,
                                                      dkim_public_keys=self.dkim.public_keys), opts=child)
        self.web = MailWeb(f"{name}-web", MailWebArgs(settings=args.settings), opts=child)
        self.ptr = self._reverse_dns(name, args.settings)
        # Only with relay: ses. Otherwise nothing SES-related exists, not even an IAM user.
        self.ses = SesRelay(f"{name}-ses", SesRelayArgs(settings=args.settings), opts=child) \
            if args.settings.relay == "ses" else None
        self.provision = self._provision(name, args)

        self.public_ip = self.host.public_ip
        self.private_key = self.host.private_key
        self.dns_records = self.dns.records
        self.register_outputs({
            "public_ip": self.public_ip,
            "instance_id": self.host.instance_id,
            "data_volume_id": self.storage.volume_id,
            "ami_id": self.host.ami_id,
            "private_key": self.private_key,
            "dns_records": self.dns_records,
        })

    def _reverse_dns(self, name: str, s: Settings) -> aws.ec2.EipDomainName:
        """Reverse DNS of the Elastic IP: receivers compare it with our HELO name. AWS checks
        that the A record already resolves to the address, so it waits for the record."""
        return aws.ec2.EipDomainName(
            f"{name}-ptr",
            allocation_id=self.host.allocation_id,
            domain_name=s.hostname,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.dns.a_record],
                                        custom_timeouts=pulumi.CustomTimeouts(create="20m")),
        )

    def _provision(self, name: str, args: MailServerArgs) -> MailProvision:
        """Everything that reaches the host over SSH, with what the other parts made for it."""
        return MailProvision(
            f"{name}-provision",
            MailProvisionArgs(
                settings=args.settings,
                secrets=args.secrets,
                bundle=args.bundle,
                host=self.host.public_ip,
                instance_id=self.host.instance_id,
                data_volume_id=self.storage.volume_id,
                volume_attachment_id=self.host.volume_attachment_id,
                private_key=self.host.private_key,
                host_key=self.host.host_key,
                relay_credentials=self.ses.credentials if self.ses else None,
                dkim_private_keys=self.dkim.private_keys,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
