"""The doctor against the lab: real postfix, dovecot, rspamd and redis, a real DNS server (unbound)
serving the records the program plans, and a certificate from a test CA.

One lab and one DNS server for the module, and the doctor's run on the untouched lab, made
by the fixture: it must come out all ok (inside checks the lab cannot answer are "skipped in
lab", never ok), and each deliberate fault must then turn exactly its own check red, with a
message that says what is wrong, and be undone after. Any test runs alone, in any order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailserver import clients, doctor
from mailserver.core import catalog, records, relay, web
from mailserver.core.settings import ROOT, Settings
from mailserver.lab import netns
from mailserver.lab.server import Lab, public_key_pem
from mailserver.waiting import wait_until
from tests.lab.doctor_support import DNS_ADDRESS, LabDns, LabWeb, TestCa, self_signed
from tests.support import dev_settings

LAB_IP = clients.SERVER
PTR_NAME = "1.0.0.127.in-addr.arpa"
WEB_ADDRESS = "127.0.0.80"  # stands for the Cloudflare address the Worker's names resolve to (LabWeb)
INSIDE_SKIPPED_IN_LAB = {"outbound-25", "fail2ban", "mail-volume", "cert-renewal", "snapshots", "resolver",
                         "auto-updates", "reboot", "security-updates"}


def served_records(s: Settings, dkim_keys: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """What the lab's DNS serves: the program's own plan (not the doctor's reading of it),
    DKIM keys of the lab, the SES MAIL FROM records, a PTR for the lab's address and the
    Worker's names. Zone-file data, names absolute."""
    planned = list(records.planned_records(s, LAB_IP))
    planned += [records.dkim_record(s, d, s.dkim_selector, public_key_pem(k)) for d, k in dkim_keys.items()]
    planned += [r for r in relay.ses_records(s) if r.type != "CNAME"]
    out: dict[str, list[tuple[str, str]]] = {}

    def absolute(name: str) -> str:
        return name if name == "." else name + "."

    for r in planned:
        if r.type == "MX":
            data = f"{r.priority} {absolute(r.content)}"
        elif r.type == "SRV":
            *nums, target = r.content.split()
            data = " ".join([*nums, absolute(target)])
        else:
            data = r.content
        out.setdefault(r.fqdn, []).append((r.type, data))
    out[PTR_NAME] = [("PTR", s.hostname + ".")]
    for _, name in web.web_hostnames(s):
        out[name] = [("A", WEB_ADDRESS)]
    return out


def web_pages(s: Settings) -> dict[tuple[str, str], str]:
    """What the Worker serves, as the program renders it (core/web.py), on every web hostname."""
    pages = {}
    for d in s.domains:
        pages[(f"mta-sts.{d}", "/.well-known/mta-sts.txt")] = web.mta_sts_policy(s)
        pages[(f"autoconfig.{d}", "/mail/config-v1.1.xml")] = web.autoconfig_xml(s)
    return pages


@dataclasses.dataclass
class Env:
    lab: Lab
    dns: LabDns
    ca: TestCa
    target: doctor.Target
    good_cert: tuple[str, str]
    outputs: Path
    healthy: list[doctor.Result]  # the doctor's run on the untouched lab
    healthy_seconds: float
    web: LabWeb

    @property
    def baseline(self) -> dict[str, doctor.Status]:
        return doctor.summary(self.healthy)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    settings, secrets = dev_settings()
    ca = TestCa()
    good = ca.issue(settings.hostname)
    with Lab(settings, secrets, certificate=good) as lab, netns.entered(lab.ns):
        zones = [*settings.domains, "127.in-addr.arpa", *settings.blocklists, *catalog.DOMAIN_BLOCKLISTS]
        dkim = {d: lab.dkim_keys[d] for d in settings.domains}
        lab_dns = LabDns(lab.ns, lab.root / "dns", zones, served_records(settings, dkim))
        lab_dns.start()
        names = [name for _, name in web.web_hostnames(settings)]
        lab_web = LabWeb(WEB_ADDRESS, lab.root / "web", ca.issue(names[0], more_names=names[1:]),
                         web_pages(settings))
        try:
            cafile = lab.root / "test-ca.pem"
            cafile.write_text(ca.pem)
            dkim_txt = {records.dkim_name(settings.dkim_selector, d):
                        records.txt(records.dkim(public_key_pem(k))) for d, k in dkim.items()}
            # What `pulumi stack output --json` would hold, for the command-line run.
            outputs = lab.root / "outputs.json"
            outputs.write_text(json.dumps({"publicIp": LAB_IP, "hostname": settings.hostname,
                                           "dnsRecords": [{"name": n, "type": "TXT", "content": c}
                                                          for n, c in dkim_txt.items()]}))
            target = doctor.Target(settings=settings, ip=LAB_IP, dkim=dkim_txt, resolver=DNS_ADDRESS,
                                   cafile=str(cafile), source=clients.OUTSIDE, timeout=3.0,
                                   runner=doctor.LocalRunner(lab.layout, where="lab"))
            started = time.monotonic()
            healthy = doctor.run(target)
            yield Env(lab, lab_dns, ca, target, good, outputs, healthy, time.monotonic() - started, lab_web)
        finally:
            lab_web.stop()
            lab_dns.stop()


def run(env: Env) -> tuple[list[doctor.Result], dict[str, doctor.Status]]:
    results = doctor.run(env.target)
    return results, doctor.summary(results)


def not_ok(results: list[doctor.Result]) -> list[doctor.Result]:
    return [r for r in results if r.status not in ("ok", "skipped")]


def test_healthy_lab_is_all_ok(env: Env) -> None:
    results, summary = env.healthy, env.baseline
    print(f"doctor run against the lab: {env.healthy_seconds:.2f}s, {len(results)} results")
    bad = not_ok(results)
    assert not bad, "\n".join(map(str, bad))
    for check in doctor.CHECKS:
        if check.id in INSIDE_SKIPPED_IN_LAB:
            assert summary[check.id] == "skipped", check.id
            assert all(r.found.startswith("skipped in lab") for r in results if r.check == check.id)
        elif check.id == "dns-ses":
            assert summary[check.id] == "ok"  # the dev stack relays through SES
        elif check.id.startswith("secondary-"):
            assert summary[check.id] == "skipped"  # secondaryMx is off here; tests/lab/test_secondary.py runs them
        else:
            assert summary[check.id] == "ok", check.id
    # Every port, every planned record and both daemons were looked at, not skipped.
    seen = {r.subject for r in results if r.check == "ports"}
    assert seen >= {f"port {p} ({n})" for p, n in [(25, "smtp"), (993, "imaps"), (110, "pop3"), (4190, "sieve")]}
    assert len([r for r in results if r.check == "ports"]) == len([s for s in catalog.SERVICES if not s.admin_only])
    assert {r.subject for r in results if r.check == "services"} == set(catalog.mail_daemons(env.target.settings.os))
    # rspamd signed a message of every domain, under the current selector.
    assert {r.found for r in results if r.check == "spam-filter" and r.subject.startswith("DKIM signing ")} == \
        {f"signed d={d} s={env.target.settings.dkim_selector}" for d in env.target.settings.domains}
    assert doctor.exit_code(results) == 0


def expect_only(env: Env, changed: dict[str, doctor.Status], message: dict[str, str],
                dependents_skipped: bool = False) -> list[doctor.Result]:
    """Run the doctor: exactly the checks in `changed` move (to that status), each failing
    result says `message[check]`, every other check is as in the healthy run (or skipped
    because a port it needs does not answer, when `dependents_skipped`)."""
    assert not not_ok(env.healthy), "the untouched lab is not healthy: see test_healthy_lab_is_all_ok"
    results, summary = run(env)
    for check, status in summary.items():
        if check in changed:
            assert status == changed[check], (check, [r for r in results if r.check == check])
        elif dependents_skipped and status == "skipped":
            continue
        else:
            assert status == env.baseline[check], (check, [r for r in results if r.check == check])
    for check, text in message.items():
        failing = [r for r in results if r.check == check and r.status == changed[check]]
        assert failing and all(r.fix for r in failing)
        assert any(text in r.found for r in failing), (text, failing)
    # 1 beats 3: an error is reported whatever could not be checked; an unknown alone is 3.
    assert doctor.exit_code(results) == (1 if "error" in changed.values() else
                                         3 if "unknown" in changed.values() else 0)
    return results


def with_fault(do: Callable[[], object], undo: Callable[[], object], check: Callable[[], object]) -> None:
    do()
    try:
        check()
    finally:
        undo()


def test_wrong_mx(env: Env) -> None:
    before = env.dns.replace("example.net", "MX", ["10 mx.elsewhere.example."])
    with_fault(lambda: None, lambda: env.dns.set("example.net", before),
               lambda: expect_only(env, {"dns-mx": "error"}, {"dns-mx": "unexpected 10 mx.elsewhere.example"}))


# A record of the plan changed by hand in Cloudflare, one case a check: (check, name, type, what
# the name then holds of that type, the other checks that must fail with it, the doctor's finding).
HAND_EDITS = [
    # The PTR's name no longer leads back to the address: forward confirmation fails with it.
    ("dns-a", "mail.example.com", "A", ["192.0.2.99"], {"ptr": "error"}, "192.0.2.99"),
    ("dns-spf", "example.com", "TXT", ['"v=spf1 mx -all"', '"v=spf1 +all"'], {}, "v=spf1 +all"),
    ("dns-dmarc", "_dmarc.example.net", "TXT", ['"v=DMARC1; p=none"'], {}, "p=none"),
    ("dns-mta-sts", "_mta-sts.example.com", "TXT", ['"v=STSv1; id=20200101"'], {"web-mta-sts": "error"}, "20200101"),
    ("dns-tls-rpt", "_smtp._tls.example.com", "TXT", [], {}, "missing"),
    ("dns-caa", "mail.example.com", "CAA", ['0 issue "ca.example.org"'], {}, "ca.example.org"),
    ("dns-srv", "_imaps._tcp.example.net", "SRV", [], {}, "missing"),
    ("dns-web", "autoconfig.example.com", "A", [], {"web-autoconfig": "error"}, "does not resolve"),
    ("dns-ses", "bounce.example.com", "MX", [], {}, "missing"),
]


@pytest.mark.parametrize(("check", "name", "rtype", "data", "also", "found"), HAND_EDITS,
                         ids=[case[0] for case in HAND_EDITS])
def test_a_planned_record_changed_by_hand(env: Env, check: str, name: str, rtype: str, data: list[str],
                                          also: dict[str, doctor.Status], found: str) -> None:
    assert any(t == rtype for t, _ in env.dns.records[name]), (name, rtype)  # the plan has it
    before = env.dns.replace(name, rtype, data)
    with_fault(lambda: None, lambda: env.dns.set(name, before),
               lambda: expect_only(env, {check: "error", **also}, {check: found}))


# Answered in the lab but not failed there: the lab shares this machine's disks and memory, and
# holding 20 messages in its queue takes a stuck delivery that breaks other checks too. Their
# thresholds are tested on a faked host (tests/unit/test_doctor.py).
NO_LAB_FAULT = {"disk", "memory", "queue"}


def test_every_check_the_lab_answers_has_a_lab_fault() -> None:
    """The README says each check is failed in the lab by its fault: every check the lab does
    not skip appears here with a failing status, in an expected outcome of some test."""
    # The secondary MX's checks are failed where a secondary runs (test_secondary.py).
    source = Path(__file__).read_text() + (Path(__file__).parent / "test_secondary.py").read_text()
    failed = set(re.findall(r"""["']([a-z0-9-]+)["']: ["'](?:error|warning|unknown)["']""", source))
    failed |= {case[0] for case in HAND_EDITS}
    answered = {c.id for c in doctor.CHECKS if not c.lab_skip}
    assert answered - NO_LAB_FAULT <= failed, sorted(answered - NO_LAB_FAULT - failed)
    assert not NO_LAB_FAULT & failed  # once one is failed in the lab, drop it from the set


def test_missing_dkim_record(env: Env) -> None:
    name = records.dkim_name(env.target.settings.dkim_selector, "example.com")
    before = env.dns.set(name, [])
    with_fault(lambda: None, lambda: env.dns.set(name, before),
               lambda: expect_only(env, {"dns-dkim": "error"}, {"dns-dkim": "missing v=DKIM1"}))


def test_expired_certificate(env: Env) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = env.ca.issue(env.target.settings.hostname, not_before=now - dt.timedelta(days=92),
                           not_after=now - dt.timedelta(days=2))
    with_fault(lambda: env.lab.install_certificate(*expired), lambda: env.lab.install_certificate(*env.good_cert),
               lambda: expect_only(env, {"tls-expiry": "error"}, {"tls-expiry": "expired 2 days ago"}))


def test_certificate_expiring_soon_is_a_warning(env: Env) -> None:
    """A 45-day certificate (Let's Encrypt's from 2028) with 14 days left: less than a third of
    its lifetime, though more than the 14 days a fixed threshold used to allow."""
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=14, hours=1)
    soon = env.ca.issue(env.target.settings.hostname, not_before=not_after - dt.timedelta(days=45),
                        not_after=not_after)
    with_fault(lambda: env.lab.install_certificate(*soon), lambda: env.lab.install_certificate(*env.good_cert),
               lambda: expect_only(env, {"tls-expiry": "warning"}, {"tls-expiry": "14 days left of 45"}))


