"""`python -m mailserver selfcheck`: the doctor, run by the host on itself once a day (a systemd
timer, templates/host/selfcheck.*.j2), mailing the postmaster when the result changes.

It is the doctor, not a copy: the same Target, the same `run` and the same checks (CHECKS),
with the runner local and the checks limited to SELF_CHECKS, what a host can judge of itself:
the inside checks (the queue checks among them), its DNS through its own resolver, its public
ports through its Elastic IP, the certificate's lifetime, the blocklists, and its DKIM keys
against DNS (the keys rspamd signs with, read here, not the stack's outputs).

What it remembers between runs (the layout's selfcheck_state, JSON): what the postmaster was
last told (each failing result, by check and subject, with its status), when, and whether the
last run finished. It mails when the results differ from what was last told, when an error has
lasted REMINDER_DAYS since the last mail, and when the previous run did not finish (a crash, a
kill, a timeout): that run's failure is told in this run's mail. A run that cannot mail keeps
the old "told" state, so the next run tries again. Unchanged results send nothing.

The host runs this with its own python3 (3.9 on CentOS Stream 9) and the distribution's
python3-dns, python3-cryptography, python3-pyyaml and python3-jinja2 (catalog.SELFCHECK_PACKAGES):
render.shipped_code() ships exactly the modules it imports.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import email.message
import email.utils
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mailserver.core import catalog, records
from mailserver.core.settings import Settings
from mailserver.core.settings_checks import Alias
from mailserver.doctor.checks import CHECK_IDS, CHECKS
from mailserver.doctor.cli import run
from mailserver.doctor.dnscheck import lookup, make_resolver
from mailserver.doctor.host import LocalRunner, dkim_key_path
from mailserver.doctor.target import Target
from mailserver.doctor.verdicts import Result, Status

# Left out: the web checks (the Worker lives in Cloudflare, not on the host) and the snapshots
# (the host's role may read its SSH host key and nothing else: no ec2:DescribeSnapshots).
SELF_CHECKS = frozenset(c.id for c in CHECKS if c.id not in ("web-mta-sts", "web-autoconfig", "snapshots"))
REMINDER_DAYS = 7  # an error still there this long after the last mail is told again
# The EC2 metadata service (IMDSv2): the instance's public address is its Elastic IP.
IMDS = "http://169.254.169.254/latest"
PROBLEMS: tuple[Status, ...] = ("error", "warning", "unknown")


# --- the configuration the bundle ships (render.selfcheck_config writes it) -----------------


@dataclasses.dataclass(frozen=True)
class Config:
    settings: Settings
    layout: catalog.Layout
    jails: tuple[str, ...]  # the fail2ban jails the bundle enables


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def read_config(text: str) -> Config:
    data = json.loads(text)
    fields = {k: _tuples(v) for k, v in data["settings"].items()}
    fields["aliases"] = tuple(Alias(a["source"], tuple(a["targets"])) for a in data["settings"]["aliases"])
    return Config(Settings(**fields), catalog.Layout(**data["layout"]), tuple(data["jails"]))


# --- what it checks ------------------------------------------------------------------------


def dkim_expected(s: Settings, layout: catalog.Layout) -> dict[str, str | None]:
    """Each DKIM name's TXT content, from the private key rspamd signs with (the file
    set-dkim-keys.sh writes); None (checked for presence only) where the key is not there yet."""
    from cryptography.hazmat.primitives import serialization

    out: dict[str, str | None] = {}
    for d in s.domains:
        path = Path(dkim_key_path(layout, d, s.dkim_selector))
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError):
            out[records.dkim_name(s.dkim_selector, d)] = None
            continue
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        out[records.dkim_name(s.dkim_selector, d)] = records.txt(records.dkim(pem))
    for old in s.dkim_retired_selectors:
        out.update({records.dkim_name(old, d): None for d in s.domains})
    return out


def public_ip(timeout: float) -> str | None:
    """The instance's public IPv4 address from IMDSv2 (its Elastic IP); None off EC2."""
    try:
        req = urllib.request.Request(f"{IMDS}/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            token = resp.read().decode()
        req = urllib.request.Request(f"{IMDS}/meta-data/public-ipv4", headers={"X-aws-ec2-metadata-token": token})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return str(resp.read().decode().strip()) or None
    except OSError:
        return None


def build_target(c: Config, args: argparse.Namespace) -> Target:
    s, layout = c.settings, c.layout
    ip = args.ip or (public_ip(2.0) if layout.vm else None)
    if not ip:
        # Off EC2 or without IMDS: the A record (dns-a then cannot tell a wrong one).
        found, _ = lookup(make_resolver(args.resolver, args.timeout), s.hostname, "A")
        if not found:
            raise RuntimeError(f"no public IP: the metadata service did not answer and {s.hostname} has no A record")
        ip = found[0]
    return Target(settings=s, ip=ip, dkim=dkim_expected(s, layout), resolver=args.resolver,
                  blocklist_resolver=args.blocklist_resolver, cafile=args.cafile, source=args.source,
                  timeout=args.timeout, runner=LocalRunner(layout, where="local" if layout.vm else "lab"),
                  checks=SELF_CHECKS, jails=c.jails)


# --- what changed since the postmaster was last told ---------------------------------------


def problems(results: Sequence[Result]) -> dict[str, Status]:
    """The failing results, "check|subject" -> status. Skipped ones are not problems: the lab
    skips what it cannot answer, every day alike."""
    return {f"{r.check}|{r.subject}": r.status for r in results if r.status in PROBLEMS}


@dataclasses.dataclass
class Decision:
    send: bool
    why: str  # "changed", "reminder", "previous run failed", "" when nothing is sent
    new: dict[str, Status]  # now failing, or failing otherwise than told
    cleared: dict[str, Status]  # told as failing, now fine (with the status told)


def decide(told: Mapping[str, Status], now_failing: Mapping[str, Status], told_at: dt.datetime | None,
           now: dt.datetime, failure: str | None) -> Decision:
    new = {k: v for k, v in now_failing.items() if told.get(k) != v}
    cleared = {k: v for k, v in told.items() if k not in now_failing}
    if failure:
        return Decision(True, "the previous run failed", new, cleared)
    if new or cleared:
        return Decision(True, "changed", new, cleared)
    errors = any(v == "error" for v in now_failing.values())
    if errors and told_at is not None and now - told_at >= dt.timedelta(days=REMINDER_DAYS):
        return Decision(True, "reminder", new, cleared)
    return Decision(False, "", new, cleared)


def _row(cols: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()


def compose(s: Settings, results: Sequence[Result], d: Decision, now: dt.datetime, failure: str | None,
            seconds: float) -> email.message.EmailMessage:
    """The plain-text mail: a summary table of every failing result, then the fix of each."""
    failing = [r for r in results if r.status in PROBLEMS]
    counts = {st: sum(1 for r in failing if r.status == st) for st in PROBLEMS}
    if failing:
        state = ", ".join(f"{n} {st}{'s' if n > 1 and st != 'unknown' else ''}" for st, n in counts.items() if n)
        subject = f"[{s.hostname}] self-check: {state}"
    else:
        subject = f"[{s.hostname}] self-check: back to normal"
    if d.why == "reminder":
        subject += f" (still, after {REMINDER_DAYS} days)"
    lines = [f"Self-check of {s.hostname}, {now:%Y-%m-%d %H:%M} UTC ({len(results)} results in {seconds:.0f} s).", ""]
    if failure:
        lines += ["The previous self-check failed:", f"  {failure}",
                  "(journalctl -u mailserver-selfcheck.service shows its output.)", ""]
    if failing:
        rows = [(r.status, r.check, r.subject, r.found[:70], "new" if f"{r.check}|{r.subject}" in d.new else "")
                for r in failing]
        head = ("status", "check", "subject", "found", "")
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(5)]
        lines += [_row(head, widths), _row(["-" * w for w in widths[:4]] + [""], widths)]
        lines += [_row(row, widths) for row in rows]
        lines += ["", "What to do:"]
        for r in failing:
            lines.append(f"- {r.check} ({r.subject}): expected {r.expected}.")
            lines.append(f"  Fix: {r.fix or CHECK_IDS[r.check].fix}")
        lines.append("")
    else:
        lines += ["Every check is ok again.", ""]
    if d.cleared:
        lines.append("Back to normal since the last mail:")
        lines += [f"- {key.replace('|', ' (', 1)}) was {status}" for key, status in sorted(d.cleared.items())]
        lines.append("")
    lines += [f"This mail comes when the result changes, and every {REMINDER_DAYS} days while an error lasts.",
              "The whole table: python3 -m mailserver doctor --help on your machine, or the daily run's",
              "output in journalctl -u mailserver-selfcheck.service on the host."]
    return _message(s, subject, lines, now)


def failure_mail(s: Settings, why: str, before: str, now: dt.datetime) -> email.message.EmailMessage:
    """Two runs in a row failed: the next one may fail too, and never tell."""
    lines = [f"The self-check of {s.hostname} failed twice in a row, so nothing was checked.", "",
             f"Now ({now:%Y-%m-%d %H:%M} UTC): {why}", f"Before: {before}", "",
             "journalctl -u mailserver-selfcheck.service on the host shows the traceback. pulumi up re-installs",
             "the self-check and the packages it needs (apply.sh)."]
    return _message(s, f"[{s.hostname}] self-check: cannot run", lines, now)


def _message(s: Settings, subject: str, lines: Sequence[str], now: dt.datetime) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = f"Mail server self-check <root@{s.hostname}>"
    msg["To"] = f"postmaster@{s.primary_domain}"
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid("selfcheck", s.hostname)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send(msg: email.message.EmailMessage, layout: catalog.Layout) -> str | None:
    """Hand the mail to the host's own postfix (its sendmail, this layout's configuration);
    None when postfix took it, else why not."""
    argv = ["sendmail", "-C", layout.postfix_dir, "-i", "-t"]
    try:
        proc = subprocess.run(argv, input=msg.as_bytes(), capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sendmail: {e}"
    return None if proc.returncode == 0 else f"sendmail exit {proc.returncode}: {proc.stderr.decode()[:200]}"


# --- one run --------------------------------------------------------------------------------


def _iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds")


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def load_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    """Atomically: a run killed while writing leaves the previous state whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def previous_failure(state: Mapping[str, Any]) -> str | None:
    """Why the previous run did not finish: the error it recorded, or a start never finished."""
    if state.get("failure"):
        return str(state["failure"])
    started, finished = _parse(state.get("started")), _parse(state.get("finished"))
    if started and (finished is None or finished < started):
        return f"the run started at {started:%Y-%m-%d %H:%M} UTC stopped before its end (killed, timed out or crashed)"
    return None


def check_once(c: Config, args: argparse.Namespace) -> int:
    s, layout, state_path = c.settings, c.layout, Path(c.layout.selfcheck_state)
    state = load_state(state_path)
    failure = previous_failure(state)
    now = dt.datetime.now(dt.timezone.utc)
    state.update(started=_iso(now), failure=None)
    save_state(state_path, state)  # a run that dies from here on is told by the next one
    try:
        started = time.monotonic()
        results = run(build_target(c, args))
        seconds = time.monotonic() - started
        now_failing = problems(results)
        told = dict(state.get("told") or {})
        d = decide(told, now_failing, _parse(state.get("told_at")), now, failure)
        print(f"selfcheck: {len(results)} results, {len(now_failing)} failing, in {seconds:.1f} s; "
              f"{'mail: ' + d.why if d.send else 'no change, no mail'}")
        for r in results:
            if r.status in PROBLEMS:
                print(f"  {r.status}: {r.check} {r.subject}: {r.found}")
        if d.send and args.no_mail:
            # Shown, not told: the next run that may mail still sends it.
            print(compose(s, results, d, now, failure, seconds).as_string())
        elif d.send:
            error = send(compose(s, results, d, now, failure, seconds), layout)
            if error:
                # What was told stays as it was: the next run sends it again.
                state.update(finished=_iso(dt.datetime.now(dt.timezone.utc)), failure=f"could not mail: {error}")
                save_state(state_path, state)
                print(f"selfcheck: {error}", file=sys.stderr)
                return 1
            state.update(told=now_failing, told_at=_iso(now))
        state.update(finished=_iso(dt.datetime.now(dt.timezone.utc)), failure=None)
        save_state(state_path, state)
        return 0
    except Exception as e:
        why = f"{type(e).__name__}: {e}"[:300]
        state.update(finished=_iso(dt.datetime.now(dt.timezone.utc)), failure=why)
        # Twice in a row: telling it at the next run may never happen, so this run mails it, once per error.
        if failure and state.get("failure_mailed") != why and not args.no_mail \
                and send(failure_mail(s, why, failure, now), layout) is None:
            state["failure_mailed"] = why
        save_state(state_path, state)
        raise  # the traceback goes to the journal; systemd marks the run failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mailserver selfcheck", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=catalog.VM_LAYOUT.selfcheck_config,
                    help="the settings and layout the bundle installed (default: %(default)s)")
    ap.add_argument("--ip", help="the public IP to probe (default: the Elastic IP, from the metadata service)")
    ap.add_argument("--resolver", help="DNS resolver (default: the host's own, /etc/resolv.conf)")
    ap.add_argument("--blocklist-resolver", help="resolver of the blocklist lookups (default: --resolver)")
    ap.add_argument("--cafile", help="trusted roots for the certificate checks (default: the system's)")
    ap.add_argument("--source", help="source address of the probes")
    ap.add_argument("--timeout", type=float, default=8.0)
    ap.add_argument("--no-mail", action="store_true",
                    help="print the mail it would send instead (the next run still sends it)")
    args = ap.parse_args(argv)
    return check_once(read_config(Path(args.config).read_text()), args)


if __name__ == "__main__":
    raise SystemExit(main())
