"""The secondary MX (secondaryMx) on real postfix: the outage it exists for, measured.

Two labs from the same settings and renderer: the primary (postfix, dovecot, OpenDKIM) and the
secondary (role "secondary": postfix alone), each in its own network namespace, joined by a veth
pair with loopback-range addresses (catalog.LAB_PRIMARY_LINK, LAB_SECONDARY_LINK). The
secondary relays to the primary's end of that link, as the VM's relays to the primary's name,
and verifies the primary's certificate, here signed by a test CA the secondary trusts (the VM
trusts the OS's bundle and Let's Encrypt).

The outage: the primary's postfix stopped, N messages sent to the secondary from outside are
accepted and wait in its queue; the primary starts again, the secondary's queue is flushed
(postqueue -f: a real secondary retries on its own schedule, every 5 to 67 minutes by postfix's
defaults, so the drain time measured here is from its next retry), and every message arrives,
none bounced. The figures are printed (pytest -s) and written into docs/scale-out.md by hand.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import json
import time
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from mailserver import clients, doctor
from mailserver.doctor.secondary import check_secondary
from mailserver.lab import netns
from mailserver.lab.server import Lab
from mailserver.waiting import wait_until
from tests.lab.doctor_support import TestCa
from tests.support import dev_settings

ALICE, BOB, SALES = "alice@example.com", "bob@example.net", "sales@example.com"
OUTAGE_MESSAGES = 60  # a third to each of alice, bob and the sales alias (alice and bob both)


class Pair(NamedTuple):
    primary: Lab
    secondary: Lab
    ca: TestCa
    cert: tuple[str, str]  # the secondary's good certificate


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    settings, secrets = dev_settings(secondaryMx=True, acmeServer="letsencrypt")
    ca = TestCa("Secondary Test Root CA")
    cert = ca.issue(settings.secondary_hostname)
    with Lab(settings, secrets, certificate=ca.issue(settings.hostname)) as primary, \
            Lab(settings, secrets, role="secondary", certificate=cert) as secondary:
        secondary.link_to(primary)
        secondary.trust_ca(ca.pem)
        (secondary.root / "test-ca.pem").write_text(ca.pem)
        yield Pair(primary, secondary, ca, cert)


def queue(lab: Lab) -> list[dict[str, object]]:
    """postqueue -j of the lab: one JSON object per queued message."""
    return [json.loads(line) for line in lab.queue_ids()]


def send(lab: Lab, rcpt: str, subject: str) -> str:
    """A message from an outside server to `rcpt` on the lab's port 25; its Message-ID."""
    msg = clients.message("someone@outside.example", [rcpt], subject)
    with netns.entered(lab.ns), clients.smtp(25) as conn:
        conn.ehlo("mx.outside.example")
        conn.send_message(msg)
    return str(msg["Message-ID"])


def delivered(lab: Lab, address: str, marker: str) -> list[email.message.Message]:
    found = []
    for path in lab.maildir_files(address):
        msg = email.message_from_bytes(path.read_bytes())
        if marker in str(msg["Subject"]):
            found.append(msg)
    return found


def bounces(lab: Lab) -> list[str]:
    """Log lines of bounced mail, and mailbox files that are delivery reports."""
    lines = [line for line in lab.log().splitlines() if "status=bounced" in line]
    for address in (ALICE, BOB):
        for path in lab.maildir_files(address):
            if b"MAILER-DAEMON" in path.read_bytes()[:2000]:
                lines.append(str(path))
    return lines


def test_relays_to_the_primary_over_verified_tls(pair: Pair) -> None:
    marker = f"relay-check-{time.time_ns()}"
    send(pair.secondary, ALICE, marker)
    wait_until(lambda: bool(delivered(pair.primary, ALICE, marker)), 30, 0.2, "the relayed message at the primary")
    pair.secondary.wait_queue_empty()
    log = pair.secondary.log()
    # postfix says Verified only when the chain and the primary's name both matched.
    assert "Verified TLS connection established to 127.1.0.1" in log, log[-2000:]
    (msg,) = delivered(pair.primary, ALICE, marker)
    assert "mx2.example.com" in " ".join(msg.get_all("Received") or [])


