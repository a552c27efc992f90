"""The lab checks catch broken templates: a bundle with one deliberate fault, applied to a
running lab with apply.sh, fails the same check the end-to-end suite relies on."""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

import pytest

from mailserver import clients
from mailserver.core import render
from mailserver.lab.server import Lab, LabError


def apply_mutated(lab: Lab, pattern: str, replacement: str) -> None:
    """Stage the lab's bundle with one edit to main.cf and install it with apply.sh."""
    bundle = render.render(lab.settings, lab.layout)
    stage = Path(lab.layout.state_dir)
    render.write_tree(bundle, stage)
    main_cf = stage / "files" / f"{lab.layout.postfix_dir}/main.cf".lstrip("/")
    text, count = re.subn(pattern, replacement, main_cf.read_text(), flags=re.MULTILINE)
    assert count == 1
    main_cf.write_text(text)
    lab.run(["bash", str(stage / "scripts/apply.sh")])


def restore(lab: Lab) -> None:
    # A stop rather than a reload: master throttles a service whose processes died (as smtpd
    # does with unsafe relay restrictions) for a minute, even after the config is fixed.
    lab.run(["postfix", "-c", lab.layout.postfix_dir, "stop"])
    lab.apply(lab.settings, lab.secrets)
    lab.run(["postqueue", "-c", lab.layout.postfix_dir, "-f"])


def test_wrong_lmtp_socket_path_is_caught(lab: Lab) -> None:
    apply_mutated(lab, r"^virtual_transport = .*$", "virtual_transport = lmtp:unix:private/no-such-socket")
    try:
        msg = clients.message("someone@outside.example", ["alice@example.com"], "mutation")
        with clients.smtp(25) as conn:
            conn.send_message(msg)
        # What tests/lab/support.py's stored() waits for never happens: the mail stays queued.
        with pytest.raises(LabError, match="for the mail queue to empty"):
            lab.wait_queue_empty(timeout=5)
        assert not any(msg["Message-ID"].encode() in p.read_bytes() for p in lab.maildir_files("alice@example.com"))
    finally:
        restore(lab)
    # Fixed config: the deferred message is delivered, not lost.
    lab.wait_queue_empty()
    assert any(msg["Message-ID"].encode() in p.read_bytes() for p in lab.maildir_files("alice@example.com"))


def relay_attempt(lab: Lab) -> tuple[int, bytes] | str:
    """What tests/lab/test_e2e.py's relay test sees: the RCPT reply, or why there was none."""
    try:
        return clients.rcpt_reply("victim@elsewhere.example")
    except (smtplib.SMTPException, OSError) as e:
        return repr(e)


@pytest.mark.parametrize("pattern,replacement", [
    # Relay restrictions without reject_unauth_destination: postfix's own safety check makes
    # smtpd refuse to run, so the refusal test sees no 554 either.
    (r"^smtpd_relay_restrictions = .*$", "smtpd_relay_restrictions = permit_sasl_authenticated, permit"),
    # The whole internet in mynetworks: an open relay postfix accepts.
    (r"^mynetworks = .*$", "mynetworks = 0.0.0.0/0"),
])
def test_open_relay_mutations_are_caught(lab: Lab, pattern: str, replacement: str) -> None:
    assert relay_attempt(lab)[0] == 554  # the unmutated lab refuses
    apply_mutated(lab, pattern, replacement)
    try:
        outcome = relay_attempt(lab)
        # test_relay_to_outside_without_auth_is_refused_571 requires (554, ...5.7.1...).
        assert not (isinstance(outcome, tuple) and outcome[0] == 554), outcome
    finally:
        restore(lab)
