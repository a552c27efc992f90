"""What the benchmarks share: the table they fill, process memory, the machine."""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import subprocess
import threading
from pathlib import Path
from typing import Self

from mailserver.lab import netns

MIB = 1024 * 1024
# Clients and tools the benchmarks run inside a namespace: not part of the server's footprint.
# unbound is the DNS stand-in (bench/outside.py): the host's resolver is in OS_BASELINE_MIB.
CLIENT_COMMANDS = frozenset({"smtp-source", "strace", "ip", "python", "python3", "unbound"})


class BenchError(RuntimeError):
    pass


@dataclasses.dataclass
class Row:
    """One line of the results table: what was measured, the figure, how it was obtained."""

    group: str  # where it goes in the table: one of GROUPS
    measure: str
    result: str
    notes: str = ""


GROUPS = ("delivery", "submission", "imap", "memory", "program")


@dataclasses.dataclass
class Results:
    rows: list[Row] = dataclasses.field(default_factory=list)
    figures: dict[str, object] = dataclasses.field(default_factory=dict)  # raw numbers, for latest.json
    errors: list[str] = dataclasses.field(default_factory=list)

    def add(self, group: str, measure: str, result: str, notes: str = "") -> None:
        assert group in GROUPS, group
        self.rows.append(Row(group, measure, result, notes))
        print(f"bench: {measure}: {result}" + (f" ({notes})" if notes else ""), flush=True)

    def table(self) -> list[Row]:
        """The rows grouped in GROUPS order, in the order they were added within a group."""
        return sorted(self.rows, key=lambda r: GROUPS.index(r.group))


def count_files(directory: Path) -> int:
    try:
        return sum(1 for e in os.scandir(directory) if e.is_file())
    except FileNotFoundError:
        return 0


# -- memory --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Memory:
    rss: int  # bytes, summed over processes (shared pages counted in each)
    pss: int  # bytes, summed (shared pages divided among their users): the fair total
    processes: int
    by_process: dict[str, int] = dataclasses.field(default_factory=dict)  # PSS bytes by process name


def server_pids(ns: str) -> list[int]:
    """The server's processes in a namespace: everything there but our own process and the
    clients the benchmarks start."""
    own = os.getpid()
    out = []
    for pid in netns.pids_in(ns):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if pid != own and comm not in CLIENT_COMMANDS:
            out.append(pid)
    return out


def memory(ns: str) -> Memory:
    rss = pss = n = 0
    by: dict[str, int] = {}
    for pid in server_pids(ns):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            name = _process_name(pid)
        except OSError:
            continue  # exited meanwhile
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in text.splitlines()[1:] if ":" in line}
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
        by[name] = by.get(name, 0) + fields.get("Pss", 0)
        n += 1
    return Memory(rss, pss, n, dict(sorted(by.items(), key=lambda x: -x[1])))


class MemorySampler:
    """Samples a namespace's memory in the background; keeps the peak (by PSS)."""

    def __init__(self, ns: str, interval: float = 0.25) -> None:
        self.ns, self.interval = ns, interval
        self.peak = Memory(0, 0, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            m = memory(self.ns)
            self.samples += 1
            if m.pss > self.peak.pss:
                self.peak = m
            self._stop.wait(self.interval)


# -- CPU time ------------------------------------------------------------------------------


def _process_name(pid: int) -> str:
    """Postfix's and dovecot's LMTP processes are both called lmtp: dovecot's name themselves
    dovecot/<service> in their command line. rspamd's are all called rspamd: their command line
    says "rspamd: <kind> process ...", named here rspamd/main, rspamd/proxy and so on."""
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    if argv0.startswith("dovecot/"):
        return argv0
    m = re.match(r"rspamd: (?:rspamd_)?(\w+) process", argv0)
    return f"rspamd/{m.group(1)}" if m else comm


def cpu_ticks(ns: str) -> dict[int, tuple[str, int]]:
    """User + system CPU time (clock ticks) of every server process in a namespace, by pid."""
    out = {}
    for pid in server_pids(ns):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            out[pid] = (_process_name(pid), int(fields[11]) + int(fields[12]))
        except (OSError, ValueError):
            continue  # exited meanwhile
    return out


def cpu_ms_by_process(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]) -> dict[str, float]:
    """CPU milliseconds spent between two cpu_ticks() samples, by process name. A process that
    exited in between is missing from `after`, so its time is not counted: postfix's and dovecot's
    daemons live for many messages, so that leaves out little."""
    hz = os.sysconf("SC_CLK_TCK")
    spent: dict[str, float] = {}
    for pid, (name, ticks) in after.items():
        spent[name] = spent.get(name, 0.0) + (ticks - before.get(pid, (name, 0))[1]) * 1000 / hz
    return spent


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, object]:
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())

    def version(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "cpu": cpu,
        "postfix": version(["postconf", "-dh", "mail_version"]),
        "dovecot": version(["dovecot", "--version"]),
    }
