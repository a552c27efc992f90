"""What slower synchronous writes do to delivery: the lab's port 25 → LMTP → Maildir path, with
a latency added to every fsync and fdatasync dovecot makes, as the mail store on a network
filesystem (EFS) would add it (docs/scale-out.md).

NFS itself cannot be tried here: this machine's kernel has neither an nfs filesystem nor nfsd,
and no device-mapper (so no dm-delay target either). strace's fault injection delays the calls
instead (`-e inject=fsync,fdatasync:delay_exit=N`), attached to dovecot alone (its master and
every process it forks: LMTP delivery, indexes), so postfix's queue stays on the local disk, as
in the EFS design, where only /var/vmail moves. A second model delays the metadata calls too
(openat, rename, link, unlink), which on NFS are each a round trip to the server. dovecot is
restarted under strace with --seccomp-bpf, so only the traced calls stop it; what tracing costs
by itself is the case with strace and no delay. Two figures per case: the rate at which the
messages were stored, and each LMTP delivery's time from postfix's log (the "d" of delays=):
postfix queues in front of dovecot, so a slower store shows first in the second.

    sudo .venv/bin/python -m bench.fsync_latency            (about five minutes)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import time
from pathlib import Path

from mailserver.core import catalog
from mailserver.core.settings import parse
from mailserver.core.stack import load_stack, random_passwords
from mailserver.lab import netns
from mailserver.lab.server import Lab
from mailserver.waiting import wait_until

from .common import BenchError
from .delivery import LOOPBACK, RECIPIENT, deliver_to, lab_stored, maildir_ceiling

RESULTS = Path(__file__).parent / "results" / "fsync-latency.json"
SYNC = ("fsync", "fdatasync")
METADATA = (*SYNC, "openat", "rename", "link", "unlink")
# Added latency per call, in microseconds: none, EBS-like, EFS Regional's published write latency
# (~2.7 ms, Amazon EFS User Guide, "Performance specifications"), and a slow network filesystem.
DELAYS_US = (0, 1000, 2700, 10000)


@dataclasses.dataclass(frozen=True)
class Case:
    calls: tuple[str, ...] | None  # None: no strace at all
    delay_us: int
    sessions: int
    count: int
    seconds: float
    lmtp: list[float]  # each LMTP delivery's time, sorted (postfix's log, 10 ms resolution)

    @property
    def lmtp_median_ms(self) -> float:
        return 1000 * statistics.median(self.lmtp) if self.lmtp else float("nan")

    @property
    def lmtp_mean_ms(self) -> float:
        return 1000 * statistics.fmean(self.lmtp) if self.lmtp else float("nan")

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def dovecot_tree(lab: Lab) -> list[int]:
    """dovecot's master and every process below it, in the lab's namespace."""
    master = lab.dovecot_pid()
    if master is None:
        raise BenchError("dovecot is not running")
    parents = {}
    for pid in lab.pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        parents[pid] = int(stat[stat.rindex(")") + 2:].split()[1])
    tree = {master}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return sorted(tree)


def _stop_dovecot(lab: Lab) -> None:
    pid = lab.dovecot_pid()
    lab.run(["doveadm", "-c", lab.layout.dovecot_conf, "stop"], check=False)
    if pid is not None:
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, 0.05, "dovecot to stop", error=BenchError)


def _lmtp_ready(lab: Lab) -> bool:
    return lab.dovecot_pid() is not None and (Path(lab.layout.queue_dir) / catalog.LMTP_SOCKET).exists()


def lmtp_seconds(log: str) -> list[float]:
    """postfix's transmission time ("d" of delays=a/b/c/d) of each LMTP delivery in `log`: from
    the connection to dovecot's answer, its whole delivery (Maildir file, fsyncs, indexes) included."""
    return [float(m.group(1)) for m in re.finditer(r"postfix/lmtp\[\d+\]: .* delays=[\d.]+/[\d.]+/[\d.]+/([\d.]+), "
                                                   r".*status=sent", log)]


