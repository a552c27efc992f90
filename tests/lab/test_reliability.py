"""Reliability under load and faults: thousands of messages through the lab's real postfix and
dovecot, and the daemons killed, stopped or starved of disk while mail flows.

Every message carries its own Message-ID, so after each run the Maildirs are counted message
by message: each message that got a 250 must be stored in every mailbox its recipients lead
to (aliases expanded), none lost, the queue empty, and no bounce (DSN) generated. Without a
crash (the soak, the full disk) every copy is stored exactly once. A crash of either daemon
may duplicate the deliveries it interrupted, as SMTP/LMTP's at-least-once contract allows,
and nothing else: see assert_duplicates_only_from_the_fault. Each test prints its figures
(sent, stored, lost, duplicated, deferred) to the terminal, even under pytest's capture.

Clients connect to port 25 from 127.0.0.2 (an outside MTA, as in the end-to-end tests), a
few messages per connection, from Python threads: smtp-source cannot give each message an
identity to count by.
"""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import json
import os
import re
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailserver import clients
from mailserver.lab import netns
from mailserver.lab.server import Lab
from mailserver.waiting import wait_until
from tests.support import dev_settings

ALICE, BOB = "alice@example.com", "bob@example.net"
SALES, INFO = "sales@example.com", "info@example.net"
MAILBOXES = (ALICE, BOB)
# Envelope recipients -> the mailboxes that must each store the message once. The dev stack's
# aliases: sales@example.com -> alice + bob, info@example.net -> bob. The last route names
# alice twice (directly and through sales): she must get one copy, not two (postfix passes
# both recipients in one LMTP transaction, and dovecot stores the message once).
ROUTES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((ALICE,), (ALICE,)),
    ((BOB,), (BOB,)),
    ((SALES,), (ALICE, BOB)),
    ((INFO,), (BOB,)),
    ((ALICE, SALES), (ALICE, BOB)),
)
# Mixed sizes, mostly small as real mail is: 1 KiB, 10 KiB, 100 KiB.
SIZES = (1024, 1024, 1024, 10 * 1024, 10 * 1024, 100 * 1024)
SENDER = "load@outside.example"
ID_DOMAIN = "reliability.invalid"
MESSAGE_ID = re.compile(rb"^message-id:\s*<([^>@]+)@reliability\.invalid>", re.IGNORECASE | re.MULTILINE)
PER_CONNECTION = 10  # messages per SMTP connection before the client reconnects


def raw_message(token: str, rcpts: tuple[str, ...], size: int) -> bytes:
    head = (f"From: Load test <{SENDER}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {token}\r\n"
            f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{token}@{ID_DOMAIN}>\r\n\r\n").encode()
    return head + b"x" * 78 + b"\r\n" + (b"y" * 78 + b"\r\n") * max(0, size // 80 - 1)


@dataclasses.dataclass
class Attempt:
    token: str  # the Message-ID's local part: "<tag>.<message>.<attempt>"
    expected: tuple[str, ...]  # mailboxes that must store it once, if accepted
    accepted: bool = False
    error: str = ""
    at: float = 0.0  # time.monotonic() of the reply


class Load:
    """`count` messages sent to port 25 by `sessions` threads, each on its own connection,
    reconnecting every PER_CONNECTION messages. A message that gets no 250 is recorded with
    the error; with `retry`, it is sent again as a new attempt (a new Message-ID, as a real
    client's retry would be a new transaction) until it gets one or the deadline passes."""

    def __init__(self, lab: Lab, tag: str, count: int, sessions: int, retry: bool = False,
                 deadline: float = 150.0) -> None:
        self.lab, self.tag, self.count, self.sessions, self.retry = lab, tag, count, sessions, retry
        self.deadline = time.monotonic() + deadline
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._session, args=(i,), daemon=True) for i in range(sessions)]
        self.started = 0.0
        self.elapsed = 0.0

    def start(self) -> Load:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def join(self) -> Load:
        for t in self._threads:
            t.join(max(1.0, self.deadline - time.monotonic() + 30))
        assert not any(t.is_alive() for t in self._threads), "sender threads still running after the deadline"
        self.elapsed = time.monotonic() - self.started
        return self

    def run(self) -> Load:
        return self.start().join()

    @property
    def accepted(self) -> int:
        with self._lock:
            return sum(a.accepted for a in self.attempts)

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return [a.error for a in self.attempts if a.error]

    def wait_accepted(self, n: int, timeout: float = 60.0) -> None:
        wait_until(lambda: self.accepted >= n, timeout, 0.05, f"{n} messages accepted",
                   detail=lambda: f"only {self.accepted}")

    def _session(self, index: int) -> None:
        with netns.entered(self.lab.ns):
            conn: smtplib.SMTP | None = None
            used = 0
            for n in range(index, self.count, self.sessions):
                rcpts, expected = ROUTES[n % len(ROUTES)]
                data_size = SIZES[n % len(SIZES)]
                for attempt in range(1_000):
                    token = f"{self.tag}.{n}.{attempt}"
                    record = Attempt(token, expected)
                    try:
                        if conn is None or used >= PER_CONNECTION:
                            _close(conn)
                            conn, used = None, 0
                            conn = clients.smtp(25)
                            conn.ehlo("mx.outside.example")
                        used += 1
                        refused = conn.sendmail(SENDER, list(rcpts), raw_message(token, rcpts, data_size))
                        record.accepted = not refused
                        record.error = f"refused {refused}" if refused else ""
                    except (smtplib.SMTPException, OSError) as e:
                        record.error = f"{type(e).__name__}: {e}"
                        _close(conn)
                        conn = None
                    record.at = time.monotonic()
                    with self._lock:
                        self.attempts.append(record)
                    if record.accepted or not self.retry or time.monotonic() > self.deadline:
                        break
                    time.sleep(0.2)
            _close(conn)


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()