def test_wrong_name_certificate(env: Env) -> None:
    wrong = env.ca.issue("wrong.example.org")
    with_fault(lambda: env.lab.install_certificate(*wrong), lambda: env.lab.install_certificate(*env.good_cert),
               lambda: expect_only(env, {"tls-name": "error"}, {"tls-name": "wrong.example.org"}))


def test_untrusted_certificate(env: Env) -> None:
    # Right name, valid dates, but from a CA the client does not trust.
    own = TestCa("Some Other Root CA").issue(env.target.settings.hostname)
    with_fault(lambda: env.lab.install_certificate(*own), lambda: env.lab.install_certificate(*env.good_cert),
               lambda: expect_only(env, {"tls-chain": "error"}, {"tls-chain": "issuer CN=Some Other Root CA"}))


def test_staging_certificate_is_flagged_as_the_dev_stack_asks(env: Env) -> None:
    # The dev stack uses Let's Encrypt's staging CA (acmeServer letsencrypt_test): its
    # certificates are untrusted by design, so a warning that says so, not an error.
    assert env.target.settings.acme_server == "letsencrypt_test"
    staging = TestCa("(STAGING) Pretend Pear X1").issue(env.target.settings.hostname)
    with_fault(lambda: env.lab.install_certificate(*staging), lambda: env.lab.install_certificate(*env.good_cert),
               lambda: expect_only(env, {"tls-chain": "warning"}, {"tls-chain": "Let's Encrypt staging"}))


