"""The backup MX's checks (secondaryMx): its port 25 from outside, with the same probes as the
primary's (ports, certificate, TLS versions, open relay), and its queue from inside, where the
size and the age of the oldest message say whether mail is reaching the primary."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shlex

from mailserver.core import catalog
from mailserver.core.settings import as_role
from mailserver.doctor.checks import CHECK_IDS, SECONDARY_QUEUE_WARNING_HOURS
from mailserver.doctor.host import postqueue_arrivals, shell_failure
from mailserver.doctor.probes import check_open_relay, check_tls, probe_port
from mailserver.doctor.target import Target
from mailserver.doctor.verdicts import Result, result, secondary_queue_status

OFF = "secondaryMx is off"


def _skipped(check: str, why: str, fix: str = "") -> list[Result]:
    return [result(check, "skipped", "secondary MX", CHECK_IDS[check].verifies, why, fix)]


def check_secondary_smtp(t: Target) -> list[Result]:
    """The primary's port-25 probes, pointed at the secondary under its own name; each result
    filed under secondary-smtp, its subject naming what it looked at."""
    s = t.settings
    if not s.secondary_mx:
        return _skipped("secondary-smtp", OFF)
    if not t.secondary_ip:
        return [result("secondary-smtp", "unknown", s.secondary_hostname, "an address",
                       f"{s.secondary_hostname} does not resolve", "give --secondary-ip or --outputs")]
    sub = dataclasses.replace(t, ip=t.secondary_ip, settings=as_role(s, "secondary"))
    smtp = next(svc for svc in catalog.SERVICES if svc.port == catalog.SMTP_PORT)
    probe = probe_port(sub, smtp)
    name = f"{s.secondary_hostname} port {catalog.SMTP_PORT}"
    out = [result("secondary-smtp", "ok" if probe.answered else "error", name, "SMTP with STARTTLS",
                  probe.greeting[:60] if probe.answered else probe.error)]
    if probe.answered:
        for r in (*check_tls(sub, {catalog.SMTP_PORT: probe}), *check_open_relay(sub, {catalog.SMTP_PORT: probe})):
            out.append(dataclasses.replace(r, check="secondary-smtp", subject=f"{s.secondary_hostname} {r.check}"))
    return out


def oldest_hours(postqueue_json: str, now: dt.datetime) -> tuple[int, float | None]:
    """(messages, age in hours of the oldest) from `postqueue -j` (one JSON object a line,
    arrival_time in seconds since the epoch)."""
    arrivals = postqueue_arrivals(postqueue_json)
    if not arrivals:
        return 0, None
    return len(arrivals), max(0.0, (now.timestamp() - min(arrivals)) / 3600)


def check_secondary_queue(t: Target) -> list[Result]:
    s = t.settings
    if not s.secondary_mx:
        return _skipped("secondary-queue", OFF)
    r = t.secondary_runner
    if r is None:
        return _skipped("secondary-queue", "no --secondary-ssh given: the queue is read on the secondary",
                        f"add --secondary-ssh ec2-user@{s.secondary_hostname}")
    failure = shell_failure(r)
    if failure:
        why, fix = failure
        return [result("secondary-queue", "unknown", "secondary MX", "a shell", f"no shell on the secondary: {why}",
                       fix)]
    code, text = r.run(f"postqueue -c {shlex.quote(r.layout.postfix_dir)} -j")
    try:
        size, age = oldest_hours(text, t.now())
    except (ValueError, KeyError) as e:
        return [result("secondary-queue", "unknown", "secondary queue", "postqueue -j output",
                       text.strip()[:80] or f"exit {code} ({e})")]
    if code != 0:
        return [result("secondary-queue", "unknown", "secondary queue", "postqueue -j output",
                       text.strip()[:80] or f"exit {code}")]
    found = f"{size} messages" + (f", oldest {age:.1f} h" if age is not None else "")
    return [result("secondary-queue", secondary_queue_status(age), f"{s.secondary_hostname} queue",
                   f"nothing older than {SECONDARY_QUEUE_WARNING_HOURS} h", found)]


def check_secondary(t: Target) -> list[Result]:
    return check_secondary_smtp(t) + check_secondary_queue(t)
