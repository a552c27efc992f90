"""The rendered prepare-volume.sh against real loop devices: real blkid, mkfs, mount, fstab.

Each test gets its own image file, loop device, mount point, fstab and systemd drop-in
directory under tmp_path (the script takes them from VMAIL_* variables), so the machine's
/etc/fstab and /var/vmail are never touched. Needs root and losetup; semanage and systemd
are absent here, and the script skips them by itself (their order is tested on the text).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.core import catalog, render
from mailserver.core.catalog import lab_layout
from tests.support import dev_settings

pytestmark = pytest.mark.root  # loop devices, mkfs, mount

IMAGE_MIB = 300  # mkfs.xfs refuses filesystems under 300 MiB
FSTAB_HEAD = "# test fstab\nUUID=0000-root / xfs defaults 0 0\n"

# No skip when root or a tool is missing: scripts/test.sh runs as root and installs xfsprogs
# (catalog.DEBIAN_PACKAGES), so a missing one must fail loudly, not hide these claims.


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout.strip()


class Disk:
    """A loop device over a sparse image, the mount point and the files the script writes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.image = root / "volume.img"
        with self.image.open("wb") as f:
            f.truncate(IMAGE_MIB << 20)
        self.loop = ""
        self.mountpoint = root / "vmail"
        self.mountpoint.mkdir()
        self.fstab = root / "fstab"
        self.fstab.write_text(FSTAB_HEAD)
        self.units = root / "units"
        self.script = root / "prepare-volume.sh"
        self.script.write_text(render.render(dev_settings()[0]).scripts["prepare-volume.sh"])

    def attach(self) -> str:
        self.loop = sh("losetup", "--find", "--show", str(self.image))
        return self.loop

    def env(self, timeout: int = 30) -> dict[str, str]:
        return {**os.environ, "VMAIL_MOUNT": str(self.mountpoint), "VMAIL_FSTAB": str(self.fstab),
                "VMAIL_UNIT_DIR": str(self.units), "VMAIL_DEVICE_TIMEOUT": str(timeout)}

    def run(self, device: str | None = None, timeout: int = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(self.script), device or self.loop], env=self.env(timeout),
                              capture_output=True, text=True, timeout=timeout + 60, check=False)

    def mounted(self) -> bool:
        return subprocess.run(["findmnt", "-rn", "--mountpoint", str(self.mountpoint)],
                              capture_output=True, check=False).returncode == 0

    def reboot(self) -> None:
        """What a reboot leaves: the volume attached, nothing mounted (until the script runs)."""
        sh("umount", str(self.mountpoint))

    def entries(self) -> list[list[str]]:
        """fstab lines for the mount point."""
        return [line.split() for line in self.fstab.read_text().splitlines()
                if not line.startswith("#") and line.split()[1:2] == [str(self.mountpoint)]]

    def uuid(self) -> str:
        return sh("blkid", "-p", "-o", "value", "-s", "UUID", self.loop)

    def cleanup(self) -> None:
        subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, check=False)
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], capture_output=True, check=False)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    d = Disk(tmp_path)
    try:
        yield d
    finally:
        d.cleanup()


def put_filesystem(disk: Disk, fs: str) -> str:
    """A volume from an earlier life: a filesystem with mail on it. Returns its UUID."""
    disk.attach()
    if fs == "xfs":
        sh("mkfs.xfs", "-q", "-L", "vmail", disk.loop)
    else:
        sh("mkfs.ext4", "-q", "-L", "vmail", disk.loop)
    sh("mount", disk.loop, str(disk.mountpoint))
    (disk.mountpoint / "example.com" / "alice" / "cur").mkdir(parents=True)
    (disk.mountpoint / "example.com" / "alice" / "cur" / "1.mail").write_text("Subject: keep me\n\nhello\n")
    sh("umount", str(disk.mountpoint))
    return disk.uuid()


def kept(disk: Disk) -> bool:
    mail = disk.mountpoint / "example.com" / "alice" / "cur" / "1.mail"
    return mail.exists() and "keep me" in mail.read_text()


# --- an existing filesystem is kept ---------------------------------------------------


@pytest.mark.parametrize("fs", ["xfs", "ext4"])
def test_existing_filesystem_survives_a_second_boot(disk: Disk, fs: str) -> None:
    uuid = put_filesystem(disk, fs)
    first = disk.run()
    assert first.returncode == 0, first.stderr
    assert "blank" not in first.stdout  # not formatted
    assert disk.mounted() and kept(disk)
    disk.reboot()
    second = disk.run()
    assert second.returncode == 0, second.stderr
    assert disk.mounted() and kept(disk) and disk.uuid() == uuid
    third = disk.run()  # already mounted: nothing to do
    assert third.returncode == 0, third.stderr
    assert kept(disk)
    # one entry, by UUID, nofail, of the filesystem found; the rest of fstab untouched
    assert disk.entries() == [[f"UUID={uuid}", str(disk.mountpoint), fs, "defaults,nofail", "0",
                               "0" if fs == "xfs" else "2"]]
    assert disk.fstab.read_text().startswith(FSTAB_HEAD)
    # the root of the volume belongs to vmail, as dovecot needs
    st = disk.mountpoint.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (catalog.VMAIL_UID, catalog.VMAIL_UID, 0o750)


