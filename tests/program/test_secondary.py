"""The backup MX (secondaryMx) in the resource graph (mocks answering as EC2 does): off by
default; when on, a second instance in another zone, with its own Elastic IP, A record, PTR,
an MX at preference 20 for every domain, a security group with port 25 and SSH alone, a
postfix-only bundle, and no mailbox secret; a region with one zone offering the type is refused
before any resource."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
from typing import Any

import pytest

from mailserver.core import catalog
from tests.cloud_facts import OFFERINGS, STANDARD_ZONES, World
from tests.program.harness import (
    ATTACHMENT,
    COMMAND,
    DNS,
    EIP,
    EIP_TYPE,
    INGRESS,
    INSTANCE,
    PTR,
    SECONDARY_EIP,
    Graph,
    build,
    plain,
    refused_before_any_resource,
)

ON = {"secondaryMx": True, "acmeServer": "letsencrypt"}
WORKER_SCRIPT = "cloudflare:index/workersScript:WorkersScript"


@pytest.fixture(scope="module")
def on() -> Graph:
    return build(ON)


def _records(g: Graph, typ: str) -> set[tuple[str, str, Any]]:
    return {(plain(r.inputs)["name"], plain(r.inputs)["content"], plain(r.inputs).get("priority"))
            for r in g.of(DNS) if plain(r.inputs)["type"] == typ and "-ses-" not in r.name}


def _tarball(command: Any) -> dict[str, str]:
    stdin = plain(command.inputs["stdin"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(stdin)))) as tar:
        return {m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def test_off_by_default_one_host_one_mx_per_domain(graph: Graph) -> None:
    assert len(graph.of(INSTANCE)) == 1 and len(graph.of(EIP_TYPE)) == 1 and len(graph.of(PTR)) == 1
    assert _records(graph, "MX") == {(d, "mail.example.com", 10) for d in ("example.com", "example.net")}
    assert "secondaryMx" not in graph.exports


def test_second_instance_in_another_zone(on: Graph) -> None:
    primary = on.one(INSTANCE, "mail-host-instance")
    secondary = on.one(INSTANCE, "mail-secondary-host-instance")
    # The primary keeps the first zone offering the type (its volume's); the secondary the next.
    assert primary.inputs["availabilityZone"] == STANDARD_ZONES[0]
    assert secondary.inputs["availabilityZone"] == STANDARD_ZONES[1]
    assert secondary.inputs["instanceType"] == primary.inputs["instanceType"]
    assert secondary.inputs["metadataOptions"]["httpTokens"] == "required"
    assert "fqdn: mx2.example.com" in secondary.inputs["userData"]
    # No mail volume: the only attachment is the primary's.
    assert [a.name for a in on.of(ATTACHMENT)] == ["mail-host-data-attachment"]
    exported = on.exports["secondaryMx"].value
    assert (exported["hostname"], exported["publicIp"], exported["availabilityZone"]) == (
        "mx2.example.com", SECONDARY_EIP, STANDARD_ZONES[1])


def test_own_eip_a_record_ptr_and_lower_preference_mx(on: Graph) -> None:
    eip = on.one(EIP_TYPE, "mail-secondary-host-eip")
    assert eip.protect  # its reputation and PTR outlive the instance, as the primary's
    assert _records(on, "A") == {("mail.example.com", EIP, None), ("mx2.example.com", SECONDARY_EIP, None)}
    assert _records(on, "MX") == {(d, h, p) for d in ("example.com", "example.net")
                                  for h, p in (("mail.example.com", catalog.MX_PREFERENCE),
                                               ("mx2.example.com", catalog.SECONDARY_MX_PREFERENCE))}
    ptr = on.one(PTR, "mail-secondary-ptr")
    assert plain(ptr.inputs)["domainName"] == "mx2.example.com"
    assert plain(ptr.inputs)["allocationId"] == "eipalloc-0secondary0"
    a_record = on.one(DNS, "mail-dns-a-secondary")
    assert a_record.urn in ptr.dependencies  # AWS checks the A record before it sets the PTR
    caa = {plain(r.inputs)["name"] for r in on.of(DNS) if plain(r.inputs)["type"] == "CAA"}
    assert caa == {"mail.example.com", "mx2.example.com"}  # acme.sh issues for both


def test_secondary_opens_port_25_and_admin_ssh_only(on: Graph) -> None:
    rules = {(int(r.inputs["fromPort"]), r.inputs.get("cidrIpv4") or r.inputs["cidrIpv6"])
             for r in on.of(INGRESS) if r.name.startswith("mail-secondary-host-")}
    assert rules == {(25, "0.0.0.0/0"), (25, "::/0"), (22, "198.51.100.7/32")}


def test_secondary_gets_its_bundle_and_no_mailbox_secret(on: Graph) -> None:
    commands = {c.name for c in on.of(COMMAND) if c.name.startswith("mail-secondary-provision-")}
    assert commands == {"mail-secondary-provision-wait", "mail-secondary-provision-config",
                        "mail-secondary-provision-acme"}
    files = _tarball(on.one(COMMAND, "mail-secondary-provision-config"))
    assert "files/etc/postfix/main.cf" in files
    assert not [f for f in files if "dovecot" in f or "rspamd" in f]
    assert "relay_transport = relay:[mail.example.com]:25" in files["files/etc/postfix/main.cf"]
    # The MTA-STS policy names both MX hosts: an enforcing sender refuses an MX it does not list.
    worker = plain(on.one(WORKER_SCRIPT).inputs)["content"]
    assert "mx: mail.example.com" in worker and "mx: mx2.example.com" in worker


def test_refused_when_one_zone_offers_the_type() -> None:
    world = World(offerings={**OFFERINGS, "t4g.micro": (STANDARD_ZONES[0],)})
    message = refused_before_any_resource(ON, world)
    assert "secondaryMx" in message and "no standard availability zone" in message and STANDARD_ZONES[0] in message


def test_refused_with_staging_certificates() -> None:
    message = refused_before_any_resource({"secondaryMx": True})
    assert "secondaryMx" in message and "letsencrypt_test" in message
