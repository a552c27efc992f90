"""python -m bench [--quick]: run every benchmark once and write bench/results/latest.json and
bench/results/latest.md (the table, also printed). Needs root, like the lab.

Every figure comes from this one run, and every ratio is computed from figures of this run:
the seed baseline and the disk ceiling are measured on the same machine, in the same
invocation, right after (or before) our own figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailserver.core.settings import ROOT, parse, read_stack_file
from mailserver.lab.server import Lab

from . import delivery, outside, program, sessions
from .common import MIB, BenchError, MemorySampler, Results, cpu_ms_by_process, cpu_ticks, machine, memory
from .seed import Seed

RESULTS = Path(__file__).resolve().parent / "results"

ALICE, BOB = "alice@example.com", "bob@example.net"
IMAP_USER = "imapbench@example.com"
PASSWORDS = {
    ALICE: "bench alice long password",
    BOB: "bench bob long password",
    IMAP_USER: "bench imap long password",
}

# EC2 on-demand prices, Linux, us-east-1, USD per hour: AWS's published list prices for the
# t4g family (unchanged since its launch in 2020), assumed still current on ASSUMED_ON; not
# fetched (this machine has no network). A month is 730 hours.
ASSUMED_ON = "2026-11-27"
INSTANCES: tuple[tuple[str, float, float], ...] = (
    ("t4g.nano", 0.5, 0.0042),
    ("t4g.micro", 1.0, 0.0084),
    ("t4g.small", 2.0, 0.0168),
)
HOURS_PER_MONTH = 730
# Memory the OS itself needs on the instance (kernel, systemd, journald, sshd, chronyd, unbound,
# cloud-init's leftovers), not measured here: an assumption, as is the headroom rule that
# the server may use at most HEADROOM of the instance's memory including that baseline.
OS_BASELINE_MIB = 350
HEADROOM = 0.75


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much each benchmark does: --quick for a smoke run, the default for the README."""

    small: int = 600  # messages per delivery run, 4 KiB
    large: int = 300  # messages per delivery run, 100 KiB
    sessions: tuple[int, ...] = (1, 10, 20)
    # Each delivery row is measured `pairs` times as ours-seed-seed-ours...: the two run in the
    # same minutes, so a busy neighbour on the machine slows both sides of a ratio.
    pairs: int = 2
    ceiling_seconds: float = 2.0
    port_messages: int = 400  # the 25 and 587 comparison, 4 KiB, one message per session
    port_threads: int = 10
    submission_sessions: int = 200
    submission_messages: int = 400
    threads: int = 4
    imap_messages: int = 10_000
    imap_logins: int = 200
    mailbox_counts: tuple[int, ...] = (10, 100, 1000, 10_000)


QUICK = Plan(small=150, large=50, pairs=1, ceiling_seconds=1.0, port_messages=100, submission_sessions=40,
             submission_messages=40, imap_messages=2_000, imap_logins=40)
SIZES = ((4 * 1024, "4 KiB"), (100 * 1024, "100 KiB"))
SECTIONS = ("program", "delivery", "ports", "submission", "imap")


def bench_settings() -> tuple[Any, Any]:
    """The dev stack, plus a mailbox for the IMAP benchmark, with known passwords."""
    raw = read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["mailboxes"] = [*raw["mailboxes"], IMAP_USER]
    raw["mailboxPasswords"] = [f"{m}:{p}" for m, p in PASSWORDS.items()]
    # The submission benchmark logs in hundreds of times a minute from one address, which
    # the AUTH rate limit (a brute-force defence) would refuse: measure throughput without it.
    raw["smtpdAuthRateLimit"] = 0
    return parse(raw)


def section(results: Results, name: str, fn: Callable[[], None]) -> None:
    """Run one benchmark; a failure is recorded and the others still run."""
    print(f"bench: -- {name}", flush=True)
    start = time.monotonic()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - reported in the results and the exit code
        traceback.print_exc()
        results.errors.append(f"{name}: {type(e).__name__}: {e}")
    print(f"bench: -- {name} done in {time.monotonic() - start:.1f}s", flush=True)


def mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


