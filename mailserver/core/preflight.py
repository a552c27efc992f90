"""What the AWS account must offer before anything is created, checked as data.

The settings alone cannot tell whether the region has an image for the instance's architecture,
whether any zone offers the instance type, or whether the account has a default VPC. Without
these checks a new user's first `pulumi up` would register resources and then stop in a chain
of provider errors. components/preflight.py asks AWS (read-only lookups) and this module turns
the answers into the image and zone the stack uses, or into settings problems naming the key
and the fix, before any resource exists. Pure: no Pulumi.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from mailserver.core import catalog, storage
from mailserver.core.settings import Problem, Settings, SettingsError


@dataclasses.dataclass(frozen=True)
class Image:
    id: str
    name: str
    architecture: str  # EC2's spelling: arm64, x86_64
    owner: str


@dataclasses.dataclass(frozen=True)
class AwsFacts:
    """The lookups' answers, as AWS gave them."""

    region: str
    # The official images for the OS and architecture, newest first (empty when amiId is pinned).
    image_ids: tuple[str, ...]
    # The pinned amiId's image; None when amiId is empty or EC2 knows no such image.
    pinned_image: Image | None
    # Zones where the instance type is offered (EC2 answers nothing for an unknown type).
    offered_zones: tuple[str, ...]
    # Available zones that need no opt-in (no Local or Wavelength Zones).
    standard_zones: tuple[str, ...]
    # The default VPC's id, None when the account has deleted it.
    default_vpc: str | None


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the stack goes: the image and the mail volume's availability zone."""

    ami_id: str
    availability_zone: str
    # The secondary MX's zone (secondaryMx): another zone offering the same type; else empty.
    secondary_zone: str = ""


def resolve(s: Settings, facts: AwsFacts) -> Placement:
    """The image and zone, or a SettingsError listing every problem at once."""
    problems: list[Problem] = []
    ami_id = s.ami_id
    if s.ami_id:
        problems += _pinned_image_problems(s, facts)
    elif facts.image_ids:
        ami_id = facts.image_ids[0]
    else:
        pattern = catalog.image_name_pattern(s.os, s.architecture)
        problems.append(Problem(
            "os", f"no {s.os} image for {s.architecture} (owner {catalog.CENTOS_AMI_OWNER}, name "
                  f"{pattern!r}) in {facts.region}",
            "pick another aws:region or instanceType, or pin an image with amiId"))
    zone = ""
    try:
        zone = storage.choose_zone(facts.offered_zones, s.instance_type, facts.standard_zones)
    except storage.NoZoneError:
        problems.append(Problem(
            "instanceType", f"{s.instance_type} is offered in no standard availability zone of {facts.region}",
            "pick a type the region offers (aws ec2 describe-instance-type-offerings "
            "--location-type availability-zone), such as t4g.small or t3.small"))
    secondary_zone = ""
    if s.secondary_mx and zone:
        secondary_zone = _secondary_zone(s, facts, zone, problems)
    if facts.default_vpc is None:
        # A minimal VPC of our own would add a VPC, subnets, an internet gateway and routes,
        # all more to get wrong on the one machine that must be reachable; every account starts
        # with a default VPC and AWS restores a deleted one with one command.
        problems.append(Problem(
            "aws:region", f"the account has no default VPC in {facts.region}; the mail host is launched in it",
            f"create it with: aws ec2 create-default-vpc --region {facts.region}"))
    if problems:
        raise SettingsError(problems)
    return Placement(ami_id=ami_id, availability_zone=zone, secondary_zone=secondary_zone)


def _secondary_zone(s: Settings, facts: AwsFacts, primary_zone: str, problems: list[Problem]) -> str:
    """The backup MX's zone: the first other standard zone, by name, that offers the instance
    type. The same zone would lose both hosts to one zone's outage, the one thing it is for, so a
    region with a single such zone is refused rather than given a second host there."""
    try:
        return storage.choose_zone(set(facts.offered_zones) - {primary_zone}, s.instance_type, facts.standard_zones)
    except storage.NoZoneError:
        problems.append(Problem(
            "secondaryMx", f"{s.instance_type} is offered in no standard availability zone of {facts.region} but "
                           f"{primary_zone}, where the primary is: a backup MX there would fail with it",
            "pick an instanceType offered in two zones of the region, or keep secondaryMx false"))
        return ""


def _pinned_image_problems(s: Settings, facts: AwsFacts) -> list[Problem]:
    image = facts.pinned_image
    if image is None:
        return [Problem("amiId", f"EC2 knows no image {s.ami_id} in {facts.region}",
                        "use an image id of this region (AMI ids differ per region), or leave amiId empty")]
    problems = []
    if image.architecture != s.architecture:
        problems.append(Problem(
            "amiId", f"{s.ami_id} ({image.name}) is built for {image.architecture}, but {s.instance_type} "
                     f"runs {s.architecture}",
            f"pin a {s.architecture} image, or pick an instanceType for {image.architecture}"))
    if image.owner == catalog.CENTOS_AMI_OWNER and not fnmatch.fnmatchcase(
            image.name, catalog.image_name_pattern(s.os, image.architecture)):
        problems.append(Problem("amiId", f"{s.ami_id} is {image.name!r}, not an image of os {s.os}",
                                "set os to the image's release, or pin an image of that release"))
    return problems
