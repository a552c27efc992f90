"""The mail data volume and its snapshots, as data: zone choice, tags, device path, DLM policy,
restore instructions. Pure (no Pulumi): components/storage.py turns these into resources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mailserver.core import catalog
from mailserver.core.settings import Settings


class NoZoneError(ValueError):
    """The region offers the instance type in no availability zone."""


def choose_zone(offered: Iterable[str] | None, instance_type: str, standard: Iterable[str] | None = None) -> str:
    """The availability zone of a new data volume: the first, by name, of the zones that offer
    the instance type. The instance is then placed in the volume's zone (never the other way
    round), so a replaced instance can always attach the same volume. The answer only matters
    once: the volume ignores later changes of it (a zone may stop offering a type).

    `standard` is the region's zones that need no opt-in. The offerings lookup also names Local
    Zones an account has opted into, and "us-east-1-bos-1a" sorts before "us-east-1a": the
    default VPC has no subnet there and DLM's default location does not cover it, so only
    standard zones are taken."""
    zones = sorted(set(offered or ()) & set(standard if standard is not None else offered or ()))
    if not zones:
        raise NoZoneError(f"no availability zone of this region offers {instance_type}; "
                          "pick another instanceType or region")
    return zones[0]


def snapshot_tags(project: str, stack: str) -> dict[str, str]:
    """The tag the data volume carries and the DLM policy selects. The value names the stack:
    DLM policies select by tag across the whole account and region, so a shared value would
    let one stack's policy snapshot, and expire, another stack's volume."""
    return {catalog.SNAPSHOT_TAG_KEY: f"{project}-{stack}"}


def device_path(volume_id: str) -> str:
    """Where a Nitro instance shows the EBS volume: udev's by-id link carries the volume id
    without its dash, while the /dev/nvmeXn1 names change with the attach order."""
    return f"{catalog.EBS_BY_ID_PREFIX}{volume_id.replace('-', '', 1)}"


def dlm_policy_details(s: Settings, target_tags: dict[str, str]) -> dict[str, Any]:
    """One daily schedule that keeps the last `snapshotRetention` snapshots of every volume
    carrying target_tags. Snapshots copy the volume's tags, so a restored volume is selected
    again by the same policy."""
    return {
        "resource_types": ["VOLUME"],
        "target_tags": dict(target_tags),
        "schedules": [{
            # Fixed: DLM stops managing (and so never expires) the snapshots of a schedule
            # whose name changes.
            "name": "daily",
            "create_rule": {"interval": 24, "interval_unit": "HOURS", "times": catalog.SNAPSHOT_TIME_UTC},
            "retain_rule": {"count": s.snapshot_retention},
            "copy_tags": True,
            "tags_to_add": {"SnapshotCreator": "dlm"},
            **({"cross_region_copy_rules": [cross_region_copy_rule(s)]} if s.snapshot_copy_region else {}),
        }],
    }


def cross_region_copy_rule(s: Settings) -> dict[str, Any]:
    """Each new snapshot copied to snapshotCopyRegion, so the backups outlive a regional outage.
    Encrypted with the target region's default EBS key (no cmk_arn: a KMS key is regional, and
    the source's aws/ebs key cannot be used there). DLM cannot count copies (the copy rule's
    retain rule is by age only), so they are kept snapshotRetention days: with one snapshot a
    day, the same number as the source keeps. copy_tags: the copies carry the stack's tag, by
    which the restore drill finds them there."""
    return {
        "target": s.snapshot_copy_region,
        "encrypted": True,
        "copy_tags": True,
        "retain_rule": {"interval": s.snapshot_retention, "interval_unit": "DAYS"},
    }


def dlm_description(hostname: str) -> str:
    """DLM accepts only letters, digits, spaces, '_' and '-' in a policy's description (no dots)."""
    return re.sub(r"[^0-9A-Za-z _-]", "-", f"Daily snapshots of the mail volume of {hostname}")[:500]


DLM_ASSUME_ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "dlm.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }],
}


def restore_instructions(s: Settings, volume_id: str, zone: str, tags: dict[str, str]) -> str:
    """What the operator does to bring mail back from a snapshot (the stack output)."""
    (key, value), = tags.items()
    return (
        f"Mail lives on EBS volume {volume_id} in {zone}, snapshotted daily at {catalog.SNAPSHOT_TIME_UTC} UTC "
        f"(the last {s.snapshot_retention} kept). To restore: "
        f"1) pick a snapshot: aws ec2 describe-snapshots --owner-ids self "
        f"--filters Name=tag:{key},Values={value} Name=volume-id,Values={volume_id} "
        f"--query 'Snapshots[].[StartTime,SnapshotId]' --output text; "
        f"2) pulumi config set dataVolumeSnapshotId snap-...; "
        f"3) pulumi state unprotect '<URN of the volume, from pulumi stack --show-urns>'; "
        f"4) pulumi up --replace '<URN of the instance>': a new volume is created from the snapshot in {zone}, "
        f"the old instance is stopped so its volume detaches cleanly, and a new instance mounts the restored one "
        f"(same Elastic IP, DNS records and PTR). The old volume is kept, not deleted (retainOnDelete); "
        f"delete it by hand once the restored mail is checked (until then it keeps its {key} tag, so DLM "
        f"goes on snapshotting it daily). Keep dataVolumeSnapshotId set afterwards."
        + (f" Copies of each snapshot are kept {s.snapshot_retention} days in {s.snapshot_copy_region} (same tag): "
           f"to restore there when {zone[:-1]} is down, see the README's restore drill, in another region."
           if s.snapshot_copy_region else "")
    )
