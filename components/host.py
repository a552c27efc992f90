"""The EC2 mail host: image, SSH key, SSH host key (and the role that reads it at boot), security
group and its rules, instance, Elastic IP."""

from __future__ import annotations

import dataclasses
import json

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from mailserver.core import catalog, firewall, hostkey
from mailserver.core.render import Bundle
from mailserver.core.settings import Settings


@dataclasses.dataclass(frozen=True)
class MailHostArgs:
    # As the host sees itself (settings.as_role): the secondary's carry its own host name.
    settings: Settings
    bundle: Bundle
    # The image (mailserver/core/preflight.py): the pinned amiId, or the newest official one.
    ami_id: str
    # The mail volume (components/storage.py): the instance is placed in its zone and attached to it.
    # The secondary MX has none (its queue lives on the root volume): its zone is the preflight's.
    availability_zone: pulumi.Input[str]
    data_volume_id: pulumi.Input[str] | None
    # Which ports its security group opens (catalog.role_services).
    role: catalog.Role = "primary"


class MailHost(pulumi.ComponentResource):
    public_ip: pulumi.Output[str]
    instance_id: pulumi.Output[str]
    private_key: pulumi.Output[str] | None
    # The host key pulumi-command pins: its public half in OpenSSH form, or None for an instance
    # launched before the boot-time fetch existed (mailserver/core/hostkey.py).
    host_key: pulumi.Output[str | None]
    ami_id: pulumi.Output[str]
    allocation_id: pulumi.Output[str]
    volume_attachment_id: pulumi.Output[str] | None

    def __init__(self, name: str, args: MailHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:MailHost", name, None, opts)
        s = args.settings
        self.ami_id = pulumi.Output.from_input(args.ami_id)

        key_pair, self.private_key = self._key_pair(name, s)
        host_key, profile, readable = self._host_key(name, s)
        group, rules = self._security_group(name, s, args.role)
        instance = self._instance(name, args, key_pair, group, [*rules, *readable], profile)
        eip, association = self._elastic_ip(name, s, instance)
        if args.role == "primary":  # the secondary runs postfix alone: no self-check there
            self._self_check_egress(name, s, group, eip)
        attachment = (self._attach_data_volume(name, args.data_volume_id, instance)
                      if args.data_volume_id is not None else None)

        # Carries the association as a dependency, so whoever connects to this address (the
        # remote commands) waits until it actually reaches the instance.
        self.public_ip = pulumi.Output.all(eip.public_ip, association.id).apply(lambda v: str(v[0]))
        self.instance_id = instance.id
        self.allocation_id = eip.allocation_id
        self.volume_attachment_id = attachment.id if attachment is not None else None
        self.host_key = pulumi.Output.all(instance.user_data, host_key.public_key_openssh).apply(
            lambda v: _pinned(s, v[0], v[1]))

        self.register_outputs({
            "public_ip": self.public_ip,
            "instance_id": self.instance_id,
            "private_key": self.private_key,
            "host_key": self.host_key,
            "ami_id": self.ami_id,
        })

    def _key_pair(self, name: str, s: Settings) -> tuple[aws.ec2.KeyPair, pulumi.Output[str] | None]:
        """The operator's public key, or a generated ED25519 one, whose private half (secret) it
        returns too."""
        child = pulumi.ResourceOptions(parent=self)
        private_key: pulumi.Output[str] | None = None
        if s.ssh_public_key:
            public_key: pulumi.Input[str] = s.ssh_public_key
        else:
            key = tls.PrivateKey(f"{name}-ssh", algorithm="ED25519", opts=child)
            public_key = key.public_key_openssh
            private_key = pulumi.Output.secret(key.private_key_openssh)
        return aws.ec2.KeyPair(f"{name}-key", public_key=public_key, tags={"Name": s.hostname}, opts=child), private_key

    def _host_key(self, name: str, s: Settings
                  ) -> tuple[tls.PrivateKey, aws.iam.InstanceProfile, list[pulumi.Resource]]:
        """The SSH host key, generated here (its private half a Pulumi secret) and stored as an
        SSM SecureString; the instance's role and profile, which may read that one parameter and
        nothing else. Also returned: what must exist before the instance boots and fetches it."""
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{name}-ssh-host-key", algorithm="ED25519", opts=child)
        # The value is a secret input, so Pulumi encrypts it in its state too; SecureString
        # with the AWS managed key aws/ssm (no key_id), see hostkey.read_policy.
        private: pulumi.Output[str] = pulumi.Output.secret(key.private_key_openssh)
        parameter = aws.ssm.Parameter(
            f"{name}-ssh-host-key",
            name=hostkey.parameter_name(s),
            type="SecureString",
            value=private,
            description=f"SSH host key of {s.hostname}, read by the instance at boot (mailserver)",
            tags={"Name": s.hostname},
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=json.dumps(hostkey.EC2_ASSUME_ROLE_POLICY),
            description=f"The mail host {s.hostname}: reads its SSH host key at boot, nothing else",
            tags={"Name": s.hostname},
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-read-host-key",
            role=role.name,
            policy=parameter.arn.apply(lambda arn: json.dumps(hostkey.read_policy(arn))),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, tags={"Name": s.hostname}, opts=child)
        return key, profile, [parameter, policy]

    def _security_group(self, name: str, s: Settings,
                        role: catalog.Role) -> tuple[aws.ec2.SecurityGroup, list[pulumi.Resource]]:
        """The group and one rule resource per firewall rule (mailserver/core/firewall.py)."""
        child = pulumi.ResourceOptions(parent=self)
        # No vpc_id: the account's default VPC. The description is fixed because changing it
        # replaces the group, and with it the instance's network identity.
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="Mail server: public mail ports, SSH from admin CIDRs only",
            tags={"Name": s.hostname},
            opts=child,
        )
        rules: list[pulumi.Resource] = []
        for rule in firewall.firewall_rules(s, role):
            rule_cls = (aws.vpc.SecurityGroupIngressRule if rule.direction == "ingress"
                        else aws.vpc.SecurityGroupEgressRule)
            rules.append(rule_cls(
                f"{name}-{rule.name}",
                security_group_id=group.id,
                ip_protocol=rule.protocol,
                from_port=rule.from_port,
                to_port=rule.to_port,
                cidr_ipv4=None if rule.is_ipv6 else rule.cidr,
                cidr_ipv6=rule.cidr if rule.is_ipv6 else None,
                description=rule.description,
                opts=child,
            ))
        return group, rules

    def _self_check_egress(self, name: str, s: Settings, group: aws.ec2.SecurityGroup, eip: aws.ec2.Eip) -> None:
        """The self-check's probes of its own mail ports, out to its Elastic IP alone
        (firewall.self_check_egress)."""
        own = eip.public_ip.apply(lambda ip: f"{ip}/32")
        for rule_name, port, description in firewall.self_check_egress(s):
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{rule_name}", security_group_id=group.id, ip_protocol="tcp", from_port=port, to_port=port,
                cidr_ipv4=own, description=description, opts=pulumi.ResourceOptions(parent=self))

    def _instance(self, name: str, args: MailHostArgs, key_pair: aws.ec2.KeyPair, group: aws.ec2.SecurityGroup,
                  before_boot: list[pulumi.Resource], profile: aws.iam.InstanceProfile) -> aws.ec2.Instance:
        s = args.settings
        return aws.ec2.Instance(
            f"{name}-instance",
            ami=self.ami_id,
            instance_type=s.instance_type,
            key_name=key_pair.key_name,
            # Added to a running instance, an instance profile is associated in place (no stop,
            # no replacement).
            iam_instance_profile=profile.name,
            vpc_security_group_ids=[group.id],
            user_data=args.bundle.user_data,
            metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 1, "http_endpoint": "enabled"},
            root_block_device={"volume_size": s.root_volume_size, "volume_type": "gp3", "encrypted": True},
            # In the mail volume's zone, so a rebuilt instance can always attach it.
            availability_zone=args.availability_zone,
            tags={"Name": s.hostname},
            opts=pulumi.ResourceOptions(
                parent=self,
                # A newly published image or an edited first-boot script must never replace or
                # stop a running mail server; the apply script re-converges it over SSH instead.
                # A pinned amiId is the one way to upgrade: changing it replaces the instance,
                # and the mail, on its own volume, moves to the new one.
                ignore_changes=["userData"] if s.ami_id else ["ami", "userData"],
                # The provider strips the group's default allow-all egress, and cloud-init
                # installs packages on first boot: the rules must exist before the VM starts. So
                # must the host key and the policy that lets the instance read it.
                depends_on=before_boot,
            ),
        )

    def _elastic_ip(self, name: str, s: Settings,
                    instance: aws.ec2.Instance) -> tuple[aws.ec2.Eip, aws.ec2.EipAssociation]:
        # Protected: the address carries the IP reputation and the PTR record, and must
        # survive a rebuilt instance.
        eip = aws.ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            tags={"Name": s.hostname},
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        # Delete before replace: EC2 refuses to associate an address that is still associated
        # (allow_reassociation is off), so a rebuilt instance gets it once the old one let go.
        association = aws.ec2.EipAssociation(
            f"{name}-eip-assoc", allocation_id=eip.allocation_id, instance_id=instance.id,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        return eip, association

    def _attach_data_volume(self, name: str, volume_id: pulumi.Input[str],
                            instance: aws.ec2.Instance) -> aws.ec2.VolumeAttachment:
        """The mail volume, attached after the instance exists (it cannot be part of the
        launch: the volume outlives instances). Replacing the instance or the volume replaces
        this attachment; delete before replace, because a volume is attached to one instance at
        a time. The instance is stopped before the volume is detached: a filesystem pulled from
        under a running kernel can hang in "busy" or lose what was still in the page cache. The
        instance stopped is the one being replaced."""
        return aws.ec2.VolumeAttachment(
            f"{name}-data-attachment",
            device_name=catalog.DATA_VOLUME_DEVICE_NAME,
            instance_id=instance.id,
            volume_id=volume_id,
            stop_instance_before_detaching=True,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )


def _pinned(s: Settings, user_data: str | None, public_key: str) -> str | None:
    """The host key to pin, when the instance installed it at boot; None (and a warning) for an
    instance that predates the fetch: its own key would be refused on every connection."""
    if hostkey.fetches_host_key(user_data):
        return public_key.strip()
    pulumi.log.warn(hostkey.unpinned_warning(s.hostname))
    return None