def stored_ids(lab: Lab, tag: str) -> dict[str, collections.Counter[str]]:
    """Per mailbox, how many stored files carry each Message-ID of this run."""
    prefix = f"{tag}."
    out: dict[str, collections.Counter[str]] = {}
    for box in MAILBOXES:
        seen: collections.Counter[str] = collections.Counter()
        for path in lab.maildir_files(box):
            with path.open("rb") as f:
                head = f.read(32768).split(b"\n\n", 1)[0]
            m = MESSAGE_ID.search(head)
            if m and m.group(1).decode().startswith(prefix):
                seen[m.group(1).decode()] += 1
        out[box] = seen
    return out


@dataclasses.dataclass
class Tally:
    sent: int  # messages that got a 250
    expected: int  # copies owed: one per accepted message and mailbox it leads to
    stored: int  # copies of accepted messages found in the Maildirs
    lost: int  # copies owed but not found
    duplicated: int  # copies found beyond the one owed
    unacknowledged: int  # attempts without a 250 (errors seen by the client)
    stored_unacknowledged: int  # copies of those found anyway
    deferred: int  # postfix log lines "status=deferred" during the run
    bounced: int  # postfix log lines "status=bounced" during the run
    duplicates: list[tuple[Attempt, str, int]] = dataclasses.field(repr=False)  # (attempt, mailbox, copies)

    def line(self, name: str, seconds: float) -> str:
        return (f"{name}: sent {self.sent}, stored {self.stored}/{self.expected} copies, lost {self.lost}, "
                f"duplicated {self.duplicated}, deferred {self.deferred}, bounced {self.bounced}, "
                f"client errors {self.unacknowledged} (stored anyway {self.stored_unacknowledged}), {seconds:.1f}s")


def tally(lab: Lab, load: Load, log_offset: int) -> Tally:
    found = stored_ids(lab, load.tag)
    counts = [found[box][a.token] for a in load.attempts if a.accepted for box in a.expected]
    unacked = [found[box][a.token] for a in load.attempts if not a.accepted for box in a.expected]
    duplicates = [(a, box, found[box][a.token]) for a in load.attempts for box in a.expected if found[box][a.token] > 1]
    log = lab.log()[log_offset:]
    return Tally(
        sent=sum(a.accepted for a in load.attempts),
        expected=len(counts),
        stored=sum(min(c, 1) for c in counts),
        lost=sum(c == 0 for c in counts),
        # A copy beyond the first, of any attempt, acknowledged or not.
        duplicated=sum(c - 1 for c in counts + unacked if c > 1),
        unacknowledged=sum(not a.accepted for a in load.attempts),
        stored_unacknowledged=sum(unacked),
        deferred=log.count("status=deferred"),
        bounced=log.count("status=bounced"),
        duplicates=duplicates,
    )


def report(capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None],
           name: str, t: Tally, seconds: float) -> None:
    for key, value in dataclasses.asdict(t).items():
        if key != "duplicates":
            record_property(key, value)
    with capsys.disabled():
        print(f"\n  {t.line(name, seconds)}", flush=True)


