"""The doctor's pure logic: record comparison, certificate and resource thresholds, blocklist
answers, the check list, and what it does without a shell on the host."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from mailserver import clients, docs, doctor
from mailserver.core import catalog, certificates, records, relay
from mailserver.doctor import probes
from mailserver.doctor.host import OUTBOUND_PROBE_HOST
from tests.support import dev_settings

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


# --- records -------------------------------------------------------------------------------


def test_records_equal_in_the_forms_plan_and_resolver_write_them() -> None:
    # The plan writes names without the final dot and TXT as quoted 255-byte strings; a
    # resolver answers names with the dot and TXT as the joined strings.
    key = "p=" + "A" * 400
    planned_txt = records.txt(f"v=DKIM1; k=rsa; {key}")
    assert planned_txt.count('"') == 4  # split in two strings
    assert doctor.compare_records("TXT", [planned_txt], [f"v=DKIM1; k=rsa; {key}"])[0]
    assert doctor.compare_records("MX", ["10 mail.example.com"], ["10 Mail.Example.COM."])[0]
    assert doctor.compare_records("SRV", ["0 0 0 ."], ["0 0 0 ."])[0]
    assert doctor.compare_records("CAA", ['0 issue "letsencrypt.org"'], ['0 issue "letsencrypt.org"'])[0]


def test_records_that_differ_name_what_is_missing_and_what_is_unexpected() -> None:
    same, missing, extra = doctor.compare_records("MX", ["10 mail.example.com"], ["10 mx.elsewhere.example."])
    assert not same and missing == ["10 mail.example.com"] and extra == ["10 mx.elsewhere.example"]
    # An extra MX (mail delivered elsewhere) is a difference, not a superset that passes.
    assert not doctor.compare_records("MX", ["10 mail.example.com"], ["10 mail.example.com.", "20 backup.example."])[0]
    assert doctor.compare_records("A", ["192.0.2.1"], [])[1] == ["192.0.2.1"]


def test_txt_records_are_compared_among_the_same_kind_only() -> None:
    spf = records.txt("v=spf1 mx -all")
    # A site verification at the apex is not ours to judge...
    assert doctor.compare_records("TXT", [spf], ["v=spf1 mx -all", "google-site-verification=abc"])[0]
    # ...but a second SPF record breaks SPF (RFC 7208 permerror), and a changed one differs.
    same, _, extra = doctor.compare_records("TXT", [spf], ["v=spf1 mx -all", "v=spf1 include:other.example -all"])
    assert not same and extra == ["v=spf1 include:other.example -all"]
    assert not doctor.compare_records("TXT", [spf], ["v=spf1 mx ~all"])[0]


@pytest.mark.parametrize("overrides", [{}, {"relay": "none"}, {"dkimRetiredSelectors": ["old2025"]},
                                       {"submission": False}])
def test_every_planned_record_is_covered_by_a_check(overrides: dict[str, object]) -> None:
    s, _ = dev_settings(**overrides)
    dkim = dict.fromkeys(doctor.dkim_names(s), None)
    expected = doctor.expected_records(s, "192.0.2.1", dkim)
    checks = {rec.check for rec, _ in expected}
    for rec in records.planned_records(s, "192.0.2.1"):
        assert any(r == rec for r, _ in expected)  # the doctor's plan is the program's plan
    # Each record names the check that covers it where it is planned, SES's included.
    planned = [*records.planned_records(s, "192.0.2.1"), *relay.ses_records(s),
               *[records.dkim_record(s, d, s.dkim_selector, "") for d in s.domains]]
    assert {rec.check for rec in planned} <= set(doctor.CHECK_IDS)
    assert checks <= set(doctor.CHECK_IDS)
    assert {"dns-a", "dns-mx", "dns-spf", "dns-dkim", "dns-dmarc", "dns-mta-sts", "dns-tls-rpt", "dns-caa",
            "dns-srv"} <= checks
    assert ("dns-ses" in checks) == (s.relay == "ses")
    assert len([r for r, _ in expected if r.type == "TXT" and "._domainkey." in r.fqdn]) == \
        len(s.domains) * (1 + len(s.dkim_retired_selectors))


# --- certificates, resources, blocklists -----------------------------------------------------


@pytest.mark.parametrize("lifetime,left,status", [
    # Let's Encrypt's 90-day certificates: a third is 30 days.
    (90, 89, "ok"), (90, 62, "ok"), (90, 30.1, "ok"), (90, 29.9, "warning"), (90, 14, "warning"),
    (90, 3.1, "warning"), (90, 2.9, "error"), (90, 0.5, "error"), (90, -2, "error"),
    # 64-day ones (from 2027-02-10): 21.3 days.
    (64, 63, "ok"), (64, 36, "ok"), (64, 21.4, "ok"), (64, 21.2, "warning"), (64, 3.1, "warning"),
    (64, 2.9, "error"), (64, -0.1, "error"),
    # 45-day ones (from 2028-02-16): 15 days; once the old 14-day mark was reached, too late.
    (45, 44, "ok"), (45, 17, "ok"), (45, 15.1, "ok"), (45, 14.9, "warning"), (45, 3.1, "warning"),
    (45, 2.9, "error"), (45, -30, "error"),
    # A short-lived certificate (6 days) is warned about in its last 2 days and an error only in
    # the last one: a healthy one, renewed at two thirds, is never an error.
    (6, 2.1, "ok"), (6, 1.9, "warning"), (6, 1.1, "warning"), (6, 0.9, "error"),
])
def test_certificate_expiry_is_judged_against_its_own_lifetime(lifetime: float, left: float, status: str) -> None:
    not_after = NOW + dt.timedelta(days=left)
    got, days, length = doctor.expiry_status(not_after - dt.timedelta(days=lifetime), not_after, NOW)
    assert (got, days, length) == (status, pytest.approx(left), pytest.approx(lifetime))  # type: ignore[comparison-overlap]


@pytest.mark.parametrize("lifetime", catalog.CERT_LIFETIMES_DAYS)
def test_a_certificate_renewed_on_schedule_is_never_flagged(lifetime: int) -> None:
    """Up to the second daily try of acme.sh's renewal (the latest the schedule allows), the
    doctor says ok; the renewed certificate starts over."""
    left = certificates.renewal_days_left(lifetime, certificates.acme_renewal_days(), catalog.ACME_RENEWAL_ATTEMPTS)
    not_after = NOW + dt.timedelta(days=float(left))
    assert doctor.expiry_status(not_after - dt.timedelta(days=lifetime), not_after, NOW)[0] == "ok"


def test_certificate_names_match_exactly_or_by_one_wildcard_label() -> None:
    assert doctor.name_matches("mail.example.com", ["mail.example.com"])
    assert doctor.name_matches("MAIL.example.com.", ["mail.example.com"])
    assert doctor.name_matches("mail.example.com", ["*.example.com"])
    assert not doctor.name_matches("a.mail.example.com", ["*.example.com"])
    assert not doctor.name_matches("mail.example.com", ["example.com", "mail.example.net"])


@pytest.mark.parametrize("answers,error,status", [
    ([], None, "ok"),  # NXDOMAIN: not listed
    (["127.0.0.2"], None, "error"),
    (["127.0.0.4", "127.0.0.10"], None, "error"),
    (["127.255.255.254"], None, "unknown"),  # Spamhaus: query through a public resolver
    (["127.255.255.252"], None, "unknown"),
    (["198.51.100.7"], None, "unknown"),  # a resolver that rewrites NXDOMAIN to an ad page
    ([], "REFUSED", "unknown"),
])
def test_blocklist_answers(answers: list[str], error: str | None, status: str) -> None:
    assert doctor.blocklist_status(answers, error)[0] == status


def _answers(monkeypatch: pytest.MonkeyPatch, table: dict[tuple[str, str], tuple[list[str], str | None]]) -> None:
    """The doctor's DNS lookups answered from `table` (anything else: NXDOMAIN, an empty answer)."""
    from mailserver.doctor import dnscheck

    monkeypatch.setattr(dnscheck, "lookup", lambda res, name, rtype: table.get((name, rtype), ([], None)))