def program_cost(plan: Plan, results: Results) -> None:
    f = results.figures
    program.evaluate(plan.mailbox_counts[0])  # warm-up, not reported: imports, gRPC, first render
    counts = {}
    for n in plan.mailbox_counts:
        seconds, types = program.evaluate(n)
        counts[n] = sum(types.values())
        f[f"program_{n}_mailboxes"] = {"seconds": round(seconds, 3), "resources": counts[n],
                                       "by_type": dict(sorted(types.items()))}
        results.add("program", f"Pulumi program under mocks, {n:,} mailboxes", f"{seconds:.2f} s",
                    f"{counts[n]} resources registered")
    constant = len(set(counts.values())) == 1
    f["program_resources_constant"] = constant
    results.add("program", "Resources as mailboxes grow", "constant" if constant else "GROW",
                " / ".join(f"{n:,}: {c}" for n, c in counts.items()))
    if not constant:
        raise BenchError(f"the resource count grows with the mailboxes: {counts}")


@dataclasses.dataclass
class Row:
    """One delivery row (size, sessions): every run of ours and of the seed."""

    size: int
    sessions: int
    ours: list[delivery.Run] = dataclasses.field(default_factory=list)
    seed: list[delivery.Run] = dataclasses.field(default_factory=list)
    # The disk's ceiling for the row's size and concurrency, measured after each pair, in the
    # same minute as the deliveries it bounds (a neighbour's I/O moves it from run to run).
    ceiling: list[delivery.Ceiling] = dataclasses.field(default_factory=list)
    # CPU milliseconds per delivered message, by process, summed over the row's runs.
    ours_cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    seed_cpu: dict[str, float] = dataclasses.field(default_factory=dict)

    @staticmethod
    def rate(runs: list[delivery.Run]) -> float:
        return sum(r.count for r in runs) / sum(r.seconds for r in runs)

    def ceiling_rate(self) -> float:
        return sum(c.count for c in self.ceiling) / sum(c.seconds for c in self.ceiling)

    def ratios(self) -> list[float]:
        """ours/seed of each pair, in the order measured."""
        return [o.rate / s.rate for o, s in zip(self.ours, self.seed, strict=True)]


def delivery_pairs(lab: Lab, seed: Seed, plan: Plan, rows: list[Row]) -> None:
    ours_stored = delivery.lab_stored(lab)
    for size, _ in SIZES:
        count = plan.small if size <= 4096 else plan.large
        for n in plan.sessions:
            row = Row(size, n)
            rows.append(row)
            for i in range(plan.pairs):
                order = ("ours", "seed") if i % 2 == 0 else ("seed", "ours")
                for who in order:
                    ns = lab.ns if who == "ours" else seed.ns
                    before = cpu_ticks(ns)
                    if who == "ours":
                        r = delivery.deliver_to(lab.run, ours_stored, delivery.RECIPIENT, n, size, count,
                                                outside.SERVER_ADDRESS)
                        row.ours.append(r)
                    else:
                        r = delivery.deliver_to(seed.run, seed.delivered, seed.address, n, size, count,
                                                delivery.LOOPBACK)
                        row.seed.append(r)
                    cpu = row.ours_cpu if who == "ours" else row.seed_cpu
                    for name, ms in cpu_ms_by_process(before, cpu_ticks(ns)).items():
                        cpu[name] = cpu.get(name, 0.0) + ms / (count * plan.pairs)
                    print(f"bench: {who}: {count} x {size} B, {n} sessions: {r.rate:.1f} msg/s", flush=True)
                c = delivery.maildir_ceiling(Path(lab.layout.vmail_dir).parent, n, size, plan.ceiling_seconds)
                row.ceiling.append(c)
                print(f"bench: ceiling: {size} B, {n} threads: {c.rate:.0f} msg/s", flush=True)
            lab.wait_queue_empty(60)


def lab_delivery(lab: Lab, plan: Plan, results: Results, rows: list[Row]) -> None:
    with Seed() as seed, MemorySampler(lab.ns) as sampler:
        delivery_pairs(lab, seed, plan, rows)
    results.figures["memory_delivery_peak"] = dataclasses.asdict(sampler.peak)
    results.figures["delivery"] = [
        {"size": r.size, "sessions": r.sessions, "ours": [round(x.rate, 2) for x in r.ours],
         "seed": [round(x.rate, 2) for x in r.seed], "ours_rate": round(r.rate(r.ours), 2),
         "seed_rate": round(r.rate(r.seed), 2), "ratios": [round(x, 3) for x in r.ratios()],
         "ceiling": [round(c.rate, 1) for c in r.ceiling], "ceiling_rate": round(r.ceiling_rate(), 1),
         "ours_cpu_ms_per_message": {k: round(v, 3) for k, v in sorted(r.ours_cpu.items(), key=lambda x: -x[1])},
         "seed_cpu_ms_per_message": {k: round(v, 3) for k, v in sorted(r.seed_cpu.items(), key=lambda x: -x[1])}}
        for r in rows]


