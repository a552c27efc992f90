"""Delivery throughput: port 25 to a stored Maildir file, with postfix's smtp-source as the
sending MTA(s), on the lab and on the seed-style baseline; and the disk's ceiling for storing
a message as Maildir does, on the same filesystem."""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mailserver.lab.server import Lab
from mailserver.waiting import wait_until

from . import outside
from .common import BenchError

SENDER = outside.SENDER
LOOPBACK = "127.0.0.1"
RECIPIENT = "alice@example.com"


@dataclasses.dataclass(frozen=True)
class Run:
    sessions: int
    size: int  # payload bytes per message
    count: int
    seconds: float  # from smtp-source's start to the last message stored

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def smtp_source(run: Callable[[list[str]], object], sessions: int, count: int, size: int, rcpt: str,
                server: str) -> None:
    """One smtp-source run: `count` messages of `size` bytes, `sessions` connections in
    parallel, one message per connection (as separate MTAs would send them), to `server`:25."""
    run(["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size), "-f", SENDER, "-t", rcpt,
         "-M", outside.CLIENT_NAME, "-S", "bench", f"{server}:25"])


def deliver_to(run: Callable[[list[str]], object], stored: Callable[[], int], rcpt: str, sessions: int,
               size: int, count: int, server: str, timeout: float = 600.0) -> Run:
    """`server`: outside.SERVER_ADDRESS for the lab (mail from outside.CLIENT, an outside
    server to postscreen and rspamd), 127.0.0.1 for the seed (stock postfix, as it was)."""
    before = stored()
    start = time.monotonic()
    smtp_source(run, sessions, count, size, rcpt, server)
    wait_until(lambda: stored() - before >= count, timeout, 0.01, f"{count} messages to be stored for {rcpt}",
               error=BenchError)
    done = time.monotonic()  # when they were first seen stored
    time.sleep(0.2)  # anything beyond `count` would show now
    got = stored() - before
    if got != count:
        raise BenchError(f"{rcpt}: sent {count} messages, {got} stored")
    return Run(sessions, size, count, done - start)


def lab_stored(lab: Lab, address: str = RECIPIENT) -> Callable[[], int]:
    local, domain = address.split("@")
    base = Path(lab.layout.vmail_dir) / domain / local / "Maildir"

    def count() -> int:
        return sum(len(os.listdir(base / sub)) if (base / sub).is_dir() else 0 for sub in ("new", "cur"))
    return count


# -- the disk's ceiling ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ceiling:
    threads: int
    size: int
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def maildir_ceiling(directory: Path, threads: int, size: int, seconds: float) -> Ceiling:
    """How many messages per second the disk lets anyone store as a Maildir delivery does:
    create a file in tmp/, write the message, fsync it, rename it into new/, fsync new/
    (what makes the rename itself durable), with `threads` writers into one mailbox, for
    `seconds`. No parsing, no index, no queue file: the bound for one stored copy of a
    message, on the filesystem the mail lives on."""
    box = directory / f".bench-ceiling-{os.getpid()}"
    tmp, new = box / "tmp", box / "new"
    for d in (box, tmp, new):
        d.mkdir(mode=0o700)
    data = b"\xa5" * size
    counts = [0] * threads
    stop = threading.Event()

    def writer(i: int) -> None:
        dir_fd = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
        try:
            while not stop.is_set():
                name = f"{i}.{counts[i]}"
                fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp / name, new / name)
                os.fsync(dir_fd)
                counts[i] += 1
        finally:
            os.close(dir_fd)

    pool = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(threads)]
    try:
        start = time.monotonic()
        for t in pool:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in pool:
            t.join(30)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        shutil.rmtree(box, ignore_errors=True)
    return Ceiling(threads, size, sum(counts), elapsed)
