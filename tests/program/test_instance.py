"""The instance in the resource graph (mocks): hardening, the EIP, the image lookup, and
what the program refuses before it creates anything (no image, no zone, no default VPC)."""

from __future__ import annotations

import pytest

from mailserver.core import settings
from mailserver.core.settings import ROOT
from tests import cloud_facts
from tests.cloud_facts import World
from tests.program.harness import (
    ASSOCIATION,
    EGRESS,
    EIP_TYPE,
    GET_AMI,
    INSTANCE,
    SG,
    Graph,
    build,
    instance_id,
    refused_before_any_resource,
)


def test_instance_hardening(graph: Graph) -> None:
    inst = graph.one(INSTANCE)
    assert inst.inputs["metadataOptions"]["httpTokens"] == "required"
    assert inst.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
    root = inst.inputs["rootBlockDevice"]
    assert root["encrypted"] is True and root["volumeType"] == "gp3" and root["volumeSize"] == 20
    assert {"ami", "userData"} <= set(inst.ignore_changes)
    assert inst.inputs["vpcSecurityGroupIds"] == [graph.one(SG).name + "-id"]
    # cloud-init installs packages at first boot: egress must be in place before the VM starts
    # (but the self-check's probes of its own address, which first runs a day later)
    assert {r.urn for r in graph.of(EGRESS) if "out-self-" not in r.name} <= set(inst.dependencies)


def test_eip_is_protected_and_associated(graph: Graph) -> None:
    eip = graph.one(EIP_TYPE)
    assert eip.protect and eip.inputs["domain"] == "vpc"
    assoc = graph.one(ASSOCIATION)
    assert assoc.inputs["allocationId"] == "eipalloc-0123456789"
    inst = graph.one(INSTANCE)
    assert assoc.inputs["instanceId"] == instance_id(inst.name, inst.inputs)


# The newest official image per release and instance family, read off tests/cloud_facts.py.
NEWEST_OFFICIAL = {
    ("centos-stream-9", "t4g.small"): "ami-0a9a1e5d2b3f40004",  # CentOS Stream 9 aarch64 20251124.0
    ("centos-stream-9", "t3.small"): "ami-0c9a1e5d2b3f40002",  # CentOS Stream 9 x86_64 20251124.0
    ("centos-stream-10", "t4g.small"): "ami-0a10e5d2b3f400006",  # CentOS Stream 10 aarch64 20251124.0
    ("centos-stream-10", "t3.small"): "ami-0c10e5d2b3f400005",  # CentOS Stream 10 x86_64 20251124.0
}


@pytest.mark.parametrize(("os_name", "instance_type"), list(NEWEST_OFFICIAL))
def test_image_is_the_newest_official_one_for_release_and_architecture(os_name: str, instance_type: str) -> None:
    # Graviton images are named aarch64 and have architecture arm64: a lookup that spelled
    # the name arm64 would find nothing on EC2, and nothing here.
    g = build({"os": os_name, "instanceType": instance_type})
    assert g.one(INSTANCE).inputs["ami"] == NEWEST_OFFICIAL[os_name, instance_type]
    (call,) = g.ami_calls()
    assert call.args["owners"] == [cloud_facts.CENTOS_OWNER]  # the look-alike from another owner is newer


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stacks_run_through(stack: str) -> None:
    mailboxes = settings.read_stack_file(ROOT / f"Pulumi.{stack}.yaml")["mailboxes"]
    g = build(passwords={m: f"a long password for {m}" for m in mailboxes}, stack=stack)
    assert g.one(INSTANCE).inputs["instanceType"] in ("t4g.micro", "t4g.small")
    assert g.one(INSTANCE).inputs["ami"] == NEWEST_OFFICIAL["centos-stream-9", "t4g.small"]


def test_pinned_ami_is_checked_not_searched() -> None:
    g = build({"amiId": "ami-0a9a1e5d2b3f40003"})  # an older official arm64 image, pinned
    assert [c.token for c in g.ami_calls()] == [GET_AMI]  # its own record only, no newest-image search
    assert g.one(INSTANCE).inputs["ami"] == "ami-0a9a1e5d2b3f40003"
    # The operator's own copy passes too: any owner, right architecture.
    assert build({"amiId": "ami-0be5d2b3f40000008"}).one(INSTANCE).inputs["ami"] == "ami-0be5d2b3f40000008"


def test_no_image_for_the_region_stops_with_a_clear_message() -> None:
    # A region where the CentOS project publishes no Stream 10 Graviton image.
    world = World(images=[i for i in cloud_facts.IMAGES if i["name"] != "CentOS Stream 10 aarch64 20251124.0"])
    message = refused_before_any_resource({"os": "centos-stream-10", "instanceType": "t4g.small"}, world)
    assert "mailserver:os: no centos-stream-10 image for arm64" in message
    assert "'CentOS Stream 10 aarch64 *'" in message and "eu-central-1" in message and "amiId" in message


@pytest.mark.parametrize(("ami", "instance_type", "os_name", "says"), [
    ("ami-0c9a1e5d2b3f40002", "t4g.small", "centos-stream-9", "is built for x86_64, but t4g.small runs arm64"),
    ("ami-0a9a1e5d2b3f40004", "t3.small", "centos-stream-9", "is built for arm64, but t3.small runs x86_64"),
    ("ami-0a9a1e5d2b3f40004", "t4g.small", "centos-stream-10", "is 'CentOS Stream 9 aarch64 20251124.0', not an image"),
    ("ami-0123456789abcdef0", "t4g.small", "centos-stream-9",
     "EC2 knows no image ami-0123456789abcdef0 in eu-central-1"),
])
def test_pinned_ami_that_cannot_boot_this_stack_is_a_settings_error(ami: str, instance_type: str, os_name: str,
                                                                    says: str) -> None:
    message = refused_before_any_resource({"amiId": ami, "instanceType": instance_type, "os": os_name})
    assert "mailserver:amiId: " in message and says in message


def test_instance_type_no_zone_offers_is_a_settings_error() -> None:
    message = refused_before_any_resource({"instanceType": "t4g.mega"})
    assert "mailserver:instanceType: t4g.mega is offered in no standard availability zone of eu-central-1" in message
    assert "describe-instance-type-offerings" in message


def test_account_without_default_vpc_is_refused_with_the_fix() -> None:
    message = refused_before_any_resource({}, World(default_vpc=None))
    assert "aws:region: the account has no default VPC in eu-central-1" in message
    assert "aws ec2 create-default-vpc --region eu-central-1" in message


def test_every_problem_is_listed_at_once() -> None:
    message = refused_before_any_resource({"instanceType": "t4g.mega", "amiId": "ami-0c9a1e5d2b3f40002"},
                                          World(default_vpc=None))
    assert "(3 problem(s))" in message
