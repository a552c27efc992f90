"""The secondary MX's bundle (secondaryMx, role "secondary") passes the same real tools as the
primary's: postconf without a warning, master.cf with port 25 alone, shellcheck, cloud-init's
schema within EC2's 16 KB. What postconf reads back is what the backup MX depends on: relaying
only to the primary, verified; the same recipients; a week's queue; postscreen and DNSBLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailserver.core import catalog, render
from mailserver.core.catalog import lab_layout
from mailserver.core.settings import Settings
from tests.support import STACK_VARIANTS, dev_settings
from tests.tools.support import run, shellcheck
from tests.tools.test_render_tools import USER_DATA_LIMIT

# The secondary verifies the primary's certificate: staging's would never verify (settings refuse it).
SECONDARY = {"secondaryMx": True, "acmeServer": "letsencrypt"}


@pytest.fixture(params=list(STACK_VARIANTS), scope="module")
def settings(request: pytest.FixtureRequest) -> Settings:
    return dev_settings(**STACK_VARIANTS[request.param], **SECONDARY)[0]


def _postconf(tree: Path, *args: str) -> str:
    confdir = tree / "files" / catalog.VM_LAYOUT.postfix_dir.lstrip("/")
    proc = run(["postconf", "-c", str(confdir), *args])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout


@pytest.fixture
def tree(settings: Settings, tmp_path: Path) -> Path:
    render.write_tree(render.render(settings, role="secondary"), tmp_path)
    return tmp_path


def test_secondary_main_cf_relays_to_the_primary_only_and_verified(settings: Settings, tree: Path) -> None:
    values = dict(line.split(" = ", 1) for line in _postconf(tree, "-n").splitlines())
    assert values["myhostname"] == settings.secondary_hostname
    assert values["relay_domains"] == ", ".join(settings.domains)
    pf = catalog.VM_LAYOUT.postfix_dir
    assert values["relay_recipient_maps"] == f"lmdb:{pf}/vmailbox, lmdb:{pf}/virtual"
    assert values["relay_transport"] == f"relay:[{settings.hostname}]:25"
    assert values["default_transport"].startswith("error:")
    assert (values["smtp_tls_security_level"], values["smtp_tls_verify_cert_match"],
            values["smtp_tls_CAfile"]) == ("verify", settings.hostname, catalog.EL_CA_BUNDLE)
    assert values["maximal_queue_lifetime"] == values["bounce_queue_lifetime"] == "8d"
    # No mailbox, no login, no DKIM, no SES here: nothing that would need dovecot or rspamd.
    for absent in ("virtual_mailbox_domains", "virtual_transport", "smtpd_sasl_path", "smtpd_milters",
                   "relayhost", "smtp_sasl_password_maps", "smtpd_sender_login_maps"):
        assert absent not in values, absent
    # The same inbound defences as the primary.
    assert "reject_unauth_destination" in values["smtpd_relay_restrictions"]
    assert "reject_unlisted_recipient" in values["smtpd_recipient_restrictions"]
    assert values["postscreen_greet_action"] == "enforce"
    assert values["postscreen_dnsbl_sites"] == ", ".join(settings.postscreen_dnsbl_sites)
    assert values["smtpd_tls_protocols"] == catalog.POSTFIX_TLS_PROTOCOLS


def test_secondary_master_cf_serves_port_25_alone(tree: Path) -> None:
    master = _postconf(tree, "-M")
    inet = {line.split()[0] for line in master.splitlines() if line.split()[1] == "inet"}
    assert inet == {"smtp"}
    services = {tuple(line.split()[:2]): line.split()[7] for line in master.splitlines()}
    assert services[("smtp", "inet")] == "postscreen"


def test_secondary_bundle_has_no_dovecot_no_rspamd_no_secrets(settings: Settings) -> None:
    b = render.render(settings, role="secondary")
    paths = {f.path for f in b.files}
    assert not [p for p in paths if "dovecot" in p or "rspamd" in p or "redis" in p or "valkey" in p]
    assert set(b.scripts) == set(render.SECONDARY_SCRIPTS) | set(render.VM_SCRIPTS)
    commands = [line for line in b.scripts["apply.sh"].splitlines() if not line.lstrip().startswith("#")]
    # apply.sh neither checks nor starts dovecot or rspamd; on the VM it switches them off.
    assert not [c for c in commands if any(w in c for w in ("doveconf", "dovecot --version", "doveadm", "rspam"))
                and "disable" not in c]
    assert "systemctl disable --now dovecot rspamd 2>/dev/null || true" in commands
    assert "systemctl enable --now postfix" in commands
    assert 'reloadcmd "systemctl reload postfix"' in b.scripts["acme.sh"]
    # Neither installed nor version-locked there; postfix and its lmdb maps are.
    packages, locks = b.scripts["packages.sh"], b.scripts["lock-versions.sh"]
    (checked,) = [line for line in packages.splitlines() if line.startswith("for p in ")]
    required = checked.removeprefix("for p in ").split(";")[0].split()  # what packages.sh insists on
    assert required == list(catalog.all_el_packages(settings.os, "secondary"))
    assert {"postfix", "postfix-lmdb", "fail2ban-server"} <= set(required)
    assert not set(catalog.SECONDARY_SKIPPED_PACKAGES) & set(required)
    assert "lock postfix postfix-lmdb" in locks and "lock dovecot" not in locks
    assert f"fqdn: {settings.secondary_hostname}" in b.user_data


def test_secondary_user_data_is_valid_cloud_config(settings: Settings, tmp_path: Path) -> None:
    b = render.render(settings, role="secondary")
    path = tmp_path / "user-data"
    path.write_text(b.user_data)
    proc = run(["cloud-init", "schema", "-c", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(b.user_data.encode()) < USER_DATA_LIMIT


@pytest.mark.parametrize("target", ["production", "lab"])
def test_every_secondary_script_passes_shellcheck(target: str, tmp_path: Path) -> None:
    settings, _ = dev_settings(**SECONDARY)
    layout = catalog.VM_LAYOUT if target == "production" else lab_layout(tmp_path / "root")
    proc = shellcheck(render.render(settings, layout, role="secondary").scripts, tmp_path)
    assert proc.returncode == 0, proc.stdout


def test_the_secondary_needs_the_setting() -> None:
    settings, _ = dev_settings()
    with pytest.raises(ValueError, match="secondaryMx"):
        render.render(settings, role="secondary")