def measure(lab: Lab, calls: tuple[str, ...] | None, delay_us: int, sessions: int, count: int) -> Case:
    """Deliver `count` 1 KiB messages over `sessions` connections with dovecot's `calls`
    delayed by `delay_us` (None: dovecot as the lab runs it). dovecot is started under strace
    (--seccomp-bpf: only the traced calls stop the process, so the rest runs at full speed)."""
    tracer = None
    if calls is not None:
        _stop_dovecot(lab)
        argv = ["strace", "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=" + ",".join(calls)]
        if delay_us:
            argv += ["-e", f"inject={','.join(calls)}:delay_exit={delay_us}"]
        argv += ["dovecot", "-F", "-c", lab.layout.dovecot_conf]
        tracer = subprocess.Popen(netns.cmd(lab.ns, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _lmtp_ready(lab), 30, 0.05, "dovecot under strace", error=BenchError)
    log_before = len(lab.log())
    try:
        run = deliver_to(lab.run, lab_stored(lab), RECIPIENT, sessions, 1024, count, LOOPBACK)
        wait_until(lambda: not lab.queue_ids(), 120, 0.1, "the queue to empty", error=BenchError)
    finally:
        if tracer is not None:
            _stop_dovecot(lab)
            try:
                tracer.wait(30)
            except subprocess.TimeoutExpired:
                tracer.kill()
                tracer.wait(10)
            lab.start_dovecot()
            wait_until(lambda: _lmtp_ready(lab), 30, 0.05, "dovecot back", error=BenchError)
    lmtp = sorted(lmtp_seconds(lab.log()[log_before:]))
    return Case(calls, delay_us, sessions, count, run.seconds, lmtp)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fsync_latency", description=__doc__)
    ap.add_argument("--count", type=int, default=200, help="messages per case (default 200)")
    args = ap.parse_args(argv)
    raw = load_stack("dev")
    settings, secrets = parse({**raw, "mailboxPasswords": random_passwords(raw)})
    cases: list[Case] = []
    with Lab(settings, secrets) as lab:
        # The local disk's bound for one stored copy, as a Maildir delivery stores it (one writer).
        disk_rate = maildir_ceiling(Path(lab.layout.vmail_dir), 1, 1024, 3.0).rate
        deliver_to(lab.run, lab_stored(lab), RECIPIENT, 5, 1024, 50, LOOPBACK)  # warm up (postscreen cache, indexes)
        for sessions in (1, 5):
            plan: list[tuple[tuple[str, ...] | None, int]] = [(None, 0)]
            plan += [(SYNC, d) for d in DELAYS_US] + [(METADATA, 0), (METADATA, 2700)]
            for calls, delay in plan:
                case = measure(lab, calls, delay, sessions, args.count)
                cases.append(case)
                what = "untraced" if calls is None else f"{'+'.join(calls)} +{delay / 1000:g} ms"
                print(f"{sessions} session(s), {what}: {case.rate:.1f} msg/s ({case.count} in {case.seconds:.2f} s); "
                      f"LMTP delivery mean {case.lmtp_mean_ms:.1f} ms, median {case.lmtp_median_ms:.0f} ms "
                      f"({len(case.lmtp)} deliveries)", flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "local_maildir_ceiling_per_second": round(disk_rate, 1),
        "cases": [{"calls": list(c.calls) if c.calls else None, "delay_ms": c.delay_us / 1000, "sessions": c.sessions,
                   "messages": c.count, "seconds": round(c.seconds, 3), "msg_per_s": round(c.rate, 1),
                   "lmtp_mean_ms": round(c.lmtp_mean_ms, 1), "lmtp_median_ms": round(c.lmtp_median_ms, 1)}
                  for c in cases],
    }, indent=2) + "\n")
    print(f"local disk: {disk_rate:.0f} Maildir stores/s (one writer); written {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
