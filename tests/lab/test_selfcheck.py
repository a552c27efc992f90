"""The daily self-check against the lab: the doctor's lab (real daemons, unbound serving the
planned records, a test CA; tests/lab/test_doctor.py's fixture), the self-check run as the VM's
timer runs it (`python -m mailserver selfcheck` from the code the bundle installed, not from
this checkout), and its mail read from the postmaster's Maildir.

Healthy twice: no mail. A fault: exactly one mail, naming the fault and its fix. Unchanged:
nothing more. Restored: one "back to normal" mail. A run that died: told by the next one.
"""

from __future__ import annotations

import datetime as dt
import email
import email.message
import email.policy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver import clients
from mailserver.waiting import wait_until
from tests.lab import test_doctor
from tests.lab.doctor_support import DNS_ADDRESS
from tests.lab.test_doctor import LAB_IP, Env

env = test_doctor.env  # the doctor's lab fixture, set up again for this module

SUBJECT_TAG = "self-check"


def postmaster(env: Env) -> str:
    """The mailbox postmaster@<primary> reaches (the first mailbox, by the default aliases)."""
    return env.lab.settings.mailboxes[0]


def selfcheck_mails(env: Env) -> list[email.message.EmailMessage]:
    out = []
    for path in env.lab.maildir_files(postmaster(env)):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        if SUBJECT_TAG in str(msg["Subject"]):
            out.append(msg)
    return sorted(out, key=lambda m: str(m["Date"]))


@pytest.fixture
def fresh(env: Env) -> Iterator[Env]:
    """No memory of earlier runs, no self-check mail in the postmaster's mailbox."""
    state = Path(env.lab.layout.selfcheck_state)
    state.unlink(missing_ok=True)
    for path in env.lab.maildir_files(postmaster(env)):
        path.unlink()
    yield env
    state.unlink(missing_ok=True)


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float, max_rss_kib: int) -> None:
        self.proc, self.seconds, self.max_rss_kib = proc, seconds, max_rss_kib


def selfcheck(env: Env) -> Run:
    """One run as the timer starts it (the service's ExecStart with the lab's configuration),
    from the code apply.sh installed under the lab's code_dir, with the lab's DNS and test CA;
    its wall time and its peak memory."""
    layout = env.lab.layout
    argv = [sys.executable, "-m", "mailserver", "selfcheck", "--config", layout.selfcheck_config,
            "--ip", LAB_IP, "--resolver", DNS_ADDRESS, "--cafile", str(env.lab.root / "test-ca.pem"),
            "--source", clients.OUTSIDE, "--timeout", "3"]
    measured = Path(layout.state_dir) / "selfcheck.time"
    # GNU time: the run's wall time and its peak resident memory (%M, KiB), as the timer's run.
    timed = ["/usr/bin/time", "-f", "%e %M", "-o", str(measured), *argv]
    started = time.monotonic()
    proc = subprocess.run(timed, cwd=layout.code_dir, env={**os.environ, "PYTHONPATH": layout.code_dir},
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seconds, usage = measured.read_text().split()[-2:]
    assert abs(float(seconds) - (time.monotonic() - started)) < 5
    return Run(proc, float(seconds), int(usage))


def wait_mails(env: Env, count: int) -> list[email.message.EmailMessage]:
    """Wait until the postmaster has `count` self-check mails, then make sure no other comes."""
    wait_until(lambda: len(selfcheck_mails(env)) >= count, 30, 0.2, f"{count} self-check mail(s)",
               detail=lambda: f"queue: {env.lab.queue_ids()}\n{env.lab.log()[-2000:]}")
    env.lab.wait_queue_empty()
    mails = selfcheck_mails(env)
    assert len(mails) == count, [m["Subject"] for m in mails]
    return mails


def test_silent_when_healthy_one_mail_per_change(fresh: Env) -> None:
    env = fresh
    first, second = selfcheck(env), selfcheck(env)
    print(f"self-check on the healthy lab: {first.seconds:.2f} s and {second.seconds:.2f} s; "
          f"peak memory {first.max_rss_kib / 1024:.0f} MiB; {first.proc.stdout.splitlines()[0]}")
    assert "no change, no mail" in second.proc.stdout and "no change, no mail" in first.proc.stdout
    env.lab.wait_queue_empty()
    assert selfcheck_mails(env) == []

    # A certificate in its last two days: renewal has failed for weeks.
    now = dt.datetime.now(dt.UTC)
    dying = env.ca.issue(env.lab.settings.hostname, not_before=now - dt.timedelta(days=88),
                         not_after=now + dt.timedelta(days=2))
    env.lab.install_certificate(*dying)
    try:
        selfcheck(env)
        (fault,) = wait_mails(env, 1)
        body = fault.get_content()
        tls_ports = [s for s in env.lab.settings.services if s.tls != "none" and not s.admin_only]
        assert fault["Subject"].endswith(f"self-check: {len(tls_ports)} errors")  # one per TLS port
        assert "tls-expiry" in body and "2 days left of 90" in body
        assert "acme.sh --cron" in body  # the fix
        assert fault["To"] == f"postmaster@{env.lab.settings.primary_domain}"
        assert fault.get_content_type() == "text/plain" and not fault.is_multipart()
        again = selfcheck(env)  # the same fault, a day later: nothing new
        assert "no change, no mail" in again.proc.stdout
        wait_mails(env, 1)
    finally:
        env.lab.install_certificate(*env.good_cert)
    selfcheck(env)
    _, back = wait_mails(env, 2)
    assert back["Subject"].endswith("self-check: back to normal")
    assert "- tls-expiry (port 993) was error" in back.get_content()


def test_a_stopped_daemon_is_told_once_it_can_be_delivered(fresh: Env) -> None:
    """dovecot down: the fault's mail waits in postfix's queue (dovecot delivers it), and
    arrives once dovecot is back, followed by the "back to normal" one."""
    env = fresh
    selfcheck(env)
    env.lab.kill_dovecot()
    try:
        run = selfcheck(env)
        assert "mail: changed" in run.proc.stdout and "services dovecot" in run.proc.stdout
    finally:
        env.lab.start_dovecot()
        env.lab.wait_ready()
    env.lab.flush_queue()
    (fault,) = wait_mails(env, 1)
    assert "services" in fault.get_content() and "dovecot" in fault.get_content()
    assert "inactive" in fault.get_content()
    selfcheck(env)
    _, back = wait_mails(env, 2)
    assert back["Subject"].endswith("back to normal") and "- services (dovecot) was error" in back.get_content()


def test_a_run_that_died_is_reported_by_the_next(fresh: Env) -> None:
    env = fresh
    state = Path(env.lab.layout.selfcheck_state)
    # What a run killed halfway leaves: started, never finished.
    state.write_text(json.dumps({"started": "2026-12-01T06:04:00+00:00", "finished": "2026-11-30T06:05:10+00:00",
                                 "told": {}, "told_at": None}))
    selfcheck(env)
    (mail,) = wait_mails(env, 1)
    assert "The previous self-check failed" in mail.get_content()
    assert "2026-12-01 06:04" in mail.get_content()
    assert "no change, no mail" in selfcheck(env).proc.stdout