def ports(lab: Lab, plan: Plan, results: Results) -> None:
    """Port 25 against 587 (STARTTLS + AUTH), the same client, messages and load, in one run."""
    bob_stored = delivery.lab_stored(lab, BOB)
    size, n, threads = 4096, plan.port_messages, plan.port_threads
    cpu: dict[int, dict[str, float]] = {}

    def measured(port: int, login: tuple[str, str] | None = None) -> sessions.Rate:
        before = cpu_ticks(lab.ns)
        rate = sessions.delivered_messages(lab, port, BOB, threads, n, size, bob_stored, login=login)
        cpu[port] = {k: v / n for k, v in cpu_ms_by_process(before, cpu_ticks(lab.ns)).items()}
        return rate

    r25 = measured(25)
    r587 = measured(587, (ALICE, PASSWORDS[ALICE]))
    ratio = r587.per_second / r25.per_second
    results.figures["ports"] = {"messages": n, "threads": threads, "size": size,
                                "port_25_per_s": round(r25.per_second, 1),
                                "port_587_per_s": round(r587.per_second, 1), "ratio_587_25": round(ratio, 3),
                                "cpu_ms_per_message": {port: {k: round(v, 3) for k, v in c.items()}
                                                       for port, c in cpu.items()}}
    how = (f"{n} messages of 4 KiB to a mailbox, {threads} client threads, one message per session, "
           "timed to the last one stored")

    def top(c: dict[str, float]) -> str:
        return f"server CPU {sum(c.values()):.1f} ms/msg (" + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(c.items(), key=lambda x: -x[1]) if v >= 0.2) + ")"
    results.add("submission", "Port 25 (outside MTA, through postscreen)", f"{r25.per_second:.0f} msg/s",
                f"{how}; {top(cpu[25])}")
    results.add("submission", "Port 587 (STARTTLS + AUTH PLAIN, DKIM-signed)", f"{r587.per_second:.0f} msg/s",
                f"{how}; **587/25 {ratio:.2f}**; {top(cpu[587])}")


def submission(lab: Lab, plan: Plan, results: Results) -> None:
    bob_stored = delivery.lab_stored(lab, BOB)
    for port, how in ((587, "STARTTLS"), (465, "implicit TLS")):
        s = sessions.submission_sessions(lab, port, ALICE, PASSWORDS[ALICE], plan.threads, plan.submission_sessions)
        m = sessions.submission_messages(lab, port, ALICE, PASSWORDS[ALICE], BOB, plan.threads,
                                         plan.submission_messages, bob_stored)
        results.figures[f"submission_{port}"] = {
            "sessions": s.count, "sessions_per_s": round(s.per_second, 1),
            "messages": m.count, "messages_per_s": round(m.per_second, 1)}
        results.add("submission", f"Submission {port} ({how} + AUTH PLAIN)",
                    f"{s.per_second:.0f} sessions/s; {m.per_second:.0f} msg/s",
                    f"{plan.threads} client threads; {s.count} sessions (connect, TLS, AUTH, QUIT); "
                    f"{m.count} messages of 2 KiB, one session per thread, each then found stored")