def test_self_signed_certificate(env: Env) -> None:
    # baseline.sh's certificate, still there when acme.sh failed: flagged as such.
    own = self_signed(env.target.settings.hostname)
    with_fault(lambda: env.lab.install_certificate(*own), lambda: env.lab.install_certificate(*env.good_cert),
               lambda: expect_only(env, {"tls-chain": "error"}, {"tls-chain": "self-signed (CN=mail.example.com)"}))


def test_open_relay_setting(env: Env) -> None:
    # The seed guide's mynetworks (127.0.0.0/8) seen from 127.0.0.2: exactly the open relay
    # a proxy or a second address on the host turns it into. Settings accept it (not /0).
    settings, secrets = env.lab.settings, env.lab.secrets
    wide, _ = dev_settings(mynetworks=["127.0.0.0/8"])
    with_fault(lambda: env.lab.apply(wide, secrets), lambda: env.lab.apply(settings, secrets),
               lambda: expect_only(env, {"open-relay": "error"}, {"open-relay": "ACCEPTED"}))


def test_plaintext_auth_allowed(env: Env) -> None:
    conf = Path(env.lab.layout.dovecot_conf)
    original = conf.read_text()
    assert "disable_plaintext_auth = yes" in original

    def set_conf(text: str) -> None:
        conf.write_text(text)
        env.lab.reload_dovecot()

    # ssl = required alone already refuses plaintext logins: the fault needs both undone.
    allowed = original.replace("disable_plaintext_auth = yes", "disable_plaintext_auth = no")
    allowed = allowed.replace("ssl = required", "ssl = yes")
    def check() -> None:
        results = expect_only(env, {"plaintext-login": "error"}, {})
        # Each port red on its own, for its own protocol's reason (not one port standing for both).
        by_port = {r.subject: r for r in results if r.check == "plaintext-login"}
        assert set(by_port) == {"port 143", "port 110", "port 4190"}
        assert by_port["port 143"].status == "error", by_port
        assert "LOGIN offered in clear (no LOGINDISABLED)" in by_port["port 143"].found
        assert "AUTH=PLAIN offered in clear" in by_port["port 143"].found
        assert by_port["port 110"].status == "error", by_port
        assert "USER/PASS offered in clear" in by_port["port 110"].found
        assert "SASL PLAIN offered in clear" in by_port["port 110"].found
        assert by_port["port 4190"].status == "error", by_port
        assert "SASL PLAIN offered in clear" in by_port["port 4190"].found

    with_fault(lambda: set_conf(allowed), lambda: set_conf(original), check)


def postfix_fault(env: Env, values: dict[str, str], master: dict[str, str] | None = None,
                  ) -> tuple[Callable[[], None], Callable[[], None]]:
    """(do, undo) for settings of the lab's postfix: main.cf ones with postconf -e, master.cf
    service overrides ("587/inet/name") with postconf -P; taken back to what apply.sh wrote
    (or removed again, when it wrote nothing), then reloaded."""
    conf_dir = env.lab.layout.postfix_dir
    master = master or {}
    explicit = {line.split(" = ", 1)[0]: line.split(" = ", 1)[1] if " = " in line else ""
                for line in env.lab.run(["postconf", "-c", conf_dir, "-n"]).stdout.splitlines()}
    master_before = {k: env.lab.run(["postconf", "-c", conf_dir, "-Ph", k]).stdout.strip() for k in master}
    assert all(master_before.values()), master_before

    def do() -> None:
        env.lab.run(["postconf", "-c", conf_dir, "-e", *[f"{k}={v}" for k, v in values.items()]])
        if master:
            env.lab.run(["postconf", "-c", conf_dir, "-P", *[f"{k}={v}" for k, v in master.items()]])
        env.lab.reload_postfix()  # returns once no smtpd with the old settings is left

    def undo() -> None:
        back = [f"{k}={explicit[k]}" for k in values if k in explicit]
        if back:
            env.lab.run(["postconf", "-c", conf_dir, "-e", *back])
        gone = [k for k in values if k not in explicit]
        if gone:
            env.lab.run(["postconf", "-c", conf_dir, "-X", *gone])
        if master:
            env.lab.run(["postconf", "-c", conf_dir, "-P", *[f"{k}={v}" for k, v in master_before.items()]])
        env.lab.reload_postfix()

    return do, undo


def test_tls_1_0_and_1_1_allowed_on_postfix(env: Env) -> None:
    # main.cf's protocol floor removed: Debian's postfix then completes TLS 1.0 and 1.1 with a
    # client that offers them (the doctor's, at OpenSSL security level 0). The three postfix
    # ports turn red, dovecot's (ssl_min_protocol) stay ok.
    do, undo = postfix_fault(env, {"smtpd_tls_protocols": ">=TLSv1", "smtpd_tls_mandatory_protocols": ">=TLSv1"})

    def check() -> None:
        results = expect_only(env, {"tls-version": "error"}, {"tls-version": "accepted TLSv1, TLSv1.1"})
        red = {r.subject for r in results if r.check == "tls-version" and r.status == "error"}
        assert red == {"port 25", "port 587", "port 465"}

    with_fault(do, undo, check)


