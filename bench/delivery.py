"""Delivery throughput: port 25 to a stored Maildir file, with postfix's smtp-source as the
sending MTA(s), on the lab and on the seed-style baseline; and the disk's synchronous-write
ceiling on the same filesystem."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mailserver.lab.server import Lab
from mailserver.waiting import wait_until

from .common import BenchError, server_pids

SENDER = "bench@outside.example"
RECIPIENT = "alice@example.com"
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "syncfs")


@dataclasses.dataclass(frozen=True)
class Run:
    sessions: int
    size: int  # payload bytes per message
    count: int
    seconds: float  # from smtp-source's start to the last message stored

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def smtp_source(run: Callable[[list[str]], object], sessions: int, count: int, size: int, rcpt: str) -> None:
    """One smtp-source run: `count` messages of `size` bytes, `sessions` connections in
    parallel, one message per connection (as separate MTAs would send them)."""
    run(["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size), "-f", SENDER, "-t", rcpt,
         "-M", "mx.outside.example", "-S", "bench", "127.0.0.1:25"])


def deliver_to(run: Callable[[list[str]], object], stored: Callable[[], int], rcpt: str, sessions: int,
               size: int, count: int, timeout: float = 600.0) -> Run:
    before = stored()
    start = time.monotonic()
    smtp_source(run, sessions, count, size, rcpt)
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


def fsync_rate(directory: Path, seconds: float) -> tuple[float, int]:
    """Synchronous writes per second on `directory`'s filesystem: 4 KiB appended then fsync,
    in one thread, for `seconds` (bounded). Returns (rate, count)."""
    path = directory / f".bench-fsync-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"\xa5" * 4096
    n = 0
    try:
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end and n < 1_000_000:
            os.write(fd, block)
            os.fsync(fd)
            n += 1
        elapsed = time.monotonic() - start
    finally:
        os.close(fd)
        path.unlink()
    return n / elapsed, n


def fsyncs_per_message(lab: Lab, count: int) -> tuple[float, dict[str, int]]:
    """Count the sync system calls every server process makes while `count` messages are
    delivered (strace -f -c, attached to all of them; children they fork are followed).
    Returns (calls per message, calls by name)."""
    if shutil.which("strace") is None:
        # Debian's strace; not in catalog.DEBIAN_PACKAGES, so a fresh machine needs
        # `apt-get install strace` for this figure (the other benchmarks run without it).
        raise BenchError("strace is not installed (apt-get install strace): fsyncs per message not measured")
    pids = server_pids(lab.ns)
    out = Path(lab.root) / "strace.txt"
    argv = ["strace", "-f", "-c", "-e", "trace=" + ",".join(SYNC_CALLS), "-o", str(out)]
    for pid in pids:
        argv += ["-p", str(pid)]
    with open(Path(lab.root) / "strace.err", "w+") as err:
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        try:
            # strace says "Process N attached" once per thread it attaches to.
            wait_until(lambda: _attached(err) >= len(pids), 30, 0.05, "strace to attach", error=BenchError)
            deliver_to(lab.run, lab_stored(lab), RECIPIENT, 5, 1024, count)
            wait_until(lambda: not lab.queue_ids(), 60, 0.1, "the queue to empty", error=BenchError)
            time.sleep(0.5)
        finally:
            tracer.send_signal(signal.SIGINT)
            try:
                tracer.wait(30)
            except subprocess.TimeoutExpired:
                tracer.kill()
                tracer.wait(10)
    calls = _strace_calls(out.read_text())
    out.unlink()
    return sum(calls.values()) / count, calls


def _attached(err: IO[str]) -> int:
    err.seek(0)
    return len(re.findall(r"Process \d+ attached", err.read()))


def _strace_calls(summary: str) -> dict[str, int]:
    """The 'calls' column of strace -c's table, for the sync calls."""
    calls: dict[str, int] = {}
    for line in summary.splitlines():
        parts = line.split()
        if parts and parts[-1] in SYNC_CALLS and len(parts) >= 5:
            calls[parts[-1]] = int(parts[3])
    return calls
