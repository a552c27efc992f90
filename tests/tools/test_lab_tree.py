"""The bundle rendered for a lab root and installed by hand, owners and all, with no daemon
started: postfix check, doveconf and opendkim read it as the lab's daemons will."""

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

pytestmark = pytest.mark.root  # the files belong to postfix, dovecot and opendkim, as installed


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


def test_opendkim_accepts_the_config(lab_layout_tree: catalog.Layout) -> None:
    proc = run(["opendkim", "-n", "-x", lab_layout_tree.opendkim_conf])
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr
