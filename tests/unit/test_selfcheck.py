"""The daily self-check (mailserver/doctor/selfcheck.py) without a host: when it mails and what
the mail says, the queue checks against a fake host, what the bundle ships and installs, and
that the shipped code stays within what the host's python3 (3.9) runs."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as dt
import email.message
import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

from mailserver import doctor
from mailserver.core import catalog, records, render
from mailserver.core.settings import ROOT, SettingsError
from mailserver.doctor import selfcheck
from mailserver.doctor.intent import expected_jails
from mailserver.lab.server import generate_rsa_key, public_key_pem
from tests.support import dev_settings
from tests.unit.test_doctor import Answering

NOW = dt.datetime(2026, 12, 2, 6, 10, tzinfo=dt.UTC)
DOWN: dict[str, doctor.Status] = {"services|dovecot": "error"}


# --- when it mails ---------------------------------------------------------------------------


def test_unchanged_results_send_nothing() -> None:
    assert not selfcheck.decide({}, {}, None, NOW, None).send
    assert not selfcheck.decide(DOWN, DOWN, NOW - dt.timedelta(days=1), NOW, None).send
    warned: dict[str, doctor.Status] = {"queue-deferred|deferred queue": "warning"}
    assert not selfcheck.decide(warned, warned, NOW - dt.timedelta(days=30), NOW, None).send  # warnings: no reminder


def test_a_new_fault_and_its_end_each_send_one_mail() -> None:
    d = selfcheck.decide({}, DOWN, None, NOW, None)
    assert (d.send, d.why, d.new, d.cleared) == (True, "changed", DOWN, {})
    back = selfcheck.decide(DOWN, {}, NOW, NOW, None)
    assert (back.send, back.new, back.cleared) == (True, {}, DOWN)
    was: dict[str, doctor.Status] = {"tls-expiry|port 25": "warning"}
    now: dict[str, doctor.Status] = {"tls-expiry|port 25": "error"}
    worse = selfcheck.decide(was, now, NOW, NOW, None)
    assert worse.send and worse.new == {"tls-expiry|port 25": "error"}


def test_an_error_that_lasts_a_week_is_told_again() -> None:
    assert not selfcheck.decide(DOWN, DOWN, NOW - dt.timedelta(days=6, hours=23), NOW, None).send
    d = selfcheck.decide(DOWN, DOWN, NOW - dt.timedelta(days=selfcheck.REMINDER_DAYS), NOW, None)
    assert (d.send, d.why) == (True, "reminder")


def test_a_run_that_did_not_finish_is_told_by_the_next() -> None:
    started = {"started": "2026-12-01T06:05:00+00:00", "finished": "2026-11-30T06:04:00+00:00"}
    assert "stopped before its end" in str(selfcheck.previous_failure(started))
    assert selfcheck.previous_failure({"failure": "KeyError: 'x'"}) == "KeyError: 'x'"
    assert selfcheck.previous_failure({"started": "2026-12-01T06:05:00+00:00",
                                       "finished": "2026-12-01T06:05:03+00:00"}) is None
    d = selfcheck.decide({}, {}, None, NOW, "KeyError: 'x'")
    assert d.send and d.why == "the previous run failed"


def _results() -> list[doctor.Result]:
    return [doctor.result("services", "ok", "postfix", "active", "active"),
            doctor.result("services", "error", "dovecot", "active", "inactive"),
            doctor.result("tls-expiry", "warning", "port 993", "> 30 days left", "20 days left of 90"),
            doctor.result("fail2ban", "skipped", "host", "fail2ban runs", "skipped in lab")]


def test_the_mail_is_plain_text_with_a_table_and_the_fix_of_each_problem() -> None:
    s, _ = dev_settings()
    results = _results()
    told: dict[str, doctor.Status] = {"tls-expiry|port 993": "warning"}
    d = selfcheck.decide(told, selfcheck.problems(results), NOW, NOW, None)
    msg = selfcheck.compose(s, results, d, NOW, None, 2.0)
    assert msg["To"] == f"postmaster@{s.primary_domain}"
    assert msg["Subject"] == f"[{s.hostname}] self-check: 1 error, 1 warning"
    assert msg.get_content_type() == "text/plain"
    body = msg.get_content()
    table = body.split("\n\n")[1].splitlines()
    assert table[0].split() == ["status", "check", "subject", "found"]
    assert table[2].split()[:3] == ["error", "services", "dovecot"] and table[2].endswith("new")
    assert not table[3].endswith("new")  # the warning was told before
    assert doctor.CHECK_IDS["services"].fix in body and doctor.CHECK_IDS["tls-expiry"].fix in body
    assert "fail2ban" not in body and "postfix" not in body.split("What to do:")[0].split("\n", 3)[3]


def test_back_to_normal_names_what_recovered() -> None:
    s, _ = dev_settings()
    d = selfcheck.decide(DOWN, {}, NOW, NOW, None)
    msg = selfcheck.compose(s, [doctor.result("services", "ok", "dovecot", "active", "active")], d, NOW, None, 1.0)
    assert msg["Subject"] == f"[{s.hostname}] self-check: back to normal"
    assert "- services (dovecot) was error" in msg.get_content()


# --- the queue checks, through the doctor's inside checks ------------------------------------


def _queue(*ages_hours: float) -> str:
    now = dt.datetime.now(dt.UTC).timestamp()
    return "".join(json.dumps({"queue_name": "deferred", "queue_id": f"Q{i}", "arrival_time": int(now - h * 3600)})
                   + "\n" for i, h in enumerate(ages_hours)) + json.dumps({"queue_name": "active", "arrival_time": 0})


@pytest.mark.parametrize(("queue", "bounces", "expected"), [
    (_queue(), "0\nexit=0\n", {"queue-deferred": "ok", "queue-age": "ok", "bounces": "ok"}),
    (_queue(*[1.0] * 11), "6\nexit=0\n", {"queue-deferred": "warning", "queue-age": "ok", "bounces": "warning"}),
    (_queue(2.0, 25.0), "5\nexit=0\n", {"queue-deferred": "ok", "queue-age": "error", "bounces": "ok"}),
    ((1, "postqueue: fatal: Queue report unavailable"), "Failed to connect to bus\nexit=1\n",
     {"queue-deferred": "unknown", "queue-age": "unknown", "bounces": "unknown"}),
])
def test_queue_checks_against_the_thresholds(queue: str | tuple[int, str], bounces: str,
                                             expected: dict[str, str]) -> None:
    s, _ = dev_settings()  # defaults: 10 deferred, 24 hours, 5 bounces
    host = Answering({"postqueue": queue, "status=(bounced|expired)": bounces})
    t = doctor.Target(settings=s, ip="192.0.2.1", dkim={}, runner=host, timeout=1.0,
                      checks=frozenset(expected))
    out = doctor.check_inside(t)
    assert {r.check: r.status for r in out} == expected


def test_queue_thresholds_are_settings() -> None:
    s, _ = dev_settings(selfCheckDeferredMax=0, selfCheckDeferredHours=1, selfCheckBouncesMax=0)
    host = Answering({"postqueue": _queue(1.5), "status=(bounced|expired)": "1\nexit=0\n"})
    t = doctor.Target(settings=s, ip="192.0.2.1", dkim={}, runner=host, timeout=1.0,
                      checks=frozenset({"queue-deferred", "queue-age", "bounces"}))
    assert {r.check: r.status for r in doctor.check_inside(t)} == {
        "queue-deferred": "warning", "queue-age": "error", "bounces": "warning"}


# --- what the bundle ships --------------------------------------------------------------------


def test_the_bundle_ships_the_doctor_its_configuration_and_the_timer() -> None:
    s, _ = dev_settings()
    b = render.render(s)
    paths = {f.path for f in b.files}
    code = catalog.VM_LAYOUT.code_dir
    for module in ("mailserver/doctor/selfcheck.py", "mailserver/doctor/cli.py", "mailserver/core/catalog.py",
                   "mailserver/__main__.py", "mailserver/__init__.py"):
        assert f"{code}/{module}" in paths, module
    assert not any("/lab/" in p or p.endswith("render.py") or "components" in p for p in paths)
    assert {catalog.SELFCHECK_SERVICE, catalog.SELFCHECK_TIMER, catalog.VM_LAYOUT.selfcheck_config} <= paths
    assert b.file(catalog.VM_LAYOUT.selfcheck_config).mode == "0600"
    apply = b.scripts["apply.sh"]
    assert f"systemctl enable --now {catalog.SELFCHECK_UNIT}.timer" in apply
    assert all(p in apply for p in catalog.SELFCHECK_PACKAGES)
    timer = b.file(catalog.SELFCHECK_TIMER).content
    assert "Persistent=true" in timer and "RandomizedDelaySec=" in timer
    # user-data is near EC2's 16 KB: none of this travels there
    assert catalog.SELFCHECK_UNIT not in b.user_data and "selfcheck" not in b.user_data


def test_self_check_off_ships_nothing_and_stops_the_timer() -> None:
    s, _ = dev_settings(selfCheck=False)
    b = render.render(s)
    assert not any(f.path.startswith(catalog.VM_LAYOUT.code_dir) or "selfcheck" in f.path for f in b.files)
    assert f"systemctl disable --now {catalog.SELFCHECK_UNIT}.timer" in b.scripts["apply.sh"]


def test_the_configuration_reads_back_as_the_settings_the_host_runs() -> None:
    s, _ = dev_settings(snapshotRetention=9)
    layout = catalog.lab_layout(Path("/var/lib/mailserver-lab/x"))
    lab = selfcheck.read_config(render.render(s, layout).file(layout.selfcheck_config).content)
    assert lab.layout == layout and lab.jails == ("postfix-sasl", "dovecot")  # the lab runs no sshd
    c = selfcheck.read_config(render.render(s).file(catalog.VM_LAYOUT.selfcheck_config).content)
    assert c.layout == catalog.VM_LAYOUT and c.jails == tuple(expected_jails(s))
    cloud_only = {"ami_id", "instance_type", "root_volume_size", "data_volume_size", "data_volume_snapshot_id",
                  "snapshot_retention", "snapshot_copy_region", "ssh_public_key"}
    for f in dataclasses.fields(s):
        if f.name not in cloud_only:
            assert getattr(c.settings, f.name) == getattr(s, f.name), f.name
    # A retention change does not change what the host is sent (no re-apply, no reload).
    assert render.render(dev_settings(snapshotRetention=30)[0]).digest() == render.render(
        dev_settings(snapshotRetention=9)[0]).digest()


def test_shipped_modules_are_what_the_self_check_imports() -> None:
    shipped = set(render.shipped_modules())
    assert {"mailserver.doctor.selfcheck", "mailserver.doctor.host", "mailserver.core.settings"} <= shipped
    assert not {m for m in shipped if m.startswith(("mailserver.lab", "mailserver.core.render"))}


def _shipped_files() -> list[Path]:
    return [p for p in (ROOT / "mailserver").rglob("*.py")
            if ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            in render.shipped_modules()]


def test_shipped_modules_are_checked_as_python_3_9() -> None:
    """ruff refuses newer syntax in the files pyproject.toml marks py39: every shipped one must be."""
    marked = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["per-file-target-version"]
    for path in _shipped_files():
        rel = str(path.relative_to(ROOT))
        assert any(fnmatch.fnmatch(rel, pattern) and version == "py39" for pattern, version in marked.items()), rel


def _type_name(node: ast.AST) -> bool:
    """None, a builtin type, or a CamelCase name (a class): not a flag such as re.IGNORECASE."""
    if isinstance(node, ast.Constant):
        return node.value is None
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name in ("str", "int", "float", "bool", "bytes") or (name[:1].isupper() and not name.isupper())


def _runtime_union(node: ast.AST) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and (
        _type_name(node.left) or _type_name(node.right))


def test_shipped_modules_build_no_type_union_at_run_time() -> None:
    """`A | B` of types at run time (an alias, isinstance) needs 3.10; annotations are strings
    here (from __future__ import annotations), so only expressions outside them count."""
    found = []
    for path in _shipped_files():
        tree = ast.parse(path.read_text())
        assert any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body) or \
            path.name == "__main__.py" or not path.read_text().strip(), path
        for node in ast.walk(tree):
            values = [node.value] if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value else []
            if isinstance(node, ast.Call):
                values += node.args
            found += [f"{path.name}:{v.lineno}" for v in values if _runtime_union(v)]
    assert not found


def test_the_self_check_runs_the_doctor_not_a_copy() -> None:
    """Everything but the web and snapshot checks, through doctor.run (cli.run)."""
    assert selfcheck.run is doctor.run  # type: ignore[attr-defined]
    assert doctor.CHECK_IDS.keys() - selfcheck.SELF_CHECKS == {"web-mta-sts", "web-autoconfig", "snapshots"}
    assert {"queue-deferred", "queue-age", "bounces", "dns-dkim", "ports", "tls-expiry", "blocklists"} <= \
        selfcheck.SELF_CHECKS


def test_dkim_keys_are_read_where_rspamd_signs_with_them(tmp_path: Path) -> None:
    """dns-dkim compares DNS with the key rspamd signs with: the file the rendered
    dkim_signing.conf names, for one domain here; the other's missing key is checked for
    presence only."""
    s, _ = dev_settings()
    layout = catalog.lab_layout(tmp_path)
    signing = render.render(s, layout, "primary").file(f"{layout.rspamd_local_dir}/local.d/dkim_signing.conf")
    paths = re.findall(r'path = "([^"]+)";', signing.content)
    assert len(paths) == len(s.domains)
    private = generate_rsa_key(1024)
    Path(paths[0]).parent.mkdir(parents=True)
    Path(paths[0]).write_text(private)
    expected = selfcheck.dkim_expected(s, layout)
    first, second = (records.dkim_name(s.dkim_selector, d) for d in s.domains)
    assert paths[0].startswith(f"{layout.dkim_key_dir}/{s.domains[0]}.")
    assert expected[first] == records.txt(records.dkim(public_key_pem(private)))
    assert expected[second] is None


def test_run_reports_only_the_checks_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    s, _ = dev_settings()
    args = argparse.Namespace(ip="127.0.0.9", resolver="127.0.0.9", blocklist_resolver=None, cafile=None,
                              source=None, timeout=0.2)
    c = selfcheck.Config(s, catalog.VM_LAYOUT, ("dovecot",))
    t = selfcheck.build_target(c, args)
    assert t.checks == selfcheck.SELF_CHECKS and t.jails == ("dovecot",) and t.ip == "127.0.0.9"
    t = dataclasses.replace(t, runner=None, checks=frozenset({"dns-a", "services"}))
    assert {r.check for r in doctor.run(t)} == {"dns-a", "services"}


@pytest.mark.parametrize(("key", "value"), [
    ("selfCheckDeferredMax", -1), ("selfCheckDeferredHours", 0), ("selfCheckDeferredHours", 120),
    ("selfCheckBouncesMax", -1), ("selfCheckBouncesMax", 100_001),
])
def test_thresholds_out_of_range_are_refused_with_their_key_and_fix(key: str, value: int) -> None:
    with pytest.raises(SettingsError) as info:
        dev_settings(**{key: value})
    assert info.value.keys == {key} and all(p.fix for p in info.value.problems)


def test_no_mail_shows_the_mail_and_keeps_it_for_the_next_run(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    s, _ = dev_settings()
    layout = dataclasses.replace(catalog.VM_LAYOUT, state_dir=str(tmp_path))
    failing = [doctor.result("services", "error", "dovecot", "active", "inactive")]
    args = argparse.Namespace(no_mail=True)
    sent: list[object] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(selfcheck, "run", lambda t: failing)
        mp.setattr(selfcheck, "build_target", lambda c, a: None)
        mp.setattr(selfcheck, "send", lambda msg, lay: sent.append(msg))
        assert selfcheck.check_once(selfcheck.Config(s, layout, ()), args) == 0
        assert "self-check: 1 error" in capsys.readouterr().out and not sent
        args.no_mail = False
        assert selfcheck.check_once(selfcheck.Config(s, layout, ()), args) == 0
        assert len(sent) == 1  # what --no-mail showed is still told
        assert selfcheck.check_once(selfcheck.Config(s, layout, ()), args) == 0
        assert len(sent) == 1
    state = json.loads(Path(layout.selfcheck_state).read_text())
    assert state["told"] == {"services|dovecot": "error"} and state["failure"] is None


def test_a_crash_is_recorded_for_the_next_run(tmp_path: Path) -> None:
    s, _ = dev_settings()
    layout = dataclasses.replace(catalog.VM_LAYOUT, state_dir=str(tmp_path))

    def broken(t: object) -> list[doctor.Result]:
        raise RuntimeError("resolver exploded")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(selfcheck, "run", broken)
        mp.setattr(selfcheck, "build_target", lambda c, a: None)
        with pytest.raises(RuntimeError):
            selfcheck.check_once(selfcheck.Config(s, layout, ()), argparse.Namespace(no_mail=False))
    state = selfcheck.load_state(Path(layout.selfcheck_state))
    assert selfcheck.previous_failure(state) == "RuntimeError: resolver exploded"


def test_failing_twice_in_a_row_mails_at_once_and_once_per_error(tmp_path: Path) -> None:
    """A run that always crashes would never reach "the next run tells": the second crash in a
    row mails itself, once for the same error."""
    s, _ = dev_settings()
    layout = dataclasses.replace(catalog.VM_LAYOUT, state_dir=str(tmp_path))
    sent: list[email.message.EmailMessage] = []

    def broken(t: object) -> list[doctor.Result]:
        raise RuntimeError("no public IP")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(selfcheck, "run", broken)
        mp.setattr(selfcheck, "build_target", lambda c, a: None)
        mp.setattr(selfcheck, "send", lambda msg, lay: sent.append(msg))
        for expected in (0, 1, 1):
            with pytest.raises(RuntimeError):
                selfcheck.check_once(selfcheck.Config(s, layout, ()), argparse.Namespace(no_mail=False))
            assert len(sent) == expected
    assert sent[0]["Subject"] == f"[{s.hostname}] self-check: cannot run"
    assert "RuntimeError: no public IP" in sent[0].get_content()
