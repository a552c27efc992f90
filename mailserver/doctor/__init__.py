"""`python -m mailserver doctor`: status checks of a deployed (or lab) mail server.

A server that "deployed" can still be broken in ways `pulumi up` never sees: DNS not yet
propagated or edited by hand, port 25 blocked by AWS, a certificate still from staging or
about to expire, a daemon down, the IP on a blocklist. The doctor looks at the server the way
a sender, a mail client and a receiver do, compares what it finds with what the stack intends
(the same plan the program creates records from: `records.planned_records`), and says, per
check, what it expected, what it found and how to fix it.

CHECKS is the one list of checks: the README's table is generated from it, and every result
names one of its ids. Outside checks need nothing but the network; inside checks run a small
shell script on the host (over `ssh user@host sudo bash -s`, or directly in the lab).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import configparser
import dataclasses
import datetime as dt
import imaplib
import ipaddress
import json
import poplib
import shlex
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import dns.exception
import dns.rdatatype
import dns.resolver
import dns.reversename
from cryptography import x509

from mailserver import clients
from mailserver.core import catalog, records, relay, web
from mailserver.core.settings import AWS_REGION_KEY, Settings, parse
from mailserver.core.stack import load_stack, random_passwords

Status = Literal["ok", "warning", "error", "unknown", "skipped"]
Category = Literal["outside", "inside"]
STATUSES: tuple[Status, ...] = ("error", "warning", "unknown", "skipped", "ok")  # worst first
# Exit codes: 0 no error found (warnings and unknowns included), 1 a check is an error,
# 2 the doctor could not start checking (no IP, unreadable outputs, bad arguments: argparse
# exits 2 as well), so a script can tell "the server is broken" from "the doctor is".
EXIT_OK, EXIT_ERROR_FOUND, EXIT_SETUP = 0, 1, 2
# Certificate expiry, judged against the certificate's own lifetime (notAfter - notBefore), as
# Let's Encrypt's shrinks from 90 to 64 (2027) and 45 days (2028). Warning: less than
# catalog.CERT_RENEW_KEEP (a third) of it left. acme.sh renews while more is left, two daily tries
# before that point (certificates.acme_renewal_days), so less means renewal has failed at least twice.
# Error: expired, or in the last EXPIRY_ERROR_DAYS, the time left to fix renewal before senders
# that enforce MTA-STS stop delivering. A fixed floor, because fixing takes the same days whatever
# the lifetime; only a certificate too short to be warned about for twice that long (under 18
# days, none of Let's Encrypt's default ones) gets half its warning window instead, so a
# warning always comes before the error.
EXPIRY_ERROR_DAYS = 3
DISK_WARNING_PERCENT, DISK_ERROR_PERCENT = 80, 90
MEMORY_WARNING_PERCENT, MEMORY_ERROR_PERCENT = 15, 5  # available memory, % of total
QUEUE_WARNING, QUEUE_ERROR = 20, 200  # messages waiting
SNAPSHOT_WARNING_HOURS, SNAPSHOT_ERROR_HOURS = 26, 8 * 24
# A new volume's first snapshot comes with DLM's next daily run (catalog.SNAPSHOT_TIME_UTC):
# up to 24 h after it was made, plus the time the snapshot takes to complete.
FIRST_SNAPSHOT_GRACE_HOURS = 27
# Where the outbound-25 check connects: a large receiver that always listens on 25.
OUTBOUND_PROBE_HOST = "gmail-smtp-in.l.google.com"
# The relay probe's addresses: a reserved TLD (RFC 2606), so nothing is ever delivered.
RELAY_PROBE_SENDER = "doctor@relay-probe.invalid"
RELAY_PROBE_RECIPIENT = "relay-test@relay-probe.invalid"
# The least time given to port 25's banner (see probe_timeout): postscreen's 6 s greet wait
# plus room for a slow network; --timeout below it applies to every other port.
SMTP_BANNER_MIN_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class Check:
    id: str
    title: str
    category: Category
    verifies: str
    fix: str


CHECKS: tuple[Check, ...] = (
    Check("dns-a", "Mail host address", "outside",
          "the mail host name's A record is the server's public IP",
          "pulumi up restores the record; changes need up to the TTL (300 s) to show"),
    Check("dns-mx", "MX records", "outside",
          "each mail domain's MX is exactly the mail host (an extra MX receives your mail elsewhere)",
          "pulumi up restores the records; delete MX records the stack did not create"),
    Check("dns-spf", "SPF", "outside",
          "each domain has exactly one v=spf1 record, the planned one",
          "pulumi up restores it; merge other senders through spfExtra, never a second SPF record"),
    Check("dns-dkim", "DKIM keys", "outside",
          "the public key of every selector is published and matches the key the host signs with",
          "pulumi up republishes the keys; after a selector change wait for the TTL"),
    Check("dns-dmarc", "DMARC", "outside",
          "_dmarc of each domain (and the cross-domain report authorisation) as planned",
          "pulumi up restores it"),
    Check("dns-mta-sts", "MTA-STS record", "outside",
          "_mta-sts TXT carries the id of the policy the Worker serves",
          "pulumi up restores it (the id changes with the policy)"),
    Check("dns-tls-rpt", "TLS-RPT record", "outside",
          "_smtp._tls TXT names the TLS report address", "pulumi up restores it"),
    Check("dns-caa", "CAA", "outside",
          "only Let's Encrypt may issue certificates for the mail host",
          "pulumi up restores it; remove CAA records of other CAs"),
    Check("dns-srv", "Client SRV records", "outside",
          "RFC 6186 SRV records point clients to the enabled ports", "pulumi up restores them"),
    Check("dns-web", "MTA-STS and autoconfig names", "outside",
          "mta-sts.<domain> and autoconfig.<domain> resolve (the Worker's custom domains)",
          "pulumi up recreates the Worker's custom domains; check them in the Cloudflare dashboard"),
    Check("dns-ses", "SES MAIL FROM records", "outside",
          "with relay ses, the bounce.<domain> MX and SPF that SES's custom MAIL FROM needs",
          "pulumi up restores them"),
    Check("ptr", "Reverse DNS", "outside",
          "the PTR of the IP is the mail host name, and that name resolves back to the IP",
          "pulumi up sets the PTR (aws.ec2.EipDomainName) once the A record resolves; "
          "on a new account AWS may need the port-25 form first"),
    Check("ports", "Public ports", "outside",
          "every public port of the port table answers its protocol (banner, STARTTLS or implicit TLS)",
          "check the security group and that the daemon runs (systemctl status postfix dovecot)"),
    Check("tls-name", "Certificate name", "outside",
          "the certificate on every TLS port covers the mail host name",
          "re-run acme.sh for the host name (pulumi up), then systemctl reload postfix dovecot"),
    Check("tls-chain", "Certificate chain", "outside",
          "the certificate chains to a trusted root (staging and self-signed are flagged)",
          "set acmeServer letsencrypt and pulumi up; a self-signed certificate means acme.sh "
          "has not installed one yet (see the acme step's log)"),
    Check("tls-expiry", "Certificate expiry", "outside",
          "more than a third of the certificate's own lifetime (notAfter - notBefore) is left (warning), "
          f"and it is neither expired nor in its last {EXPIRY_ERROR_DAYS} days (error)",
          "renewal is failing: run /root/.acme.sh/acme.sh --cron on the host and read its output"),
    Check("tls-version", "TLS 1.2 minimum", "outside",
          "TLS 1.0 and 1.1 handshakes are refused on every TLS port (a timeout or a failed STARTTLS "
          "is unknown, not refused)",
          "restore the rendered main.cf/dovecot.conf (pulumi up re-applies them)"),
    Check("open-relay", "No open relay", "outside",
          "port 25 refuses an outside sender's mail to an outside recipient at RCPT as relaying "
          "(5xx Relay access denied; another refusal, e.g. a blocklisted probe address, is unknown)",
          "remove wide networks from mynetworks and keep relayRestrictions ending in "
          "reject_unauth_destination"),
    Check("auth-before-tls", "No SMTP AUTH without TLS", "outside",
          "port 25 never offers AUTH; submission offers and accepts it only after STARTTLS",
          "restore smtpd_tls_auth_only = yes and the per-port settings of master.cf (pulumi up)"),
    Check("plaintext-login", "No plaintext IMAP/POP3 login", "outside",
          "IMAP and POP3 offer no login before STARTTLS (IMAP LOGINDISABLED; POP3 CAPA without USER; "
          "no AUTH PLAIN/LOGIN), read from the capabilities without trying one",
          "restore disable_plaintext_auth = yes in dovecot.conf (pulumi up)"),
    Check("blocklists", "Blocklists", "outside",
          "the IP is on none of the blocklists of the blocklists setting",
          "ask the list for removal (each has a lookup page), after finding what sent the spam; "
          "'unknown' means the resolver was refused: use --blocklist-resolver with your own resolver"),
    Check("outbound-25", "Outbound port 25", "inside",
          "the host can open a connection to another mail server's port 25",
          "AWS blocks it on new accounts: file the 'Request to remove email sending limitations' "
          "form, or set relay ses"),
    Check("services", "Services running", "inside",
          "postfix, dovecot and opendkim are running",
          "systemctl restart postfix dovecot opendkim; journalctl -u <unit> says why it stopped"),
    Check("fail2ban", "fail2ban", "inside",
          "fail2ban runs with every jail the bundle enables (postfix-sasl, dovecot, sshd)",
          "pulumi up (apply.sh installs fail2ban-server, python3-systemd and nftables; not the fail2ban "
          "metapackage, whose firewalld would block the mail ports); fail2ban-client status names the jails"),
    Check("resolver", "Local resolver", "inside",
          "unbound runs and /etc/resolv.conf sends the host's lookups to it (postscreen's DNSBLs and DANE "
          "need it: Spamhaus refuses the AWS resolver)",
          "systemctl status unbound; pulumi up re-runs use-local-resolver.sh, which keeps the switch only "
          "when unbound answers"),
    Check("disk", "Disk space", "inside",
          f"mail, queue and root filesystems below {DISK_WARNING_PERCENT}% (warning) / "
          f"{DISK_ERROR_PERCENT}% (error) use",
          "grow the volume (rootVolumeSize) or remove old mail; postfix defers mail when full"),
    Check("mail-volume", "Mail on its own volume", "inside",
          f"{catalog.VMAIL_HOME} is the mount point of the mail volume ({catalog.VMAIL_FS_TYPE}, label "
          f"{catalog.VMAIL_FS_LABEL}), so snapshots cover the mail and a rebuilt instance keeps it",
          "see the README's restore drill; until it is mounted, mail lands on the root disk, which "
          "snapshots do not cover and a replaced instance loses"),
    Check("memory", "Memory headroom", "inside",
          f"more than {MEMORY_WARNING_PERCENT}% (warning) / {MEMORY_ERROR_PERCENT}% (error) of "
          "memory available", "use a larger instanceType"),
    Check("queue", "Mail queue", "inside",
          f"fewer than {QUEUE_WARNING} (warning) / {QUEUE_ERROR} (error) messages wait in the queue",
          "postqueue -p shows why they wait (blocked port 25, relay refusing, DNS)"),
    Check("cert-renewal", "Certificate renewal", "inside",
          "acme.sh's daily cron job is installed and cron runs",
          "re-run the acme step (pulumi up) and systemctl enable --now crond"),
    Check("snapshots", "Snapshots", "inside",
          f"the data volume has a completed snapshot younger than {SNAPSHOT_WARNING_HOURS} h (warning: "
          f"{SNAPSHOT_ERROR_HOURS // 24} days); none is ok while the volume is under "
          f"{FIRST_SNAPSHOT_GRACE_HOURS} h old",
          "install the AWS CLI with credentials that may ec2:DescribeSnapshots and ec2:DescribeVolumes, and "
          "give --volume-id (or an outputs file that names the data volume)"),
)
CHECK_IDS = {c.id: c for c in CHECKS}


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
    return EXIT_ERROR_FOUND if any(r.status == "error" for r in results) else EXIT_OK


# --- pure comparisons --------------------------------------------------------------------


def normalize(rtype: str, value: str) -> str:
    """A record's content as both the plan and a resolver can write it: names lower-case
    without the trailing dot, TXT as the joined strings."""
    if rtype == "TXT":
        return records.untxt(value) if value.startswith('"') else value
    tokens = [t.lower() for t in value.split()]
    if rtype in ("MX", "SRV", "CNAME", "PTR", "NS"):
        tokens = [t.rstrip(".") or "." for t in tokens]
    return " ".join(tokens)


def txt_tag(value: str) -> str:
    """The version tag that tells TXT records at one name apart: v=spf1, v=DMARC1..."""
    return value.split(";", 1)[0].split(" ", 1)[0].strip().lower()


def compare_records(rtype: str, expected: Iterable[str], found: Iterable[str]) -> tuple[bool, list[str], list[str]]:
    """(equal, missing, unexpected). TXT records are compared among those with the same
    version tag only: an apex carries other TXT records (site verifications) that are not ours."""
    want = {normalize(rtype, e) for e in expected}
    have = {normalize(rtype, f) for f in found}
    if rtype == "TXT":
        tags = {txt_tag(w) for w in want}
        have = {h for h in have if txt_tag(h) in tags}
    return want == have, sorted(want - have), sorted(have - want)


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


def name_matches(hostname: str, names: Iterable[str]) -> bool:
    """RFC 6125: an exact name, or a wildcard covering exactly one left-most label."""
    host = hostname.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


# --- what the stack intends ----------------------------------------------------------------


def expected_records(s: Settings, ip: str, dkim: Mapping[str, str | None],
                     ses_dkim: Sequence[tuple[str, str]] = ()) -> list[tuple[records.Record, str | None]]:
    """(record, content) pairs the stack intends; content None means "present and well-formed"
    (DKIM keys the doctor does not know: pass an outputs file to compare them)."""
    out: list[tuple[records.Record, str | None]] = [(r, r.content) for r in records.planned_records(s, ip)]
    for name, content in sorted(dkim.items()):
        selector, domain = name.split("._domainkey.", 1)
        out.append((records.dkim_txt_record(s, domain, selector, content or ""), content))
    if s.relay == "ses":
        # The Easy DKIM tokens exist only once SES made them: compared when the outputs name them.
        for rec in relay.ses_records(s):
            if rec.type != "CNAME":
                out.append((rec, rec.content))
        for name, target in ses_dkim:
            out.append((records.Record(f"ses-dkim-{name}", "", name, "CNAME", target, check="dns-ses"), target))
    return out


def dkim_names(s: Settings) -> list[str]:
    return [records.dkim_name(sel, d) for sel in (s.dkim_selector, *s.dkim_retired_selectors) for d in s.domains]


# --- the inside runner -----------------------------------------------------------------------


class Runner(Protocol):
    """Runs a shell script as root on the mail host; `layout` says where things live there."""

    layout: catalog.Layout
    where: Literal["ssh", "local", "lab"]

    def run(self, script: str) -> tuple[int, str]: ...


@dataclasses.dataclass
class LocalRunner:
    """The doctor runs on the host itself (or inside the lab's namespace: where="lab")."""

    layout: catalog.Layout
    where: Literal["ssh", "local", "lab"] = "local"
    timeout: float = 60.0

    def run(self, script: str) -> tuple[int, str]:
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False,
                              timeout=self.timeout)
        return proc.returncode, proc.stdout + proc.stderr