@pytest.mark.parametrize(("ipv6", "answer", "status", "found"), [
    (None, ([], None), "ok", "no AAAA"),
    (None, (["2001:db8::25"], None), "error", "stray 2001:db8::25"),  # the stack plans none
    ("2001:db8::25", (["2001:DB8:0::25"], None), "ok", "2001:DB8:0::25"),  # the instance has it
    ("2001:db8::25", (["2001:db8::25", "2001:db8::99"], None), "error", "stray 2001:db8::99"),
    ("2001:db8::25", ([], None), "error", "missing 2001:db8::25"),
    (None, ([], "LifetimeTimeout: no answer"), "unknown", "LifetimeTimeout"),
])
def test_the_mail_host_has_no_aaaa_unless_the_instance_has_that_address(
        monkeypatch: pytest.MonkeyPatch, ipv6: str | None, answer: tuple[list[str], str | None], status: str,
        found: str) -> None:
    from mailserver.doctor import dnscheck

    t = _target(ipv6=ipv6)
    _answers(monkeypatch, {(t.settings.hostname, "AAAA"): answer})
    (r,) = dnscheck.check_aaaa(t, dnscheck.make_resolver("192.0.2.53", 1.0))
    assert (r.check, r.status) == ("dns-aaaa", status) and found in r.found, r
    if ipv6:  # the same when the doctor was given the IPv6 address as --ip
        t = dataclasses.replace(t, ip=ipv6, ipv6=None)
        (r,) = dnscheck.check_aaaa(t, dnscheck.make_resolver("192.0.2.53", 1.0))
        assert (r.check, r.status) == ("dns-aaaa", status) and found in r.found, r


def test_outputs_may_name_the_instances_ipv6(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"publicIp": "198.51.100.20", "publicIpv6": "2001:db8::25"}))
    ns = argparse.Namespace(domain=None, stack="dev", host=None, outputs=str(outputs), resolver="192.0.2.53",
                            ip=None, timeout=1.0, ssh=None, ssh_option=None, inside=None, lab_root=None,
                            blocklist_resolver=None, cafile=None, source=None, volume_id=None, aws_region=None)
    assert doctor.build_target(ns).ipv6 == "2001:db8::25"
    outputs.write_text(json.dumps({"publicIp": "198.51.100.20"}))
    assert doctor.build_target(ns).ipv6 is None


@pytest.mark.parametrize(("answer", "status", "found"), [
    (([], None), "ok", "not listed"),
    ((["127.0.1.2"], None), "error", "listed (127.0.1.2)"),  # DBL: spam domain
    ((["127.255.255.254"], None), "unknown", "query refused"),  # a public resolver: not a listing
    ((["127.255.255.252"], None), "unknown", "query refused"),  # a typing error in the query
    (([], "REFUSED"), "unknown", "lookup failed"),
])
def test_every_mail_domain_is_looked_up_in_the_domain_blocklist(
        monkeypatch: pytest.MonkeyPatch, answer: tuple[list[str], str | None], status: str, found: str) -> None:
    from mailserver.doctor import dnscheck

    t = _target()
    assert catalog.DOMAIN_BLOCKLISTS == ("dbl.spamhaus.org",)
    _answers(monkeypatch, {("example.net.dbl.spamhaus.org", "A"): answer})
    out = {r.subject: r for r in dnscheck.check_dbl(t)}
    assert set(out) == {f"{d}.dbl.spamhaus.org" for d in t.settings.domains} and len(out) >= 2
    assert out["example.com.dbl.spamhaus.org"].status == "ok"
    r = out["example.net.dbl.spamhaus.org"]
    assert (r.check, r.status) == ("dbl", status) and found in r.found, r
    assert doctor.reach("dbl") == doctor.reach("blocklists") == "blocklist-resolver"


def test_resource_thresholds() -> None:
    assert [doctor.disk_status(p) for p in (10, 79, 80, 89, 90, 100)] == \
        ["ok", "ok", "warning", "warning", "error", "error"]
    assert [doctor.memory_status(p) for p in (50, 15, 14.9, 5, 4.9)] == ["ok", "ok", "warning", "warning", "error"]
    assert [doctor.queue_status(n) for n in (0, 19, 20, 199, 200)] == ["ok", "ok", "warning", "warning", "error"]
    assert doctor.snapshot_status(None, NOW)[0] == "error"
    assert doctor.snapshot_status(NOW - dt.timedelta(hours=3), NOW)[0] == "ok"
    assert doctor.snapshot_status(NOW - dt.timedelta(days=2), NOW)[0] == "warning"
    assert doctor.snapshot_status(NOW - dt.timedelta(days=9), NOW)[0] == "error"


