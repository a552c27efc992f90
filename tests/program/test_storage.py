"""The mail volume, its snapshots and what survives which change, against Pulumi mocks.

Mocks cannot run the engine's diff, so "replaced" is tested through what decides it: which
resources' inputs change between two builds, which URNs stay, and the options (protect,
retainOnDelete, ignoreChanges, deleteBeforeReplace) the engine would act on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mailserver.core import catalog, render, storage
from tests.cloud_facts import OTHER_REGION, REGION
from tests.program.harness import (
    ASSOCIATION,
    ATTACHMENT,
    COMMAND,
    DLM,
    DNS,
    EIP,
    EIP_TYPE,
    GET_OFFERINGS,
    INGRESS,
    INLINE_ROLE_POLICY,
    INSTANCE,
    INSTANCE_PROFILE,
    OFFERED_ZONES,
    PASSWORDS,
    PTR,
    ROLE,
    ROLE_POLICY,
    SSM_PARAMETER,
    TLS_KEY,
    VOLUME,
    VOLUME_ID,
    Graph,
    Registered,
    build,
    build_refused,
    instance_id,
    plain,
)
from tests.support import dev_settings

DLM_MANAGED_POLICY = "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
# Two official arm64 Stream 9 builds (tests/program/cloud_facts.py): an operator moving the pin to the newer.
OLD_AMI, NEW_AMI = "ami-0a9a1e5d2b3f40003", "ami-0a9a1e5d2b3f40004"
# Host, volume, address and names: what a mail setting must never touch.
INFRASTRUCTURE = (INSTANCE, VOLUME, ATTACHMENT, EIP_TYPE, ASSOCIATION, PTR, DLM, ROLE, ROLE_POLICY,
                  INLINE_ROLE_POLICY, INSTANCE_PROFILE, SSM_PARAMETER, TLS_KEY)


def by_urn(g: Graph) -> dict[str, Registered]:
    return {r.urn: r for r in g.resources}


def address_records(g: Graph) -> dict[str, Any]:
    """The A and MX records (where mail for the domains goes), by URN."""
    return {r.urn: plain(r.inputs) for r in g.of(DNS) if plain(r.inputs)["type"] in ("A", "MX")}


def changed(a: Graph, b: Graph) -> set[str]:
    """Names of the resources whose inputs differ between two builds (same URNs required)."""
    ra, rb = by_urn(a), by_urn(b)
    assert set(ra) == set(rb), f"resources differ: {set(ra) ^ set(rb)}"
    return {ra[u].name for u in ra if plain(ra[u].inputs) != plain(rb[u].inputs)}


# --- the volume -------------------------------------------------------------------------


def test_volume_is_encrypted_gp3_of_the_configured_size() -> None:
    g = build({"dataVolumeSize": 42})
    vol = g.one(VOLUME).inputs
    assert (vol["size"], vol["type"], vol["encrypted"]) == (42, "gp3", True)
    assert vol["finalSnapshot"] is True
    assert "snapshotId" not in vol  # a blank volume unless restoring


def test_volume_and_eip_are_protected_and_the_volume_outlives_the_stack(graph: Graph) -> None:
    vol = graph.one(VOLUME)
    assert vol.protect and vol.retain_on_delete
    assert graph.one(EIP_TYPE).protect
    # nothing else is protected: the instance can be rebuilt
    assert {r.typ for r in graph.resources if r.protect} == {VOLUME, EIP_TYPE}


def test_instance_is_placed_in_the_volume_zone() -> None:
    # t3.medium is offered in the opted-in Hamburg Local Zone too, which sorts first by name
    # ("eu-central-1-ham-1a" < "eu-central-1a"): the default VPC has no subnet there.
    graph = build({"instanceType": "t3.medium"})
    (call,) = [c for c in graph.mocks.calls if c.token == GET_OFFERINGS]
    assert "eu-central-1-ham-1a" in graph.mocks.world.answer(call.token, call.args)["locations"]
    vol = graph.one(VOLUME)
    assert vol.inputs["availabilityZone"] == min(OFFERED_ZONES) == "eu-central-1a"
    # the zone is chosen once; a later lookup answer never moves the volume
    assert "availabilityZone" in vol.ignore_changes
    inst = graph.one(INSTANCE)
    assert inst.inputs["availabilityZone"] == vol.inputs["availabilityZone"]
    assert vol.urn in inst.dependencies  # from the volume's state, not from the lookup


def test_volume_is_attached_to_the_instance(graph: Graph) -> None:
    att = graph.one(ATTACHMENT)
    assert att.inputs["volumeId"] == VOLUME_ID
    inst = graph.one(INSTANCE)
    assert att.inputs["instanceId"] == instance_id(inst.name, inst.inputs)
    assert att.inputs["deviceName"] == catalog.DATA_VOLUME_DEVICE_NAME
    # one instance at a time: detach from the old instance (stopped first) before attaching
    assert att.delete_before_replace and att.inputs["stopInstanceBeforeDetaching"] is True
    # EC2 refuses to associate an address still associated elsewhere
    assert graph.one(ASSOCIATION).delete_before_replace


def test_restore_creates_the_volume_from_the_snapshot() -> None:
    g = build({"dataVolumeSnapshotId": "snap-0123456789abcdef0"})
    assert g.one(VOLUME).inputs["snapshotId"] == "snap-0123456789abcdef0"
    assert g.one(VOLUME).protect


def test_invalid_volume_settings_stop_before_any_resource() -> None:
    error, mocks, monitor = build_refused({"dataVolumeSize": 0, "snapshotRetention": 0,
                                           "dataVolumeSnapshotId": "vol-0123456789abcdef0"})
    assert {"dataVolumeSize", "snapshotRetention", "dataVolumeSnapshotId"} <= error.keys
    assert mocks.new_resource_calls == 0 and not monitor.records


# --- the remote step that mounts it -----------------------------------------------------


def test_volume_is_mounted_before_the_configuration(graph: Graph) -> None:
    cmd = graph.one(COMMAND, "-volume")
    create = cmd.inputs["create"]
    script = render.render(dev_settings()[0]).scripts["prepare-volume.sh"]
    path = "/var/lib/mailserver/scripts/prepare-volume.sh"
    assert create == (
        "sudo install -d -m 0700 /var/lib/mailserver /var/lib/mailserver/scripts && "
        f"sudo install -m 0700 /dev/stdin {path} && "
        f"sudo bash {path} /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0 "
        f"# {hashlib.sha256(script.encode()).hexdigest()}")
    assert cmd.inputs["stdin"] == script
    # re-run on a new instance, on a re-attached volume, and on a grown one (to grow the filesystem)
    inst = graph.one(INSTANCE)
    assert cmd.inputs["triggers"] == [instance_id(inst.name, inst.inputs), graph.one(ATTACHMENT).name + "-id", 10]
    assert graph.one(COMMAND, "-wait").urn in cmd.dependencies
    for later in ("-config", "-passwords", "-dkim", "-acme"):
        assert cmd.urn in graph.one(COMMAND, later).dependencies, later


# --- what survives which change ---------------------------------------------------------


def test_ami_change_replaces_only_the_instance() -> None:
    old, new = build({"amiId": OLD_AMI}), build({"amiId": NEW_AMI})
    inst_old, inst_new = old.one(INSTANCE), new.one(INSTANCE)
    assert (inst_old.inputs["ami"], inst_new.inputs["ami"]) == (OLD_AMI, NEW_AMI)
    # A pinned image is not ignored, so the engine replaces the instance (ami forces it)...
    assert "ami" not in inst_new.ignore_changes
    # ...and a new instance id moves along what points at the instance: the address's
    # association, the volume's attachment, and every remote command (each must run again on
    # the new host). Nothing else changes: same volume, address, PTR and records, same URNs.
    follows_instance = {old.one(ASSOCIATION).name, old.one(ATTACHMENT).name} | {c.name for c in old.of(COMMAND)}
    assert changed(old, new) == {inst_old.name} | follows_instance
    for typ in (ASSOCIATION, ATTACHMENT):
        assert new.one(typ).inputs["instanceId"] == instance_id(inst_new.name, inst_new.inputs)
    for typ in (VOLUME, EIP_TYPE, PTR):
        assert old.one(typ).urn == new.one(typ).urn
    assert address_records(old) == address_records(new)
    assert {("mail.example.com", "A"), ("example.com", "MX"), ("example.net", "MX")} <= {
        (r["name"], r["type"]) for r in address_records(new).values()}
    assert new.one(VOLUME).protect and new.one(EIP_TYPE).protect


def test_a_newer_published_image_is_ignored_when_not_pinned(graph: Graph) -> None:
    assert "ami" in graph.one(INSTANCE).ignore_changes


MAIL_CHANGES: dict[str, Any] = {
    "mailboxes": ["alice@example.com", "bob@example.net", "carol@example.com"],
    "aliases": ["sales@example.com=carol@example.com"],
    "messageSizeLimit": 20971520,
    "mailboxSizeLimit": 2147483648,
    "dmarcPolicy": "reject",
    "relayRestrictions": ["permit_sasl_authenticated", "reject_unauth_destination"],
    "passwordMinLength": 14,
}


def test_mail_setting_changes_touch_only_commands_and_their_records(graph: Graph) -> None:
    passwords = dict(PASSWORDS, **{"carol@example.com": "an0ther-l0ng-passw0rd"})
    g = build(MAIL_CHANGES, passwords=passwords)
    diff = changed(graph, g)
    # the bundle and the passwords travel over SSH; dmarcPolicy is a DNS record's content
    assert diff == {"mail-provision-config", "mail-provision-passwords", "mail-dns-dmarc-example.com",
                    "mail-dns-dmarc-example.net"}
    for typ in INFRASTRUCTURE:
        assert {r.name: plain(r.inputs) for r in g.of(typ)} == {r.name: plain(r.inputs) for r in graph.of(typ)}, typ
    # the mount step does not run again for a mail change
    assert plain(g.one(COMMAND, "-volume").inputs) == plain(graph.one(COMMAND, "-volume").inputs)


def test_volume_growth_resizes_in_place_and_grows_the_filesystem(graph: Graph) -> None:
    g = build({"dataVolumeSize": 50})
    # the volume's size (an in-place modification of EBS) and the mount step, nothing else
    assert changed(graph, g) == {graph.one(VOLUME).name, graph.one(COMMAND, "-volume").name}
    assert g.one(VOLUME).urn == graph.one(VOLUME).urn
    assert g.one(COMMAND, "-volume").inputs["triggers"][-1] == 50


def test_retention_change_touches_only_the_snapshot_policy(graph: Graph) -> None:
    g = build({"snapshotRetention": 30})
    assert changed(graph, g) == {graph.one(DLM).name}


# --- snapshots --------------------------------------------------------------------------


def test_snapshot_policy_targets_the_volume_tags(graph: Graph) -> None:
    vol_tags = graph.one(VOLUME).inputs["tags"]
    details = graph.one(DLM).inputs["policyDetails"]
    assert details["targetTags"] == storage.snapshot_tags("mailserver", "test")
    assert details["targetTags"].items() <= vol_tags.items()
    assert details["resourceTypes"] == ["VOLUME"]
    (schedule,) = details["schedules"]
    assert schedule["createRule"] == {"interval": 24, "intervalUnit": "HOURS", "times": "03:00"}
    assert schedule["retainRule"] == {"count": 7}
    assert schedule["copyTags"] is True  # a restored volume carries the tag again
    assert graph.one(DLM).inputs["state"] == "ENABLED"


def test_retention_is_the_setting() -> None:
    g = build({"snapshotRetention": 30})
    (schedule,) = g.one(DLM).inputs["policyDetails"]["schedules"]
    assert schedule["retainRule"] == {"count": 30}


def test_snapshot_role_is_for_dlm_only(graph: Graph) -> None:
    role, attached, policy = graph.one(ROLE, "-dlm-role"), graph.one(ROLE_POLICY), graph.one(DLM)
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement == {"Effect": "Allow", "Principal": {"Service": "dlm.amazonaws.com"}, "Action": "sts:AssumeRole"}
    assert attached.inputs["role"] == role.name + "-1a2b3c"
    assert attached.inputs["policyArn"] == DLM_MANAGED_POLICY
    assert policy.inputs["executionRoleArn"] == f"arn:aws:iam::123456789012:role/{role.name}-1a2b3c"
    assert attached.urn in policy.dependencies  # the role can act before the policy first runs


def test_exports_name_the_volume_and_how_to_restore(graph: Graph) -> None:
    assert graph.exports["dataVolumeId"].value == VOLUME_ID
    text = graph.exports["restoreInstructions"].value
    for needed in (VOLUME_ID, min(OFFERED_ZONES), "dataVolumeSnapshotId", "pulumi state unprotect",
                   "--replace", "Name=tag:mailserver-snapshots,Values=mailserver-test"):
        assert needed in text, needed
    assert not graph.exports["restoreInstructions"].secret


# --- host hardening ---------------------------------------------------------------------


def test_ssh_reachable_only_from_admin_cidrs() -> None:
    admins = {"203.0.113.0/29", "2001:db8::/48"}
    g = build({"adminCidrs": sorted(admins)})
    for rule in g.of(INGRESS):
        i = rule.inputs
        covers_ssh = i["ipProtocol"] == "-1" or int(i["fromPort"]) <= 22 <= int(i["toPort"])
        if covers_ssh:
            assert (i.get("cidrIpv4") or i.get("cidrIpv6")) in admins, rule.name
    ssh = {r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") for r in g.of(INGRESS) if r.inputs["fromPort"] == 22}
    assert ssh == admins


def test_imdsv2_required_and_every_volume_encrypted(graph: Graph) -> None:
    inst = graph.one(INSTANCE).inputs
    assert inst["metadataOptions"]["httpTokens"] == "required"
    assert inst["rootBlockDevice"]["encrypted"] is True
    assert "ebsBlockDevices" not in inst  # no unencrypted volume at launch
    assert all(v.inputs["encrypted"] is True for v in graph.of(VOLUME))
    assert EIP not in json.dumps(plain(graph.one(VOLUME).inputs))


# --- the second region's copies (snapshotCopyRegion) --------------------------------------


def test_snapshot_copies_go_to_the_other_region_encrypted_and_expire_by_their_own_retention() -> None:
    g = build({"snapshotCopyRegion": OTHER_REGION, "snapshotRetention": 9})
    (schedule,) = g.one(DLM).inputs["policyDetails"]["schedules"]
    (rule,) = schedule["crossRegionCopyRules"]
    # No cmkArn: the target region's default EBS key (a KMS key never leaves its region).
    assert rule == {"target": OTHER_REGION, "encrypted": True, "copyTags": True,
                    "retainRule": {"interval": 9, "intervalUnit": "DAYS"}}
    assert "targetRegion" not in rule  # AMI policies only, per the provider's schema
    assert schedule["retainRule"] == {"count": 9}  # the source's own retention is unchanged


def test_no_snapshot_copy_by_default(graph: Graph) -> None:
    (schedule,) = graph.one(DLM).inputs["policyDetails"]["schedules"]
    assert "crossRegionCopyRules" not in schedule


def test_turning_copies_on_touches_only_the_snapshot_policy(graph: Graph) -> None:
    g = build({"snapshotCopyRegion": OTHER_REGION})
    assert changed(graph, g) == {graph.one(DLM).name}


def test_a_copy_region_that_is_the_stacks_own_or_unknown_is_refused_before_any_resource() -> None:
    for region in (REGION, "eu-westt-1", "mars-north-1"):
        error, mocks, monitor = build_refused({"snapshotCopyRegion": region})
        assert error.keys == {"snapshotCopyRegion"}, (region, str(error))
        assert mocks.new_resource_calls == 0 and not monitor.records