def imap(lab: Lab, plan: Plan, results: Results) -> None:
    n = plan.imap_messages
    fill = sessions.fill_maildir(lab, IMAP_USER, n)
    logins = sessions.imap_logins(lab, IMAP_USER, PASSWORDS[IMAP_USER], plan.threads, plan.imap_logins)
    first_open, fetch, reopen = sessions.imap_open_and_fetch(lab, IMAP_USER, PASSWORDS[IMAP_USER], n)
    results.figures["imap"] = {
        "messages": n, "fill_seconds": round(fill, 2), "logins": logins.count,
        "logins_per_s": round(logins.per_second, 1), "first_select_seconds": round(first_open, 2),
        "fetch_per_s": round(fetch.per_second, 1), "fetch_seconds": round(fetch.seconds, 2),
        "reselect_per_s": round(reopen.per_second, 1)}
    results.add("imap", "IMAPS logins (993)", f"{logins.per_second:.0f} logins/s",
                f"{plan.threads} client threads, {logins.count} logins (connect, TLS, LOGIN, LOGOUT)")
    results.add("imap", f"IMAP first SELECT of {n:,} new messages", f"{first_open:.2f} s",
                "dovecot moves them from new/ to cur/ and indexes them; the mailbox was filled by writing "
                f"Maildir files directly as vmail ({fill:.1f} s)")
    results.add("imap", f"IMAP fetch of {n:,} messages", f"{fetch.per_second:.0f} msg/s",
                "full text (BODY.PEEK[]) of ~2 KiB messages over one IMAPS connection, in batches of 1,000; "
                f"SELECT of the indexed mailbox: {reopen.per_second:.0f}/s")


def run_all(plan: Plan, results: Results, only: tuple[str, ...] = SECTIONS) -> None:
    rows: list[Row] = []
    if "program" in only:
        section(results, "program", lambda: program_cost(plan, results))

    def lab_benchmarks() -> None:
        settings, secrets = bench_settings()
        # Port 25 mail comes from an outside server's address, checked by rspamd against DNS
        # (bench/outside.py); postscreen's first look at it is made before any timing.
        with Lab(settings, secrets) as lab, outside.Outside(lab):
            # The VM runs fail2ban beside the mail daemons (a Python process, the largest
            # resident after dovecot's): its memory belongs in the instance sizing.
            lab.start_fail2ban()
            time.sleep(3)  # let start-up settle
            results.figures["memory_idle"] = dataclasses.asdict(memory(lab.ns))
            if "delivery" in only:
                section(results, "delivery (ours and the seed, in pairs)",
                        lambda: lab_delivery(lab, plan, results, rows))
            if "ports" in only:
                section(results, "port 25 and 587", lambda: ports(lab, plan, results))
            if "submission" in only:
                section(results, "submission", lambda: submission(lab, plan, results))
            if "imap" in only:
                section(results, "imap", lambda: imap(lab, plan, results))

    if set(only) - {"program"}:
        section(results, "lab", lab_benchmarks)
    summarize(plan, results, rows)


def delivery_rows(plan: Plan, results: Results, rows: list[Row]) -> None:
    """Per row: ours, the seed and the ceiling, with the ratios; the disk's ceilings; what the
    busiest row's message cost in CPU, process by process."""
    f = results.figures
    labels = dict(SIZES)
    for row in rows:
        ours, seed = row.rate(row.ours), row.rate(row.seed)
        ratios = row.ratios()
        key = f"{row.size}_{row.sessions}"
        f[f"ratio_seed_{key}"] = round(ours / seed, 3)
        spread = f" (pairs {', '.join(f'{x:.2f}' for x in ratios)})" if len(ratios) > 1 else ""
        notes = [(f"{len(row.ours)} × {row.ours[0].count} messages of {labels[row.size]}, one per connection, "
                  "each run timed to its last message counted in the Maildir"),
                 f"seed {seed:.0f} msg/s", f"**ours/seed {ours / seed:.2f}**{spread}"]
        if row.ceiling:
            ceiling = row.ceiling_rate()
            f[f"ratio_ceiling_{key}"] = round(ours / ceiling, 3)
            notes.append(f"ours/ceiling {ours / ceiling:.2f}, seed/ceiling {seed / ceiling:.2f}")
        results.add("delivery", f"Delivery 25 → Maildir, {labels[row.size]}, "
                    f"{row.sessions} session{'s' if row.sessions > 1 else ''}", f"{ours:.0f} msg/s", "; ".join(notes))
    for row in rows:
        n = row.sessions
        results.add("delivery", f"Disk ceiling, {labels[row.size]}, {n} writer{'s' if n > 1 else ''}",
                    f"{row.ceiling_rate():.0f} msg/s",
                    "create in tmp/, write, fsync, rename into new/, fsync new/, on the mail filesystem, "
                    f"{plan.ceiling_seconds:g} s after each pair of that row: "
                    + ", ".join(f"{c.rate:.0f}" for c in row.ceiling))

    def top(cpu: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda x: -x[1]) if v >= 0.1)
    for row in rows:
        if row.size == SIZES[0][0] and row.sessions == max(plan.sessions):
            results.add("delivery", f"CPU per delivered message, {labels[row.size]}, {row.sessions} sessions",
                        f"ours {sum(row.ours_cpu.values()):.1f} ms, seed {sum(row.seed_cpu.values()):.1f} ms",
                        "user + system time of the server's processes during the row's runs, ÷ messages "
                        f"(ms): ours {top(row.ours_cpu)}; seed {top(row.seed_cpu)}")


