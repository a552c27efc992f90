"""The inside checks: small shell scripts run as root on the mail host, over ssh (SshRunner)
or right here (LocalRunner: on the host itself, or in the lab's namespace). One function
per check, dispatched from INSIDE in CHECKS order by check_inside."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
from collections.abc import Callable, Sequence
from typing import Literal

from mailserver.core import catalog
from mailserver.doctor.aws import check_snapshots
from mailserver.doctor.checks import CHECK_IDS, CHECKS, DISK_WARNING_PERCENT, MEMORY_WARNING_PERCENT, QUEUE_WARNING
from mailserver.doctor.intent import expected_jails
from mailserver.doctor.target import Runner, Target
from mailserver.doctor.verdicts import Result, Status, disk_status, memory_status, queue_status, result, show

# Where the outbound-25 check connects: a large receiver that always listens on 25.
OUTBOUND_PROBE_HOST = "gmail-smtp-in.l.google.com"


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
    layout: catalog.Layout = catalog.VM_LAYOUT
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


def services_script(layout: catalog.Layout, os_name: catalog.OsName) -> str:
    """One line per daemon of catalog.mail_daemons(os_name), "name active|inactive". The lab
    has no service manager: postfix answers `postfix status`, the others by their pid files."""
    daemons = catalog.mail_daemons(os_name)
    if layout.vm:
        return f"for u in {' '.join(daemons)}; do echo \"$u $(systemctl is-active \"$u\")\"; done\n"
    q = shlex.quote
    pid_files = {
        "dovecot": f"{layout.dovecot_base_dir}/master.pid",
        "rspamd": f"{layout.rspamd_run_dir}/{catalog.RSPAMD_PID_FILE}",
        catalog.KV_STORES[os_name].service: f"{layout.kv_dir}/{catalog.KV_PID_FILE}",
    }
    lines = []
    for name in daemons:
        if name == "postfix":
            lines.append(f"if postfix -c {q(layout.postfix_dir)} status >/dev/null 2>&1; then echo 'postfix active'; "
                         "else echo 'postfix inactive'; fi")
        else:
            lines.append(f"pid=$(cat {q(pid_files[name])} 2>/dev/null)")
            lines.append(f"if [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null; then echo {q(name + ' active')}; "
                         f"else echo {q(name + ' inactive')}; fi")
    return "\n".join(lines) + "\n"


def meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo's "Key: number kB" lines; anything else (an error message) is ignored."""
    out = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 2 and cols[0].endswith(":") and cols[1].isdigit():
            out[cols[0].rstrip(":")] = int(cols[1])
    return out


InsideCheck = Callable[[Target, Runner], list[Result]]


def check_outbound_25(t: Target, r: Runner) -> list[Result]:
    target = f"{OUTBOUND_PROBE_HOST}/{catalog.SMTP_PORT}"
    code, text = r.run(f"timeout {int(t.timeout) + 2} bash -c 'exec 3<>/dev/tcp/{target} && head -c 3 <&3' 2>&1")
    ok = code == 0 and text.startswith("220")
    blocked_status: Status = "warning" if t.settings.relay == "ses" else "error"
    return [result("outbound-25", "ok" if ok else blocked_status, f"{OUTBOUND_PROBE_HOST}:{catalog.SMTP_PORT}",
                   "220 greeting",
                   text.strip()[:60] if ok else "no connection (blocked?)"
                   + (" - relay ses sends through 587, so only direct delivery is affected"
                      if t.settings.relay == "ses" else ""))]


def check_services(t: Target, r: Runner) -> list[Result]:
    _, text = r.run(services_script(r.layout, t.settings.os))
    states = dict(line.strip().split(" ", 1) for line in text.splitlines() if " " in line.strip())
    out = []
    for name in catalog.mail_daemons(t.settings.os):
        state = states.get(name, f"unknown ({text.strip()[:40]})")
        svc_status: Status = "ok" if state == "active" else "error" if name in states else "unknown"
        out.append(result("services", svc_status, name, "active", state,
                          f"systemctl restart {name}; journalctl -u {name} says why it stopped"
                          if r.layout.vm else f"restart the lab ({name} is down)"))
    return out


def spam_filter_script(layout: catalog.Layout, domains: Sequence[str], timeout: float) -> str:
    """rspamd's controller asked /ping over its TCP port (the web UI's; /ping needs no password),
    the key-value store asked PING (the Redis protocol, which valkey speaks too; over bash's
    /dev/tcp, as Stream 10 has valkey-cli and no redis-cli), and, for each domain, a message From
    its postmaster handed to rspamd as that user's (rspamc --user: sign_authenticated, the path
    of the mail users submit; through the learn socket, where root needs no password) and
    printed back with the headers rspamd adds (--mime). Each answer under a "== <what>" line."""
    q = shlex.quote
    wait = int(timeout) + 2
    (ctl_host, ctl_port), (kv_host, kv_port) = catalog.RSPAMD_CONTROLLER, catalog.KV_ADDRESS

    def ask(host: str, port: int, request: str, read: str) -> str:
        exchange = f"exec 3<>/dev/tcp/{host}/{port} && printf \"{request}\" >&3 && {read} <&3"
        return f"timeout {wait} bash -c '{exchange}' 2>&1; echo"

    lines = ["echo '== controller'", ask(ctl_host, ctl_port, "GET /ping HTTP/1.0\\r\\n\\r\\n", "cat"),
             "echo '== kv'", ask(kv_host, kv_port, "PING\\r\\n", "head -n 1")]
    for d in domains:
        user = q(f"postmaster@{d}")
        probe = f"printf 'From: %s\\nTo: %s\\nSubject: doctor signing probe\\n\\nprobe\\n' {user} {user}"
        lines.append(f"echo {q('== dkim ' + d)}")
        lines.append(f"{probe} | timeout {wait} rspamc -h {q(layout.learn_socket)} --user {user} --mime 2>&1; "
                     "rc=$?; printf '\\nexit=%s\\n' \"$rc\"")
    return "\n".join(lines) + "\n"


def sections(text: str) -> dict[str, list[str]]:
    """The answers of a script that heads each with a "== <what>" line, by <what>."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = out.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line.rstrip("\r"))
    return out


def dkim_signatures(message: list[str]) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature field in a message's header (folded lines joined)."""
    fields: list[str] = []
    for line in message:
        if not line.strip():
            break  # the body starts
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += " " + line.strip()
        else:
            fields.append(line)
    out = []
    for field in fields:
        name, _, value = field.partition(":")
        if name.strip().lower() == "dkim-signature":
            tags = (tag.split("=", 1) for tag in value.split(";") if "=" in tag)
            out.append({k.strip(): v.strip() for k, v in tags})
    return out


def dkim_key_path(layout: catalog.Layout, domain: str, selector: str) -> str:
    """The private key rspamd signs `domain`'s mail with (catalog.Layout.dkim_key_file)."""
    return layout.dkim_key_file(domain, selector)


def rspamd_log(layout: catalog.Layout) -> str:
    return catalog.RSPAMD_VM_LOG if layout.vm else f"{layout.rspamd_log_dir}/rspamd.log"


def check_spam_filter(t: Target, r: Runner) -> list[Result]:
    s, layout = t.settings, r.layout
    code, text = r.run(spam_filter_script(layout, s.domains, t.timeout))
    answers = {what: [line for line in lines if line.strip()] for what, lines in sections(text).items()}
    if not {"controller", "kv", *(f"dkim {d}" for d in s.domains)} <= answers.keys():
        # The script did not run to its end (the connection dropped): nothing to judge.
        return [result("spam-filter", "unknown", "rspamd", CHECK_IDS["spam-filter"].verifies,
                       show([line for line in text.strip().splitlines() if line.strip()][-1:] or [f"exit {code}"], 80))]
    down = f"{rspamd_log(layout)} says why rspamd does not answer" + ("; systemctl restart rspamd" if layout.vm else "")
    ctl, kv_answer = answers["controller"], answers["kv"]
    ctl_ok = bool(ctl) and ctl[0].split()[1:2] == ["200"] and ctl[-1].strip() == "pong"
    out = [result("spam-filter", "ok" if ctl_ok else "error",
                  "rspamd controller {}:{}".format(*catalog.RSPAMD_CONTROLLER), "/ping answers pong",
                  "pong" if ctl_ok else show(ctl[:1] if ctl[0].startswith("HTTP/") else ctl[-2:], 80) if ctl
                  else "no answer", down)]
    kv = catalog.KV_STORES[s.os].service
    kv_ok = [line.strip() for line in kv_answer] == ["+PONG"]
    out.append(result("spam-filter", "ok" if kv_ok else "error", "{} {}:{}".format(kv, *catalog.KV_ADDRESS),
                      "PING answers +PONG", "+PONG" if kv_ok else show(kv_answer, 80) or "no answer",
                      f"systemctl restart {kv}; journalctl -u {kv} says why it stopped (rspamd keeps its Bayes "
                      "statistics there)" if layout.vm else f"restart the lab ({kv} is down)"))
    for d in s.domains:
        subject, want = f"DKIM signing {d}", f"DKIM-Signature d={d} s={s.dkim_selector}"
        *printed, status = answers[f"dkim {d}"] or ["no answer"]
        if status != "exit=0":
            out.append(result("spam-filter", "error", subject, want,
                              "rspamc failed: " + show(printed[-2:] or [status], 80), down))
            continue
        signatures = [(sig.get("d"), sig.get("s")) for sig in dkim_signatures(printed)]
        signed = (d, s.dkim_selector) in signatures
        key = dkim_key_path(layout, d, s.dkim_selector)
        out.append(result("spam-filter", "ok" if signed else "error", subject, want,
                          f"signed d={d} s={s.dkim_selector}" if signed else
                          "unsigned: " + (show([f"only d={sd} s={ss}" for sd, ss in signatures], 60) if signatures
                                          else "rspamd added no DKIM-Signature"),
                          f"rspamd signs with {key} (0600 {catalog.RSPAMD_USER}; pulumi up re-delivers it with "
                          f"set-dkim-keys.sh); {rspamd_log(layout)} says why it did not sign"))
    return out


def check_fail2ban(t: Target, r: Runner) -> list[Result]:
    _, text = r.run("if ! systemctl cat fail2ban.service >/dev/null 2>&1; then echo missing; "
                    "else systemctl is-active fail2ban; "
                    "fail2ban-client status 2>/dev/null | sed -n 's/.*Jail list:[[:space:]]*//p'; fi")
    lines = text.strip().splitlines()
    state = lines[0].strip() if lines else "unknown"
    jails = list(t.jails) if t.jails is not None else expected_jails(t.settings)
    if state == "missing":
        return [result("fail2ban", "warning", "fail2ban", "active", "not installed")]
    if state != "active":
        return [result("fail2ban", "error", "fail2ban", "active", state,
                       "systemctl enable --now fail2ban; journalctl -u fail2ban says why it stopped")]
    loaded = {j.strip() for j in (lines[1] if len(lines) > 1 else "").split(",") if j.strip()}
    missing = [j for j in jails if j not in loaded]
    return [result("fail2ban", "error" if missing else "ok", "fail2ban", "jails " + ", ".join(jails),
                   f"jails {', '.join(sorted(loaded)) or 'none'} loaded"
                   + (f"; missing {', '.join(missing)}" if missing else ""),
                   "fail2ban-client -d shows why a jail does not load (a filter that finds no log "
                   "source, a wrong backend); pulumi up re-applies the jails")]


def check_resolver(t: Target, r: Runner) -> list[Result]:
    _, text = r.run("systemctl is-active unbound; "
                    f"awk '$1 == \"nameserver\" {{ print $2; exit }}' {catalog.RESOLV_CONF}")
    lines = text.strip().splitlines() + ["", ""]
    unbound_state, nameserver = lines[0].strip() or "unknown", lines[1].strip() or "none"
    uses_it = nameserver == catalog.RESOLVER
    if unbound_state != "active":
        # With resolv.conf naming it, the host has no DNS at all: renewals, updates and
        # outbound mail stop. Without, only the DNSBL and DANE checks are lost.
        return [result("resolver", "error" if uses_it else "warning", "unbound", "active",
                       f"unbound {unbound_state}, resolv.conf: {nameserver}")]
    return [result("resolver", "ok" if uses_it else "warning", catalog.RESOLV_CONF,
                   f"nameserver {catalog.RESOLVER}", f"nameserver {nameserver}")]


# What sshd -T must print (its keywords lower-case): keys only, and no root login at all.
SSHD_EXPECTED = {"passwordauthentication": "no", "kbdinteractiveauthentication": "no", "permitrootlogin": "no"}


