"""From what a check found to a status: Result and result(), the worst status, the exit code,
and the pure judgements with their thresholds (certificate expiry, blocklist answers, disk,
memory, queue, snapshots, the relay probe's reply). No network, no host: unit-tested alone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

from mailserver.core import catalog
from mailserver.doctor.checks import (
    CHECK_IDS,
    DISK_ERROR_PERCENT,
    DISK_WARNING_PERCENT,
    EXPIRY_ERROR_DAYS,
    FIRST_SNAPSHOT_GRACE_HOURS,
    MEMORY_ERROR_PERCENT,
    MEMORY_WARNING_PERCENT,
    QUEUE_ERROR,
    QUEUE_WARNING,
    SECONDARY_QUEUE_ERROR_HOURS,
    SECONDARY_QUEUE_WARNING_HOURS,
    SNAPSHOT_ERROR_HOURS,
    SNAPSHOT_WARNING_HOURS,
    Reach,
    reach,
)

Status = Literal["ok", "warning", "error", "unknown", "skipped"]
STATUSES: tuple[Status, ...] = ("error", "warning", "unknown", "skipped", "ok")  # worst first
# Exit codes: 0 every check could be made and none is an error (warnings included), 1 a check
# is an error, 2 the doctor could not start checking (no IP, unreadable outputs, bad arguments:
# argparse exits 2 as well), 3 no error, but some checks could not be made (a result is
# unknown: a resolver, a port, the host over ssh or AWS did not answer usably). An error
# beats an unknown (1, not 3): what is known broken is reported whatever could not be
# checked. So a script tells "the server is broken" (1) from "the doctor is" (2) and from
# "the doctor could not look" (3), which a healthy exit 0 no longer hides.
EXIT_OK, EXIT_ERROR_FOUND, EXIT_SETUP, EXIT_UNCHECKED = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class Result:
    check: str
    status: Status
    subject: str  # what was looked at: "MX example.com", "port 993"
    expected: str
    found: str
    fix: str = ""  # empty when ok

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def result(check: str, status: Status, subject: str, expected: str, found: str, fix: str | None = None) -> Result:
    """A result; a failing one carries its check's fix unless a more precise one is given."""
    if check not in CHECK_IDS:
        raise KeyError(f"unknown check {check}")
    if status == "ok":
        fix = ""
    elif fix is None:
        fix = CHECK_IDS[check].fix
    return Result(check, status, subject, expected, found, fix)


def worst(statuses: Iterable[Status]) -> Status:
    found = set(statuses)
    return next((s for s in STATUSES if s in found), "ok")


def summary(results: Sequence[Result]) -> dict[str, Status]:
    """The worst status per check id."""
    out: dict[str, Status] = {}
    for r in results:
        out[r.check] = worst([out.get(r.check, "ok"), r.status])
    return out


def exit_code(results: Sequence[Result]) -> int:
    statuses = {r.status for r in results}
    if "error" in statuses:
        return EXIT_ERROR_FOUND
    return EXIT_UNCHECKED if "unknown" in statuses else EXIT_OK


def unreached(results: Sequence[Result]) -> dict[Reach, list[Result]]:
    """The unknown results, by what their check could not reach (checks.reach), in the order met."""
    out: dict[Reach, list[Result]] = {}
    for r in results:
        if r.status == "unknown":
            out.setdefault(reach(r.check), []).append(r)
    return out


def show(values: Iterable[str], limit: int = 90) -> str:
    text = " | ".join(values)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def expiry_status(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime) -> tuple[Status, float, float]:
    """Status, days left and lifetime in days of a certificate valid from `not_before` to `not_after`."""
    days = (not_after - now).total_seconds() / 86400
    lifetime = max((not_after - not_before).total_seconds() / 86400, 0.0)
    warning_days = lifetime * float(catalog.CERT_RENEW_KEEP)
    if days < min(EXPIRY_ERROR_DAYS, warning_days / 2):
        return "error", days, lifetime
    if days < warning_days:
        return "warning", days, lifetime
    return "ok", days, lifetime