@pytest.mark.parametrize("port,master", [(25, {}), (587, {"587/inet/smtpd_tls_security_level": "may"})])
def test_auth_offered_in_clear(env: Env, port: int, master: dict[str, str]) -> None:
    # AUTH before TLS: passwords in clear, and on the MX port password guessing where no
    # client should log in (Mailu #2880). On 587 it takes TLS made optional as well.
    do, undo = postfix_fault(env, {"smtpd_sasl_auth_enable": "yes", "smtpd_tls_auth_only": "no"}
                             if port == 25 else {"smtpd_tls_auth_only": "no"}, master)
    log = env.lab.layout.postfix_log

    def check() -> None:
        since = Path(log).stat().st_size
        results = expect_only(env, {"auth-before-tls": "error"}, {"auth-before-tls": "AUTH offered"})
        red = {r.subject: r.found for r in results if r.check == "auth-before-tls" and r.status == "error"}
        assert list(red) == [f"port {port}"], red
        if port == 587:
            assert "AUTH in clear answered 334" in red["port 587"]
        # Even where AUTH is open in clear, the probe sends no credentials (it cancels at
        # 334): nothing for the postfix-sasl jail to count.
        wait_sessions_logged(env, log, since)
        hits, report = fail2ban_hits(env, log, since, "postfix[mode=auth]")
        assert hits == 0, report

    with_fault(do, undo, check)


DOVECOT_PORTS = [s.port for s in catalog.SERVICES if s.daemon == "dovecot"]


def wait_sessions_logged(env: Env, postfix_log: str, since: int, dovecot_log: str | None = None,
                         dovecot_since: int = 0) -> None:
    """Return once the daemons have logged the end of every session since the offsets (the
    doctor's client has gone before the server notices): in postfix's log each smtpd
    "connect from" has its "disconnect from"; dovecot, whose log has no line at connect,
    holds no connection open any more and has logged its "Disconnected"."""
    def postfix_done() -> bool:
        text = Path(postfix_log).read_bytes()[since:]
        return text.count(b" connect from ") <= text.count(b" disconnect from ")

    wait_until(postfix_done, 10, 0.05, "postfix to log the end of every session")
    if dovecot_log is None:
        return
    match = " or ".join(f"sport = :{p}" for p in DOVECOT_PORTS)

    def dovecot_done() -> bool:
        open_ = env.lab.run(["ss", "-Htn", "state", "established", "state", "close-wait", f"( {match} )"]).stdout
        return not open_.strip() and b"Disconnected" in Path(dovecot_log).read_bytes()[dovecot_since:]

    wait_until(dovecot_done, 10, 0.05, "dovecot to close and log every session")


def fail2ban_hits(env: Env, log: str, since: int, filter_name: str) -> tuple[int, str]:
    """How many lines of `log` after offset `since` a fail2ban filter of the jails
    (templates/fail2ban/jail.local.j2) counts against a client, by fail2ban-regex; and its report."""
    path = env.lab.root / f"f2b-{filter_name.split('[')[0]}.log"
    path.write_bytes(Path(log).read_bytes()[since:])
    proc = subprocess.run(["fail2ban-regex", "--print-all-matched", str(path), filter_name], capture_output=True,
                          text=True, check=True, timeout=60)
    match = re.search(r"^Lines: (\d+) lines, \d+ ignored, (\d+) matched", proc.stdout, re.MULTILINE)
    assert match and int(match[1]) > 0, proc.stdout  # the filter read the probes' lines
    return int(match[2]), proc.stdout


def test_a_doctor_run_leaves_nothing_fail2ban_counts(env: Env) -> None:
    # Three runs used to ban the operator: each plaintext LOGIN/USER probe left an "auth
    # failed" line that the dovecot jail counts. The probes now only read capabilities.
    logs = {"dovecot": env.lab.layout.dovecot_log, "postfix[mode=auth]": env.lab.layout.postfix_log}
    offsets = {f: Path(log).stat().st_size for f, log in logs.items()}
    results, _ = run(env)
    assert [r for r in results if r.check in ("plaintext-login", "auth-before-tls") and r.status != "ok"] == []
    wait_sessions_logged(env, logs["postfix[mode=auth]"], offsets["postfix[mode=auth]"], logs["dovecot"],
                         offsets["dovecot"])
    for filter_name, log in logs.items():
        hits, report = fail2ban_hits(env, log, offsets[filter_name], filter_name)
        assert hits == 0, report
    assert "Disconnected" in Path(logs["dovecot"]).read_text()[offsets["dovecot"]:]  # the probes were logged


def test_port_25_first_contact_with_a_short_timeout(env: Env) -> None:
    # A client postscreen has not seen waits postscreen_greet_wait (the lab's 1 s) for the
    # banner; --timeout 0.5 must not turn port 25 red. 127.0.0.9: an address no other test uses.
    target = dataclasses.replace(env.target, source="127.0.0.9", timeout=0.5)
    results, _ = doctor.check_ports(target)
    port25 = next(r for r in results if r.subject.startswith("port 25 "))
    assert port25.status == "ok", port25