def check_ssh_login(t: Target, r: Runner) -> list[Result]:
    code, text = r.run(f"sshd -T -f {r.layout.sshd_config} 2>&1")
    seen = {}
    for line in text.splitlines():
        cols = line.split(None, 1)
        if len(cols) == 2 and cols[0].lower() in SSHD_EXPECTED:
            seen[cols[0].lower()] = cols[1].strip().lower()
    want = ", ".join(f"{k} {v}" for k, v in SSHD_EXPECTED.items())
    if len(seen) < len(SSHD_EXPECTED):
        return [result("ssh-login", "unknown", "sshd -T", want, show([text.strip()[:80] or f"exit {code}"]))]
    wrong = [f"{k} {seen[k]}" for k, v in SSHD_EXPECTED.items() if seen[k] != v]
    return [result("ssh-login", "error" if wrong else "ok", "sshd -T", want,
                   ", ".join(wrong) if wrong else want)]


def check_auto_updates(t: Target, r: Runner) -> list[Result]:
    timer = catalog.AUTO_UPDATES[t.settings.os].timer
    _, text = r.run(f"systemctl is-active {timer} 2>&1 || true")
    state = (text.strip().splitlines() or ["unknown"])[-1].strip()
    on = t.settings.auto_updates != "off"
    if state not in ("active", "inactive", "failed"):
        return [result("auto-updates", "unknown", timer, "active" if on else "inactive", state[:80] or "no answer")]
    if on:
        return [result("auto-updates", "ok" if state == "active" else "error", timer, "active",
                       state + f" (autoUpdates {t.settings.auto_updates})",
                       f"systemctl enable --now {timer}; pulumi up re-applies it")]
    return [result("auto-updates", "ok" if state != "active" else "warning", timer, "inactive (autoUpdates off)",
                   state, f"systemctl disable --now {timer}, or set autoUpdates to security or all")]


def check_reboot(t: Target, r: Runner) -> list[Result]:
    # dnf-plugins-core's needs-restarting (on the images: apply.sh's dnf config-manager is one
    # of its plugins), not dnf-utils' wrapper command, which is not installed.
    # -r: exit 0 no reboot needed, 1 reboot needed, anything else it failed.
    code, text = r.run("dnf -q needs-restarting -r 2>&1")
    last = (text.strip().splitlines() or [""])[-1].strip()
    if code == 0:
        return [result("reboot", "ok", "needs-restarting -r", "no reboot pending", last or "no reboot needed")]
    if code == 1 and "reboot" in text.lower():
        return [result("reboot", "warning", "needs-restarting -r", "no reboot pending",
                       show([line.strip() for line in text.strip().splitlines() if line.strip()], 120))]
    return [result("reboot", "unknown", "needs-restarting -r", "no reboot pending", last[:80] or f"exit {code}")]


def check_security_updates(t: Target, r: Runner) -> list[Result]:
    if not catalog.AUTO_UPDATES[t.settings.os].advisories:
        return [result("security-updates", "skipped", "dnf updateinfo", "no pending security advisory",
                       f"not published: {t.settings.os} publishes no security advisories, so pending security "
                       "updates cannot be told from others", "")]
    code, text = r.run("dnf -q updateinfo list --security --available 2>&1; echo \"exit=$?\"")
    lines = text.strip().splitlines()
    if not lines or lines[-1].strip() != "exit=0":
        return [result("security-updates", "unknown", "dnf updateinfo", "no pending security advisory",
                       show(lines[-2:] or [f"exit {code}"], 80))]
    advisories = {line.split()[0] for line in lines[:-1] if line.strip()}
    return [result("security-updates", "warning" if advisories else "ok", "dnf updateinfo",
                   "no pending security advisory",
                   f"{len(advisories)} pending: {show(sorted(advisories), 60)}" if advisories else "none pending")]


def check_disk(t: Target, r: Runner) -> list[Result]:
    q = shlex.quote
    paths = " ".join(q(p) for p in (r.layout.vmail_dir, r.layout.queue_dir, "/"))
    code, text = r.run(f"df -P {paths} 2>/dev/null | tail -n +2")
    out = []
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
    return out


