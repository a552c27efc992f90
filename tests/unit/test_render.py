"""What the renderer writes, read as text: no tool runs. The same bundles go through the real
tools (postconf, doveconf, shellcheck, the scripts against stand-ins) in tests/tools."""

from __future__ import annotations

import configparser
import itertools
import re
from pathlib import Path

import pytest
import yaml

from mailserver.core import catalog, certificates, hostkey, render
from mailserver.core.catalog import lab_layout
from mailserver.core.render import Bundle
from tests.support import STACK_VARIANTS, dev_settings, main_cf_value


@pytest.fixture(params=list(STACK_VARIANTS), scope="module")
def bundle(request: pytest.FixtureRequest) -> Bundle:
    return render.render(dev_settings(**STACK_VARIANTS[request.param])[0])


# --- every stack variant ------------------------------------------------------------------


def test_no_script_or_config_mentions_the_seeds_unsafe_settings(bundle: Bundle) -> None:
    texts = itertools.chain((f.content for f in bundle.files), bundle.scripts.values(), [bundle.user_data])
    for text in texts:
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for unsafe in ("mode = 0666", "disable_plaintext_auth = no", "ssl = no", "setenforce 0", "hash:", "btree:"):
            assert unsafe not in text


# --- postfix and dovecot ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["vm", "lab"])
def test_postfix_asks_the_milter_on_the_socket_it_listens_on(where: str, tmp_path: Path) -> None:
    """One path for both ends (Layout.milter_socket), a unix socket: over loopback TCP every
    message waited on a delayed ACK. On the VM it lies in the rspamd unit's RuntimeDirectory,
    which the SELinux module of spam-packages.sh lets postfix reach."""
    layout = catalog.VM_LAYOUT if where == "vm" else lab_layout(tmp_path)
    b = render.render(dev_settings()[0], layout)
    main_cf = b.file(f"{layout.postfix_dir}/main.cf").content
    proxy = b.file(f"{layout.rspamd_local_dir}/local.d/worker-proxy.inc").content
    socket = re.search(r'^bind_socket = "(\S+) ', proxy, re.MULTILINE)
    assert socket and socket.group(1) == layout.milter_socket
    assert main_cf_value(main_cf, "smtpd_milters") == f"unix:{layout.milter_socket}"
    assert main_cf_value(main_cf, "non_smtpd_milters") == "$smtpd_milters"
    # rspamd down: mail waits (4xx, the queue), never passes unscanned and unsigned.
    assert main_cf_value(main_cf, "milter_default_action") == "tempfail"
    if where == "vm":
        assert layout.milter_socket.startswith("/run/rspamd/")


def test_submission_switch_removes_587_everywhere() -> None:
    off, _ = dev_settings(submission=False)
    b = render.render(off)
    assert "\n587 " not in b.file(f"{catalog.VM_LAYOUT.postfix_dir}/master.cf").content
    assert "port = 587" not in b.file(catalog.VM_LAYOUT.dovecot_conf).content


def test_the_lab_queries_no_dnsbl_and_an_empty_list_turns_them_off(tmp_path: Path) -> None:
    settings, _ = dev_settings()
    lab = render.render(settings, lab_layout(tmp_path)).file(f"{tmp_path}/etc/postfix/main.cf").content
    off = render.render(dev_settings(postscreenDnsblSites=[])[0]).file("/etc/postfix/main.cf").content
    for text in (lab, off):
        assert "\npostscreen_dnsbl_sites" not in text and "\npostscreen_greet_action = enforce" in text


# --- the host -----------------------------------------------------------------------------


def test_dnf_automatic_follows_the_setting() -> None:
    for value, upgrade, apply_updates in (("all", "default", "yes"), ("security", "security", "yes"),
                                          ("off", "default", "no")):
        for os_name, auto in catalog.AUTO_UPDATES.items():
            b = render.render(dev_settings(autoUpdates=value, os=os_name)[0])
            conf = configparser.ConfigParser()
            conf.read_string(b.file(auto.conf).content)
            assert (conf["commands"]["upgrade_type"], conf["commands"]["apply_updates"]) == (upgrade, apply_updates)
            verb = "disable --now" if value == "off" else "enable --now"
            assert f"systemctl {verb} {auto.timer}" in b.scripts["apply.sh"]
            assert auto.package in b.scripts["packages.sh"].split()


def test_host_files_stay_out_of_the_lab(tmp_path: Path) -> None:
    """The lab runs on someone's machine: it must never write its sshd, resolver or dnf config."""
    b = render.render(dev_settings()[0], lab_layout(tmp_path))
    assert all(f.path.startswith(str(tmp_path)) for f in b.files)


def test_vm_apply_installs_missing_packages_first_and_checks_host_files_before_reloading() -> None:
    """An existing host gets the packages a newer bundle needs before the files that need
    them, and sshd, unbound and fail2ban each check their file inside check(), whose
    failure rolls every file back."""
    b = render.render(dev_settings()[0])
    apply = b.scripts["apply.sh"]
    install_packages = apply.index('bash "$stage/scripts/packages.sh"')
    assert install_packages < apply.index("install_file 0644 root root /etc/postfix/main.cf")
    check = apply[apply.index("check() {"):apply.index("if ! check; then")]
    for validation in ("sshd -t", f"unbound-checkconf {catalog.UNBOUND_CONF}",
                       "fail2ban-client -c /etc/fail2ban --test"):
        assert validation in check
    reloads = apply[apply.index("if ! check; then"):]
    for step in ("systemctl reload sshd", "systemctl enable unbound", "use-local-resolver.sh",
                 "systemctl reload-or-restart fail2ban"):
        assert step in reloads
    # The resolver switch only once unbound runs.
    assert reloads.index("systemctl enable unbound") < reloads.index("use-local-resolver.sh")