def test_dovecot_stopped(env: Env) -> None:
    def auth_answers() -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(Path(env.lab.layout.queue_dir) / catalog.AUTH_SOCKET))
            except OSError:
                return False
        return True

    def restart() -> None:
        env.lab.start_dovecot()
        wait_until(auth_answers, 30, 0.1, "dovecot's auth socket")
        # An smtpd that took a connection while dovecot's auth was gone exited at once ("fatal: no
        # SASL authentication mechanisms"), and postfix's master then throttles its service for
        # service_throttle_time (60 s; in the lab a reload did not end it): only a new master serves the
        # tests that follow at once.
        env.lab.stop_postfix()
        env.lab.start_postfix()
        env.lab.wait_ready()

    # Both the outside view (its four ports) and the inside view (the service) see it.
    with_fault(env.lab.kill_dovecot, restart,
               lambda: expect_only(env, {"ports": "error", "services": "error"},
                                   {"ports": "Connection refused", "services": "inactive"}, dependents_skipped=True))


def kill(pids: set[int], timeout: float = 10.0) -> None:
    """SIGKILL `pids`, as a crash would, and return once they are gone: reaped, not zombies,
    which still answer `kill -0` (the lab's init may take seconds to reap them)."""
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), timeout, 0.05,
               f"{sorted(pids)} to go after SIGKILL")


def reapply(env: Env) -> None:
    """What pulumi up does: apply.sh (re)starts what is down; then wait until rspamd signs again
    (its stale pid file and sockets say nothing about a new main process being up)."""
    env.lab.apply(env.lab.settings, env.lab.secrets)
    env.lab.wait_ready()
    t = dataclasses.replace(env.target, checks=frozenset({"spam-filter", "services"}))
    wait_until(lambda: doctor.exit_code(doctor.check_inside(t)) == 0, 30, 0.2, "rspamd and its store to answer",
               detail=lambda: env.lab.root.joinpath("log/rspamd.log").read_text()[-1500:])


def test_rspamd_stopped(env: Env) -> None:
    # Its main process and workers at once: systemd takes the workers with a main process that
    # dies. A worker left alone keeps answering (checked: its controller still signs).
    def do() -> None:
        main = env.lab.rspamd_pid()
        assert main is not None
        kill({main} | {pid for pid, _, _ in env.lab.serving_processes(("rspamd",))})

    # postfix takes no mail while its milter is gone (milter_default_action = tempfail): ports 25
    # and 587 answer STARTTLS with 454, and the checks that need them are skipped.
    with_fault(do, lambda: reapply(env),
               lambda: expect_only(env, {"services": "error", "spam-filter": "error", "ports": "error"},
                                   {"services": "inactive", "spam-filter": "Connection refused",
                                    "ports": "454"}, dependents_skipped=True))


def test_key_value_store_stopped(env: Env) -> None:
    pidfile = Path(env.lab.layout.kv_dir) / catalog.KV_PID_FILE
    kv = catalog.KV_STORES[env.target.settings.os].service

    def check() -> None:
        results = expect_only(env, {"services": "error", "spam-filter": "error"},
                              {"services": "inactive", "spam-filter": "Connection refused"})
        # rspamd still signs without its store: only the store is named.
        assert [r.subject for r in results if r.status == "error"] == [kv, "{} {}:{}".format(kv, *catalog.KV_ADDRESS)]

    with_fault(lambda: kill({int(pidfile.read_text().split()[0])}), lambda: reapply(env), check)


def test_dkim_key_gone(env: Env) -> None:
    """A domain's key removed and rspamd restarted (HUP: new workers, no key cached): its mail
    leaves unsigned, the other domain's is still signed."""
    s = env.target.settings
    key = Path(env.lab.layout.dkim_key_dir) / f"example.net.{s.dkim_selector}.key"
    aside = key.with_name(key.name + ".aside")

    def hup() -> None:
        before = env.lab.serving_processes(("rspamd",))
        main = env.lab.rspamd_pid()
        assert main is not None
        os.kill(main, signal.SIGHUP)
        env.lab.wait_rspamd_ready(before)

    def check() -> None:
        results = expect_only(env, {"spam-filter": "error"}, {"spam-filter": "rspamd added no DKIM-Signature"})
        failing = [r for r in results if r.check == "spam-filter" and r.status == "error"]
        assert [r.subject for r in failing] == ["DKIM signing example.net"]
        assert str(key) in failing[0].fix

    def do() -> None:
        key.rename(aside)
        hup()

    def undo() -> None:
        aside.rename(key)
        hup()

    with_fault(do, undo, check)


def test_ptr_mismatch(env: Env) -> None:
    before = env.dns.set(PTR_NAME, [("PTR", "ec2-127-0-0-1.compute.example.")])
    with_fault(lambda: None, lambda: env.dns.set(PTR_NAME, before),
               lambda: expect_only(env, {"ptr": "error"}, {"ptr": "ec2-127-0-0-1.compute.example"}))


def test_blocked_port(env: Env) -> None:
    # A firewall that drops (as a security group does), so the probe times out.
    table = "doctor_fault"
    nft = ["nft", "-f", "-"]
    rules = (f"table inet {table} {{\n chain input {{\n type filter hook input priority 0;\n"
             f" ip saddr {clients.OUTSIDE} tcp dport 993 drop\n }}\n}}\n")
    with_fault(lambda: env.lab.run(nft, stdin=rules), lambda: env.lab.run(["nft", "delete", "table", "inet", table]),
               lambda: expect_only(env, {"ports": "error"}, {"ports": "timed out"}, dependents_skipped=True))