@dataclasses.dataclass
class SshRunner:
    """`ssh user@host sudo bash -s`: the script travels on stdin, so nothing lands in argv
    or a file on the host. BatchMode: the doctor never waits for a password prompt."""

    destination: str
    layout: catalog.Layout = catalog.PRODUCTION
    where: Literal["ssh", "local", "lab"] = "ssh"
    options: tuple[str, ...] = ()
    timeout: float = 60.0

    def run(self, script: str) -> tuple[int, str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *self.options, self.destination,
                "sudo", "bash", "-s"]
        try:
            proc = subprocess.run(argv, input=script, capture_output=True, text=True, check=False,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return 255, f"ssh timed out after {self.timeout:.0f}s"
        return proc.returncode, proc.stdout + proc.stderr


# --- the target ---------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    settings: Settings
    ip: str  # where the ports are probed and whose PTR/blocklist status is looked up
    dkim: Mapping[str, str | None]  # DKIM TXT name -> expected content (None: presence only)
    resolver: str | None = None  # None: the system's resolvers
    blocklist_resolver: str | None = None  # None: the resolver above
    cafile: str | None = None  # trusted roots; None: the system's
    source: str | None = None  # source address of every probe
    timeout: float = 8.0
    runner: Runner | None = None
    ses_dkim: Sequence[tuple[str, str]] = ()
    volume_id: str | None = None
    aws_region: str | None = None
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    @property
    def lab(self) -> bool:
        return self.runner is not None and self.runner.where == "lab"


def _resolver(ip: str | None, timeout: float) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=ip is None)
    if ip is not None:
        res.nameservers = [ip]
    res.lifetime = timeout
    res.timeout = timeout
    return res


