"""The bundle rendered for a lab root and installed by hand, owners and all, with no daemon
started: postfix check, doveconf, sievec and rspamadm read it as the lab's daemons will."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.core import catalog, render
from mailserver.core.catalog import lab_layout
from tests.support import dev_settings
from tests.tools.support import run

pytestmark = pytest.mark.root  # the files belong to postfix and dovecot, as installed


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
    assert set(value("protocols").split()) == {"imap", "pop3", "sieve", "lmtp"}
    # ManageSieve's listener is under dovecot's name for its login service, with the table's port.
    sieve = run(["doveconf", "-c", layout.dovecot_conf, "service/managesieve-login"]).stdout
    assert re.search(r"inet_listener sieve \{[^}]*\bport = 4190\n", sieve), sieve
    # Debian's OpenSSL knows no PROFILE=SYSTEM ("no cipher match"), so the lab keeps dovecot's
    # own cipher list, and the ssl_dh file only the VM's baseline writes.
    assert run(["openssl", "ciphers", catalog.DOVECOT_EL_CIPHER_LIST]).returncode != 0
    default_ciphers = run(["doveconf", "-c", layout.dovecot_conf, "-d", "-h", "ssl_cipher_list"]).stdout.strip()
    assert value("ssl_cipher_list") == default_ciphers != catalog.DOVECOT_EL_CIPHER_LIST
    assert value("ssl_dh") == ""
    # The sockets postfix uses are open to postfix only (the seed's auth socket was 0666).
    for service, socket, mode in (("auth", "auth", "0660"), ("lmtp", "dovecot-lmtp", "0600")):
        block = run(["doveconf", "-c", layout.dovecot_conf, f"service/{service}"]).stdout
        found = re.search(rf"unix_listener {re.escape(layout.queue_dir)}/private/{socket} {{([^}}]*)}}", block)
        assert found, block
        assert f"mode = {mode}" in found.group(1) and "user = postfix" in found.group(1)


def rspamd_dump(layout: catalog.Layout, section: str) -> str:
    proc = run(["rspamadm", *render.rspamd_vars(layout).split(), "configdump", "-c", catalog.RSPAMD_MAIN_CONF,
                section])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_rspamd_accepts_the_config_and_reads_what_we_meant(lab_layout_tree: catalog.Layout) -> None:
    """rspamd's own parser on the package's rspamd.conf with our local.d over it: what it
    ends up with, not what we wrote (a key in the wrong file, or at too low a priority, is
    silently ignored)."""
    layout = lab_layout_tree
    # The password file apply.sh makes (random) or set-rspamd-password.sh writes (the secret).
    Path(f"{layout.rspamd_local_dir}/local.d/{catalog.RSPAMD_PASSWORD_FILE}").write_text(
        'password = "tree-test-password";\nenable_password = "tree-test-password";\n')
    proc = run(["rspamadm", *render.rspamd_vars(layout).split(), "configtest", "-q", "-c", catalog.RSPAMD_MAIN_CONF])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workers = rspamd_dump(layout, "worker")
    sockets = re.findall(r'bind_socket = "([^"]+)"', workers)
    # The milter and the controller's learning door are unix sockets of rspamd's group; the web
    # UI is on loopback; the package's scanner port (11333) belongs to a disabled worker.
    assert f"{layout.milter_socket} mode=0660 owner=_rspamd group={catalog.MILTER_GROUP}" in sockets
    assert f"{layout.learn_socket} mode=0660 owner=_rspamd group={catalog.MILTER_GROUP}" in sockets
    assert "127.0.0.1:11334" in sockets and "localhost:11332" not in sockets
    # No password-free loopback, and the package's well-known password "q1" replaced.
    assert "secure_ip []" in workers and '"q1"' not in workers and '"tree-test-password"' in workers
    normal = workers[workers.index("normal {"):]
    assert "enabled = false;" in normal[:normal.index("}")]
    settings, _ = dev_settings()
    signing = rspamd_dump(layout, "dkim_signing")
    for d in settings.domains:
        assert f'path = "{layout.dkim_key_dir}/{d}.{settings.dkim_selector}.key"' in signing
    assert "try_fallback = false" in signing
    actions = rspamd_dump(layout, "actions")
    assert f"reject = {settings.spam_reject_score}" in actions
    assert f"add_header = {settings.spam_junk_score}" in actions
    assert "local_addrs" in rspamd_dump(layout, "options")


def test_sievec_compiles_the_global_scripts(lab_layout_tree: catalog.Layout) -> None:
    """apply.sh compiles them (dovecot, running as vmail, could not write the binaries)."""
    for name in render.SIEVE_SCRIPTS:
        proc = run(["sievec", "-c", lab_layout_tree.dovecot_conf, f"{lab_layout_tree.sieve_dir}/{name}"])
        assert proc.returncode == 0 and "error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
