"""Client-side benchmarks: submission with TLS + AUTH (465, 587) and IMAP (logins, fetching
a large mailbox), with the standard library's clients in a few threads, each bounded in count."""

from __future__ import annotations

import dataclasses
import email.utils
import imaplib
import os
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mailserver import clients
from mailserver.core import catalog
from mailserver.lab import netns
from mailserver.lab.server import Lab
from mailserver.waiting import wait_until

from . import outside
from .common import BenchError


@dataclasses.dataclass(frozen=True)
class Rate:
    count: int
    seconds: float
    ended: float = 0.0  # time.monotonic() when the last thread was done

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


def in_threads(lab: Lab, threads: int, total: int, work: Callable[[int, int], None]) -> Rate:
    """work(thread, n) for n items per thread, `threads` at once inside the lab's namespace;
    `total` is split evenly. Any exception in a thread fails the run."""
    per = [total // threads + (1 if i < total % threads else 0) for i in range(threads)]
    failures: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def body(i: int) -> None:
        with netns.entered(lab.ns):
            try:
                barrier.wait(30)
                work(i, per[i])
            except BaseException as e:  # noqa: BLE001 - reported below
                failures.append(e)

    pool = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait(30)
    start = time.monotonic()
    for t in pool:
        t.join(600)
    ended = time.monotonic()
    if failures or any(t.is_alive() for t in pool):
        raise BenchError(f"{len(failures)} client thread(s) failed: {failures[:3]!r}")
    return Rate(sum(per), ended - start, ended)


# -- submission --------------------------------------------------------------------------------


def _submission(port: int, user: str, password: str, ctx: ssl.SSLContext, source: str | None = clients.OUTSIDE,
                host: str = clients.SERVER) -> smtplib.SMTP:
    if port == 465:
        conn = clients.smtp(465, implicit_tls=True, ctx=ctx, source=source, host=host)
    else:
        conn = clients.smtp(port, source=source, host=host)
        conn.starttls(context=ctx)
    conn.login(user, password)
    return conn


def submission_sessions(lab: Lab, port: int, user: str, password: str, threads: int, total: int) -> Rate:
    """Sessions per second: connect, TLS, AUTH PLAIN, QUIT; no message."""
    def work(_: int, n: int) -> None:
        ctx = lab.tls()  # one client context per thread, as a client program keeps one
        for _ in range(n):
            _submission(port, user, password, ctx).quit()
    return in_threads(lab, threads, total, work)


def submission_messages(lab: Lab, port: int, user: str, password: str, rcpt: str, threads: int, total: int,
                        stored: Callable[[], int]) -> Rate:
    """Messages per second accepted (250) over authenticated sessions, one session per thread;
    then checks that every one of them is stored (not timed)."""
    before = stored()

    def work(i: int, n: int) -> None:
        conn = _submission(port, user, password, lab.tls())
        try:
            for k in range(n):
                msg = clients.message(user, [rcpt], f"bench submission {port} {i}.{k}", size=2048)
                conn.send_message(msg)
        finally:
            conn.quit()
    rate = in_threads(lab, threads, total, work)
    all_stored(stored, before, total, port)
    return rate


def all_stored(stored: Callable[[], int], before: int, total: int, port: int) -> float:
    """Wait until `total` messages more than `before` are stored, then make sure there are no more.
    Returns time.monotonic() when they were first all seen stored."""
    wait_until(lambda: stored() - before >= total, 300, 0.01, f"{total} messages sent on {port} to be stored",
               error=BenchError)
    done = time.monotonic()
    time.sleep(0.2)
    if stored() - before != total:
        raise BenchError(f"sent {total} messages on {port}, {stored() - before} stored")
    return done


def delivered_messages(lab: Lab, port: int, rcpt: str, threads: int, total: int, size: int,
                       stored: Callable[[], int], login: tuple[str, str] | None = None) -> Rate:
    """Messages per second from the first connection to the last message stored, one message
    per session as separate senders send them, from outside.CLIENT (the Outside context must be
    running): on 25 an outside MTA (through postscreen; rspamd checks SPF and DMARC), on a
    submission port a mail client (STARTTLS, AUTH PLAIN as `login`, then the message, which
    rspamd signs). The same client code either
    way, so the ratio between ports is what the port's protocol and checks cost."""
    sender = login[0] if login else outside.SENDER
    before = stored()

    def work(i: int, n: int) -> None:
        ctx = lab.tls()
        for k in range(n):
            msg = clients.message(sender, [rcpt], f"bench {port} {i}.{k}", size=size)
            if login:
                conn = _submission(port, *login, ctx, source=outside.CLIENT, host=outside.SERVER_ADDRESS)
            else:
                conn = clients.smtp(port, source=outside.CLIENT, host=outside.SERVER_ADDRESS)
                conn.ehlo(outside.CLIENT_NAME)
            try:
                conn.send_message(msg)
            finally:
                conn.quit()
    accepted = in_threads(lab, threads, total, work)
    done = all_stored(stored, before, total, port)
    return Rate(total, accepted.seconds + (done - accepted.ended))


# -- IMAP --------------------------------------------------------------------------------------


def fill_maildir(lab: Lab, address: str, count: int, size: int = 2048) -> float:
    """Write `count` messages straight into the mailbox's Maildir new/, as the vmail user
    owns them (what dovecot's LMTP leaves there, minus the index updates: dovecot indexes
    them when the mailbox is first opened). Returns the seconds it took."""
    local, domain = address.split("@")
    uid = gid = catalog.VMAIL_UID
    vmail = Path(lab.layout.vmail_dir)
    home = vmail / domain / local
    for d in (vmail / domain, home, home / "Maildir", *(home / "Maildir" / s for s in ("cur", "new", "tmp"))):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chown(d, uid, gid)
    body = ("imap benchmark message\n" + ("z" * 71 + "\n") * (size // 72)).encode()
    now = int(time.time())
    start = time.monotonic()
    for i in range(count):
        data = (f"Return-Path: <bench@outside.example>\nDelivered-To: {address}\n"
                f"From: Bench <bench@outside.example>\nTo: {address}\nSubject: imap bench {i}\n"
                f"Date: {email.utils.formatdate(now - count + i)}\n"
                f"Message-ID: <imap-bench.{i}@bench.invalid>\n\n").encode() + body
        path = home / "Maildir" / "new" / f"{now}.M{i}P{os.getpid()}.bench,S={len(data)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
    return time.monotonic() - start


def _imaps(user: str, password: str, ctx: ssl.SSLContext) -> imaplib.IMAP4:
    conn = clients.IMAPS(clients.SERVER, 993, ssl_context=ctx)
    conn.login(user, password)
    return conn


def imap_logins(lab: Lab, user: str, password: str, threads: int, total: int) -> Rate:
    """Logins per second over IMAPS: connect, TLS, LOGIN, LOGOUT."""
    def work(_: int, n: int) -> None:
        ctx = lab.tls()
        for _ in range(n):
            _imaps(user, password, ctx).logout()
    return in_threads(lab, threads, total, work)


def imap_open_and_fetch(lab: Lab, user: str, password: str, expected: int,
                        batch: int = 1000) -> tuple[float, Rate, Rate]:
    """First SELECT of the mailbox, read-write as a mail client opens it (dovecot moves every
    message from new/ to cur/ and gives it a UID), then every message's full text fetched
    (BODY.PEEK[], in batches), then SELECTs of the indexed mailbox. Returns (first open
    seconds, fetch rate, re-open rate)."""
    with netns.entered(lab.ns):
        conn = _imaps(user, password, lab.tls())
        try:
            start = time.monotonic()
            typ, data = conn.select("INBOX")
            first_open = time.monotonic() - start
            exists = int(data[0] or 0)
            if typ != "OK" or exists != expected:
                raise BenchError(f"SELECT INBOX: {typ} {exists} messages, expected {expected}")
            fetched = 0
            start = time.monotonic()
            for lo in range(1, exists + 1, batch):
                hi = min(exists, lo + batch - 1)
                typ, parts = conn.fetch(f"{lo}:{hi}", "(BODY.PEEK[])")
                if typ != "OK":
                    raise BenchError(f"FETCH {lo}:{hi}: {typ}")
                fetched += sum(1 for p in parts if isinstance(p, tuple) and p[1])
            fetch_seconds = time.monotonic() - start
            if fetched != expected:
                raise BenchError(f"fetched {fetched} messages, expected {expected}")
            conn.close()
            reopen_n = 20
            start = time.monotonic()
            for _ in range(reopen_n):
                conn.select("INBOX")
                conn.close()
            reopen = Rate(reopen_n, time.monotonic() - start)
        finally:
            conn.logout()
    return first_open, Rate(fetched, fetch_seconds), reopen