def assert_none_lost(t: Tally, load: Load) -> None:
    assert t.sent == load.count, f"{load.count - t.sent} messages never got a 250: {load.errors[:5]}"
    assert t.lost == 0, f"{t.lost} copies lost"
    assert t.stored == t.expected
    assert t.bounced == 0, "a bounce (DSN) was generated"


def assert_exactly_once(t: Tally, load: Load) -> None:
    assert_none_lost(t, load)
    assert t.duplicated == 0, f"{t.duplicated} copies duplicated: {[(a.token, box) for a, box, _ in t.duplicates[:5]]}"


def assert_duplicates_only_from_the_fault(lab: Lab, t: Tally, recovered_at: float) -> None:
    """A crash duplicates what was in flight: dovecot had stored the copy, postfix had not yet
    recorded the LMTP 250 when it (or dovecot) died, so postfix delivers it again. SMTP and
    LMTP promise at-least-once, not exactly-once. So: no message accepted after the daemon is
    back may be duplicated, no copy may be stored more than twice, and there can be no more
    extra copies than LMTP deliveries in flight (postfix's LMTP concurrency, times the two
    mailboxes one transaction can reach)."""
    late = [(a.token, box) for a, box, _ in t.duplicates if a.at >= recovered_at]
    assert not late, f"messages accepted after recovery were duplicated: {late[:5]}"
    assert all(copies == 2 for _, _, copies in t.duplicates), t.duplicates[:5]
    concurrency = int(lab.run(["postconf", "-c", lab.layout.postfix_dir, "-xh",
                               "lmtp_destination_concurrency_limit"]).stdout)
    assert t.duplicated <= concurrency * len(MAILBOXES)


def drain(lab: Lab, timeout: float = 120, flush_every: float | None = 5.0) -> None:
    """Flush the queue (postqueue -f) and wait for it to empty, flushing again every few
    seconds; if it does not empty, fail with what postfix and dovecot said.

    Flushing once is not enough after a fault: a delivery attempt made while the daemon was
    down can fail only after it is back (LMTP connections queued on the dead dovecot's socket
    are reset when its last process exits), and that failure marks the transport dead again
    until postfix's next retry, minutes later. Nothing is lost meanwhile; the flushes only
    bring the retry forward. Without a fault (flush_every None) it only waits."""
    next_flush = time.monotonic()

    def empty() -> bool:
        nonlocal next_flush
        if not lab.queue_ids():
            return True
        if flush_every is not None and time.monotonic() >= next_flush:
            lab.flush_queue()
            next_flush = time.monotonic() + flush_every
        return False

    def why() -> str:
        queue = [json.loads(q) for q in lab.queue_ids()]
        reasons = collections.Counter(r.get("delay_reason", "") for q in queue for r in q["recipients"])
        dovecot = [line for line in lab.log("dovecot").splitlines() if ": Info: " not in line]
        return (f"{len(queue)} messages still queued; reasons {reasons.most_common(3)}; dovecot's last errors:\n"
                + "\n".join(dovecot[-15:]))

    wait_until(empty, timeout, 0.2, "the queue to drain", detail=why)


# -- one lab on the real disk for the soak and the daemon faults ---------------------------------


