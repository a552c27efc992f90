"""The mail data volume and its daily snapshots (Data Lifecycle Manager and its IAM role)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

import pulumi
import pulumi_aws as aws

from mailserver.core import storage
from mailserver.core.settings import Settings


@dataclasses.dataclass(frozen=True)
class MailStorageArgs:
    settings: Settings
    # The zone of a new volume (mailserver/core/preflight.py: the first standard zone offering the
    # instance type). An existing volume stays where it is.
    availability_zone: str


class MailStorage(pulumi.ComponentResource):
    volume: aws.ebs.Volume
    volume_id: pulumi.Output[str]
    availability_zone: pulumi.Output[str]
    snapshot_policy: aws.dlm.LifecyclePolicy
    restore_instructions: pulumi.Output[str]

    def __init__(self, name: str, args: MailStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailserver:index:MailStorage", name, None, opts)
        s = args.settings
        tags = storage.snapshot_tags(pulumi.get_project(), pulumi.get_stack())

        self.volume = self._volume(name, args, tags)
        self.volume_id = self.volume.id
        # The zone the volume really is in, from its state: the instance follows it.
        self.availability_zone = self.volume.availability_zone
        self.snapshot_policy = self._daily_snapshots(name, s, tags)
        self.restore_instructions = pulumi.Output.all(self.volume_id, self.availability_zone).apply(
            lambda v: storage.restore_instructions(s, str(v[0]), str(v[1]), tags))
        self.register_outputs({
            "volume_id": self.volume_id,
            "availability_zone": self.availability_zone,
            "snapshot_policy_id": self.snapshot_policy.id,
        })

    def _volume(self, name: str, args: MailStorageArgs, tags: dict[str, str]) -> aws.ebs.Volume:
        s = args.settings
        return aws.ebs.Volume(
            f"{name}-volume",
            availability_zone=args.availability_zone,
            size=s.data_volume_size,
            type="gp3",
            encrypted=True,
            snapshot_id=s.data_volume_snapshot_id or None,
            # Only reached if retain_on_delete is ever dropped: a last snapshot before deletion.
            final_snapshot=True,
            tags={"Name": f"{s.hostname} mail", **tags},
            opts=pulumi.ResourceOptions(
                parent=self,
                # The mail itself. protect refuses to delete or replace it (pulumi destroy
                # included); retain_on_delete keeps it in AWS even once unprotected and
                # deleted from the stack, e.g. when a restore replaces it.
                protect=True,
                retain_on_delete=True,
                # The zone is chosen once. A later answer of the lookup (a zone that stops
                # offering the instance type) must not try to move the mail elsewhere.
                ignore_changes=["availabilityZone"],
            ),
        )

    def _daily_snapshots(self, name: str, s: Settings, tags: dict[str, str]) -> aws.dlm.LifecyclePolicy:
        """A Data Lifecycle Manager policy, and the role it runs as."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-dlm-role",
            assume_role_policy=json.dumps(storage.DLM_ASSUME_ROLE_POLICY),
            description=f"Data Lifecycle Manager: snapshots of the mail volume of {s.hostname}",
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-dlm-policy",
            role=role.name,
            policy_arn=aws.iam.ManagedPolicy.AWS_DATA_LIFECYCLE_MANAGER_SERVICE_ROLE,
            opts=child,
        )
        return aws.dlm.LifecyclePolicy(
            f"{name}-snapshots",
            description=storage.dlm_description(s.hostname),
            execution_role_arn=role.arn,
            state="ENABLED",
            # A plain dict from the pure module (the SDK's TypedDict names the same keys).
            policy_details=cast(Any, storage.dlm_policy_details(s, tags)),
            tags={"Name": f"{s.hostname} mail snapshots"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )
