"""The mail volume's pure parts (mailserver/core/storage.py) and the validation of its settings."""

from __future__ import annotations

import re

import pytest

from mailserver.core import catalog, storage
from mailserver.core.settings import SettingsError, parse
from tests.support import dev_raw, dev_settings

# --- settings ---------------------------------------------------------------------------


def test_defaults() -> None:
    s, _ = dev_settings()
    assert (s.data_volume_size, s.data_volume_snapshot_id, s.snapshot_retention) == (10, "", 7)


def refused(key: str, **overrides: object) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        parse(dev_raw(**overrides))
    assert key in info.value.keys, str(info.value)
    assert all(p.fix for p in info.value.problems if p.key == key)
    return info.value


@pytest.mark.parametrize("size", [0, -5, catalog.DATA_VOLUME_MAX_GIB + 1])
def test_volume_size_out_of_range(size: int) -> None:
    refused("dataVolumeSize", dataVolumeSize=size)


@pytest.mark.parametrize("size", [1, 500, catalog.DATA_VOLUME_MAX_GIB])
def test_volume_size_in_range(size: int) -> None:
    assert dev_settings(dataVolumeSize=size)[0].data_volume_size == size


@pytest.mark.parametrize("itype", ["t2.micro", "m4.large", "c4.xlarge", "i3.large"])
def test_xen_instance_types_are_refused(itype: str) -> None:
    """Xen shows the volume as /dev/xvdf, never under the NVMe by-id name the mount step waits for."""
    err = refused("instanceType", instanceType=itype)
    assert "Nitro" in str(err)


@pytest.mark.parametrize("itype", ["t3.micro", "t4g.small", "m5.large", "i3.metal", "c7gn.medium"])
def test_nitro_instance_types_are_accepted(itype: str) -> None:
    assert dev_settings(instanceType=itype)[0].instance_type == itype


@pytest.mark.parametrize("count", [0, -1, catalog.SNAPSHOT_RETENTION_MAX + 1])
def test_retention_out_of_range(count: int) -> None:
    refused("snapshotRetention", snapshotRetention=count)


@pytest.mark.parametrize("count", [1, 30, catalog.SNAPSHOT_RETENTION_MAX])
def test_retention_in_range(count: int) -> None:
    assert dev_settings(snapshotRetention=count)[0].snapshot_retention == count


@pytest.mark.parametrize("snap", ["vol-0123456789abcdef0", "snap-xyz", "snap-0123456", "snap-0123456789abcdef01",
                                  "0123456789abcdef0", "snap-0123456789abcdef0 "])
def test_snapshot_id_format(snap: str) -> None:
    if snap.strip() != snap:  # surrounding blanks are forgiven
        assert dev_settings(dataVolumeSnapshotId=snap)[0].data_volume_snapshot_id == snap.strip()
    else:
        err = refused("dataVolumeSnapshotId", dataVolumeSnapshotId=snap)
        assert "snap-" in str(err)


@pytest.mark.parametrize("snap", ["snap-01234567", "snap-0123456789abcdef0", "SNAP-0123456789ABCDEF0"])
def test_snapshot_id_accepted(snap: str) -> None:
    assert dev_settings(dataVolumeSnapshotId=snap)[0].data_volume_snapshot_id == snap.lower()


# --- pure functions ---------------------------------------------------------------------


def test_zone_is_the_first_offered_by_name() -> None:
    assert storage.choose_zone(["eu-central-1c", "eu-central-1a", "eu-central-1a"], "t4g.small") == "eu-central-1a"


def test_an_opted_in_local_zone_is_never_chosen() -> None:
    offered = ["us-east-1-bos-1a", "us-east-1b", "us-east-1a"]
    assert storage.choose_zone(offered, "t3.small", standard=["us-east-1a", "us-east-1b", "us-east-1c"]) == "us-east-1a"
    with pytest.raises(storage.NoZoneError):
        storage.choose_zone(["us-east-1-bos-1a"], "t3.small", standard=["us-east-1a"])


@pytest.mark.parametrize("offered", [None, []])
def test_no_zone_offers_the_type(offered: list[str] | None) -> None:
    with pytest.raises(storage.NoZoneError, match="t4g.small"):
        storage.choose_zone(offered, "t4g.small")


def test_device_path_is_udevs_by_id_link() -> None:
    assert storage.device_path("vol-0123456789abcdef0") == \
        "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"


def test_snapshot_tags_name_the_stack() -> None:
    assert storage.snapshot_tags("mailserver", "prod") == {catalog.SNAPSHOT_TAG_KEY: "mailserver-prod"}
    assert storage.snapshot_tags("mailserver", "prod") != storage.snapshot_tags("mailserver", "dev")


def test_dlm_description_uses_only_what_dlm_accepts() -> None:
    text = storage.dlm_description("mail.example.com")
    assert re.fullmatch(r"[0-9A-Za-z _-]{1,500}", text), text
    assert "mail-example-com" in text


def test_dlm_schedule_keeps_its_name_when_retention_changes() -> None:
    """DLM stops expiring the snapshots of a renamed schedule: they would pile up forever."""
    week, month = (storage.dlm_policy_details(dev_settings(snapshotRetention=n)[0], {"k": "v"}) for n in (7, 30))
    assert week["schedules"][0]["name"] == month["schedules"][0]["name"]
    assert re.fullmatch(r"[0-9A-Za-z _-]{1,120}", week["schedules"][0]["name"])
    assert month["schedules"][0]["retain_rule"] == {"count": 30}
    assert month["target_tags"] == {"k": "v"}


def test_restore_instructions_are_complete() -> None:
    s, _ = dev_settings(snapshotRetention=9)
    text = storage.restore_instructions(s, "vol-0abc", "eu-central-1a", {"mailserver-snapshots": "mailserver-dev"})
    for needed in ("vol-0abc", "eu-central-1a", "last 9", "Name=tag:mailserver-snapshots,Values=mailserver-dev",
                   "pulumi config set dataVolumeSnapshotId", "pulumi state unprotect", "pulumi up --replace"):
        assert needed in text, needed


def test_copy_region_validated_and_the_copy_rule_follows_retention() -> None:
    assert "cross_region_copy_rules" not in storage.dlm_policy_details(dev_settings()[0], {})["schedules"][0]
    s, _ = dev_settings(snapshotCopyRegion="us-east-2", snapshotRetention=14)
    (rule,) = storage.dlm_policy_details(s, {})["schedules"][0]["cross_region_copy_rules"]
    assert rule == {"target": "us-east-2", "encrypted": True, "copy_tags": True,
                    "retain_rule": {"interval": 14, "interval_unit": "DAYS"}}
    refused("snapshotCopyRegion", snapshotCopyRegion="eu-central-1")  # the dev stack's own aws:region
    refused("snapshotCopyRegion", snapshotCopyRegion="Frankfurt")
    refused("snapshotCopyRegion", snapshotCopyRegion="eu-centrall-1")


def test_restore_instructions_name_the_copies_only_when_there_are_some() -> None:
    tags = {"mailserver-snapshots": "mailserver-dev"}
    assert "us-east-2" not in storage.restore_instructions(dev_settings()[0], "vol-0abc", "eu-central-1a", tags)
    s, _ = dev_settings(snapshotCopyRegion="us-east-2")
    text = storage.restore_instructions(s, "vol-0abc", "eu-central-1a", tags)
    assert "kept 7 days in us-east-2" in text and "another region" in text