def test_ip_on_a_blocklist(env: Env) -> None:
    name = f"1.0.0.127.{env.target.settings.blocklists[0]}"
    with_fault(lambda: env.dns.set(name, [("A", "127.0.0.2"), ("TXT", '"listed for the test"')]),
               lambda: env.dns.set(name, []),
               lambda: expect_only(env, {"blocklists": "error"}, {"blocklists": "listed (127.0.0.2)"}))


def test_blocklist_refusal_is_unknown_not_ok(env: Env) -> None:
    # Spamhaus's answer to queries through public resolvers: not a listing, not a clean bill.
    name = f"1.0.0.127.{env.target.settings.blocklists[0]}"
    with_fault(lambda: env.dns.set(name, [("A", "127.255.255.254")]), lambda: env.dns.set(name, []),
               lambda: expect_only(env, {"blocklists": "unknown"}, {"blocklists": "query refused"}))


def web_fault(env: Env, key: tuple[str, str], text: str) -> tuple[Callable[[], None], Callable[[], None]]:
    before = env.web.pages[key]

    def do() -> None:
        env.web.pages[key] = text

    def undo() -> None:
        env.web.pages[key] = before

    return do, undo


def test_mta_sts_policy_whose_mx_does_not_match(env: Env) -> None:
    s = env.target.settings
    assert s.mta_sts_mode == "testing"  # the dev stack's: the doctor compares with the plan, never "enforce"
    key = ("mta-sts.example.net", "/.well-known/mta-sts.txt")
    wrong = env.web.pages[key].replace(f"mx: {s.hostname}", "mx: mx.elsewhere.example")

    def check() -> None:
        results = expect_only(env, {"web-mta-sts": "error"},
                              {"web-mta-sts": f"mx mx.elsewhere.example (planned {s.hostname})"})
        red = [r for r in results if r.check == "web-mta-sts" and r.status != "ok"]
        assert [r.subject for r in red] == ["https://mta-sts.example.net/.well-known/mta-sts.txt"], red
        # The served text changed while the _mta-sts id did not: senders would keep the old one.
        assert "_mta-sts id is not the served policy's" in red[0].found

    with_fault(*web_fault(env, key, wrong), check)


def test_mta_sts_policy_in_another_mode_than_planned(env: Env) -> None:
    key = ("mta-sts.example.com", "/.well-known/mta-sts.txt")
    enforce = env.web.pages[key].replace("mode: testing", "mode: enforce")
    with_fault(*web_fault(env, key, enforce),
               lambda: expect_only(env, {"web-mta-sts": "error"}, {"web-mta-sts": "mode enforce (planned testing)"}))


def test_autoconfig_with_a_port_the_port_table_does_not_have(env: Env) -> None:
    key = ("autoconfig.example.com", "/mail/config-v1.1.xml")
    wrong = env.web.pages[key].replace("<port>993</port>", "<port>994</port>")
    with_fault(*web_fault(env, key, wrong),
               lambda: expect_only(env, {"web-autoconfig": "error"},
                                   {"web-autoconfig": "missing imap mail.example.com:993 SSL"}))


def test_web_certificate_from_an_untrusted_ca(env: Env) -> None:
    other = TestCa("Some Other Root CA")
    names = [name for _, name in web.web_hostnames(env.target.settings)]
    chain, key = other.issue(names[0], more_names=names[1:])
    env.web.stop()
    try:
        env.web = LabWeb(WEB_ADDRESS, env.lab.root / "web-bad", (chain, key), env.web.pages)
        expect_only(env, {"web-mta-sts": "error", "web-autoconfig": "error"},
                    {"web-mta-sts": "certificate not valid", "web-autoconfig": "certificate not valid"})
    finally:
        env.web.stop()
        names_chain = env.ca.issue(names[0], more_names=names[1:])
        env.web = LabWeb(WEB_ADDRESS, env.lab.root / "web", names_chain, env.web.pages)


def test_stray_aaaa_for_the_mail_host(env: Env) -> None:
    # The instance has no IPv6 address (the stack plans no AAAA): an AAAA someone added by hand
    # sends IPv6-capable senders to an address where nothing answers.
    host = env.target.settings.hostname
    assert env.target.ipv6 is None
    with_fault(lambda: env.dns.replace(host, "AAAA", ["2001:db8::25"]), lambda: env.dns.replace(host, "AAAA", []),
               lambda: expect_only(env, {"dns-aaaa": "error"}, {"dns-aaaa": "stray 2001:db8::25"}))


def test_password_login_turned_on(env: Env) -> None:
    # The way it happens on a real host: a drop-in that sorts before ours (an installer's, or
    # one written by hand while debugging a lockout). sshd keeps the first value it reads, so
    # the rendered drop-in is still there and still right, and password login is on anyway.
    fault = Path(env.lab.layout.sshd_dropin).parent / "00-debug.conf"
    with_fault(lambda: fault.write_text("PasswordAuthentication yes\n"), fault.unlink,
               lambda: expect_only(env, {"ssh-login": "error"}, {"ssh-login": "passwordauthentication yes"}))