def lookup(res: dns.resolver.Resolver, name: str, rtype: str) -> tuple[list[str], str | None]:
    """(values, error). A name or type that does not exist is an empty answer, not an error."""
    try:
        answer = res.resolve(name, rtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return [], None
    except (dns.exception.DNSException, OSError) as e:
        return [], f"{type(e).__name__}: {e}"
    out = []
    for rdata in answer:
        if rdata.rdtype == dns.rdatatype.TXT:
            out.append(b"".join(rdata.strings).decode(errors="replace"))
        else:
            out.append(rdata.to_text())
    return out, None


def lookup_all(res: dns.resolver.Resolver, queries: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[list[str], str | None]]:
    """Many lookups at once: with a resolver that does not answer, the run then waits one
    timeout, not one per record."""
    unique = list(dict.fromkeys(queries))
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        found = pool.map(lambda q: lookup(res, *q), unique)
        return dict(zip(unique, found, strict=True))


# --- outside checks -------------------------------------------------------------------------


def check_dns(t: Target, res: dns.resolver.Resolver) -> list[Result]:
    out: list[Result] = []
    groups: dict[tuple[str, str, str], list[str | None]] = {}
    for rec, content in expected_records(t.settings, t.ip, t.dkim, t.ses_dkim):
        value = None if content is None else (f"{rec.priority} {content}" if rec.type == "MX" else content)
        groups.setdefault((rec.check, rec.fqdn, rec.type), []).append(value)
    answers = lookup_all(res, [(fqdn, rtype) for _, fqdn, rtype in groups])
    for (check, fqdn, rtype), wanted in groups.items():
        found, error = answers[(fqdn, rtype)]
        subject = f"{rtype} {fqdn}"
        if error:
            out.append(result(check, "unknown", subject, "a DNS answer", error,
                              "check that the resolver answers (--resolver)"))
            continue
        if any(w is None for w in wanted):  # DKIM key not known: present and well-formed
            keys = [f for f in found if txt_tag(f) == "v=dkim1" and "p=" in f and not f.rstrip().endswith("p=")]
            ok = len(keys) == 1
            out.append(result(check, "ok" if ok else "error", subject, "one v=DKIM1 record with a key (p=)",
                              _show(found) if found else "no record"))
            continue
        same, missing, extra = compare_records(rtype, [w for w in wanted if w is not None], found)
        expected = _show([normalize(rtype, w) for w in wanted if w is not None])
        if same:
            out.append(result(check, "ok", subject, expected, expected))
        else:
            detail = []
            if missing:
                detail.append("missing " + _show(missing))
            if extra:
                detail.append("unexpected " + _show(extra))
            out.append(result(check, "error", subject, expected, "; ".join(detail)))
    names = [name for _, name in web.web_hostnames(t.settings)]
    web_answers = lookup_all(res, [(n, rtype) for n in names for rtype in ("A", "AAAA")])
    for name in names:
        addrs = web_answers[(name, "A")][0] + web_answers[(name, "AAAA")][0]
        error = web_answers[(name, "A")][1] or web_answers[(name, "AAAA")][1]
        if error and not addrs:
            out.append(result("dns-web", "unknown", f"A/AAAA {name}", "an address (Worker)", error,
                              "check that the resolver answers (--resolver)"))
            continue
        out.append(result("dns-web", "ok" if addrs else "error", f"A/AAAA {name}", "an address (Worker)",
                          _show(addrs) if addrs else "does not resolve"))
    return out


def _show(values: Iterable[str], limit: int = 90) -> str:
    text = " | ".join(values)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def check_ptr(t: Target, res: dns.resolver.Resolver) -> list[Result]:
    host = t.settings.hostname
    ptrs, error = lookup(res, dns.reversename.from_address(t.ip).to_text(), "PTR")
    forward, ferror = lookup(res, host, "AAAA" if ":" in t.ip else "A")
    names = [normalize("PTR", p) for p in ptrs]
    if error or ferror:
        return [result("ptr", "unknown", f"PTR {t.ip}", host, error or ferror or "")]
    out = [result("ptr", "ok" if names == [host] else "error", f"PTR {t.ip}", host,
                  _show(names) if names else "no PTR")]
    out.append(result("ptr", "ok" if t.ip in forward else "error", f"{host} -> IP", t.ip,
                      _show(forward) if forward else "does not resolve"))
    return out


@dataclasses.dataclass
class PortProbe:
    service: catalog.Service
    error: str = ""  # why the port did not answer its protocol; empty when it did
    greeting: str = ""
    cert: bytes = b""
    smtp_auth_before_tls: bool = False
    smtp_auth_after_tls: bool = False

    @property
    def answered(self) -> bool:
        return not self.error


def probe_timeout(t: Target, port: int) -> float:
    """Port 25 is answered by postscreen, which holds the last line of its banner back for
    postscreen_greet_wait (6 s on the VM, postfix's default) from every client it has not
    seen for a day: a shorter read timeout would fail port 25 on a first contact."""
    return max(t.timeout, SMTP_BANNER_MIN_TIMEOUT) if port == 25 else t.timeout


def _noverify() -> ssl.SSLContext:
    return clients.tls_context()


def _imap_class(t: Target, implicit: bool) -> type[imaplib.IMAP4]:
    base: type[imaplib.IMAP4] = clients.IMAPS if implicit else clients.IMAP
    return type("DoctorIMAP", (base,), {"source": t.source})


def _pop3_class(t: Target, implicit: bool) -> type[poplib.POP3]:
    base: type[poplib.POP3] = clients.POP3S if implicit else clients.POP3
    return type("DoctorPOP3", (base,), {"source": t.source})


def _peer_cert(sock: Any) -> bytes:
    return sock.getpeercert(binary_form=True) or b""


def probe_port(t: Target, svc: catalog.Service) -> PortProbe:
    """Speak the port's protocol with the standard library's client, up to TLS."""
    p = PortProbe(svc)
    implicit = svc.tls == "implicit"
    try:
        if svc.protocol == "smtp":
            with clients.smtp(svc.port, source=t.source, implicit_tls=implicit, ctx=_noverify(), host=t.ip,
                              timeout=probe_timeout(t, svc.port)) as conn:
                code, banner = conn.ehlo("doctor.invalid")
                if code != 250:
                    raise smtplib.SMTPException(f"EHLO answered {code}")
                p.greeting = f"{code} {banner.decode(errors='replace').splitlines()[0]}"
                if implicit:
                    p.cert = _peer_cert(conn.sock)
                    p.smtp_auth_after_tls = conn.has_extn("auth")
                else:
                    p.smtp_auth_before_tls = conn.has_extn("auth")
                    if not conn.has_extn("starttls"):
                        raise smtplib.SMTPException("STARTTLS not offered")
                    conn.starttls(context=_noverify())
                    p.cert = _peer_cert(conn.sock)
                    conn.ehlo("doctor.invalid")
                    p.smtp_auth_after_tls = conn.has_extn("auth")
        elif svc.protocol == "imap":
            imap = _imap_class(t, implicit)(t.ip, svc.port, timeout=t.timeout) if not implicit else \
                _imap_class(t, implicit)(t.ip, svc.port, ssl_context=_noverify(), timeout=t.timeout)  # type: ignore[call-arg]
            try:
                p.greeting = imap.welcome.decode(errors="replace")
                if not implicit:
                    if "STARTTLS" not in imap.capabilities:
                        raise imaplib.IMAP4.error("STARTTLS not offered")
                    imap.starttls(ssl_context=_noverify())
                p.cert = _peer_cert(imap.sock)
            finally:
                _quietly(imap.logout)
        elif svc.protocol == "pop3":
            pop = _pop3_class(t, implicit)(t.ip, svc.port, timeout=t.timeout) if not implicit else \
                _pop3_class(t, implicit)(t.ip, svc.port, context=_noverify(), timeout=t.timeout)  # type: ignore[call-arg]
            try:
                p.greeting = pop.getwelcome().decode(errors="replace")
                if not implicit:
                    if "STLS" not in pop.capa():
                        raise poplib.error_proto("STLS not offered")
                    pop.stls(context=_noverify())
                p.cert = _peer_cert(pop.sock)
            finally:
                _quietly(pop.quit)
    except (OSError, smtplib.SMTPException, imaplib.IMAP4.error, poplib.error_proto, EOFError) as e:
        p.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return p


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except (OSError, imaplib.IMAP4.error, poplib.error_proto, EOFError, smtplib.SMTPException):
        pass


def _starttls_protocol(svc: catalog.Service) -> str | None:
    return svc.protocol if svc.tls == "starttls" else None


def check_ports(t: Target) -> tuple[list[Result], dict[int, PortProbe]]:
    out, probes = [], {}
    for svc in t.settings.services:
        if svc.admin_only:
            continue
        p = probe_port(t, svc)
        probes[svc.port] = p
        tls = "STARTTLS" if svc.tls == "starttls" else "implicit TLS"
        expected = f"{svc.protocol.upper()} with {tls}"
        out.append(result("ports", "ok" if p.answered else "error", f"port {svc.port} ({svc.name})", expected,
                          p.greeting[:60] if p.answered else p.error))
    return out, probes


def _skipped(check: str, port: int, expected: str) -> Result:
    return result(check, "skipped", f"port {port}", expected, "port did not answer (see ports)", "")


def check_tls(t: Target, probes: Mapping[int, PortProbe]) -> list[Result]:
    s = t.settings
    out: list[Result] = []
    now = t.now()
    for port, p in probes.items():
        subject = f"port {port}"
        if not p.answered or not p.cert:
            for check, exp in (("tls-name", s.hostname), ("tls-chain", "a trusted chain"),
                               ("tls-expiry", "> a third of its lifetime left"), ("tls-version", "refused")):
                out.append(_skipped(check, port, exp))
            continue
        cert = x509.load_der_x509_certificate(p.cert)
        names = _cert_names(cert)
        out.append(result("tls-name", "ok" if name_matches(s.hostname, names) else "error", subject, s.hostname,
                          _show(names) or "no DNS name"))
        out.append(_chain_result(t, p, cert))
        status, days, lifetime = expiry_status(cert.not_valid_before_utc, cert.not_valid_after_utc, now)
        out.append(result("tls-expiry", status, subject,
                          f"> {lifetime * catalog.CERT_RENEW_KEEP:.0f} days left (a third of {lifetime:.0f})",
                          f"{days:.0f} days left of {lifetime:.0f} ({cert.not_valid_after_utc:%Y-%m-%d})" if days >= 0
                          else f"expired {-days:.0f} days ago ({cert.not_valid_after_utc:%Y-%m-%d})"))
        out.append(tls_version_result(t, p))
    return out


def tls_version_result(t: Target, p: PortProbe) -> Result:
    """Only a handshake the server itself refused (a TLS alert, a hang-up mid-handshake)
    counts as "refused". A timeout, a STARTTLS the server would not start, or a client that
    cannot offer the old version proves nothing: unknown, so a busy or firewalled port never
    passes for a well-configured one."""
    port = p.service.port
    accepted, unsure = [], []
    for version, name in ((ssl.TLSVersion.TLSv1, "TLS 1.0"), (ssl.TLSVersion.TLSv1_1, "TLS 1.1")):
        try:
            got = clients.tls_handshake(port, _starttls_protocol(p.service), version, source=t.source,
                                        host=t.ip, timeout=probe_timeout(t, port))
        except (OSError, ssl.SSLError) as e:
            unsure.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if got:
            accepted.append(got)
    expected = "TLS 1.0 and 1.1 refused"
    if accepted:
        return result("tls-version", "error", f"port {port}", expected, f"accepted {', '.join(accepted)}")
    if unsure:
        return result("tls-version", "unknown", f"port {port}", expected, _show(unsure, 160),
                      "run the doctor again; if it persists, try openssl s_client -tls1 against the port")
    return result("tls-version", "ok", f"port {port}", expected, "refused")


def _cert_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return list(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


def _chain_result(t: Target, p: PortProbe, cert: x509.Certificate) -> Result:
    subject = f"port {p.service.port}"
    issuer = cert.issuer.rfc4514_string()
    ctx = ssl.create_default_context(cafile=t.cafile) if t.cafile else ssl.create_default_context()
    ctx.check_hostname = False  # the name is tls-name's business
    expected = "chains to a trusted root"
    try:
        clients.tls_peer(p.service.port, _starttls_protocol(p.service), ctx, source=t.source, host=t.ip,
                         timeout=probe_timeout(t, p.service.port), server_name=t.settings.hostname)
    except ssl.SSLCertVerificationError as e:
        # OpenSSL checks the dates after it has built and trusted the chain: an expired or
        # not-yet-valid certificate did chain to a trusted root, and tls-expiry reports it.
        if e.verify_code in (9, 10):
            return result("tls-chain", "ok", subject, expected, f"issued by {issuer} (dates: see tls-expiry)")
        staging = "staging" in issuer.lower() or "fake le" in issuer.lower()
        if staging:
            expected_staging = t.settings.acme_server == "letsencrypt_test"
            return result("tls-chain", "warning" if expected_staging else "error", subject, expected,
                          f"Let's Encrypt staging ({issuer}): clients will not trust it"
                          + (" (acmeServer letsencrypt_test)" if expected_staging else ""))
        if cert.issuer == cert.subject:
            return result("tls-chain", "error", subject, expected, f"self-signed ({issuer})")
        return result("tls-chain", "error", subject, expected, f"{e.verify_message} (issuer {issuer})")
    except (OSError, ConnectionError) as e:
        return result("tls-chain", "unknown", subject, expected, f"handshake failed: {e}")
    return result("tls-chain", "ok", subject, expected, f"issued by {issuer}")


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


def check_open_relay(t: Target, probes: Mapping[int, PortProbe]) -> list[Result]:
    expected = "RCPT refused as relaying (5xx Relay access denied)"
    if 25 not in probes or not probes[25].answered:
        return [_skipped("open-relay", 25, expected)]
    try:
        code, msg = clients.rcpt_reply(RELAY_PROBE_RECIPIENT, sender=RELAY_PROBE_SENDER, host=t.ip,
                                       source=t.source, timeout=probe_timeout(t, 25))
    except (OSError, smtplib.SMTPException) as e:
        return [result("open-relay", "unknown", "port 25", expected, f"{type(e).__name__}: {e}")]
    status, found = relay_status(code, msg.decode(errors="replace"))
    fix = None if status != "unknown" else \
        "see why this client was refused (blocklisted or greylisted address?) and run the doctor from another one"
    return [result("open-relay", status, "port 25", expected, found, fix)]


def check_smtp_auth(t: Target, probes: Mapping[int, PortProbe]) -> list[Result]:
    out = []
    p25 = probes.get(25)
    if p25 is None or not p25.answered:
        out.append(_skipped("auth-before-tls", 25, "no AUTH"))
    else:
        offered = p25.smtp_auth_before_tls or p25.smtp_auth_after_tls
        out.append(result("auth-before-tls", "error" if offered else "ok", "port 25", "no AUTH, before or after TLS",
                          "AUTH offered" if offered else "no AUTH"))
    for port, p in probes.items():
        if p.service.protocol != "smtp" or p.service.tls != "starttls" or not p.service.auth:
            continue
        expected = "AUTH only after STARTTLS"
        if not p.answered:
            out.append(_skipped("auth-before-tls", port, expected))
            continue
        # AUTH started in clear, with no credentials: a healthy server refuses the command
        # itself (530 STARTTLS first, 503 not enabled); 334 means it would take a password in
        # clear. The doctor then cancels ("*"): no user name or password is ever sent, so no
        # "authentication failed" line reaches the log that fail2ban's postfix-sasl jail reads.
        try:
            with clients.smtp(port, source=t.source, host=t.ip, timeout=probe_timeout(t, port)) as conn:
                conn.ehlo("doctor.invalid")
                code, msg = conn.docmd("AUTH", "PLAIN")
                if code == 334:
                    conn.docmd("*")
        except (OSError, smtplib.SMTPException) as e:
            out.append(result("auth-before-tls", "unknown", f"port {port}", expected, str(e)))
            continue
        bad = p.smtp_auth_before_tls or code == 334
        found = ("AUTH offered in clear; " if p.smtp_auth_before_tls else "") + \
            f"AUTH in clear answered {code} {msg.decode(errors='replace')}"
        if not bad and not p.smtp_auth_after_tls:
            out.append(result("auth-before-tls", "error", f"port {port}", expected, "no AUTH even after STARTTLS",
                              "submission needs smtpd_sasl_auth_enable=yes (pulumi up)"))
        else:
            out.append(result("auth-before-tls", "error" if bad else "ok", f"port {port}", expected, found))
    return out


def check_plaintext_login(t: Target, probes: Mapping[int, PortProbe]) -> list[Result]:
    """Read from what the server advertises before STARTTLS, never by trying a login: dovecot
    logs a refused plaintext LOGIN or USER as a failed authentication ("auth failed" /
    "tried to use disallowed plaintext auth"), which fail2ban's dovecot filter counts, so a
    few doctor runs would ban the operator. Dovecot advertises exactly what it would accept:
    LOGINDISABLED and no AUTH=PLAIN on IMAP, no USER and no PLAIN/LOGIN in CAPA on POP3."""
    out = []
    for port, p in probes.items():
        svc = p.service
        if svc.protocol not in ("imap", "pop3") or svc.tls != "starttls":
            continue
        expected = "no login offered before STARTTLS"
        if not p.answered:
            out.append(_skipped("plaintext-login", port, expected))
            continue
        try:
            refused, found = (_imap_plain(t, port) if svc.protocol == "imap" else _pop3_plain(t, port))
        except (OSError, EOFError, imaplib.IMAP4.error, poplib.error_proto) as e:
            out.append(result("plaintext-login", "unknown", f"port {port}", expected, f"{type(e).__name__}: {e}"))
            continue
        out.append(result("plaintext-login", "ok" if refused else "error", f"port {port}", expected, found))
    return out


PLAINTEXT_MECHANISMS = {"PLAIN", "LOGIN"}  # SASL mechanisms that carry the password itself


def imap_plaintext(capabilities: Iterable[str]) -> tuple[bool, str]:
    """(refused, found) from an IMAP server's capabilities before STARTTLS."""
    caps = {c.upper() for c in capabilities}
    mechs = sorted(c.split("=", 1)[1] for c in caps if c.startswith("AUTH=") and c.split("=", 1)[1] in
                   PLAINTEXT_MECHANISMS)
    problems = ([] if "LOGINDISABLED" in caps else ["LOGIN offered in clear (no LOGINDISABLED)"]) + \
        ([f"AUTH={m} offered in clear" for m in mechs])
    return (not problems), "; ".join(problems) or "LOGINDISABLED, no plaintext AUTH"


def pop3_plaintext(capa: Mapping[str, Sequence[str]]) -> tuple[bool, str]:
    """(refused, found) from a POP3 server's CAPA before STLS."""
    caps = {k.upper(): [v.upper() for v in vs] for k, vs in capa.items()}
    mechs = sorted(set(caps.get("SASL", [])) & PLAINTEXT_MECHANISMS)
    problems = (["USER/PASS offered in clear"] if "USER" in caps else []) + \
        [f"SASL {m} offered in clear" for m in mechs]
    return (not problems), "; ".join(problems) or "no USER, no plaintext SASL"


def _imap_plain(t: Target, port: int) -> tuple[bool, str]:
    conn = _imap_class(t, False)(t.ip, port, timeout=t.timeout)
    try:
        return imap_plaintext(conn.capabilities)
    finally:
        _quietly(conn.logout)


def _pop3_plain(t: Target, port: int) -> tuple[bool, str]:
    conn = _pop3_class(t, False)(t.ip, port, timeout=t.timeout)
    try:
        return pop3_plaintext(conn.capa())
    finally:
        _quietly(conn.quit)


def check_blocklists(t: Target) -> list[Result]:
    out = []
    try:
        addr = ipaddress.ip_address(t.ip)
    except ValueError:
        return [result("blocklists", "unknown", t.ip, "an IP address", "not an IP address")]
    if addr.version != 4:
        return [result("blocklists", "skipped", t.ip, "not listed", "only IPv4 is looked up", "")]
    res = _resolver(t.blocklist_resolver or t.resolver, t.timeout)
    reversed_ip = ".".join(reversed(t.ip.split(".")))
    answers = lookup_all(res, [(f"{reversed_ip}.{zone}", "A") for zone in t.settings.blocklists])
    for zone in t.settings.blocklists:
        status, found = blocklist_status(*answers[(f"{reversed_ip}.{zone}", "A")])
        out.append(result("blocklists", status, zone, "not listed", found))
    return out


# --- inside checks --------------------------------------------------------------------------


def services_script(layout: catalog.Layout) -> str:
    """One line per daemon, "name active|inactive"."""
    if layout.systemd:
        return "for u in postfix dovecot opendkim; do echo \"$u $(systemctl is-active \"$u\")\"; done\n"
    q = shlex.quote
    return (
        f"if postfix -c {q(layout.postfix_dir)} status >/dev/null 2>&1; then echo 'postfix active'; "
        "else echo 'postfix inactive'; fi\n"
        f"pid=$(cat {q(layout.dovecot_base_dir + '/master.pid')} 2>/dev/null)\n"
        "if [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null; then echo 'dovecot active'; else echo 'dovecot inactive'; fi\n"
        f"pid=$(cat {q(layout.opendkim_run_dir + '/opendkim.pid')} 2>/dev/null)\n"
        "if [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null; then echo 'opendkim active'; else echo 'opendkim inactive'; fi\n"
    )


def expected_jails(s: Settings) -> list[str]:
    """The jails the VM's rendered jail.local enables: the bundle is the one source."""
    from mailserver.core import render  # the renderer pulls in Jinja2 and the templates; only inside checks need it

    jail = next(f for f in render.render(s).files if f.path == catalog.PRODUCTION.fail2ban_jail)
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(jail.content)
    return [name for name in parser.sections() if parser.getboolean(name, "enabled", fallback=False)]


def check_inside(t: Target) -> list[Result]:
    r = t.runner
    if r is None:
        why = "no --ssh given: inside checks need a shell on the host"
        return [result(c.id, "skipped", "host", c.verifies, why, "add --ssh ec2-user@<ip>")
                for c in CHECKS if c.category == "inside"]
    # One trivial script first: when ssh or sudo fails, every other script fails the same
    # way, and its error text ("Permission denied (publickey).") must not be read as df or
    # meminfo output. Each inside check is then unknown, with the reason and what to do.
    code, text = r.run("echo doctor-ok")
    if code != 0 or text.strip().splitlines()[-1:] != ["doctor-ok"]:
        why = _show([line for line in text.strip().splitlines() if line.strip()][-1:] or [f"exit {code}"], 160)
        fix = (f"check that `ssh {r.destination} sudo true` works without a prompt (key, user, "
               "passwordless sudo)" if isinstance(r, SshRunner) else "run the doctor as root on the host")
        return [result(c.id, "unknown", "host", c.verifies, f"no shell on the host: {why}", fix)
                for c in CHECKS if c.category == "inside" and c.id != "snapshots"] + check_snapshots(t)
    out: list[Result] = []
    lab = "skipped in lab: "
    # outbound 25
    if t.lab:
        out.append(result("outbound-25", "skipped", "host", "connects", lab + "the namespace has no route out", ""))
    else:
        code, text = r.run(f"timeout {int(t.timeout) + 2} bash -c 'exec 3<>/dev/tcp/{OUTBOUND_PROBE_HOST}/25 "
                           "&& head -c 3 <&3' 2>&1")
        ok = code == 0 and text.startswith("220")
        blocked_status: Status = "warning" if t.settings.relay == "ses" else "error"
        out.append(result("outbound-25", "ok" if ok else blocked_status, f"{OUTBOUND_PROBE_HOST}:25", "220 greeting",
                          text.strip()[:60] if ok else "no connection (blocked?)"
                          + (" - relay ses sends through 587, so only direct delivery is affected"
                             if t.settings.relay == "ses" else "")))
    # services
    code, text = r.run(services_script(r.layout))
    states = dict(line.strip().split(" ", 1) for line in text.splitlines() if " " in line.strip())
    for name in ("postfix", "dovecot", "opendkim"):
        state = states.get(name, f"unknown ({text.strip()[:40]})")
        svc_status: Status = "ok" if state == "active" else "error" if name in states else "unknown"
        out.append(result("services", svc_status, name, "active", state,
                          f"systemctl restart {name}; journalctl -u {name} says why it stopped"
                          if r.layout.systemd else f"restart the lab ({name} is down)"))
    # fail2ban
    if not r.layout.systemd:
        out.append(result("fail2ban", "skipped", "fail2ban", "active", lab + "no systemd, no fail2ban", ""))
    else:
        code, text = r.run("if ! systemctl cat fail2ban.service >/dev/null 2>&1; then echo missing; "
                           "else systemctl is-active fail2ban; "
                           "fail2ban-client status 2>/dev/null | sed -n 's/.*Jail list:[[:space:]]*//p'; fi")
        lines = text.strip().splitlines()
        state = lines[0].strip() if lines else "unknown"
        jails = expected_jails(t.settings)
        if state == "missing":
            out.append(result("fail2ban", "warning", "fail2ban", "active", "not installed"))
        elif state != "active":
            out.append(result("fail2ban", "error", "fail2ban", "active", state,
                              "systemctl enable --now fail2ban; journalctl -u fail2ban says why it stopped"))
        else:
            loaded = {j.strip() for j in (lines[1] if len(lines) > 1 else "").split(",") if j.strip()}
            missing = [j for j in jails if j not in loaded]
            out.append(result("fail2ban", "error" if missing else "ok", "fail2ban", "jails " + ", ".join(jails),
                              f"jails {', '.join(sorted(loaded)) or 'none'} loaded"
                              + (f"; missing {', '.join(missing)}" if missing else ""),
                              "fail2ban-client -d shows why a jail does not load (a filter that finds no log "
                              "source, a wrong backend); pulumi up re-applies the jails"))
    # resolver
    if not r.layout.systemd:
        out.append(result("resolver", "skipped", "unbound", "active", lab + "the lab has no DNS", ""))
    else:
        code, text = r.run("systemctl is-active unbound; "
                           f"awk '$1 == \"nameserver\" {{ print $2; exit }}' {catalog.RESOLV_CONF}")
        lines = text.strip().splitlines() + ["", ""]
        unbound_state, nameserver = lines[0].strip() or "unknown", lines[1].strip() or "none"
        uses_it = nameserver == catalog.RESOLVER
        if unbound_state != "active":
            # With resolv.conf naming it, the host has no DNS at all: renewals, updates and
            # outbound mail stop. Without, only the DNSBL and DANE checks are lost.
            out.append(result("resolver", "error" if uses_it else "warning", "unbound", "active",
                              f"unbound {unbound_state}, resolv.conf: {nameserver}"))
        else:
            out.append(result("resolver", "ok" if uses_it else "warning", catalog.RESOLV_CONF,
                              f"nameserver {catalog.RESOLVER}", f"nameserver {nameserver}"))
    # disk
    q = shlex.quote
    paths = " ".join(q(p) for p in (r.layout.vmail_dir, r.layout.queue_dir, "/"))
    code, text = r.run(f"df -P {paths} 2>/dev/null | tail -n +2")
    seen = set()
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 6 or cols[5] in seen or not cols[4].rstrip("%").isdigit():
            continue
        seen.add(cols[5])
        pct = int(cols[4].rstrip("%"))
        out.append(result("disk", disk_status(pct), cols[5], f"< {DISK_WARNING_PERCENT}% used", f"{pct}% used"))
    if not seen:
        out.append(result("disk", "unknown", "filesystems", "df output", text.strip()[:80] or f"exit {code}"))
    # mail volume
    if not r.layout.systemd:
        out.append(result("mail-volume", "skipped", r.layout.vmail_dir, "a mount point",
                          lab + "the lab's mail is a directory", ""))
    else:
        code, text = r.run(f"findmnt -n -o FSTYPE,LABEL --mountpoint {q(r.layout.vmail_dir)} || true")
        fs = text.split()
        want = f"{catalog.VMAIL_FS_TYPE} {catalog.VMAIL_FS_LABEL}"
        if not fs:
            out.append(result("mail-volume", "error", r.layout.vmail_dir, want, "not a mount point: on the root disk"))
        else:
            out.append(result("mail-volume", "ok" if " ".join(fs[:2]) == want else "warning", r.layout.vmail_dir,
                              want, " ".join(fs)))
    # memory
    code, text = r.run("grep -E '^(MemTotal|MemAvailable):' /proc/meminfo")
    mem = meminfo(text)
    if mem.get("MemTotal") and "MemAvailable" in mem:
        avail = 100 * mem["MemAvailable"] / mem["MemTotal"]
        out.append(result("memory", memory_status(avail), "memory", f"> {MEMORY_WARNING_PERCENT}% available",
                          f"{avail:.0f}% available ({mem['MemAvailable'] // 1024} of {mem['MemTotal'] // 1024} MiB)"))
    else:
        out.append(result("memory", "unknown", "memory", "/proc/meminfo", text.strip()[:80]))
    # queue
    code, text = r.run(f"postqueue -c {q(r.layout.postfix_dir)} -j")
    if code != 0:
        out.append(result("queue", "unknown", "queue", "postqueue output", text.strip()[:80] or f"exit {code}"))
    else:
        size = sum(1 for line in text.splitlines() if line.strip().startswith("{"))
        out.append(result("queue", queue_status(size), "queue", f"< {QUEUE_WARNING} messages", f"{size} messages"))
    # certificate renewal
    if not r.layout.systemd:
        out.append(result("cert-renewal", "skipped", "acme.sh cron", "scheduled",
                          lab + "the lab's certificate is not from acme.sh", ""))
    else:
        code, text = r.run("crontab -l -u root 2>/dev/null | grep -F 'acme.sh' | grep -F -- '--cron' >/dev/null "
                           "&& echo job || echo nojob; systemctl is-active crond 2>/dev/null || true")
        job, cron = (text.split() + ["", ""])[:2]
        ok = job == "job" and cron == "active"
        out.append(result("cert-renewal", "ok" if ok else "error", "acme.sh cron", "cron job and crond active",
                          f"{'cron job' if job == 'job' else 'no acme.sh cron job'}, crond {cron or 'unknown'}"))
    out.extend(check_snapshots(t))
    return out


def meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo's "Key: number kB" lines; anything else (an error message) is ignored."""
    out = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 2 and cols[0].endswith(":") and cols[1].isdigit():
            out[cols[0].rstrip(":")] = int(cols[1])
    return out


def _aws_json(t: Target, aws: str, args: list[str]) -> tuple[Any, str]:
    """(parsed JSON output, error) of one AWS CLI call."""
    argv = [aws, *args, "--output", "json"] + (["--region", t.aws_region] if t.aws_region else [])
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return None, "aws timed out"
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["aws failed"])[-1][:100]
    try:
        return json.loads(proc.stdout or "null"), ""
    except json.JSONDecodeError:
        return None, f"aws printed no JSON: {proc.stdout.strip()[:60]}"


def check_snapshots(t: Target) -> list[Result]:
    if t.lab:
        return [result("snapshots", "skipped", "data volume", "recent snapshot", "skipped in lab: no AWS", "")]
    aws = shutil.which("aws")
    if aws is None:
        return [result("snapshots", "unknown", "data volume", "recent snapshot", "the AWS CLI is not installed")]
    if not t.volume_id:
        return [result("snapshots", "unknown", "data volume", "recent snapshot",
                       "no data volume id (the outputs name none; give --volume-id)")]
    expected = f"< {SNAPSHOT_WARNING_HOURS} h old"
    # Only completed snapshots: a pending one (started, still copying) restores nothing yet,
    # and a failed ("error") one never will.
    times, error = _aws_json(t, aws, ["ec2", "describe-snapshots", "--owner-ids", "self", "--filters",
                                      f"Name=volume-id,Values={t.volume_id}", "Name=status,Values=completed",
                                      "--query", "Snapshots[].StartTime"])
    if error:
        return [result("snapshots", "unknown", t.volume_id, expected, error)]
    try:
        newest = max((dt.datetime.fromisoformat(str(x)) for x in times or []), default=None)
    except ValueError as e:
        return [result("snapshots", "unknown", t.volume_id, expected, f"unreadable StartTime: {e}")]
    created = None
    if newest is None:
        found, error = _aws_json(t, aws, ["ec2", "describe-volumes", "--volume-ids", t.volume_id,
                                          "--query", "Volumes[0].CreateTime"])
        try:
            created = dt.datetime.fromisoformat(str(found)) if found and not error else None
        except ValueError:
            created = None
    status, text = snapshot_status(newest, t.now(), created)
    if newest is None and created is None and error:
        text += f" (volume age unknown: {error})"
    # Snapshots missing or old: the lifecycle policy is not doing its job (disabled, its role
    # gone, or the volume lost the tag the policy selects).
    fix = (f"check the Data Lifecycle Manager policy (aws dlm get-lifecycle-policies: ENABLED?) and that the "
           f"volume still carries the {catalog.SNAPSHOT_TAG_KEY} tag; pulumi up restores both")
    return [result("snapshots", status, t.volume_id, expected, text, fix)]


# --- run and report ------------------------------------------------------------------------


def run(t: Target) -> list[Result]:
    """Every check, in CHECKS order."""
    res = _resolver(t.resolver, t.timeout)
    out = check_dns(t, res) + check_ptr(t, res)
    port_results, probes = check_ports(t)
    out += port_results + check_tls(t, probes)
    out += check_open_relay(t, probes) + check_smtp_auth(t, probes) + check_plaintext_login(t, probes)
    out += check_blocklists(t)
    out += check_inside(t)
    order = {c.id: i for i, c in enumerate(CHECKS)}
    return sorted(out, key=lambda r: order[r.check])


STYLE = {"ok": "green", "warning": "yellow", "error": "bold red", "unknown": "magenta", "skipped": "dim"}


def condensed(results: Sequence[Result]) -> list[Result]:
    """One row for a check whose results are all ok; every row of the others."""
    out: list[Result] = []
    by_check: dict[str, list[Result]] = {}
    for r in results:
        by_check.setdefault(r.check, []).append(r)
    for check, rows in by_check.items():
        if len(rows) > 1 and all(r.status == "ok" for r in rows):
            subjects = ", ".join(r.subject for r in rows)
            out.append(Result(check, "ok", _show([subjects], 60), CHECK_IDS[check].title, f"{len(rows)} ok"))
        else:
            out.extend(rows)
    return out


def render_table(results: Sequence[Result], file: Any = None, verbose: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mail server doctor", show_lines=False)
    for col in ("status", "check", "subject", "expected", "found", "fix"):
        table.add_column(col, overflow="fold")
    for r in (results if verbose else condensed(results)):
        table.add_row(f"[{STYLE[r.status]}]{r.status}[/]", r.check, r.subject, r.expected, r.found, r.fix)
    console = Console(file=file or sys.stdout, width=200 if not (file or sys.stdout).isatty() else None)
    console.print(table)
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n))