def test_exit_codes_tell_healthy_broken_and_unchecked_apart() -> None:
    ok = doctor.result("ports", "ok", "port 25", "", "")
    unknown = doctor.result("blocklists", "unknown", "zen", "", "")
    warning = doctor.result("tls-chain", "warning", "port 25", "", "")
    skipped = doctor.result("services", "skipped", "host", "", "", "")
    error = doctor.result("dns-mx", "error", "MX", "", "")
    assert doctor.exit_code([]) == doctor.EXIT_OK == 0
    assert doctor.exit_code([ok, warning, skipped]) == 0  # warnings and skipped checks are no failure to check
    assert doctor.exit_code([ok, unknown, warning]) == doctor.EXIT_UNCHECKED == 3
    assert doctor.exit_code([ok, error]) == doctor.EXIT_ERROR_FOUND == 1
    # An error beats an unknown: what is known broken is reported whatever could not be checked.
    assert doctor.exit_code([unknown, error, unknown]) == 1
    assert doctor.exit_code([error, unknown]) == 1
    assert doctor.EXIT_SETUP == 2
    assert doctor.summary([ok, unknown, error, doctor.result("ports", "error", "p", "", "")]) == \
        {"ports": "error", "blocklists": "unknown", "dns-mx": "error"}
    # A failing result tells the operator what to do; an ok one does not.
    assert error.fix == doctor.CHECK_IDS["dns-mx"].fix and ok.fix == ""


# --- the check list ---------------------------------------------------------------------------


def test_check_list_is_one_table_with_ids_fixes_and_both_categories() -> None:
    ids = [c.id for c in doctor.CHECKS]
    assert len(ids) == len(set(ids))
    assert {c.category for c in doctor.CHECKS} == {"outside", "inside", "secondary"}
    assert all(c.title and c.verifies and c.fix for c in doctor.CHECKS)
    table = docs.doctor_table()
    assert all(f"| `{i}` |" in table for i in ids)
    assert f"| `{ids[0]}` |" in docs.DOCTOR.read_text()


# --- inside checks without a shell, and over ssh -------------------------------------------------


def _target(**kw: object) -> doctor.Target:
    s, _ = dev_settings()
    return doctor.Target(settings=s, ip="192.0.2.1", dkim={}, **kw)  # type: ignore[arg-type]


def test_inside_checks_without_ssh_are_skipped_with_a_fix() -> None:
    out = doctor.check_inside(_target())
    assert {r.check for r in out} == {c.id for c in doctor.CHECKS if c.category == "inside"}
    assert all(r.status == "skipped" and "--ssh" in r.fix for r in out)


# Part of what `sshd -T` prints on the VM with the rendered drop-in.
SSHD_T = ("port 22\nallowusers ec2-user\npermitrootlogin no\npubkeyauthentication yes\n"
          "passwordauthentication no\nkbdinteractiveauthentication no\nx11forwarding no\n")

NO_REBOOT = "No core libraries or services have been updated since boot-up.\nReboot should not be necessary.\n"
# What rspamd's controller answers to GET /ping (rspamd 3.4 in the lab).
PONG = ("HTTP/1.1 200 OK\r\nConnection: close\r\nServer: rspamd/3.4\r\nContent-Length: 6\r\n"
        "Content-Type: text/plain\r\n\r\npong\r\n")


def signed_probe(domain: str, selector: str) -> str:
    """What `rspamc --mime` prints for the doctor's probe From `domain` when rspamd signs it
    (the lab's output, shortened): rspamd's headers, the folded DKIM-Signature among them."""
    return (f"From: postmaster@{domain}\nTo: postmaster@{domain}\nSubject: doctor signing probe\n"
            "X-Spam-Action: no action\nX-Spam-Symbols: ARC_NA,\n\tDKIM_SIGNED,\n\tMIME_GOOD\n"
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\n\td={domain}; s={selector};\n"
            "\tt=1796226065; h=from:from:to:to:subject:subject;\n\tbh=r+lYVvdk=;\n\tb=X/KrK78OWeKsF8P4tmg6\n"
            "\nprobe\n\nexit=0\n")


def spam_filter_answer(controller: str = PONG, kv: str = "+PONG\r\n",
                       dkim: dict[str, str] | None = None) -> str:
    """The spam-filter script's output on a host; each domain's probe signed unless `dkim` says
    otherwise."""
    s, _ = dev_settings()
    dkim = {d: signed_probe(d, s.dkim_selector) for d in s.domains} | (dkim or {})
    return (f"== controller\n{controller}\n== kv\n{kv}\n"
            + "".join(f"== dkim {d}\n{answer}" for d, answer in dkim.items()))


# A healthy VM's answers to the scripts that contain a marker.
HEALTHY_VM = {"crontab": "job\nactive\n", "sshd -T": SSHD_T, "dnf-automatic.timer": "active\n",
              "needs-restarting -r": NO_REBOOT, "status=(bounced|expired)": "0\nexit=0\n",
              "== controller": spam_filter_answer()}


class FakeHost:
    """A runner that answers like a production host without fail2ban or snapshots."""

    layout = catalog.VM_LAYOUT
    where: Literal["ssh", "local", "lab"] = "ssh"

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def run(self, script: str) -> tuple[int, str]:
        self.scripts.append(script)
        if script == "echo doctor-ok":
            return 0, "doctor-ok\n"
        if "systemctl is-active \"$u\"" in script:
            return 0, "postfix active\ndovecot active\nrspamd failed\nredis active\n"
        if "fail2ban" in script:
            return 0, "missing\n"
        if "is-active unbound" in script:
            return 0, "active\n127.0.0.1\n"
        if script.startswith("df "):
            return 0, "/dev/nvme0n1p1 20000 17000 3000 85% /\n/dev/nvme1n1 10000 1000 9000 10% /var/vmail\n"
        if "meminfo" in script:
            return 0, "MemTotal: 1000000 kB\nMemAvailable: 100000 kB\n"
        if "postqueue" in script:
            return 0, "".join(f"{{\"queue_id\": \"{i}\"}}\n" for i in range(25))
        if script.startswith("findmnt"):
            return 0, ""  # a host from before the mail volume
        if f"/dev/tcp/{OUTBOUND_PROBE_HOST}/" in script:
            return 1, ""
        for marker, answer in HEALTHY_VM.items():
            if marker in script:
                return 0, answer
        raise AssertionError(script)


def test_inside_checks_judge_what_the_host_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no AWS CLI here
    host = FakeHost()
    out = doctor.check_inside(_target(runner=host, timeout=1.0))
    by = {(r.check, r.subject): r for r in out}
    assert by[("services", "rspamd")].status == "error"
    assert by[("services", "postfix")].status == "ok" and by[("services", "redis")].status == "ok"
    assert doctor.summary(out)["spam-filter"] == "ok"
    assert by[("fail2ban", "fail2ban")].status == "warning"  # a host from before fail2ban: not a crash
    assert by[("disk", "/")].status == "warning" and by[("disk", "/var/vmail")].status == "ok"
    assert by[("memory", "memory")].status == "warning"  # 10% available
    assert by[("mail-volume", "/var/vmail")].status == "error"
    assert "root disk" in by[("mail-volume", "/var/vmail")].found
    assert by[("queue", "queue")].status == "warning" and by[("queue", "queue")].found == "25 messages"
    assert by[("cert-renewal", "acme.sh cron")].status == "ok"
    # The dev stack relays through SES: a blocked port 25 only warns.
    assert doctor.summary(out)["outbound-25"] == "warning"
    snap = next(r for r in out if r.check == "snapshots")
    assert snap.status == "unknown" and "AWS CLI" in snap.found


class Answering(FakeHost):
    """FakeHost with fixed answers for the scripts that contain a marker: the output, or
    (exit code, output) for a script that fails."""

    def __init__(self, answers: dict[str, str | tuple[int, str]]) -> None:
        super().__init__()
        self.answers = answers

    def run(self, script: str) -> tuple[int, str]:
        for marker, answer in self.answers.items():
            if marker in script:
                self.scripts.append(script)
                return answer if isinstance(answer, tuple) else (0, answer)
        return super().run(script)


def test_services_asks_every_mail_daemon_and_the_key_value_store_of_the_os() -> None:
    # Stream 10 has no Redis: its store is valkey, and a stopped valkey is what must show.
    s, _ = dev_settings(os="centos-stream-10")
    host = Answering({"systemctl is-active \"$u\"": "postfix active\ndovecot active\nrspamd active\nvalkey failed\n"})
    out = doctor.check_inside(doctor.Target(settings=s, ip="192.0.2.1", dkim={}, runner=host, timeout=1.0,
                                            checks=frozenset({"services"})))
    assert {r.subject: r.status for r in out} == {"postfix": "ok", "dovecot": "ok", "rspamd": "ok", "valkey": "error"}
    (down,) = [r for r in out if r.status == "error"]
    assert down.fix.startswith("systemctl restart valkey")


UNSIGNED = "From: postmaster@example.net\nX-Spam-Action: no action\n\nprobe\n\nexit=0\n"
OLD_SELECTOR = signed_probe("example.net", "old")
NO_SOCKET = "cannot connect to /run/rspamd/learn.sock: Connection refused\n\nexit=1\n"
REFUSED = "bash: connect: Connection refused\nbash: line 1: /dev/tcp/127.0.0.1/6379: Connection refused\n"


@pytest.mark.parametrize(("answer", "failing"), [
    (spam_filter_answer(), {}),
    # rspamd down: neither its controller nor its learn socket answers.
    (spam_filter_answer(controller=REFUSED, dkim={"example.com": NO_SOCKET, "example.net": NO_SOCKET}),
     {"rspamd controller 127.0.0.1:11334": "Connection refused", "DKIM signing example.com": "rspamc failed",
      "DKIM signing example.net": "rspamc failed"}),
    (spam_filter_answer(kv=REFUSED), {"redis 127.0.0.1:6379": "Connection refused"}),
    # A store that answers something else than PONG (e.g. refusing the client) is no store rspamd can use.
    (spam_filter_answer(kv="-DENIED Redis is running in protected mode\r\n"), {"redis 127.0.0.1:6379": "DENIED"}),
    (spam_filter_answer(controller="HTTP/1.1 403 Forbidden\r\n\r\n"), {"rspamd controller 127.0.0.1:11334": "403"}),
    # A domain's key gone: its mail leaves unsigned, the other domain's is still signed.
    (spam_filter_answer(dkim={"example.net": UNSIGNED}), {"DKIM signing example.net": "no DKIM-Signature"}),
    # Signed, but not under the current selector: receivers look the key up where DNS has none.
    (spam_filter_answer(dkim={"example.net": OLD_SELECTOR}), {"DKIM signing example.net": "only d=example.net s=old"}),
])
def test_spam_filter_needs_the_controller_the_store_and_a_signature_for_every_domain(
        answer: str, failing: dict[str, str]) -> None:
    out = doctor.check_inside(_target(runner=Answering({"== controller": answer}), timeout=1.0,
                                      checks=frozenset({"spam-filter"})))
    assert {r.subject for r in out} == {"rspamd controller 127.0.0.1:11334", "redis 127.0.0.1:6379",
                                        "DKIM signing example.com", "DKIM signing example.net"}
    assert {r.subject: r.found for r in out if r.status == "error"}.keys() == failing.keys()
    assert all(r.status == "ok" for r in out if r.subject not in failing)
    for r in out:
        if r.subject in failing:
            assert failing[r.subject] in r.found and r.fix, r
    if "DKIM signing example.net" in failing and "rspamc failed" not in failing["DKIM signing example.net"]:
        (unsigned,) = [r for r in out if r.subject == "DKIM signing example.net"]
        assert "/var/lib/rspamd/dkim/example.net.mail.key" in unsigned.fix and catalog.RSPAMD_VM_LOG in unsigned.fix


def test_spam_filter_cut_short_is_unknown_not_an_error() -> None:
    # The connection dropped before the probes ran: nothing says rspamd is down.
    host = Answering({"== controller": (255, "== controller\nConnection to 192.0.2.1 closed by remote host.\n")})
    out = doctor.check_inside(_target(runner=host, timeout=1.0, checks=frozenset({"spam-filter"})))
    assert [r.status for r in out] == ["unknown"] and "closed by remote host" in out[0].found


@pytest.mark.parametrize(("answer", "status", "missing"), [
    ("active\npostfix-sasl, dovecot, sshd\n", "ok", ""),
    ("active\ndovecot, postfix-sasl\n", "error", "sshd"),  # the sshd jail failed to load
    ("active\n\n", "error", "postfix-sasl, dovecot, sshd"),
    ("failed\n", "error", ""),
])
def test_fail2ban_must_run_every_jail_the_bundle_enables(answer: str, status: str, missing: str) -> None:
    out = doctor.check_inside(_target(runner=Answering({"fail2ban": answer}), timeout=1.0))
    (f2b,) = [r for r in out if r.check == "fail2ban"]
    assert f2b.status == status, f2b
    if missing:
        assert f2b.found.endswith(f"missing {missing}")


@pytest.mark.parametrize(("answer", "status"), [
    ("active\n127.0.0.1\n", "ok"),
    ("active\n172.31.0.2\n", "warning"),  # the switch was rolled back: no DNSBL, no DANE
    ("inactive\n127.0.0.1\n", "error"),  # resolv.conf names a dead resolver: no DNS at all
    ("inactive\n172.31.0.2\n", "warning"),
])
def test_resolver_check(answer: str, status: str) -> None:
    out = doctor.check_inside(_target(runner=Answering({"is-active unbound": answer}), timeout=1.0))
    (res,) = [r for r in out if r.check == "resolver"]
    assert res.status == status, res


@pytest.mark.parametrize(("answer", "status", "found"), [
    (SSHD_T, "ok", "passwordauthentication no, kbdinteractiveauthentication no, permitrootlogin no"),
    (SSHD_T.replace("passwordauthentication no", "passwordauthentication yes"), "error",
     "passwordauthentication yes"),
    (SSHD_T.replace("kbdinteractiveauthentication no", "kbdinteractiveauthentication yes"), "error",
     "kbdinteractiveauthentication yes"),
    # The image's default: keys only for root, but root still logs in.
    (SSHD_T.replace("permitrootlogin no", "permitrootlogin without-password"), "error",
     "permitrootlogin without-password"),
    ((1, "sshd: no hostkeys available -- exiting.\n"), "unknown", "no hostkeys"),
])
def test_ssh_login_is_keys_only_and_never_root(answer: str | tuple[int, str], status: str, found: str) -> None:
    out = doctor.check_inside(_target(runner=Answering({"sshd -T": answer}), timeout=1.0))
    (ssh,) = [r for r in out if r.check == "ssh-login"]
    assert ssh.status == status, ssh
    assert found in ssh.found
    assert bool(ssh.fix) == (status != "ok")


@pytest.mark.parametrize(("mode", "answer", "status"), [
    ("security", "active\n", "ok"),
    ("all", "inactive\n", "error"),
    ("security", "failed\n", "error"),
    ("off", "inactive\n", "ok"),  # autoUpdates off: the check expects the timer off
    ("off", "active\n", "warning"),
    ("security", "Failed to connect to bus: No such file or directory\n", "unknown"),
])
def test_auto_updates_timer_follows_the_setting(mode: str, answer: str, status: str) -> None:
    s, _ = dev_settings(autoUpdates=mode)
    timer = catalog.AUTO_UPDATES[s.os].timer
    host = Answering({timer: answer})
    out = doctor.check_inside(doctor.Target(settings=s, ip="192.0.2.1", dkim={}, runner=host, timeout=1.0))
    (auto,) = [r for r in out if r.check == "auto-updates"]
    assert (auto.status, auto.subject) == (status, timer), auto
    assert any(f"systemctl is-active {timer}" in script for script in host.scripts)


@pytest.mark.parametrize(("answer", "status"), [
    ((0, NO_REBOOT), "ok"),
    ((1, ("Core libraries or services have been updated since boot-up:\n  * kernel\n\n"
          "Reboot is required to fully utilize these updates.\n")), "warning"),
    ((127, "bash: line 1: dnf: command not found\n"), "unknown"),
])
def test_pending_reboot_is_a_warning_with_the_fix(answer: tuple[int, str], status: str) -> None:
    out = doctor.check_inside(_target(runner=Answering({"needs-restarting -r": answer}), timeout=1.0))
    (reboot,) = [r for r in out if r.check == "reboot"]
    assert reboot.status == status, reboot
    if status == "warning":
        assert "kernel" in reboot.found and "systemctl reboot" in reboot.fix


def test_security_updates_are_not_published_on_centos_stream() -> None:
    host = FakeHost()
    out = doctor.check_inside(_target(runner=host, timeout=1.0))
    (sec,) = [r for r in out if r.check == "security-updates"]
    assert sec.status == "skipped" and sec.found.startswith("not published"), sec  # never ok
    assert not any("updateinfo" in script for script in host.scripts)


@pytest.mark.parametrize(("answer", "status", "found"), [
    ("exit=0\n", "ok", "none pending"),
    (("RHSA-2026:0101 Important/Sec. openssl-3.2.2-7.el9.x86_64\n"
      "RHSA-2026:0101 Important/Sec. openssl-libs-3.2.2-7.el9.x86_64\n"
      "RHSA-2026:0202 Moderate/Sec. kernel-5.14.0-600.el9.x86_64\nexit=0\n"), "warning", "2 pending"),
    ("Error: Failed to download metadata for repo 'baseos'\nexit=1\n", "unknown", "Failed to download"),
])
def test_security_updates_are_counted_where_the_os_publishes_advisories(
        monkeypatch: pytest.MonkeyPatch, answer: str, status: str, found: str) -> None:
    s, _ = dev_settings()
    monkeypatch.setitem(catalog.AUTO_UPDATES, s.os, dataclasses.replace(catalog.AUTO_UPDATES[s.os], advisories=True))
    out = doctor.check_inside(_target(runner=Answering({"updateinfo list --security": answer}), timeout=1.0))
    (sec,) = [r for r in out if r.check == "security-updates"]
    assert sec.status == status and found in sec.found, sec


def test_mail_volume_mounted_with_its_label_is_ok() -> None:
    out = doctor.check_inside(_target(runner=Answering({"findmnt ": "xfs    vmail\n"}), timeout=1.0))
    vol = next(r for r in out if r.check == "mail-volume")
    assert (vol.status, vol.found) == ("ok", "xfs vmail")