def blocklist_status(answers: Sequence[str], error: str | None) -> tuple[Status, str]:
    """A DNSBL answer for our IP. NXDOMAIN (no answer) means not listed; 127.0.0.x means
    listed; 127.255.255.x is the list refusing the query (Spamhaus answers that to public
    resolvers and to over-quota users), which proves nothing either way."""
    if error:
        return "unknown", f"lookup failed: {error}"
    if not answers:
        return "ok", "not listed"
    refusal = ipaddress.ip_network("127.255.255.0/24")
    loopback = ipaddress.ip_network("127.0.0.0/8")
    addrs = [ipaddress.ip_address(a) for a in answers]
    if all(a in refusal for a in addrs):
        return "unknown", f"query refused by the list ({', '.join(answers)})"
    if all(a in loopback for a in addrs):
        return "error", f"listed ({', '.join(answers)})"
    return "unknown", f"answer outside 127.0.0.0/8 ({', '.join(answers)}): the resolver rewrites NXDOMAIN"


def disk_status(percent: int) -> Status:
    return "error" if percent >= DISK_ERROR_PERCENT else "warning" if percent >= DISK_WARNING_PERCENT else "ok"


def memory_status(available_percent: float) -> Status:
    if available_percent < MEMORY_ERROR_PERCENT:
        return "error"
    return "warning" if available_percent < MEMORY_WARNING_PERCENT else "ok"


def queue_status(size: int) -> Status:
    return "error" if size >= QUEUE_ERROR else "warning" if size >= QUEUE_WARNING else "ok"


def secondary_queue_status(oldest_hours: float | None) -> Status:
    """The secondary MX's queue, by the age of its oldest message (None: empty)."""
    if oldest_hours is None or oldest_hours < SECONDARY_QUEUE_WARNING_HOURS:
        return "ok"
    return "error" if oldest_hours >= SECONDARY_QUEUE_ERROR_HOURS else "warning"


def snapshot_status(newest: dt.datetime | None, now: dt.datetime,
                    volume_created: dt.datetime | None = None) -> tuple[Status, str]:
    """The newest completed snapshot's age. No snapshot at all is an error only once the
    volume is older than FIRST_SNAPSHOT_GRACE_HOURS: Data Lifecycle Manager takes the first
    one at the next daily run, up to a day after the volume was made."""
    if newest is None:
        if volume_created is not None:
            age = (now - volume_created).total_seconds() / 3600
            if age < FIRST_SNAPSHOT_GRACE_HOURS:
                return "ok", (f"none yet; the volume is {age:.1f} h old (the first daily snapshot is due "
                              f"within {FIRST_SNAPSHOT_GRACE_HOURS} h)")
            return "error", f"no completed snapshot; the volume is {age:.0f} h old"
        return "error", "no completed snapshot"
    hours = (now - newest).total_seconds() / 3600
    found = f"newest {hours:.1f} h old ({newest:%Y-%m-%d %H:%M} UTC)"
    if hours >= SNAPSHOT_ERROR_HOURS:
        return "error", found
    return ("warning" if hours >= SNAPSHOT_WARNING_HOURS else "ok"), found


RELAY_REFUSALS = ("relay access denied", "relaying denied", "relay not permitted", "unable to relay",
                  "relaying not allowed", "not permitted to relay")


def relay_status(code: int, reply: str) -> tuple[Status, str]:
    """Port 25's answer to the relay probe's RCPT. Only a permanent refusal that says it is
    about relaying proves the relay is closed: postscreen's DNSBL refusal (550 5.7.1 Service
    unavailable; client blocked) or pregreet refusal, a greylisting or "try again" 4xx, all
    refuse this client for another reason and say nothing about what a clean client could do."""
    if code < 400:
        return "error", f"ACCEPTED: anyone can send through this server {code} {reply}"
    text = reply.lower()
    if 500 <= code < 600 and any(words in text for words in RELAY_REFUSALS):
        return "ok", f"{code} {reply}"
    return "unknown", f"refused, but not as a relay attempt: {code} {reply}"