def as_json(results: Sequence[Result]) -> str:
    return json.dumps({"ok": exit_code(results) == 0, "summary": summary(results),
                       "results": [r.as_dict() for r in results]}, indent=2)


def check_table() -> str:
    """The README's table of checks."""
    rows = ["| check | category | what it verifies | fix when it fails |", "|---|---|---|---|"]
    for c in CHECKS:
        rows.append(f"| `{c.id}` | {c.category} | {c.verifies} | {c.fix} |".replace("\n", " "))
    return "\n".join(rows)


# --- command line ---------------------------------------------------------------------------


class SetupError(Exception):
    """The doctor cannot run its checks: nothing was judged."""



def read_outputs(path: str | None, stack: str | None) -> dict[str, Any]:
    """The stack's outputs: a file of `pulumi stack output --json`, or the CLI when present."""
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SetupError(f"cannot read the outputs file {path}: {e}") from e
        if not isinstance(data, dict):
            raise SetupError(f"{path} is not the JSON object `pulumi stack output --json` prints")
        return data
    if stack and shutil.which("pulumi"):
        proc = subprocess.run(["pulumi", "stack", "output", "--json", "--stack", stack], capture_output=True,
                              text=True, check=False, timeout=120)
        if proc.returncode == 0:
            data = json.loads(proc.stdout)
            return data if isinstance(data, dict) else {}
        print(f"doctor: pulumi stack output failed, going on without outputs: {proc.stderr.strip()[:200]}",
              file=sys.stderr)
    return {}