def test_the_vm_apply_locks_versions_once_packages_are_installed_and_the_lab_never(tmp_path: Path) -> None:
    apply = render.render(dev_settings()[0]).scripts["apply.sh"]
    lock = apply.index('bash "$stage/scripts/lock-versions.sh"')
    assert apply.index('bash "$stage/scripts/packages.sh"') < lock < apply.index("install_file 0644 root root")
    assert "python3-dnf-plugin-versionlock" in catalog.el_packages("centos-stream-10")
    lab = render.render(dev_settings()[0], lab_layout(tmp_path))
    assert "lock-versions.sh" not in lab.scripts and "lock-versions" not in lab.scripts["apply.sh"]


# --- first boot: user-data and packages.sh --------------------------------------------------
# (run against stand-ins in tests/tools/test_first_boot.py)


def test_stream_10_takes_epel_from_the_epel_project() -> None:
    script = render.render(dev_settings(os="centos-stream-10")[0]).scripts["packages.sh"]
    assert "dnf -y -q install https://dl.fedoraproject.org/pub/epel/epel-release-latest-10.noarch.rpm" in script
    assert "install epel-release " not in script


def test_nothing_slow_runs_before_sshd_and_one_chain_marks_failure() -> None:
    doc = yaml.safe_load(render.render(dev_settings()[0]).user_data)
    # bootcmd runs in cloud-init's network stage, before sshd starts: only the host key's two
    # steps (tests/unit/test_host_key.py, tests/tools/test_host_key_fetch.py), both quick and
    # unable to fail the boot. cloud-init-per remembers a step as done whatever its exit code,
    # so it only runs the rm, which cannot fail; the fetch is bounded and runs on every boot.
    reset, fetch = doc["bootcmd"]
    assert reset == ["cloud-init-per", "instance", "ssh-host-keys-reset", "sh", "-c", "rm -f /etc/ssh/ssh_host_*key*"]
    assert fetch.startswith(f"python3 - <<'{hostkey.FETCH_MARKER}'\n")
    assert hostkey.FETCH_DEADLINE <= 30 and hostkey.FETCH_TRIES * hostkey.FETCH_PAUSE <= 10
    # The ssh module keeps the fetched key instead of deleting every host key after bootcmd.
    assert doc["ssh_deletekeys"] is False
    # cloud-init's packages module installs the list as one transaction: not used.
    assert "packages" not in doc
    (chain,) = doc["runcmd"]
    steps = chain.split(" && ")
    assert steps[0].endswith("/scripts/packages.sh") and steps[1].endswith("/scripts/baseline.sh")
    written = {f["path"]: f["content"] for f in doc["write_files"]}
    assert written[f"{catalog.VM_LAYOUT.state_dir}/scripts/packages.sh"] == \
        render.render(dev_settings()[0]).scripts["packages.sh"]


def test_apply_runs_packages_before_anything_needs_them() -> None:
    apply = render.render(dev_settings()[0]).scripts["apply.sh"]
    at = apply.index('bash "$stage/scripts/packages.sh"')
    assert at < apply.index("dovecot --version") < apply.index('bash "$stage/scripts/baseline.sh"')


# --- acme.sh --------------------------------------------------------------------------------
# (run against stand-ins in tests/tools/test_acme_script.py)


def test_the_pins_come_from_the_catalog() -> None:
    """Version, file URLs and sums are written once, in the catalog; the script names each file
    at the pinned tag and checks it against its sum."""
    text = render.render(dev_settings()[0]).scripts["acme.sh"]
    assert f"version={catalog.ACME_SH_VERSION}\n" in text
    assert [f.path for f in catalog.ACME_SH_FILES] == ["acme.sh", "dnsapi/dns_cf.sh"]
    for f in catalog.ACME_SH_FILES:
        assert f.url == f"https://raw.githubusercontent.com/acmesh-official/acme.sh/{catalog.ACME_SH_VERSION}/{f.path}"
        assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
        assert f'"{f.url}"' in text
        assert f"\n{f.sha256}  {f.path}\n" in text
    assert f"renew_days={certificates.acme_renewal_days()}\n" in text
    assert '--days "$renew_days"' in text


# --- the mail volume ------------------------------------------------------------------------
# (prepare-volume.sh runs on loop devices in tests/tools/test_volume_script.py)


def test_selinux_labels_follow_the_mount_and_nothing_disables_selinux() -> None:
    bundle = render.render(dev_settings()[0])
    lines = bundle.scripts["prepare-volume.sh"].splitlines()
    mount = next(i for i, line in enumerate(lines) if line.strip().startswith("mount --fstab"))
    semanage = next(i for i, line in enumerate(lines)
                    if line.strip().startswith("semanage fcontext -a -t mail_spool_t"))
    restorecon = next(i for i, line in enumerate(lines) if line.strip().startswith("restorecon -R"))
    assert mount < semanage < restorecon
    # one place labels the mail: no other script or first-boot step does it before the mount
    texts = [bundle.user_data, *bundle.scripts.values(), *(f.content for f in bundle.files)]
    assert sum("mail_spool_t" in t for t in texts) == 1
    assert not any(re.search(r"setenforce|SELINUX=(permissive|disabled)|selinux=0", t) for t in texts)