class TestOnDisk:
    @pytest.fixture(scope="class")
    def lab(self) -> Iterator[Lab]:
        settings, secrets = dev_settings()
        with Lab(settings, secrets) as running, netns.entered(running.ns):
            yield running

    def test_soak_5000_messages_over_20_sessions(self, lab: Lab, capsys: pytest.CaptureFixture[str],
                                                 record_property: Callable[[str, object], None]) -> None:
        offset = len(lab.log())
        load = Load(lab, "soak", count=5000, sessions=20).run()
        drain(lab, flush_every=None)
        t = tally(lab, load, offset)
        report(capsys, record_property, "soak", t, load.elapsed)
        assert_exactly_once(t, load)
        assert t.unacknowledged == 0, load.errors[:5]
        assert lab.queue_ids() == []

    def test_dovecot_killed_and_restarted_under_load(self, lab: Lab, capsys: pytest.CaptureFixture[str],
                                                     record_property: Callable[[str, object], None]) -> None:
        offset = len(lab.log())
        load = Load(lab, "dovecot-kill", count=600, sessions=10).start()
        load.wait_accepted(150)
        lab.kill_dovecot()
        # Mail keeps arriving while nothing can store it: postfix queues it and defers.
        wait_until(lambda: lab.log()[offset:].count("status=deferred") >= 20, 60, 0.1,
                   "deferrals while dovecot is down")
        load.wait_accepted(350)
        lab.start_dovecot()
        lab.wait_ready()
        recovered_at = time.monotonic()
        load.join()
        drain(lab)
        t = tally(lab, load, offset)
        report(capsys, record_property, "dovecot SIGKILL + restart", t, load.elapsed)
        assert t.deferred >= 20
        assert t.unacknowledged == 0, f"port 25 refused mail while dovecot was down: {load.errors[:5]}"
        assert_none_lost(t, load)
        assert_duplicates_only_from_the_fault(lab, t, recovered_at)

    def test_postfix_stopped_and_started_under_load(self, lab: Lab, capsys: pytest.CaptureFixture[str],
                                                    record_property: Callable[[str, object], None]) -> None:
        offset = len(lab.log())
        load = Load(lab, "postfix-restart", count=600, sessions=10, retry=True).start()
        load.wait_accepted(200)
        lab.stop_postfix()
        # Clients now get refused connections (or lose the one they had) and retry.
        wait_until(lambda: len(load.errors) >= 5, 30, 0.1, "client errors while postfix is stopped")
        lab.start_postfix()
        lab.wait_ready()
        recovered_at = time.monotonic()
        load.join()
        drain(lab)
        t = tally(lab, load, offset)
        report(capsys, record_property, "postfix stop + start", t, load.elapsed)
        # Every message that got a 250 is stored; one that got an error (and was sent
        # again as a new message) may still have been queued, its reply lost with the
        # connection. `postfix stop` kills the LMTP clients mid-delivery: see
        # assert_duplicates_only_from_the_fault.
        assert t.unacknowledged >= 5
        assert_none_lost(t, load)
        assert_duplicates_only_from_the_fault(lab, t, recovered_at)


# -- the mail filesystem full ------------------------------------------------------------------


def test_full_mail_filesystem_defers_then_delivers(capsys: pytest.CaptureFixture[str],
                                                   record_property: Callable[[str, object], None]) -> None:
    """The Maildirs live on a 16 MiB filesystem of their own, filled to the last block before
    mail arrives. Observed: the senders still get 250 (postfix's queue is on another
    filesystem), dovecot's LMTP answers each delivery with a 451 (4.2.0 after DATA, or 4.3.0
    at RCPT when it cannot even update the quota file), postfix defers; nothing bounces. Once
    space is freed and the queue flushed, every message is stored exactly once."""
    settings, secrets = dev_settings()
    with Lab(settings, secrets, mail_fs_size="16m") as lab, netns.entered(lab.ns):
        # The mailboxes exist already, as on a server in use.
        first = Load(lab, "disk-full-before", count=len(ROUTES), sessions=1).run()
        drain(lab, flush_every=None)
        assert_exactly_once(tally(lab, first, 0), first)
        vmail = Path(lab.layout.vmail_dir)
        filler = vmail / "filler"
        with filler.open("wb") as f:
            chunk = b"\0" * 65536
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass
        assert os.statvfs(vmail).f_bavail == 0
        offset = len(lab.log())
        load = Load(lab, "disk-full", count=300, sessions=5, retry=True).run()
        assert load.errors == [], f"senders got errors: {load.errors[:5]}"
        # Every message is queued and has been tried once: all in the deferred queue.
        wait_until(lambda: [json.loads(q)["queue_name"] for q in lab.queue_ids()] == ["deferred"] * load.count, 60, 0.1,
                   "every message deferred")
        assert sum(sum(c.values()) for c in stored_ids(lab, load.tag).values()) == 0
        reasons = re.findall(r"status=deferred \((.*)\)", lab.log()[offset:])
        # Dovecot's LMTP answers 451 (at RCPT while it cannot update the quota file, at the
        # end of DATA while it cannot write the message): a temporary failure, never a 5xx.
        assert reasons and all(re.search(r"said: 4\d\d |delivery temporarily suspended", r) for r in reasons), \
            reasons[:3]
        filler.unlink()
        drain(lab)
        t = tally(lab, load, offset)
        report(capsys, record_property, "mail filesystem full", t, load.elapsed)
        assert t.deferred >= load.count
        assert_exactly_once(t, load)