def adhoc_raw(domains: list[str], host: str | None) -> dict[str, Any]:
    """Settings for --domain/--host without a stack file: the program's defaults for those
    domains (the placeholders below only feed keys the doctor never reads)."""
    return {
        "domains": domains, "hostname": host or "",
        "cloudflareZoneIds": [f"{d}={'0' * 32}" for d in domains], "cloudflareAccountId": "0" * 32,
        "adminCidrs": ["192.0.2.1/32"], "mailboxes": [f"postmaster@{domains[0]}"],
        "mailboxPasswords": [f"postmaster@{domains[0]}:{'x' * 32}"],
    }


def build_target(args: argparse.Namespace) -> Target:
    if args.domain:
        raw = adhoc_raw(args.domain, args.host)
    else:
        raw = load_stack(args.stack)
        # Passwords are encrypted in the stack file and the doctor never logs in: placeholders.
        raw["mailboxPasswords"] = random_passwords(raw)
        if args.host:
            raw["hostname"] = args.host
    settings, _ = parse(raw)
    outputs = read_outputs(args.outputs, None if args.domain else args.stack)
    res = _resolver(args.resolver, args.timeout)
    ip = args.ip or outputs.get("publicIp")
    if not ip:
        found, _ = lookup(res, settings.hostname, "A")
        if not found:
            raise SetupError(f"no IP: {settings.hostname} does not resolve; give --ip or --outputs")
        ip = found[0]
    dkim: dict[str, str | None] = {name: None for name in dkim_names(settings)}
    ses_dkim: list[tuple[str, str]] = []
    for rec in outputs.get("dnsRecords") or []:
        name = str(rec.get("name", "")).lower().rstrip(".")
        if rec.get("type") == "TXT" and name in dkim:
            dkim[name] = str(rec.get("content"))
    for rec in (outputs.get("sesRelay") or {}).get("dnsRecords") or []:
        if rec.get("type") == "CNAME" and "._domainkey." in str(rec.get("name")):
            ses_dkim.append((str(rec["name"]).lower().rstrip("."), str(rec["content"])))
    runner: Runner | None = None
    if args.ssh:
        runner = SshRunner(args.ssh, options=tuple(args.ssh_option or ()))
    elif args.inside == "lab":
        if not args.lab_root:
            raise SetupError("--inside lab needs --lab-root (the lab's directory)")
        runner = LocalRunner(catalog.lab_layout(Path(args.lab_root)), where="lab")
    elif args.inside == "local":
        runner = LocalRunner(catalog.PRODUCTION)
    return Target(settings=settings, ip=str(ip), dkim=dkim, resolver=args.resolver,
                  blocklist_resolver=args.blocklist_resolver, cafile=args.cafile, source=args.source,
                  timeout=args.timeout, runner=runner, ses_dkim=ses_dkim,
                  volume_id=args.volume_id or outputs.get("dataVolumeId"),
                  aws_region=args.aws_region or str(raw.get(AWS_REGION_KEY) or "") or None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mailserver doctor", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", default="dev", help="stack whose settings to check (Pulumi.<stack>.yaml)")
    ap.add_argument("--domain", action="append", help="check these mail domains with default settings "
                    "instead of a stack (repeat for several; the first is primary)")
    ap.add_argument("--host", help="the mail host name (default: the stack's, or mail.<first domain>)")
    ap.add_argument("--ip", help="the server's IP (default: the outputs' publicIp, else the host's A record)")
    ap.add_argument("--outputs", help="file holding `pulumi stack output --json` (default: ask the Pulumi CLI "
                    "when installed); gives the IP and the DKIM keys to compare")
    ap.add_argument("--resolver", help="DNS resolver IP (default: the system's)")
    ap.add_argument("--blocklist-resolver", help="resolver for blocklist lookups; Spamhaus refuses public "
                    "resolvers (default: --resolver)")
    ap.add_argument("--cafile", help="trusted roots for the certificate check (default: the system's)")
    ap.add_argument("--source", help="source address of the probes (the lab: 127.0.0.2)")
    ap.add_argument("--timeout", type=float, default=8.0, help="seconds per network operation")
    ap.add_argument("--ssh", help="user@host: run the inside checks over ssh ... sudo bash -s")
    ap.add_argument("--ssh-option", action="append", help="extra ssh option, e.g. -i key (repeatable)")
    ap.add_argument("--inside", choices=("lab", "local"), help="run the inside checks here: on the host "
                    "itself (local), or inside the lab's namespace (lab, with --lab-root)")
    ap.add_argument("--lab-root", help="the lab's directory (printed by python -m mailserver lab)")
    ap.add_argument("--volume-id", help="EBS volume whose snapshots to check (default: the outputs' dataVolumeId)")
    ap.add_argument("--aws-region", help="region for the snapshot lookup (default: the stack's aws:region)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--verbose", action="store_true", help="one table row per result, even for checks all ok")
    args = ap.parse_args(argv)
    try:
        target = build_target(args)
    except SetupError as e:
        print(f"doctor: {e}", file=sys.stderr)
        return EXIT_SETUP
    started = time.monotonic()
    results = run(target)
    if args.json:
        print(as_json(results))
    else:
        render_table(results, verbose=args.verbose)
        print(f"doctor: {time.monotonic() - started:.1f}s")
    return exit_code(results)
