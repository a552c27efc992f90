"""The rendered bundle passes the real tools from Debian's packages: postconf, postfix check,
doveconf, cloud-init's schema validator and shellcheck. No Pulumi involved."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailserver import catalog, render
from mailserver.lab import lab_layout
from mailserver.render import Bundle
from mailserver.settings import Settings
from tests.support import dev_settings

USER_DATA_LIMIT = 16384  # EC2's limit on raw user-data
STACK_VARIANTS: dict[str, dict[str, Any]] = {
    "dev": {},
    "stream10-x86-no587": {"os": "centos-stream-10", "instanceType": "t3.small", "submission": False},
    # The dev stack relays through SES; this one delivers directly (relay: none).
    "direct": {"relay": "none"},
}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture(params=list(STACK_VARIANTS), scope="module")
def settings(request: pytest.FixtureRequest) -> Settings:
    return dev_settings(**STACK_VARIANTS[request.param])[0]


@pytest.fixture(scope="module")
def bundle(settings: Settings) -> Bundle:
    return render.render(settings)


@pytest.fixture
def tree(bundle: Bundle, tmp_path: Path) -> Path:
    render.write_tree(bundle, tmp_path)
    return tmp_path


def test_main_cf_parses_without_warnings(bundle: Bundle, tree: Path) -> None:
    confdir = tree / "files" / catalog.PRODUCTION.postfix_dir.lstrip("/")
    proc = run(["postconf", "-c", str(confdir), "-n"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    settings = dict(line.split(" = ", 1) for line in proc.stdout.splitlines())
    # postfix reads the values we meant (a typo in a parameter name would vanish here).
    assert settings["smtpd_tls_auth_only"] == "yes"
    assert settings["smtpd_tls_protocols"] == catalog.POSTFIX_TLS_PROTOCOLS
    assert "reject_unauth_destination" in settings["smtpd_relay_restrictions"]
    assert not any(v.startswith(("hash:", "btree:")) for v in settings.values()), "Stream 10 has no Berkeley DB"


def test_relay_settings_reach_postfix(settings: Settings, tree: Path) -> None:
    """postconf reads the relay block as written: a typo would vanish silently in postfix."""
    confdir = tree / "files" / catalog.PRODUCTION.postfix_dir.lstrip("/")
    proc = run(["postconf", "-c", str(confdir), "-h", "relayhost", "smtp_sasl_auth_enable",
                "smtp_sasl_password_maps", "smtp_tls_security_level", "virtual_transport"])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    relayhost, sasl, maps, tls, virtual = proc.stdout.splitlines()
    assert virtual == "lmtp:unix:private/dovecot-lmtp"  # local mail never goes to the relay
    if settings.relay == "ses":
        assert relayhost == f"[email-smtp.{settings.ses_region}.amazonaws.com]:587"
        assert (sasl, maps, tls) == ("yes", f"lmdb:{catalog.PRODUCTION.postfix_dir}/sasl_passwd", "encrypt")
    else:
        assert (relayhost, sasl, tls) == ("", "no", "may")


def test_master_cf_services_match_the_port_table(settings: Settings, tree: Path) -> None:
    confdir = tree / "files" / catalog.PRODUCTION.postfix_dir.lstrip("/")
    proc = run(["postconf", "-c", str(confdir), "-M"])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    inet = {line.split()[0] for line in proc.stdout.splitlines() if line.split()[1] == "inet"}
    assert inet == {"smtp" if s.port == 25 else str(s.port) for s in settings.services if s.daemon == "postfix"}
    # Submission ports demand TLS and AUTH; port 25 offers neither AUTH nor relaying.
    params = run(["postconf", "-c", str(confdir), "-P"]).stdout
    for port in inet - {"smtp"}:
        assert f"{port}/inet/smtpd_sasl_auth_enable = yes" in params
        assert f"{port}/inet/smtpd_sender_restrictions = reject_sender_login_mismatch" in params
    assert "smtp/inet/smtpd_sasl_auth_enable" not in params


def test_submission_switch_removes_587_everywhere() -> None:
    off, _ = dev_settings(submission=False)
    b = render.render(off)
    assert "\n587 " not in b.file(f"{catalog.PRODUCTION.postfix_dir}/master.cf").content
    assert "port = 587" not in b.file(catalog.PRODUCTION.dovecot_conf).content


@pytest.fixture(scope="module")
def lab_layout_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[catalog.Layout]:
    """A bundle rendered for a lab root and installed by hand (no daemons), with the
    certificate the baseline script makes, so postfix check and doveconf see real files."""
    root = tmp_path_factory.mktemp("labroot")
    root.chmod(0o755)
    layout = lab_layout(root)
    settings, _ = dev_settings()
    b = render.render(settings, layout)
    for f in b.files:
        Path(f.path).parent.mkdir(parents=True, exist_ok=True)
        Path(f.path).write_text(f.content)
        shutil.chown(f.path, f.owner, f.group)
    stage = root / "state"
    render.write_tree(b, stage)
    proc = run(["bash", str(stage / "scripts/baseline.sh")])
    assert proc.returncode == 0, proc.stderr
    yield layout


def test_postfix_check_is_silent(lab_layout_tree: catalog.Layout) -> None:
    layout = lab_layout_tree
    # The directories apply.sh makes before its own check.
    Path(layout.queue_dir).mkdir(parents=True, exist_ok=True)
    Path(layout.data_dir).mkdir(parents=True, exist_ok=True)
    shutil.chown(layout.data_dir, "postfix", "postfix")
    for m in ("vmailbox", "virtual", "senders"):
        assert run(["postmap", "-c", layout.postfix_dir, f"lmdb:{layout.postfix_dir}/{m}"]).returncode == 0
    assert run(["postalias", "-c", layout.postfix_dir, f"lmdb:{layout.postfix_dir}/aliases"]).returncode == 0
    run(["postconf", "-c", layout.postfix_dir, "-e", "compatibility_level=3.6"])  # as apply.sh does on 3.6+
    first = run(["postfix", "-c", layout.postfix_dir, "check"])
    assert first.returncode == 0, first.stderr
    # The first check creates the queue's subdirectories; a second one must have nothing to say.
    again = run(["postfix", "-c", layout.postfix_dir, "check"])
    assert again.returncode == 0 and again.stdout + again.stderr == ""


def test_doveconf_accepts_the_config(lab_layout_tree: catalog.Layout) -> None:
    layout = lab_layout_tree
    proc = run(["doveconf", "-c", layout.dovecot_conf, "-n"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    def value(name: str) -> str:
        return run(["doveconf", "-c", layout.dovecot_conf, "-h", name]).stdout.strip()

    assert value("disable_plaintext_auth") == "yes"
    assert value("ssl") == "required"
    assert value("ssl_min_protocol") == catalog.DOVECOT_TLS_MIN
    assert value("protocols") == "imap pop3 lmtp"
    # The sockets postfix uses are open to postfix only (the seed's auth socket was 0666).
    for service, socket, mode in (("auth", "auth", "0660"), ("lmtp", "dovecot-lmtp", "0600")):
        block = run(["doveconf", "-c", layout.dovecot_conf, f"service/{service}"]).stdout
        found = re.search(rf"unix_listener {re.escape(layout.queue_dir)}/private/{socket} {{([^}}]*)}}", block)
        assert found, block
        assert f"mode = {mode}" in found.group(1) and "user = postfix" in found.group(1)


def test_opendkim_accepts_the_config(lab_layout_tree: catalog.Layout) -> None:
    proc = run(["opendkim", "-n", "-x", lab_layout_tree.opendkim_conf])
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_user_data_is_valid_cloud_config(bundle: Bundle, tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text(bundle.user_data)
    proc = run(["cloud-init", "schema", "-c", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid cloud-config" in proc.stdout
    assert len(bundle.user_data.encode()) < USER_DATA_LIMIT
    doc = yaml.safe_load(bundle.user_data)
    assert set(catalog.EL_PACKAGES) <= set(doc["packages"])
    assert doc["ssh_pwauth"] is False


@pytest.mark.parametrize("target", ["production", "lab", "direct"])
def test_every_script_passes_shellcheck(target: str, tmp_path: Path) -> None:
    # direct: relay none, whose scripts take other branches (no relay login to write)
    settings, _ = dev_settings(**({"relay": "none"} if target == "direct" else {}))
    layout = catalog.PRODUCTION if target == "production" else lab_layout(tmp_path / "root")
    b = render.render(settings, layout)
    scripts = []
    for name, text in b.scripts.items():
        path = tmp_path / name
        path.write_text(text)
        scripts.append(str(path))
    proc = run(["shellcheck", "--shell=bash", "--severity=style", *scripts])
    assert proc.returncode == 0, proc.stdout
    assert set(b.scripts) == set(render.SCRIPTS)


def test_no_script_or_config_mentions_the_seeds_unsafe_settings(bundle: Bundle) -> None:
    texts = itertools.chain((f.content for f in bundle.files), bundle.scripts.values(), [bundle.user_data])
    for text in texts:
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for unsafe in ("mode = 0666", "disable_plaintext_auth = no", "ssl = no", "setenforce 0", "hash:", "btree:"):
            assert unsafe not in text