def test_blank_device_is_formatted_once(disk: Disk) -> None:
    disk.attach()
    first = disk.run()
    assert first.returncode == 0, first.stderr
    assert "is blank" in first.stdout
    assert sh("blkid", "-p", "-o", "value", "-s", "TYPE", disk.loop) == catalog.VMAIL_FS_TYPE
    assert sh("blkid", "-p", "-o", "value", "-s", "LABEL", disk.loop) == catalog.VMAIL_FS_LABEL
    uuid = disk.uuid()
    (disk.mountpoint / "delivered").write_text("mail after the first boot\n")
    disk.reboot()
    second = disk.run()
    assert second.returncode == 0, second.stderr
    assert "is blank" not in second.stdout
    assert disk.uuid() == uuid and (disk.mountpoint / "delivered").read_text() == "mail after the first boot\n"
    assert len(disk.entries()) == 1


def test_old_entry_for_the_mount_point_is_replaced(disk: Disk) -> None:
    uuid = put_filesystem(disk, "xfs")
    disk.fstab.write_text(FSTAB_HEAD + f"LABEL=old {disk.mountpoint} ext4 defaults 0 2\n")
    assert disk.run().returncode == 0
    assert [e[0] for e in disk.entries()] == [f"UUID={uuid}"]


# --- it waits, and it refuses --------------------------------------------------------


def test_device_that_appears_late_is_waited_for(disk: Disk) -> None:
    """Like udev's by-id link of an EBS volume whose attachment lands after the script starts."""
    link = disk.root / "by-id" / "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
    link.parent.mkdir()
    started = time.monotonic()
    proc = subprocess.Popen(["bash", str(disk.script), str(link)], env=disk.env(timeout=60),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None, "the script gave up before the device appeared"
        link.symlink_to(disk.attach())
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert time.monotonic() - started >= 3
    assert "is blank" in out and disk.mounted()


def test_missing_device_fails_after_the_timeout(disk: Disk) -> None:
    proc = disk.run(str(disk.root / "never-attached"), timeout=2)
    assert proc.returncode != 0 and "did not appear within 2s" in proc.stderr
    assert disk.fstab.read_text() == FSTAB_HEAD and not disk.mounted()


def test_unrecognised_content_is_never_formatted(disk: Disk) -> None:
    """No filesystem blkid knows, but not blank either (an encrypted or damaged volume)."""
    noise = os.urandom(1 << 20)
    with disk.image.open("r+b") as f:
        f.write(noise)
    disk.attach()
    proc = disk.run()
    assert proc.returncode != 0 and "refusing" in proc.stderr
    with disk.image.open("rb") as f:
        assert f.read(1 << 20) == noise
    assert disk.fstab.read_text() == FSTAB_HEAD


def test_mail_on_the_root_disk_is_not_hidden_by_the_mount(disk: Disk) -> None:
    put_filesystem(disk, "xfs")
    (disk.mountpoint / "stray.mail").write_text("delivered while the volume was missing\n")
    proc = disk.run()
    assert proc.returncode != 0 and "holds files on the root disk" in proc.stderr
    assert not disk.mounted() and (disk.mountpoint / "stray.mail").exists()


def test_refusing_over_root_disk_mail_leaves_nothing_that_would_mount_later(disk: Disk) -> None:
    """Refused, the run must not have formatted the volume or written the fstab line and the
    drop-ins: the next boot (or a daemon restart) would mount it over the mail anyway."""
    device = disk.attach()  # blank: the one case the script formats
    (disk.mountpoint / "stray.mail").write_text("delivered while the volume was missing\n")
    proc = disk.run()
    assert proc.returncode != 0 and "holds files on the root disk" in proc.stderr
    blkid = subprocess.run(["blkid", "-p", device], capture_output=True, check=False)
    assert blkid.returncode == 2  # still no filesystem
    assert disk.fstab.read_text() == FSTAB_HEAD
    assert not disk.units.exists() or not any(disk.units.iterdir())


# --- daemons need it; it grows --------------------------------------------------------


def test_daemons_require_the_mount(disk: Disk) -> None:
    disk.attach()
    assert disk.run().returncode == 0
    for svc in catalog.VMAIL_SERVICES:
        text = (disk.units / f"{svc}.service.d" / "vmail-volume.conf").read_text()
        assert re.search(rf"^\[Unit\]\nRequiresMountsFor={re.escape(str(disk.mountpoint))}$", text, re.MULTILINE), text
        if shutil.which("systemd-analyze"):
            # systemd's own parser reads the drop-in with a stand-in unit (it warns on a
            # misspelt key, which systemd would otherwise ignore without a word)
            (disk.units / f"{svc}.service").write_text("[Service]\nExecStart=/bin/true\n")
            proc = subprocess.run(["systemd-analyze", "verify", str(disk.units / f"{svc}.service")],
                                  env={**os.environ, "SYSTEMD_UNIT_PATH": f"{disk.units}:"},
                                  capture_output=True, text=True, timeout=60, check=False)
            assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_larger_volume_gets_a_larger_filesystem(disk: Disk) -> None:
    disk.attach()
    assert disk.run().returncode == 0
    before = shutil.disk_usage(disk.mountpoint).total
    with disk.image.open("r+b") as f:
        f.truncate((IMAGE_MIB + 200) << 20)
    sh("losetup", "--set-capacity", disk.loop)
    proc = disk.run()
    assert proc.returncode == 0, proc.stderr
    assert shutil.disk_usage(disk.mountpoint).total > before + (150 << 20)


# --- in the lab ----------------------------------------------------------------------


def test_lab_layout_renders_a_no_op(tmp_path: Path) -> None:
    script = tmp_path / "prepare-volume.sh"
    script.write_text(render.render(dev_settings()[0], lab_layout(tmp_path)).scripts["prepare-volume.sh"])
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False, timeout=30)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout
    assert "mount" not in script.read_text().split("exit 0", 1)[1]
