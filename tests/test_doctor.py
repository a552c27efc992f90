"""The doctor's pure logic: record comparison, certificate and resource thresholds, blocklist
answers, the check list, and what it does without a shell on the host."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from mailserver import catalog, docs, doctor, records
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
    checks = {doctor.record_check(rec) for rec, _ in expected}
    for rec in records.planned_records(s, "192.0.2.1"):
        assert any(r == rec for r, _ in expected)  # the doctor's plan is the program's plan
    assert checks <= set(doctor.CHECK_IDS)
    assert {"dns-a", "dns-mx", "dns-spf", "dns-dkim", "dns-dmarc", "dns-mta-sts", "dns-tls-rpt", "dns-caa",
            "dns-srv"} <= checks
    assert ("dns-ses" in checks) == (s.relay == "ses")
    assert len([r for r, _ in expected if r.type == "TXT" and "._domainkey." in r.fqdn]) == \
        len(s.domains) * (1 + len(s.dkim_retired_selectors))


# --- certificates, resources, blocklists -----------------------------------------------------


@pytest.mark.parametrize("days,status", [(60, "ok"), (14.5, "ok"), (13.9, "warning"), (10, "warning"),
                                         (3.1, "warning"), (2.9, "error"), (0.5, "error"), (-2, "error")])
def test_certificate_expiry_thresholds(days: float, status: str) -> None:
    got, left = doctor.expiry_status(NOW + dt.timedelta(days=days), NOW)
    assert got == status
    assert left == pytest.approx(days)


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


def test_resource_thresholds() -> None:
    assert [doctor.disk_status(p) for p in (10, 79, 80, 89, 90, 100)] == \
        ["ok", "ok", "warning", "warning", "error", "error"]
    assert [doctor.memory_status(p) for p in (50, 15, 14.9, 5, 4.9)] == ["ok", "ok", "warning", "warning", "error"]
    assert [doctor.queue_status(n) for n in (0, 19, 20, 199, 200)] == ["ok", "ok", "warning", "warning", "error"]
    assert doctor.snapshot_status(None, NOW)[0] == "error"
    assert doctor.snapshot_status(NOW - dt.timedelta(hours=3), NOW)[0] == "ok"
    assert doctor.snapshot_status(NOW - dt.timedelta(days=2), NOW)[0] == "warning"
    assert doctor.snapshot_status(NOW - dt.timedelta(days=9), NOW)[0] == "error"


def test_exit_code_is_non_zero_only_on_an_error() -> None:
    ok = doctor.result("ports", "ok", "port 25", "", "")
    unknown = doctor.result("blocklists", "unknown", "zen", "", "")
    warning = doctor.result("tls-chain", "warning", "port 25", "", "")
    error = doctor.result("dns-mx", "error", "MX", "", "")
    assert doctor.exit_code([ok, unknown, warning]) == 0
    assert doctor.exit_code([ok, error]) == 1
    assert doctor.summary([ok, unknown, error, doctor.result("ports", "error", "p", "", "")]) == \
        {"ports": "error", "blocklists": "unknown", "dns-mx": "error"}
    # A failing result tells the operator what to do; an ok one does not.
    assert error.fix == doctor.CHECK_IDS["dns-mx"].fix and ok.fix == ""


# --- the check list ---------------------------------------------------------------------------


def test_check_list_is_one_table_with_ids_fixes_and_both_categories() -> None:
    ids = [c.id for c in doctor.CHECKS]
    assert len(ids) == len(set(ids))
    assert {c.category for c in doctor.CHECKS} == {"outside", "inside"}
    assert all(c.title and c.verifies and c.fix for c in doctor.CHECKS)
    table = docs.doctor_table()
    assert all(f"| `{i}` |" in table for i in ids)
    assert f"| `{ids[0]}` |" in docs.README.read_text()


# --- inside checks without a shell, and over ssh -------------------------------------------------


def _target(**kw: object) -> doctor.Target:
    s, _ = dev_settings()
    return doctor.Target(settings=s, ip="192.0.2.1", dkim={}, **kw)  # type: ignore[arg-type]


def test_inside_checks_without_ssh_are_skipped_with_a_fix() -> None:
    out = doctor.check_inside(_target())
    assert {r.check for r in out} == {c.id for c in doctor.CHECKS if c.category == "inside"}
    assert all(r.status == "skipped" and "--ssh" in r.fix for r in out)


class FakeHost:
    """A runner that answers like a production host without fail2ban or snapshots."""

    layout = catalog.PRODUCTION
    where = "ssh"

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def run(self, script: str) -> tuple[int, str]:
        self.scripts.append(script)
        if "systemctl is-active \"$u\"" in script:
            return 0, "postfix active\ndovecot active\nopendkim failed\n"
        if "fail2ban" in script:
            return 0, "missing\n"
        if script.startswith("df "):
            return 0, "/dev/nvme0n1p1 20000 17000 3000 85% /\n/dev/nvme1n1 10000 1000 9000 10% /var/vmail\n"
        if "meminfo" in script:
            return 0, "MemTotal: 1000000 kB\nMemAvailable: 100000 kB\n"
        if "postqueue" in script:
            return 0, "".join(f"{{\"queue_id\": \"{i}\"}}\n" for i in range(25))
        if "crontab" in script:
            return 0, "job\nactive\n"
        if script.startswith("findmnt"):
            return 0, ""  # a host from before the mail volume
        if "/dev/tcp/" in script:
            return 1, ""
        raise AssertionError(script)


def test_inside_checks_judge_what_the_host_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no AWS CLI here
    host = FakeHost()
    out = doctor.check_inside(_target(runner=host, timeout=1.0))
    by = {(r.check, r.subject): r for r in out}
    assert by[("services", "opendkim")].status == "error"
    assert by[("services", "postfix")].status == "ok"
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


def test_mail_volume_mounted_with_its_label_is_ok() -> None:
    class Mounted(FakeHost):
        def run(self, script: str) -> tuple[int, str]:
            return (0, "xfs    vmail\n") if script.startswith("findmnt") else super().run(script)

    out = doctor.check_inside(_target(runner=Mounted(), timeout=1.0))
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
    assert ("dns-ses", "tok1.dkim.amazonses.com") in {(doctor.record_check(r), c) for r, c in expected}
