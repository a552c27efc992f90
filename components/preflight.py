"""Read-only AWS lookups that mailserver/core/preflight.py judges before any resource is created.

Plain (synchronous) invokes, so their answers are known while the program still decides what
to create: a region without the image, a type no zone offers, or an account without a default
VPC stop `pulumi up` with a settings error instead of a half-created stack.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from mailserver.core import catalog, preflight
from mailserver.core.settings import AWS_REGION_KEY, Settings

# What the provider's aws_ami data source says when nothing matches (terraform-provider-aws,
# internal/service/ec2/ec2_ami_data_source.go: "Your query returned no results. Please change
# your search criteria and try again.").
NO_RESULTS = "Your query returned no results"


def look_up(s: Settings) -> preflight.AwsFacts:
    image_ids: tuple[str, ...] = ()
    pinned = None
    if s.ami_id:
        pinned = _pinned_image(s.ami_id)
    else:
        # Newest first (sort_ascending defaults to false). The name filter carries the image
        # name's spelling of the architecture, the architecture filter EC2's.
        image_ids = tuple(aws.ec2.get_ami_ids(
            owners=[catalog.CENTOS_AMI_OWNER],
            filters=[
                {"name": "name", "values": [catalog.image_name_pattern(s.os, s.architecture)]},
                {"name": "architecture", "values": [s.architecture]},
            ],
        ).ids)
    offerings = aws.ec2.get_instance_type_offerings(
        location_type="availability-zone",
        filters=[{"name": "instance-type", "values": [s.instance_type]}],
    )
    zones = aws.get_availability_zones(
        state="available",
        filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
    )
    vpcs = aws.ec2.get_vpcs(filters=[{"name": "is-default", "values": ["true"]}])
    return preflight.AwsFacts(
        region=pulumi.Config("aws").get("region") or AWS_REGION_KEY,
        image_ids=image_ids,
        pinned_image=pinned,
        offered_zones=tuple(offerings.locations or ()),
        standard_zones=tuple(zones.names or ()),
        default_vpc=next(iter(vpcs.ids or ()), None),
    )


def _pinned_image(ami_id: str) -> preflight.Image | None:
    # get_ami fails when nothing matches ("Your query returned no results"); that answer is
    # the finding here, reported as a settings problem. No owner: a pinned image may be the
    # operator's own copy.
    try:
        found: Any = aws.ec2.get_ami(filters=[{"name": "image-id", "values": [ami_id]}])
    except Exception as e:  # the provider's error has no type of its own; only its text tells
        if NO_RESULTS in str(e):
            return None
        raise
    return preflight.Image(id=found.id, name=found.name, architecture=found.architecture, owner=found.owner_id)