def check_mail_volume(t: Target, r: Runner) -> list[Result]:
    _, text = r.run(f"findmnt -n -o FSTYPE,LABEL --mountpoint {shlex.quote(r.layout.vmail_dir)} || true")
    fs = text.split()
    want = f"{catalog.VMAIL_FS_TYPE} {catalog.VMAIL_FS_LABEL}"
    if not fs:
        return [result("mail-volume", "error", r.layout.vmail_dir, want, "not a mount point: on the root disk")]
    return [result("mail-volume", "ok" if " ".join(fs[:2]) == want else "warning", r.layout.vmail_dir,
                   want, " ".join(fs))]


def check_memory(t: Target, r: Runner) -> list[Result]:
    _, text = r.run("grep -E '^(MemTotal|MemAvailable):' /proc/meminfo")
    mem = meminfo(text)
    if mem.get("MemTotal") and "MemAvailable" in mem:
        avail = 100 * mem["MemAvailable"] / mem["MemTotal"]
        return [result("memory", memory_status(avail), "memory", f"> {MEMORY_WARNING_PERCENT}% available",
                       f"{avail:.0f}% available ({mem['MemAvailable'] // 1024} of {mem['MemTotal'] // 1024} MiB)")]
    return [result("memory", "unknown", "memory", "/proc/meminfo", text.strip()[:80])]


def check_queue(t: Target, r: Runner) -> list[Result]:
    code, text = r.run(f"postqueue -c {shlex.quote(r.layout.postfix_dir)} -j")
    if code != 0:
        return [result("queue", "unknown", "queue", "postqueue output", text.strip()[:80] or f"exit {code}")]
    size = sum(1 for line in text.splitlines() if line.strip().startswith("{"))
    return [result("queue", queue_status(size), "queue", f"< {QUEUE_WARNING} messages", f"{size} messages")]


def postqueue_arrivals(postqueue_json: str, queue: str | None = None) -> list[float]:
    """The arrival times (epoch seconds) of the queued messages in `postqueue -j`'s output (one
    JSON object a line, postfix 3.1 and later), of one queue ("deferred"...) or of all. Raises
    ValueError or KeyError on a line that is not what postfix writes: that is no queue to judge."""
    times = []
    for line in postqueue_json.splitlines():
        if line.strip().startswith("{"):
            msg = json.loads(line)
            if queue is None or msg["queue_name"] == queue:
                times.append(float(msg["arrival_time"]))
    return times


def deferred_arrivals(r: Runner) -> tuple[list[float], str | None]:
    """The arrival times of the deferred queue's messages; or why they could not be read."""
    code, text = r.run(f"postqueue -c {shlex.quote(r.layout.postfix_dir)} -j")
    if code != 0:
        return [], text.strip()[:80] or f"exit {code}"
    try:
        return postqueue_arrivals(text, "deferred"), None
    except (ValueError, KeyError) as e:
        return [], f"unreadable: {text.strip()[:60]} ({e})"


def check_queue_deferred(t: Target, r: Runner) -> list[Result]:
    most = t.settings.self_check_deferred_max
    times, error = deferred_arrivals(r)
    if error:
        return [result("queue-deferred", "unknown", "deferred queue", "postqueue -j output", error)]
    return [result("queue-deferred", "warning" if len(times) > most else "ok", "deferred queue",
                   f"at most {most} messages", f"{len(times)} messages")]


def check_queue_age(t: Target, r: Runner) -> list[Result]:
    hours = t.settings.self_check_deferred_hours
    times, error = deferred_arrivals(r)
    if error:
        return [result("queue-age", "unknown", "deferred queue", "postqueue -j output", error)]
    if not times:
        return [result("queue-age", "ok", "deferred queue", f"none older than {hours} h", "none deferred")]
    age = (t.now().timestamp() - min(times)) / 3600
    return [result("queue-age", "error" if age > hours else "ok", "deferred queue", f"none older than {hours} h",
                   f"oldest {age:.1f} h")]


def bounces_script(layout: catalog.Layout) -> str:
    """How many messages postfix bounced (or gave up on: expired) in the last 24 hours, as a
    number on the first line and the source's exit status on the second. The VM's postfix logs
    to the journal, under its unit (the daemons master starts are in its cgroup); the lab's
    writes a file, which lives less than a day, so all of it counts."""
    pattern = "' status=(bounced|expired)'"
    if layout.vm:
        source = "journalctl -u postfix --since=-24h -o cat --no-pager"
    else:
        source = f"cat {shlex.quote(layout.postfix_log)}"
    return f"{source} 2>&1 | grep -cE {pattern}; echo \"exit=${{PIPESTATUS[0]}}\"\n"


