"""The whole mail server: host, DNS and provisioning, wired together."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pulumi_aws as aws

from mailserver.core.preflight import Placement
from mailserver.core.render import Bundle
from mailserver.core.settings import Secrets, Settings, as_role

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
    # The backup MX's bundle (render role "secondary"), with secondaryMx; else None.
    secondary_bundle: Bundle | None = None


class MailServer(pulumi.ComponentResource):
    storage: MailStorage
    host: MailHost
    dns: MailDns
    provision: MailProvision
    dkim: DkimKeys
    web: MailWeb
    ptr: aws.ec2.EipDomainName
    ses: SesRelay | None
    # The backup MX (secondaryMx): its host, PTR and provisioning, or None.
    secondary: MailHost | None
    secondary_ptr: aws.ec2.EipDomainName | None
    secondary_provision: MailProvision | None
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
        # The backup MX: another zone, no mail volume, its own name, address and host key.
        self.secondary = None
        if args.secondary_bundle is not None:
            self.secondary = MailHost(f"{name}-secondary-host", MailHostArgs(
                settings=as_role(args.settings, "secondary"), bundle=args.secondary_bundle,
                ami_id=args.placement.ami_id, availability_zone=args.placement.secondary_zone,
                data_volume_id=None, role="secondary"), opts=child)
        self.dkim = DkimKeys(f"{name}-dkim", DkimKeysArgs(settings=args.settings), opts=child)
        self.dns = MailDns(f"{name}-dns", MailDnsArgs(
            settings=args.settings, public_ip=self.host.public_ip,
            secondary_ip=self.secondary.public_ip if self.secondary else None,
            dkim_public_keys=self.dkim.public_keys), opts=child)
        self.web = MailWeb(f"{name}-web", MailWebArgs(settings=args.settings), opts=child)
        self.ptr = self._reverse_dns(name, self.host, args.settings.hostname, self.dns.a_record)
        self.secondary_ptr = None
        if self.secondary is not None and self.dns.secondary_a_record is not None:
            self.secondary_ptr = self._reverse_dns(f"{name}-secondary", self.secondary,
                                                   args.settings.secondary_hostname, self.dns.secondary_a_record)
        # Only with relay: ses. Otherwise nothing SES-related exists, not even an IAM user.
        self.ses = SesRelay(f"{name}-ses", SesRelayArgs(settings=args.settings), opts=child) \
            if args.settings.relay == "ses" else None
        self.provision = self._provision(name, args)
        self.secondary_provision = None
        if self.secondary is not None and args.secondary_bundle is not None:
            self.secondary_provision = MailProvision(f"{name}-secondary-provision", MailProvisionArgs(
                settings=as_role(args.settings, "secondary"), secrets=args.secrets,
                bundle=args.secondary_bundle, host=self.secondary.public_ip, instance_id=self.secondary.instance_id,
                data_volume_id=None, volume_attachment_id=None, private_key=self.secondary.private_key,
                host_key=self.secondary.host_key, role="secondary"), opts=child)

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

    def _reverse_dns(self, name: str, host: MailHost, hostname: str,
                     a_record: pulumi.Resource) -> aws.ec2.EipDomainName:
        """Reverse DNS of the Elastic IP: receivers compare it with our HELO name. AWS checks
        that the A record already resolves to the address, so it waits for the record."""
        return aws.ec2.EipDomainName(
            f"{name}-ptr",
            allocation_id=host.allocation_id,
            domain_name=hostname,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[a_record],
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
