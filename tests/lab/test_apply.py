"""Settings changes re-applied to a running lab with the same apply script the VM runs."""

from __future__ import annotations

import email
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver import clients
from mailserver.core import render
from mailserver.core.settings import parse
from mailserver.lab import netns
from mailserver.lab.server import Lab, LabError
from tests.support import PASSWORDS, dev_raw, dev_settings

ALICE = "alice@example.com"
CAROL = "carol@example.com"
CAROL_PASSWORD = "carol has a long password"


@pytest.fixture
def lab() -> Iterator[Lab]:
    settings, secrets = dev_settings()
    with Lab(settings, secrets) as running, netns.entered(running.ns):
        yield running


def deliver(lab: Lab, rcpt: str, subject: str) -> str:
    msg = clients.message("someone@outside.example", [rcpt], subject)
    with clients.smtp(25) as conn:
        conn.ehlo("mx.outside.example")
        conn.send_message(msg)
    lab.wait_queue_empty()
    return str(msg["Message-ID"])


def imap_ids(lab: Lab, user: str, password: str) -> set[str]:
    messages = clients.imap_messages(993, user, password, lab.tls(), True)
    return {email.message_from_bytes(m)["Message-ID"] for m in messages}


def test_mailbox_change_takes_effect_and_keeps_stored_mail(lab: Lab) -> None:
    before = deliver(lab, ALICE, "stored before the change")
    # Carol does not exist yet: refused at RCPT time.
    assert clients.rcpt_reply(CAROL)[0] == 550

    raw = dev_raw()
    raw["mailboxes"] = [*raw["mailboxes"], CAROL]
    raw["mailboxPasswords"] = [*raw["mailboxPasswords"], f"{CAROL}:{CAROL_PASSWORD}"]
    raw["messageSizeLimit"] = 20971520
    settings, secrets = parse(raw)
    lab.apply(settings, secrets)

    carol_id = deliver(lab, CAROL, "to the new mailbox")
    assert carol_id in imap_ids(lab, CAROL, CAROL_PASSWORD)
    # Mail stored before the change is still there, and alice's login still works.
    assert before in imap_ids(lab, ALICE, PASSWORDS[ALICE])
    postconf = lab.run(["postconf", "-c", lab.layout.postfix_dir, "-h", "message_size_limit"]).stdout.strip()
    assert postconf == "20971520"


def test_removed_mailbox_keeps_its_mail_on_disk(lab: Lab) -> None:
    kept = deliver(lab, "bob@example.net", "bob's mail")
    raw = dev_raw()
    raw["mailboxes"] = [ALICE]
    raw["mailboxPasswords"] = [f"{ALICE}:{PASSWORDS[ALICE]}"]
    raw["aliases"] = []
    settings, secrets = parse(raw)
    lab.apply(settings, secrets)
    assert clients.rcpt_reply("bob@example.net")[0] == 550
    assert any(kept.encode() in p.read_bytes() for p in lab.maildir_files("bob@example.net"))


def test_rejected_config_is_rolled_back_and_service_continues(lab: Lab) -> None:
    conf = Path(lab.layout.dovecot_conf)
    good = conf.read_text()
    bundle = render.render(lab.settings, lab.layout)
    stage = Path(lab.layout.state_dir)
    render.write_tree(bundle, stage)
    staged = stage / "files" / lab.layout.dovecot_conf.lstrip("/")
    staged.write_text(staged.read_text() + "\nthis is { not dovecot syntax\n")
    with pytest.raises(LabError, match="rejected"):
        lab.run(["bash", str(stage / "scripts/apply.sh")])
    assert conf.read_text() == good
    # The running server still delivers and serves.
    msg_id = deliver(lab, ALICE, "after a rejected change")
    assert msg_id in imap_ids(lab, ALICE, PASSWORDS[ALICE])


def test_set_passwords_refuses_an_unknown_mailbox(lab: Lab) -> None:
    users = Path(lab.layout.users_file)
    before = users.read_text()
    script = str(Path(lab.layout.state_dir) / "scripts/set-passwords.sh")
    with pytest.raises(LabError, match="not a configured mailbox"):
        lab.run(["bash", script], stdin=f"mallory@example.com\t{'x' * 20}\n")
    assert users.read_text() == before
    # Only hashes are stored.
    assert all(p not in before for p in PASSWORDS.values())
    assert oct(users.stat().st_mode & 0o777) == "0o640"


def test_postfix_starts_again_after_a_stop_left_a_half_written_queue_file(lab: Lab) -> None:
    """`postfix stop` under load can leave a file in incoming/ that cleanup never finished.
    The next `postfix start` has postsuper warn about it while no postlogd runs, writing to
    the log file itself with dropped privileges: the lab must still come back up."""
    lab.stop_postfix()
    incoming = Path(lab.layout.queue_dir) / "incoming"
    bogus = incoming / "271570.7850"  # no valid queue id: postsuper calls it a bogus file name
    bogus.write_text("")
    shutil.chown(bogus, "postfix", "postfix")
    lab.start_postfix()
    lab.wait_ready()
    assert "bogus file name: incoming/271570.7850" in lab.log()
    assert deliver(lab, "alice@example.com", "after the restart")