def check_bounces(t: Target, r: Runner) -> list[Result]:
    most = t.settings.self_check_bounces_max
    _, text = r.run(bounces_script(r.layout))
    lines = text.strip().splitlines()
    if len(lines) != 2 or not lines[0].isdigit() or lines[1] != "exit=0":
        return [result("bounces", "unknown", "postfix log, 24 h", "a count of bounces", show(lines, 80) or "none")]
    count = int(lines[0])
    return [result("bounces", "warning" if count > most else "ok", "postfix log, 24 h", f"at most {most} bounces",
                   f"{count} bounced")]


def check_cert_renewal(t: Target, r: Runner) -> list[Result]:
    _, text = r.run("crontab -l -u root 2>/dev/null | grep -F 'acme.sh' | grep -F -- '--cron' >/dev/null "
                    "&& echo job || echo nojob; systemctl is-active crond 2>/dev/null || true")
    job, cron = (text.split() + ["", ""])[:2]
    ok = job == "job" and cron == "active"
    return [result("cert-renewal", "ok" if ok else "error", "acme.sh cron", "cron job and crond active",
                   f"{'cron job' if job == 'job' else 'no acme.sh cron job'}, crond {cron or 'unknown'}")]


def check_snapshots_here(t: Target, r: Runner) -> list[Result]:
    return check_snapshots(t)


# Each inside check's function, by check id (check_inside runs them in CHECKS order).
INSIDE: dict[str, InsideCheck] = {
    "outbound-25": check_outbound_25,
    "services": check_services,
    "spam-filter": check_spam_filter,
    "fail2ban": check_fail2ban,
    "resolver": check_resolver,
    "ssh-login": check_ssh_login,
    "auto-updates": check_auto_updates,
    "reboot": check_reboot,
    "security-updates": check_security_updates,
    "disk": check_disk,
    "mail-volume": check_mail_volume,
    "memory": check_memory,
    "queue": check_queue,
    "queue-deferred": check_queue_deferred,
    "queue-age": check_queue_age,
    "bounces": check_bounces,
    "cert-renewal": check_cert_renewal,
    "snapshots": check_snapshots_here,
}
# Inside checks that need no shell on the host: the snapshots are asked of the AWS CLI here.
NO_SHELL_NEEDED = frozenset({"snapshots"})


def shell_failure(r: Runner) -> tuple[str, str] | None:
    """(why, fix) when the runner gives no shell on the host; None when it does. One trivial
    script first: when ssh or sudo fails, every other script fails the same way, and its
    error text ("Permission denied (publickey).") must not be read as df or meminfo output."""
    code, text = r.run("echo doctor-ok")
    if code == 0 and text.strip().splitlines()[-1:] == ["doctor-ok"]:
        return None
    why = show([line for line in text.strip().splitlines() if line.strip()][-1:] or [f"exit {code}"], 160)
    fix = (f"check that `ssh {r.destination} sudo true` works without a prompt (key, user, "
           "passwordless sudo)" if isinstance(r, SshRunner) else "run the doctor as root on the host")
    return why, fix


def check_inside(t: Target) -> list[Result]:
    """Every inside check, in CHECKS order. Without a runner each is skipped; without a shell
    on the host each that needs one is unknown, with the reason and what to do; in the lab,
    a check that names a lab_skip reason is skipped with it."""
    inside = [c for c in CHECKS if c.category == "inside" and t.wants(c.id)]
    r = t.runner
    if r is None:
        why = "no --ssh given: inside checks need a shell on the host"
        return [result(c.id, "skipped", "host", c.verifies, why, "add --ssh ec2-user@<ip>") for c in inside]
    no_shell = shell_failure(r)
    out: list[Result] = []
    for c in inside:
        if no_shell and c.id not in NO_SHELL_NEEDED:
            why, fix = no_shell
            out.append(result(c.id, "unknown", "host", c.verifies, f"no shell on the host: {why}", fix))
        elif t.lab and c.lab_skip:
            out.append(result(c.id, "skipped", "host", c.verifies, f"skipped in lab: {c.lab_skip}", ""))
        else:
            out.extend(INSIDE[c.id](t, r))
    return out