def test_ssh_runner_sends_the_script_on_stdin_not_in_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ssh"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\ncat > "$(dirname "$0")/stdin"\n'
                    'echo done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    runner = doctor.SshRunner("ec2-user@192.0.2.1", options=("-i", "key"))
    code, out = runner.run("echo secret-looking-script\n")
    assert (code, out) == (0, "done\n")
    argv = (tmp_path / "argv").read_text().split("\n")
    assert "secret-looking-script" not in " ".join(argv)
    assert argv[:8] == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-i", "key", "ec2-user@192.0.2.1", "sudo"]
    assert (tmp_path / "stdin").read_text() == "echo secret-looking-script\n"


def test_outputs_give_the_ip_and_the_dkim_keys(tmp_path: Path) -> None:
    s, _ = dev_settings()
    name = records.dkim_name(s.dkim_selector, "example.com")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"publicIp": "198.51.100.20", "dnsRecords": [
        {"name": name, "type": "TXT", "content": '"v=DKIM1; k=rsa; p=QUJD"'},
        {"name": "example.com", "type": "MX", "content": "mail.example.com"}],
        "sesRelay": {"dnsRecords": [
            {"name": "tok1._domainkey.example.com", "type": "CNAME", "content": "tok1.dkim.amazonses.com"},
            {"name": "bounce.example.com", "type": "MX", "content": "feedback-smtp.eu-central-1.amazonses.com"}]}}))
    ns = argparse.Namespace(domain=None, stack="dev", host=None, outputs=str(outputs), resolver="192.0.2.53",
                            ip=None, timeout=1.0, ssh=None, ssh_option=None, inside=None, lab_root=None,
                            blocklist_resolver=None, cafile=None, source=None, volume_id=None, aws_region=None)
    t = doctor.build_target(ns)
    assert t.ip == "198.51.100.20"
    assert t.dkim[name] == '"v=DKIM1; k=rsa; p=QUJD"'
    assert t.dkim[records.dkim_name(s.dkim_selector, "example.net")] is None  # not in the outputs: presence only
    assert t.runner is None
    # SES's Easy DKIM names exist only once SES made the tokens: taken from the outputs.
    assert t.ses_dkim == [("tok1._domainkey.example.com", "tok1.dkim.amazonses.com")]
    expected = doctor.expected_records(s, t.ip, t.dkim, t.ses_dkim)
    assert ("dns-ses", "tok1.dkim.amazonses.com") in {(r.check, c) for r, c in expected}


# --- review fixes: a failing shell, hung-up servers, relay replies, snapshots, exit codes -----------


def _fake_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> Path:
    """An executable `name` first on PATH (a shell script), like the fake ssh above."""
    fake = tmp_path / name
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return fake


@pytest.mark.parametrize("stderr,code", [
    ("ec2-user@192.0.2.1: Permission denied (publickey,gssapi-keyex,gssapi-with-mic).", 255),
    (("sudo: a terminal is required to read the password; either use the -S option to read from standard "
      "input or configure an askpass helper\nsudo: a password is required"), 1),
])
def test_inside_checks_when_ssh_or_sudo_fails_are_unknown_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str, code: int) -> None:
    # Every script fails the same way; its error text once crashed the memory parser
    # (ValueError on "Permission denied") and turned services into "error".
    _fake_command(tmp_path, monkeypatch, "ssh", f"cat >/dev/null\nprintf '%s\\n' '{stderr}' >&2\nexit {code}\n")
    out = doctor.check_inside(_target(runner=doctor.SshRunner("ec2-user@192.0.2.1"), timeout=1.0))
    inside = {c.id for c in doctor.CHECKS if c.category == "inside"}
    assert {r.check for r in out} == inside
    for r in out:
        if r.check == "snapshots":  # the AWS CLI's business, not the shell's
            continue
        assert r.status == "unknown", r
        assert stderr.splitlines()[-1][:40] in r.found
        assert "ssh ec2-user@192.0.2.1 sudo true" in r.fix


def test_inside_output_that_is_not_what_was_asked_for_is_unknown_not_a_crash() -> None:
    garbled = Answering({
        "meminfo": (2, "grep: /proc/meminfo: Permission denied\n"),
        "df -P ": (1, "df: /var/vmail: Input/output error\nFilesystem 1024-blocks Used Available Capacity\n"),
        "systemctl is-active \"$u\"": (255, "Connection to 192.0.2.1 closed by remote host.\n"),
    })
    out = doctor.check_inside(_target(runner=garbled, timeout=1.0))
    by = doctor.summary(out)
    assert by["memory"] == by["disk"] == by["services"] == "unknown"
    assert by["queue"] == "warning"  # the rest is still judged


class _HangUp:
    """A loopback server that answers every connection with `line` and closes it, as a
    postfix that is shutting down or out of processes does ("421 ...")."""

    def __init__(self, line: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.line = line
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.line)

    def close(self) -> None:
        self.sock.close()