def test_root_and_keyboard_interactive_login_turned_on(env: Env) -> None:
    # sshd -T names prohibit-password by its older spelling, without-password: still a root login.
    fault = Path(env.lab.layout.sshd_dropin).parent / "00-root.conf"
    with_fault(lambda: fault.write_text("PermitRootLogin prohibit-password\nKbdInteractiveAuthentication yes\n"),
               fault.unlink,
               lambda: expect_only(env, {"ssh-login": "error"},
                                   {"ssh-login": "kbdinteractiveauthentication yes, permitrootlogin without-password"}))


def test_mail_domain_on_the_domain_blocklist(env: Env) -> None:
    name = f"example.net.{catalog.DOMAIN_BLOCKLISTS[0]}"

    def check() -> None:
        results = expect_only(env, {"dbl": "error"}, {"dbl": "listed (127.0.1.2)"})
        red = [r.subject for r in results if r.check == "dbl" and r.status != "ok"]
        assert red == [name], red  # the other domain stays ok

    with_fault(lambda: env.dns.set(name, [("A", "127.0.1.2"), ("TXT", '"https://check.spamhaus.org"')]),
               lambda: env.dns.set(name, []), check)


def test_domain_blocklist_refusal_is_unknown_not_ok(env: Env) -> None:
    name = f"example.com.{catalog.DOMAIN_BLOCKLISTS[0]}"
    with_fault(lambda: env.dns.set(name, [("A", "127.255.255.254")]), lambda: env.dns.set(name, []),
               lambda: expect_only(env, {"dbl": "unknown"}, {"dbl": "query refused"}))


def _cli(env: Env, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mailserver", "doctor", "--stack", "dev", "--outputs", str(env.outputs),
            "--resolver", DNS_ADDRESS, "--source", clients.OUTSIDE, "--cafile", str(env.target.cafile),
            "--timeout", "3", "--inside", "lab", "--lab-root", str(env.lab.root), *extra]
    return subprocess.run(netns.cmd(env.lab.ns, argv), capture_output=True, text=True, check=False, cwd=ROOT,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_command_line_json_and_exit_codes(env: Env) -> None:
    proc = _cli(env, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["summary"] == env.baseline
    before = env.dns.replace("example.com", "MX", ["10 mx.elsewhere.example."])
    try:
        proc = _cli(env)
    finally:
        env.dns.set("example.com", before)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "dns-mx" in proc.stdout and "mx.elsewhere.example" in proc.stdout
    # A list refusing the resolver: nothing is broken, but the blocklists could not be checked.
    name = f"1.0.0.127.{env.target.settings.blocklists[0]}"
    env.dns.set(name, [("A", "127.255.255.254")])
    try:
        proc = _cli(env)
    finally:
        env.dns.set(name, [])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"the blocklists through the DNS resolver {DNS_ADDRESS} (blocklists; 1 unknown)" in proc.stderr


def test_mail_deferred_past_the_self_checks_thresholds(env: Env) -> None:
    """Mail for an outside domain waits for the relay (nothing listens where the dev stack's
    SES stand-in would): with the thresholds at 0 messages and 1 hour, and the doctor's clock 2
    hours on, it is too much deferred mail (warning) that has waited too long (error)."""
    lab, healthy = env.lab, env.target
    s = dataclasses.replace(healthy.settings, self_check_deferred_max=0, self_check_deferred_hours=1)
    later = dataclasses.replace(healthy, settings=s, now=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))

    def deferred() -> bool:
        return any(json.loads(line).get("queue_name") == "deferred" for line in lab.queue_ids())

    def do() -> None:
        lab.run(["sendmail", "-C", lab.layout.postfix_dir, "-f", "alice@example.com", "someone@example.org"],
                stdin="Subject: waits for the relay\n\nbody\n")
        wait_until(deferred, 30, 0.2, "the message to be deferred", detail=lambda: lab.log()[-1500:])
        env.target = later

    def undo() -> None:
        env.target = healthy
        lab.run(["postsuper", "-c", lab.layout.postfix_dir, "-d", "ALL"])

    with_fault(do, undo, lambda: expect_only(env, {"queue-deferred": "warning", "queue-age": "error"},
                                             {"queue-deferred": "1 messages", "queue-age": "oldest 2."}))


def test_a_bounce_past_the_self_checks_threshold(env: Env) -> None:
    """A message handed to postfix for a local user that does not exist on the mail host
    (submitted locally, so no RCPT check refuses it) bounces; with selfCheckBouncesMax 0 that is
    a warning."""
    lab, healthy = env.lab, env.target
    strict = dataclasses.replace(healthy, settings=dataclasses.replace(healthy.settings, self_check_bounces_max=0))

    def do() -> None:
        lab.run(["sendmail", "-C", lab.layout.postfix_dir, "-f", "alice@example.com",
                 f"nobody-here@{healthy.settings.hostname}"], stdin="Subject: to no one\n\nbody\n")
        wait_until(lambda: "status=bounced" in lab.log(), 30, 0.2, "the bounce", detail=lambda: lab.log()[-1500:])
        lab.wait_queue_empty()  # the bounce notice delivered to alice
        env.target = strict

    def undo() -> None:
        env.target = healthy

    with_fault(do, undo, lambda: expect_only(env, {"bounces": "warning"}, {"bounces": "bounced"}))