def summarize(plan: Plan, results: Results, rows: list[Row]) -> None:
    f = results.figures
    delivery_rows(plan, results, rows)
    for key, label in (("memory_idle", "Memory, idle (fresh start)"),
                       ("memory_delivery_peak", "Memory, peak under delivery load")):
        m = f.get(key)
        if isinstance(m, dict):
            by = ", ".join(f"{k} {v / MIB:.1f}" for k, v in m.get("by_process", {}).items() if v >= MIB / 2)
            results.add("memory", label, f"{mib(m['pss'])} PSS",
                        f"{mib(m['rss'])} RSS summed; {m['processes']} processes in "
                        f"the lab namespace (postfix, dovecot, rspamd, redis, fail2ban); PSS by process, MiB: {by}")
    peak = f.get("memory_delivery_peak")
    if isinstance(peak, dict):
        need = OS_BASELINE_MIB + peak["pss"] / MIB
        fits = [(name, gib, price) for name, gib, price in INSTANCES if need <= gib * 1024 * HEADROOM]
        prices = ", ".join(f"{name} ${price}/h" for name, _, price in INSTANCES)
        basis = (f"needs {need:.0f} MiB = peak PSS + {OS_BASELINE_MIB} MiB assumed for the OS, within "
                 f"{HEADROOM:.0%} of the instance's memory; on-demand Linux us-east-1 prices assumed as of "
                 f"{ASSUMED_ON}: {prices}; {HOURS_PER_MONTH} h/month")
        if fits:
            name, gib, price = fits[0]
            f["instance"] = {"type": name, "memory_gib": gib, "usd_per_hour": price,
                             "usd_per_month": round(price * HOURS_PER_MONTH, 2), "need_mib": round(need)}
            results.add("memory", "Smallest instance with headroom",
                        f"{name} ({gib:g} GiB), ${price * HOURS_PER_MONTH:.2f}/month", basis)
        else:
            results.add("memory", "Smallest instance with headroom", "none of t4g.nano/micro/small", basis)


def markdown(quick: bool, info: dict[str, object], results: Results, when: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        (f"`python -m bench{' --quick' if quick else ''}` on {when}: {info['nproc']} cores, "
         f"{info['memory_gib']} GiB, Linux {info['kernel']} ({info['cpu']}); postfix {info['postfix']}, "
         f"dovecot {info['dovecot']}. One run; every ratio is between figures of that run."),
        "",
        "| Measure | Result | How |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {r.measure} | {r.result} | {r.notes} |" for r in results.table()]
    if results.errors:
        lines += ["", "Not measured in this run:", ""] + [f"- {e}" for e in results.errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller counts: a smoke run of every benchmark")
    ap.add_argument("--only", action="append", choices=SECTIONS,
                    help="run only this benchmark (may be repeated); results go to partial.{json,md}")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (the lab and the seed baseline need network namespaces)", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else Plan()
    info = machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = Results()
    start = time.monotonic()
    run_all(plan, results, tuple(args.only or SECTIONS))
    total = time.monotonic() - start
    RESULTS.mkdir(exist_ok=True)
    doc = {"date": when, "mode": "quick" if args.quick else "full", "seconds": round(total, 1), "machine": info,
           "plan": dataclasses.asdict(plan), "figures": results.figures,
           "table": [dataclasses.asdict(r) for r in results.table()], "errors": results.errors}
    # A partial run never replaces the full results the documents quote.
    name = "partial" if args.only else "latest"
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md = markdown(args.quick, info, results, when)
    (RESULTS / f"{name}.md").write_text(md)
    print()
    print(md)
    print(f"bench: {total:.0f}s; wrote {RESULTS / name}.json and {RESULTS / name}.md")
    return 1 if results.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