def _within(seconds: float, fn: Callable[[], object]) -> object:
    """fn's result or exception, failing the test if fn is still running after `seconds`
    (in a thread: a client spinning on a closed socket never returns)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["value"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), f"still running after {seconds}s"
    return box["value"]


@pytest.mark.parametrize("protocol,line", [("smtp", b"421 4.3.2 Service shutting down\r\n"),
                                           ("imap", b"* BYE Server shutting down.\r\n"),
                                           ("pop3", b"-ERR [SYS/TEMP] Shutting down\r\n"),
                                           ("sieve", b'BYE "Server shutting down."\r\n')])
def test_starttls_against_a_server_that_says_goodbye_ends_with_an_error(protocol: str, line: bytes) -> None:
    server = _HangUp(line)
    try:
        started = time.monotonic()
        got = _within(5, lambda: clients.tls_handshake(server.port, protocol, ssl.TLSVersion.TLSv1,
                                                       source=None, timeout=3))
        assert isinstance(got, clients.StartTlsError), got
        assert line.decode().strip()[:20] in str(got)
        assert time.monotonic() - started < 2
    finally:
        server.close()


@pytest.mark.parametrize("sasl,refused,found", [
    ("", True, "no plaintext SASL"),  # dovecot before STARTTLS
    ("PLAIN LOGIN", False, "SASL LOGIN offered in clear; SASL PLAIN offered in clear"),
    ("SCRAM-SHA-256", True, "no plaintext SASL"),  # proves knowledge of the password, never sends it
])
def test_managesieve_plaintext_login_read_from_the_greeting(sasl: str, refused: bool, found: str) -> None:
    caps = {"IMPLEMENTATION": "Dovecot Pigeonhole", "SASL": sasl, "STARTTLS": "", "VERSION": "1.0"}
    assert probes.sieve_plaintext(caps) == (refused, found)


def test_tls_version_is_unknown_not_refused_when_no_handshake_happened() -> None:
    # The old check counted any OSError as "TLS 1.0 refused": a port answering 421 passed.
    server = _HangUp(b"421 4.7.0 mail.example.com Error: too many connections\r\n")
    try:
        svc = dataclasses.replace(next(s for s in catalog.SERVICES if s.port == 587), port=server.port)
        t = _target(timeout=2.0)
        t = dataclasses.replace(t, ip="127.0.0.1")
        r = _within(5, lambda: doctor.tls_version_result(t, doctor.PortProbe(svc)))
        assert isinstance(r, doctor.Result), r
        assert r.status == "unknown" and "too many connections" in r.found
    finally:
        server.close()


@pytest.mark.parametrize("code,reply,status", [
    (554, "5.7.1 <relay-test@relay-probe.invalid>: Relay access denied", "ok"),  # postfix
    (550, "5.7.54 SMTP; Unable to relay recipient in non-accepted domain", "ok"),  # Exchange
    (250, "2.1.5 Ok", "error"),
    # postscreen refusing the probe's own address: nothing learnt about relaying.
    (550, "5.7.1 Service unavailable; client [198.51.100.7] blocked using zen.spamhaus.org", "unknown"),
    (550, "5.5.1 Protocol error", "unknown"),  # postscreen after a failed pregreet test
    (450, "4.3.2 Service currently unavailable", "unknown"),
    (451, "4.7.1 <relay-test@relay-probe.invalid>: Recipient address rejected: Greylisted", "unknown"),
    (421, "4.7.0 mail.example.com Error: too many errors", "unknown"),
])
def test_relay_probe_replies(code: int, reply: str, status: str) -> None:
    got, found = doctor.relay_status(code, reply)
    assert got == status
    assert reply in found


def _fake_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshots: str, created: str) -> Path:
    log = tmp_path / "aws-argv"
    _fake_command(tmp_path, monkeypatch, "aws", f'echo "$*" >> {log}\n'
                  f'case "$*" in *describe-snapshots*) echo \'{snapshots}\';; '
                  f'*describe-volumes*) echo \'"{created}"\';; *) exit 9;; esac\n')
    return log


@pytest.mark.parametrize("snapshots,created,status,text", [
    ("[]", "2026-11-27T09:00:00.000Z", "ok", "none yet; the volume is 3.0 h old"),  # day one
    ("[]", "2026-11-25T09:00:00.000Z", "error", "no completed snapshot; the volume is 51 h old"),
    ('["2026-11-27T03:00:12.000Z"]', "2026-01-01T00:00:00.000Z", "ok", "newest 9.0 h old"),
])
def test_snapshots_count_completed_ones_and_a_new_volume_gets_a_day(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshots: str, created: str, status: str, text: str) -> None:
    log = _fake_aws(tmp_path, monkeypatch, snapshots, created)
    t = _target(volume_id="vol-0123", aws_region="eu-central-1", now=lambda: NOW)
    (r,) = doctor.check_snapshots(t)
    assert (r.status, r.subject) == (status, "vol-0123")
    assert text in r.found
    calls = log.read_text().splitlines()
    # A pending snapshot restores nothing yet, a failed one never will.
    assert "Name=volume-id,Values=vol-0123 Name=status,Values=completed" in calls[0]
    assert all("--region eu-central-1" in c for c in calls)


def test_port_25_gets_time_for_postscreens_greeting_whatever_the_timeout() -> None:
    t = _target(timeout=2.0)
    assert doctor.probe_timeout(t, 25) >= 6 + 2  # postscreen_greet_wait on the VM, and a margin
    assert doctor.probe_timeout(t, 993) == 2.0
    assert doctor.probe_timeout(_target(timeout=30.0), 25) == 30.0


def test_setup_failures_exit_2_not_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # 1 means "the server has an error"; a doctor that could not start must say otherwise.
    monkeypatch.setattr(doctor.cli, "lookup", lambda res, name, rtype: ([], None))  # the host does not resolve
    assert doctor.main(["--domain", "example.com", "--resolver", "192.0.2.53"]) == 2
    assert "no IP: mail.example.com does not resolve" in capsys.readouterr().err
    assert doctor.main(["--stack", "dev", "--outputs", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the outputs file" in capsys.readouterr().err
    assert doctor.main(["--stack", "no-such-stack", "--ip", "192.0.2.10"]) == 2
    assert "no stack file" in capsys.readouterr().err


def test_every_check_names_what_it_must_reach() -> None:
    reach = {c.id: doctor.reach(c.id) for c in doctor.CHECKS}
    assert {k for k, v in reach.items() if v == "resolver"} == \
        {c.id for c in doctor.CHECKS if c.id.startswith("dns-")} | {"ptr"}
    assert reach["blocklists"] == "blocklist-resolver" and reach["snapshots"] == "aws"
    assert {k for k, v in reach.items() if v == "ports"} == \
        {"ports", "tls-name", "tls-chain", "tls-expiry", "tls-version", "open-relay", "auth-before-tls",
         "plaintext-login"}
    assert all(v == "host" for k, v in reach.items() if doctor.CHECK_IDS[k].category == "inside" and k != "snapshots")


def test_the_message_says_what_could_not_be_reached_and_for_which_checks() -> None:
    t = _target(resolver="192.0.2.53", runner=doctor.SshRunner("ec2-user@192.0.2.1"))
    results = [
        doctor.result("dns-mx", "unknown", "MX example.com", "", "LifetimeTimeout: no answer"),
        doctor.result("ptr", "unknown", "PTR 192.0.2.1", "", "LifetimeTimeout: no answer"),
        doctor.result("tls-version", "unknown", "port 993", "", "timed out"),
        doctor.result("services", "unknown", "host", "", "no shell on the host: Permission denied (publickey)."),
        doctor.result("snapshots", "unknown", "data volume", "", "the AWS CLI is not installed"),
        doctor.result("ports", "ok", "port 25", "", "220"),
    ]
    text = doctor.cli.unreached_message(results, t)
    head, *lines = text.splitlines()
    assert head.startswith("doctor: no error found, but 5 results could not be checked")
    assert lines == [
        "  - the DNS resolver 192.0.2.53 (dns-mx, ptr; 2 unknown): LifetimeTimeout: no answer",
        "  - the mail ports of 192.0.2.1 (tls-version; 1 unknown): timed out",
        ("  - the host over ssh as ec2-user@192.0.2.1 (services; 1 unknown): no shell on the host: "
         "Permission denied (publickey)."),
        "  - AWS (the snapshot lookup, through the AWS CLI) (snapshots; 1 unknown): the AWS CLI is not installed",
    ]
    with_error = [*results, doctor.result("dns-a", "error", "A", "", "")]
    assert doctor.cli.unreached_message(with_error, t).startswith("doctor: besides the errors, 5 results")
    assert doctor.cli.unreached_message(results[-1:], t) == ""


def test_the_command_line_with_no_resolver_reachable_exits_3_and_says_so(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # No mail server listens here: the ports answer as a healthy server's would, so what is left
    # is a resolver that does not answer (127.0.0.9: nothing listens on port 53 there).
    def healthy_ports(t: doctor.Target) -> tuple[list[doctor.Result], dict[int, doctor.PortProbe]]:
        return [doctor.result("ports", "ok", f"port {svc.port}", "", "answered") for svc in t.settings.services], {}

    monkeypatch.setattr(doctor.cli, "check_ports", healthy_ports)
    code = doctor.main(["--stack", "dev", "--resolver", "127.0.0.9", "--timeout", "1", "--ip", "192.0.2.10",
                        "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == doctor.EXIT_UNCHECKED == report["exit_code"] == 3 and report["ok"] is False
    assert "error" not in report["summary"].values() and report["summary"]["dns-mx"] == "unknown"
    assert "doctor: no error found, but" in captured.err
    assert "the DNS resolver 127.0.0.9 (dns-a, dns-mx," in captured.err
    assert "the blocklists through the DNS resolver 127.0.0.9 (blocklists, dbl;" in captured.err


def test_the_doctor_reads_a_stack_without_its_secrets() -> None:
    # The stack file holds no mailboxPasswords (they are encrypted secrets): the doctor, which
    # never logs in, needs none and invents none.
    import argparse

    from mailserver.core.stack import load_stack

    assert "mailboxPasswords" not in load_stack("dev")
    args = argparse.Namespace(domain=None, stack="dev", host=None, outputs=None, resolver=None, timeout=1.0,
                              ip="192.0.2.10", ssh=None, inside=None, ssh_option=[], blocklist_resolver=None,
                              cafile=None, source=None, volume_id=None, aws_region=None)
    target = doctor.cli.build_target(args)
    assert target.settings.hostname == "mail.example.com" and target.ip == "192.0.2.10"


# --- the web checks: the MTA-STS policy and the autoconfig document ------------------------------


@pytest.mark.parametrize("mode", catalog.MTA_STS_MODES)
def test_served_policy_is_compared_with_the_plan_in_its_own_mode(mode: str) -> None:
    from mailserver.core import web
    from mailserver.doctor import webcheck

    s, _ = dev_settings(mtaStsMode=mode)
    planned = web.mta_sts_policy(s)
    assert webcheck.policy_differences(planned, planned) == []
    assert webcheck.policy_differences(planned, planned.replace("\r\n", "\n")) == []  # LF is allowed too
    other = "enforce" if mode != "enforce" else "testing"
    assert webcheck.policy_differences(planned, planned.replace(f"mode: {mode}", f"mode: {other}")) == \
        [f"mode {other} (planned {mode})"]
    wrong = planned.replace(f"mx: {s.hostname}", "mx: mx.elsewhere.example") + "mx: *.example.com\r\n"
    assert webcheck.policy_differences(planned, wrong) == \
        [f"mx *.example.com | mx.elsewhere.example (planned {s.hostname})"]
    assert webcheck.policy_differences(planned, planned.replace("max_age: 604800", "max_age: 86400")) == \
        ["max_age 86400 (planned 604800)"]


def test_policy_id_and_fetch_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailserver.core import web
    from mailserver.doctor import dnscheck, webcheck

    t = _target()
    policy = web.mta_sts_policy(t.settings)
    sts = [f"v=STSv1; id={records.policy_id(policy)}"]
    served: dict[str, tuple[str | None, str, bool]] = {
        "mta-sts.example.com": (policy, "", True),
        "mta-sts.example.net": (None, "lookup failed: LifetimeTimeout", False),
    }
    monkeypatch.setattr(webcheck, "fetch", lambda t, res, name, path: served[name])
    monkeypatch.setattr(dnscheck, "lookup", lambda res, name, rtype: (sts, None))
    res = dnscheck.make_resolver("192.0.2.53", 1.0)
    by = {r.subject.split("/")[2]: r for r in webcheck.check_mta_sts_policy(t, res)}
    assert by["mta-sts.example.com"].status == "ok"
    assert by["mta-sts.example.net"].status == "unknown"  # no DNS answer: not the server's fault
    assert doctor.reach("web-mta-sts") == "web"
    # The policy changed (max_age) but the published id is the old text's: senders keep the old one.
    served["mta-sts.example.com"] = (policy.replace("604800", "86400"), "", True)
    served["mta-sts.example.net"] = (None, "certificate not valid: self-signed certificate", True)
    by = {r.subject.split("/")[2]: r for r in webcheck.check_mta_sts_policy(t, res)}
    assert by["mta-sts.example.com"].status == "error"
    assert "_mta-sts id is not the served policy's" in by["mta-sts.example.com"].found
    assert by["mta-sts.example.net"].status == "error" and "certificate" in by["mta-sts.example.net"].found


@pytest.mark.parametrize("overrides", [{}, {"submission": False}])
def test_autoconfig_servers_follow_the_port_table(overrides: dict[str, object]) -> None:
    from mailserver.core import web
    from mailserver.doctor import webcheck

    s, _ = dev_settings(**overrides)
    servers = webcheck.autoconfig_servers(web.autoconfig_xml(s))
    want = {(svc.port, "SSL" if svc.tls == "implicit" else "STARTTLS") for svc in s.services
            if svc.auth and not svc.admin_only and svc.protocol != "sieve"}
    assert {(int(port), sock) for _, _, _, port, sock in servers} == want
    assert {host for _, _, host, _, _ in servers} == {s.hostname}
