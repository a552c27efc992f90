"""What AWS and Cloudflare really answer, as data: the one place the program's mocks take
their facts from, each with its public source.

The mocks of tests/program/harness.py answer every lookup from here and filter as the real API
filters (EC2's name wildcards, owners, architecture, the instance type's offerings), so a
query the real service would answer with nothing gets nothing here too. A program that asks
for the wrong image name, or an instance type no zone offers, fails under these mocks as it
would on its first real `pulumi up`.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
from typing import Any

import grpc

REGION = "eu-central-1"
ACCOUNT = "123456789012"  # an example account id (AWS documentation's placeholder)
# A second region for the snapshot copies (snapshotCopyRegion): Ireland, a standard region of
# the commercial partition, like REGION. Source: AWS General Reference, "AWS Regions".
OTHER_REGION = "eu-west-1"

# --- images -------------------------------------------------------------------------------
# The CentOS project publishes the official CentOS Stream AMIs from owner 125523088429, named
# "CentOS Stream <release> <arch> <build date>", where <arch> is x86_64 or aarch64, while EC2's
# architecture attribute says x86_64 or arm64. Sources: centos.org/download/aws-images (the
# image list, by region and architecture); public `aws ec2 describe-images --owners
# 125523088429` output, and AWS-CDK/Terraform examples that filter
# name="CentOS Stream 9 aarch64*" with architecture=arm64. The ids and dates below are made up
# in that shape (AMI ids differ per region and build).
CENTOS_OWNER = "125523088429"
# AWS Marketplace's owner alias id: re-published images carry similar names, which an owner
# filter must keep out.
MARKETPLACE_OWNER = "679593333241"


def _image(image_id: str, name: str, arch: str, created: str, owner: str = CENTOS_OWNER) -> dict[str, str]:
    return {"imageId": image_id, "name": name, "architecture": arch, "creationDate": created, "ownerId": owner}


IMAGES: tuple[dict[str, str], ...] = (
    _image("ami-0c9a1e5d2b3f40001", "CentOS Stream 9 x86_64 20251103.0", "x86_64", "2025-11-03T07:12:40.000Z"),
    _image("ami-0c9a1e5d2b3f40002", "CentOS Stream 9 x86_64 20251124.0", "x86_64", "2025-11-24T07:10:02.000Z"),
    _image("ami-0a9a1e5d2b3f40003", "CentOS Stream 9 aarch64 20251103.0", "arm64", "2025-11-03T07:20:51.000Z"),
    _image("ami-0a9a1e5d2b3f40004", "CentOS Stream 9 aarch64 20251124.0", "arm64", "2025-11-24T07:18:33.000Z"),
    _image("ami-0c10e5d2b3f400005", "CentOS Stream 10 x86_64 20251124.0", "x86_64", "2025-11-24T08:01:17.000Z"),
    _image("ami-0a10e5d2b3f400006", "CentOS Stream 10 aarch64 20251124.0", "arm64", "2025-11-24T08:09:45.000Z"),
    # Newer than every official image, same name shape, another owner: never picked.
    _image("ami-0ffe5d2b3f4000007", "CentOS Stream 9 x86_64 20251201.0", "x86_64", "2025-12-01T00:00:00.000Z",
           MARKETPLACE_OWNER),
    # An operator's own copy (a pinned amiId may name one).
    _image("ami-0be5d2b3f40000008", "mail-golden-arm64", "arm64", "2025-11-25T10:00:00.000Z", ACCOUNT),
)

# --- zones and instance-type offerings ----------------------------------------------------
# eu-central-1 (Frankfurt) has three standard zones; the Hamburg and Warsaw Local Zones are
# opt-in ("opted-in" once enabled) and offer only a few types, t3 among them. Sources: AWS
# "Regions and Zones" documentation; the Local Zones locations and features pages
# (aws.amazon.com/about-aws/global-infrastructure/localzones). DescribeAvailabilityZones
# without AllAvailabilityZones lists only the zones the account can use.
STANDARD_ZONES = ("eu-central-1a", "eu-central-1b", "eu-central-1c")
LOCAL_ZONES = ("eu-central-1-ham-1a",)
# DescribeInstanceTypeOfferings (location type availability-zone): which zones offer a type.
# A type that does not exist, or is not offered, gets an empty answer, not an error.
# Source: `aws ec2 describe-instance-type-offerings --location-type availability-zone
# --region eu-central-1` and the EC2 "instance types by Region" documentation.
OFFERINGS: dict[str, tuple[str, ...]] = {
    **{t: STANDARD_ZONES for t in ("t4g.micro", "t4g.small", "t4g.medium", "t3.micro", "t3.small",
                                   "m7g.medium", "m5.large")},
    # Offered in the Local Zone as well: the one the zone choice must skip.
    "t3.medium": (*LOCAL_ZONES, *STANDARD_ZONES),
}

# Every account starts with a default VPC in each region (EC2 "Default VPCs" documentation);
# one the operator deleted is gone until `aws ec2 create-default-vpc`.
DEFAULT_VPC = "vpc-0d1e2f3a4b5c6d7e8"

# --- SSM Parameter Store ------------------------------------------------------------------


def ssm_parameter_arn(region: str, account: str, name: str) -> str:
    """A parameter's ARN as SSM reports it: the name follows "parameter/" without its leading
    slash (Service Authorization Reference, "Actions, resources, and condition keys for AWS
    Systems Manager": arn:${Partition}:ssm:${Region}:${Account}:parameter/${ParameterNameWithoutLeadingSlash})."""
    return f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


# --- SES and Cloudflare -------------------------------------------------------------------
# Easy DKIM gives three tokens per identity, published as three CNAMEs (Amazon SES developer
# guide, "Easy DKIM in Amazon SES").
SES_EASY_DKIM_TOKENS = 3


def easy_dkim_tokens(domain: str) -> list[str]:
    """Easy DKIM tokens as SES returns them for a domain: 32 lower-case letters and digits
    (made up in that shape)."""
    return [f"{domain.replace('.', '')}{i}".ljust(32, "x") for i in range(SES_EASY_DKIM_TOKENS)]


# Cloudflare API token permission groups, id -> name (Cloudflare's "API token permissions"
# reference, developers.cloudflare.com/fundamentals/api/reference/permissions/, and the
# answer of GET /user/tokens/permission_groups).
CLOUDFLARE_PERMISSION_GROUPS: dict[str, str] = {
    "4755a26eedb94da69e1066d98aa820be": "DNS Write",
    "82e64a83756745bbbb1c9c2701bf816b": "DNS Read",
    "c8fed203ed3043cba015a93ad1616f1f": "Zone Read",
}

# The aws_ami data source's error when nothing matches (terraform-provider-aws,
# internal/service/ec2/ec2_ami_data_source.go).
NO_RESULTS = "Your query returned no results. Please change your search criteria and try again."


# --- the query engine ---------------------------------------------------------------------


class ProviderError(grpc.RpcError):  # type: ignore[misc]  # grpc ships no type hints
    """A provider's failed invoke, as the engine reports it to the program: a gRPC error whose
    details carry the provider's message (the SDK turns it into an Exception with that text)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self.message


def _matches(value: str, patterns: list[str]) -> bool:
    # EC2 filters: any value may match (OR); * and ? are wildcards.
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _filtered(items: list[dict[str, Any]], filters: list[dict[str, Any]],
              fields: dict[str, str]) -> list[dict[str, Any]]:
    """The items every filter matches (filters AND). A filter name we do not model fails the test:
    a mock that ignored it would answer more than EC2 does."""
    out = items
    for f in filters or []:
        if f["name"] not in fields:
            raise AssertionError(f"the mock does not model EC2 filter {f['name']!r}")
        field = fields[f["name"]]
        out = [i for i in out if _matches(str(i[field]), list(f["values"]))]
    return out


@dataclasses.dataclass
class World:
    """One account in one region, as the tests set it up. Change a copy to model another
    account (no default VPC) or region (other images)."""

    region: str = REGION
    images: list[dict[str, str]] = dataclasses.field(default_factory=lambda: copy.deepcopy(list(IMAGES)))
    offerings: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=lambda: dict(OFFERINGS))
    standard_zones: tuple[str, ...] = STANDARD_ZONES
    opted_in_zones: tuple[str, ...] = LOCAL_ZONES
    default_vpc: str | None = DEFAULT_VPC
    # An instance that already runs, launched from older user-data: with userData in
    # ignore_changes the provider keeps reporting what it booted with. None: the program
    # launches a new instance, whose user-data is the program's own.
    instance_user_data: str | None = None

    def answer(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        """The invoke's result as the provider returns it (camelCase). Raises where the
        provider returns an error."""
        handler = {
            "aws:ec2/getAmiIds:getAmiIds": self._ami_ids,
            "aws:ec2/getAmi:getAmi": self._ami,
            "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": self._offerings,
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._zones,
            "aws:ec2/getVpcs:getVpcs": self._vpcs,
        }.get(token)
        if handler is None:
            raise AssertionError(f"the program asks {token}, which the mock does not model")
        return handler(args)

    def _images(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        found = _filtered(self.images, args.get("filters", []), {
            "name": "name", "architecture": "architecture", "image-id": "imageId", "owner-id": "ownerId"})
        if args.get("owners"):
            found = [i for i in found if i["ownerId"] in args["owners"]]
        return found

    def _ami_ids(self, args: dict[str, Any]) -> dict[str, Any]:
        # Sorted by creation date, newest first unless sortAscending (aws_ami_ids docs).
        found = sorted(self._images(args), key=lambda i: i["creationDate"], reverse=not args.get("sortAscending"))
        return {"id": self.region, "ids": [i["imageId"] for i in found]}

    def _ami(self, args: dict[str, Any]) -> dict[str, Any]:
        found = sorted(self._images(args), key=lambda i: i["creationDate"], reverse=True)
        if not found:
            raise ProviderError(NO_RESULTS)
        if len(found) > 1 and not args.get("mostRecent"):
            raise ProviderError("Your query returned more than one result. Please try a more specific search criteria, "
                              "or set `most_recent` attribute to true.")
        image = found[0]
        return {"id": image["imageId"], **image}

    def _offerings(self, args: dict[str, Any]) -> dict[str, Any]:
        assert args.get("locationType") == "availability-zone", args
        rows = [{"instanceType": t, "location": z} for t, zones in self.offerings.items() for z in zones
                if z in (*self.standard_zones, *self.opted_in_zones)]
        rows = _filtered(rows, args.get("filters", []), {"instance-type": "instanceType", "location": "location"})
        return {"id": self.region, "instanceTypes": [r["instanceType"] for r in rows],
                "locations": [r["location"] for r in rows],
                "locationTypes": ["availability-zone"] * len(rows)}

    def _zones(self, args: dict[str, Any]) -> dict[str, Any]:
        zones = [{"zoneName": z, "optInStatus": "opt-in-not-required", "state": "available"}
                 for z in self.standard_zones]
        zones += [{"zoneName": z, "optInStatus": "opted-in", "state": "available"} for z in self.opted_in_zones]
        if args.get("state"):
            zones = [z for z in zones if z["state"] == args["state"]]
        zones = _filtered(zones, args.get("filters", []), {"opt-in-status": "optInStatus", "zone-name": "zoneName"})
        names = [z["zoneName"] for z in zones]
        return {"id": self.region, "names": names, "zoneIds": [f"euc1-az{i + 1}" for i in range(len(names))]}

    def _vpcs(self, args: dict[str, Any]) -> dict[str, Any]:
        vpcs = [{"vpcId": self.default_vpc, "isDefault": "true"}] if self.default_vpc else []
        vpcs += [{"vpcId": "vpc-0aaaaaaaaaaaaaaa1", "isDefault": "false"}]  # the operator's other VPC
        vpcs = _filtered(vpcs, args.get("filters", []), {"is-default": "isDefault", "vpc-id": "vpcId"})
        return {"id": self.region, "ids": [v["vpcId"] for v in vpcs]}