def test_outage_queues_on_the_secondary_and_drains_with_none_lost(pair: Pair) -> None:
    primary, secondary = pair.primary, pair.secondary
    marker = f"outage-{time.time_ns()}"
    rcpts = [(ALICE, BOB, SALES)[i % 3] for i in range(OUTAGE_MESSAGES)]
    primary.stop_postfix()
    try:
        started = time.monotonic()
        for i, rcpt in enumerate(rcpts):
            send(secondary, rcpt, f"{marker} {i}")
        accept_seconds = time.monotonic() - started

        def all_deferred() -> bool:
            q = queue(secondary)
            return len(q) == OUTAGE_MESSAGES and all(m["queue_name"] == "deferred" for m in q)

        wait_until(all_deferred, 60, 0.5, "every message deferred on the secondary",
                   detail=lambda: f"{len(queue(secondary))} queued")
        queued = len(queue(secondary))
    finally:
        primary.start_postfix()
    primary.wait_ready()
    flushed = time.monotonic()
    secondary.flush_queue()
    # alice gets her own and the alias's; bob his own and the alias's.
    expected = {ALICE: 2 * OUTAGE_MESSAGES // 3, BOB: 2 * OUTAGE_MESSAGES // 3}
    wait_until(lambda: all(len(delivered(primary, a, marker)) == n for a, n in expected.items()), 120, 0.2,
               "every queued message at the primary",
               detail=lambda: str({a: len(delivered(primary, a, marker)) for a in expected}))
    secondary.wait_queue_empty()
    drain_seconds = time.monotonic() - flushed
    lost = sum(n - len(delivered(primary, a, marker)) for a, n in expected.items())
    bounced = bounces(secondary) + bounces(primary)
    print(f"\nsecondary outage: {OUTAGE_MESSAGES} sent, {OUTAGE_MESSAGES} accepted in {accept_seconds:.2f} s, "
          f"{queued} queued while the primary was down; drained in {drain_seconds:.2f} s after the flush; "
          f"{lost} lost, {len(bounced)} bounced")
    assert queued == OUTAGE_MESSAGES
    assert lost == 0
    assert bounced == []


def test_unknown_recipient_is_refused_at_rcpt(pair: Pair) -> None:
    with netns.entered(pair.secondary.ns):
        code, text = clients.rcpt_reply("nobody@example.com")
    assert code == 550 and b"5.1.1" in text, (code, text)


@pytest.mark.parametrize("rcpt", ["victim@elsewhere.example", "someone@example.org"])
def test_not_an_open_relay_and_other_domains_are_refused(pair: Pair, rcpt: str) -> None:
    with netns.entered(pair.secondary.ns):
        code, text = clients.rcpt_reply(rcpt)
    assert code == 554 and b"5.7.1" in text and b"Relay access denied" in text, (code, text)
    assert queue(pair.secondary) == []


def test_the_secondary_runs_postfix_alone(pair: Pair) -> None:
    listening = pair.secondary.run(["ss", "-Hltn"]).stdout
    ports = {line.split()[3].rsplit(":", 1)[1] for line in listening.splitlines()}
    assert ports == {"25"}, listening
    assert pair.secondary.dovecot_pid() is None


# --- the doctor on the secondary -------------------------------------------------------------


def doctor_run(pair: Pair, now: dt.datetime | None = None) -> tuple[list[doctor.Result], dict[str, doctor.Status]]:
    """The secondary's checks, probing from inside its namespace (its port 25 on loopback, from
    the outside address 127.0.0.2) and reading its queue in the lab."""
    target = doctor.Target(settings=pair.secondary.settings, ip=clients.SERVER, dkim={},
                           cafile=str(pair.secondary.root / "test-ca.pem"), source=clients.OUTSIDE, timeout=3.0,
                           secondary_ip=clients.SERVER,
                           secondary_runner=doctor.LocalRunner(pair.secondary.layout, where="lab"))
    if now is not None:
        target = dataclasses.replace(target, now=lambda: now)
    with netns.entered(pair.secondary.ns):
        results = check_secondary(target)
    return results, doctor.summary(results)


def test_doctor_finds_the_healthy_secondary_ok(pair: Pair) -> None:
    results, summary = doctor_run(pair)
    assert summary == {"secondary-smtp": "ok", "secondary-queue": "ok"}, results
    subjects = {r.subject for r in results if r.check == "secondary-smtp"}
    # port 25, and the primary's certificate, TLS and relay probes pointed at the secondary
    assert {"mx2.example.com port 25", "mx2.example.com tls-name", "mx2.example.com tls-chain",
            "mx2.example.com tls-expiry", "mx2.example.com tls-version", "mx2.example.com open-relay"} <= subjects
    (queue_result,) = [r for r in results if r.check == "secondary-queue"]
    assert queue_result.found == "0 messages"


def test_doctor_flags_a_wrong_certificate_on_the_secondary(pair: Pair) -> None:
    pair.secondary.install_certificate(*pair.ca.issue("wrong.example.org"))
    try:
        results, summary = doctor_run(pair)
    finally:
        pair.secondary.install_certificate(*pair.cert)
    assert summary == {"secondary-smtp": "error", "secondary-queue": "ok"}
    failing = [r for r in results if r.status == "error"]
    assert [r.subject for r in failing] == ["mx2.example.com tls-name"] and "wrong.example.org" in failing[0].found
    assert failing[0].fix


def test_doctor_reports_the_secondary_queue_and_its_oldest_message(pair: Pair) -> None:
    """Mail held while the primary is down: its age turns the check to a warning after an
    hour and to an error at half the queue lifetime (a clock moved forward stands for the wait)."""
    pair.primary.stop_postfix()
    try:
        send(pair.secondary, ALICE, f"held-{time.time_ns()}")
        wait_until(lambda: len(queue(pair.secondary)) == 1, 30, 0.2, "the message queued on the secondary")
        now = dt.datetime.now(dt.UTC)
        _, summary = doctor_run(pair, now)
        assert summary == {"secondary-smtp": "ok", "secondary-queue": "ok"}
        _, summary = doctor_run(pair, now + dt.timedelta(hours=2))
        assert summary == {"secondary-smtp": "ok", "secondary-queue": "warning"}
        results, summary = doctor_run(pair, now + dt.timedelta(days=5))
        assert summary == {"secondary-smtp": "ok", "secondary-queue": "error"}
        (r,) = [r for r in results if r.check == "secondary-queue"]
        assert r.found == "1 messages, oldest 120.0 h" and r.fix
    finally:
        pair.primary.start_postfix()
        pair.primary.wait_ready()
        pair.secondary.flush_queue()
        pair.secondary.wait_queue_empty(60)
