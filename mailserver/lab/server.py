"""The lab: the bundle the VM receives, run on this machine with real postfix and dovecot.

The same renderer and the same scripts (apply.sh, set-passwords.sh) as on EC2; what differs is
`catalog.lab_layout`: paths under a temporary root, log files instead of syslog, no systemd. The
daemons run in a private network namespace, so they bind the real ports (25, 587, 465, 110,
143, 993, 995, 4190) on loopback without touching the machine's own network or mail system.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Self

from mailserver import clients
from mailserver.core import catalog, render
from mailserver.core.catalog import lab_layout
from mailserver.core.settings import Secrets, Settings, parse
from mailserver.core.stack import load_stack, random_passwords
from mailserver.lab import netns
from mailserver.waiting import wait_until

LAB_BASE = Path("/var/lib/mailserver-lab")
# What the fail2ban package installs and our jail file builds on (on EL the package puts
# the same under /etc/fail2ban); copied into the lab's configuration directory.
FAIL2BAN_PACKAGE_DIR = Path("/etc/fail2ban")
FAIL2BAN_PACKAGE_FILES = ("fail2ban.conf", "jail.conf", "paths-common.conf", "paths-debian.conf", "filter.d",
                          "action.d")


class LabError(RuntimeError):
    pass


class Lab:
    """A running lab. Use as a context manager: everything started is stopped on exit."""

    def __init__(self, settings: Settings, secrets: Secrets, root: Path | None = None, keep: bool = False,
                 mail_fs_size: str | None = None, certificate: tuple[str, str] | None = None,
                 role: catalog.Role = "primary"):
        self.settings = settings
        # A secondary (backup MX) runs postfix alone, in a namespace of its own that link_to()
        # joins to a primary lab's; it relays to the primary's end of that link.
        self.role = role
        self.secrets = secrets
        self._own_root = root is None
        # Not under /tmp or /var/tmp: a world-writable parent would let any local user swap the keys.
        LAB_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.root = root or Path(tempfile.mkdtemp(prefix="lab-", dir=LAB_BASE))
        self.root.chmod(0o755)  # postfix and vmail must traverse it
        self.layout = lab_layout(self.root)
        self.ns = f"mslab-{os.getpid()}"
        if role == "secondary":
            self.layout = dataclasses.replace(self.layout,
                                              primary_nexthop=f"[{catalog.LAB_PRIMARY_LINK}]:{catalog.SMTP_PORT}")
            self.ns = f"mslab2-{os.getpid()}"
        self.keep = keep
        self.started = False
        # With a size ("8m", tmpfs syntax), the mail store is a filesystem of its own that
        # tests can fill up; it is mounted at start and unmounted (its mail gone) at stop.
        self.mail_fs_size = mail_fs_size
        self._mail_fs_mounted = False
        # (certificate PEM, key PEM) to serve instead of baseline.sh's self-signed one, e.g.
        # signed by a test CA, so clients can verify the chain as they would Let's Encrypt's.
        self.certificate = certificate
        self.fail2ban = False
        # DKIM keys per domain (the VM's come from pulumi-tls; the lab makes its own).
        self.dkim_keys: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespace, postfix and dovecot run as root)")
        (self.root / "log").mkdir(parents=True, exist_ok=True)
        # fail2ban refuses a jail whose log file does not exist yet (the daemons create
        # theirs at their first message, after apply.sh's check).
        for log in (self.layout.postfix_log, self.layout.dovecot_log):
            Path(log).touch()
        # postfix's own log belongs to the postfix user: while master is stopped there is no
        # postlogd, and `postfix start`'s queue clean-up (postsuper, privileges dropped) writes
        # its warnings, e.g. about a message file left half-written by the stop, straight into
        # the file. Owned by root it fails: "open logfile: Permission denied", and postfix
        # does not start.
        owner = pwd.getpwnam("postfix")
        os.chown(self.layout.postfix_log, owner.pw_uid, owner.pw_gid)
        if netns.exists(self.ns):
            netns.delete(self.ns)
        netns.create(self.ns)
        self.started = True
        try:
            if self.mail_fs_size:
                # Before apply.sh: the daemons it starts (through `ip netns exec`, which
                # copies the mount table) must see the mount.
                vmail = Path(self.layout.vmail_dir)
                vmail.mkdir(parents=True, exist_ok=True)
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.mail_fs_size},mode=0750",
                                "lab-mail", str(vmail)], check=True)
                self._mail_fs_mounted = True
            if self.certificate:
                # baseline.sh never replaces an existing certificate, as on the VM after acme.sh.
                self.install_certificate(*self.certificate, reload=False)
            self._install_fail2ban_package_files()
            install_sshd_stand_in(self.layout)
            self.apply(self.settings, self.secrets)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if not self.started:
            return
        conf = self.layout.dovecot_conf
        if self.fail2ban:
            self.stop_fail2ban()
        self.run(["postfix", "-c", self.layout.postfix_dir, "stop"], check=False)
        if Path(conf).exists():
            self.run(["doveadm", "-c", conf, "stop"], check=False)
        netns.delete(self.ns)  # kills anything left behind
        self.started = False
        if self._mail_fs_mounted:
            subprocess.run(["umount", self.layout.vmail_dir], check=False)
            self._mail_fs_mounted = False
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Output goes through files, not pipes: the daemons started by apply.sh inherit
        # the descriptors and keep them open, so a pipe would never reach end-of-file.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(netns.cmd(self.ns, argv), input=stdin, stdout=out, stderr=err,
                                  text=True, check=False, timeout=300)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    # -- daemons, for load and fault tests -------------------------------------------------

    def pids(self) -> list[int]:
        """Every process in the lab's network namespace (the daemons, and any client run there)."""
        return netns.pids_in(self.ns)

    def dovecot_pid(self) -> int | None:
        pidfile = Path(self.layout.dovecot_base_dir) / "master.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill_dovecot(self, timeout: float = 10.0) -> None:
        """SIGKILL dovecot's master, as a crash would: no clean shutdown. Returns once the
        process is gone (reaped), so that a new master can start."""
        pid = self.dovecot_pid()
        if pid is None:
            raise LabError("dovecot is not running")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout, 0.05,
                   f"dovecot's master {pid} to go after SIGKILL", error=LabError)

    def start_dovecot(self) -> None:
        self.run(["dovecot", "-c", self.layout.dovecot_conf])

    def stop_postfix(self) -> None:
        self.run(["postfix", "-c", self.layout.postfix_dir, "stop"])

    def start_postfix(self) -> None:
        self.run(["postfix", "-c", self.layout.postfix_dir, "start"])

    def install_certificate(self, cert_pem: str, key_pem: str, reload: bool = True) -> None:
        """Put a certificate where both daemons read it (what acme.sh's --install-cert does),
        then reload them so new connections get it."""
        cert, key = Path(self.layout.cert_file), Path(self.layout.key_file)
        cert.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key.touch(mode=0o600, exist_ok=True)
        key.chmod(0o600)
        key.write_text(key_pem)
        cert.write_text(cert_pem)
        cert.chmod(0o644)
        if reload:
            self.reload_postfix()
            if self.role == "primary":  # the secondary runs no dovecot
                self.reload_dovecot()

    def postfix_pid(self) -> int | None:
        """The postfix master's pid, or None when postfix is not running."""
        try:
            return int((Path(self.layout.queue_dir) / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def rspamd_pid(self) -> int | None:
        """rspamd's main process, or None when it is not running."""
        try:
            return int((Path(self.layout.rspamd_run_dir) / catalog.RSPAMD_PID_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def serving_processes(self, daemons: tuple[str, ...] = ("postfix", "dovecot", "rspamd")
                          ) -> set[tuple[int, str, str]]:
        """(pid, start time, name) of the processes that would answer a new client with the
        configuration they started with: every child of postfix's master (a reload makes each
        exit once it is idle), and dovecot's login processes (they take the connections on
        the mail ports; after a reload dovecot tells every old process to take no new one,
        and an old login process with no client left exits; its auth, config and stats
        processes may stay for connections made before), and every rspamd worker (a HUP
        starts new ones with the new configuration and keys, then stops the old). The start
        time tells a new process apart from an old one whose pid was reused."""
        postfix = self.postfix_pid() if "postfix" in daemons else None
        dovecot = self.dovecot_pid() if "dovecot" in daemons else None
        rspamd = self.rspamd_pid() if "rspamd" in daemons and self.role == "primary" else None
        found = set()
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:  # gone meanwhile
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on: ppid, ..., starttime (22)
            parent = int(fields[1])
            if (postfix is not None and parent == postfix) or (rspamd is not None and parent == rspamd) or (
                    dovecot is not None and parent == dovecot and name.endswith("-login")):
                found.add((pid, fields[19], name))
        return found

    def wait_reloaded(self, before: set[tuple[int, str, str]], timeout: float = 30.0) -> None:
        """Return once none of `before` (serving_processes() taken before a reload) is left:
        until then one of them may still answer a new connection with the old configuration."""
        def left() -> set[tuple[int, str, str]]:
            return before & self.serving_processes()

        wait_until(lambda: not left(), timeout, 0.05, "the daemon processes from before the reload to exit",
                   detail=lambda: f"still running: {sorted(left())}", error=LabError)

    def reload_postfix(self) -> None:
        """`postfix reload`, returning once every postfix process started before it is gone."""
        before = self.serving_processes(("postfix",))
        self.run(["postfix", "-c", self.layout.postfix_dir, "reload"])
        self.wait_reloaded(before)

    def reload_dovecot(self) -> None:
        """`doveadm reload`, returning once every dovecot process started before it is gone."""
        before = self.serving_processes(("dovecot",))
        self.run(["doveadm", "-c", self.layout.dovecot_conf, "reload"])
        self.wait_reloaded(before)

    # -- fail2ban, when a test asks for it ------------------------------------------------

    def _install_fail2ban_package_files(self) -> None:
        install_fail2ban_package_files(Path(self.layout.fail2ban_dir))
        for d in (self.layout.fail2ban_run_dir, str(Path(self.layout.fail2ban_db).parent)):
            Path(d).mkdir(parents=True, exist_ok=True)

    def fail2ban_client(self, *args: str, check: bool = True) -> str:
        return self.run(["fail2ban-client", "-c", self.layout.fail2ban_dir, *args], check=check).stdout

    def start_fail2ban(self, timeout: float = 30.0) -> None:
        """fail2ban inside the lab's namespace: its nftables rules exist only there."""
        self.fail2ban_client("-x", "start")
        self.fail2ban = True
        wait_until(lambda: "pong" in self.fail2ban_client("ping", check=False), timeout, 0.2, "fail2ban to answer",
                   detail=lambda: f"see {self.layout.fail2ban_log}", error=LabError)

    def stop_fail2ban(self) -> None:
        """Unban everything (fail2ban removes its nftables table on stop) and stop it."""
        self.fail2ban_client("unban", "--all", check=False)
        self.fail2ban_client("stop", check=False)
        self.fail2ban = False

    def banned(self, jail: str) -> list[str]:
        return self.fail2ban_client("get", jail, "banned").replace("[", " ").replace("]", " ") \
            .replace("'", " ").replace(",", " ").split()

    def link_to(self, primary: Lab) -> None:
        """Join this secondary's namespace to `primary`'s, where its postfix relays."""
        netns.link(primary.ns, catalog.LAB_PRIMARY_LINK, self.ns, catalog.LAB_SECONDARY_LINK)

    def trust_ca(self, ca_pem: str) -> None:
        """The CA whose certificates this lab's postfix accepts from the host it relays to (the
        layout's relay CA file: the OS's bundle on the VM)."""
        path = Path(self.layout.relay_ca_file)
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_text(ca_pem)

    def flush_queue(self) -> None:
        """Retry every deferred message now (postqueue -f), instead of at the next queue run."""
        self.run(["postqueue", "-c", self.layout.postfix_dir, "-f"])

    # -- the same steps the VM runs ------------------------------------------------------

    def apply(self, settings: Settings, secrets: Secrets) -> str:
        """Render for the lab and run apply.sh, then set-passwords.sh: what the remote
        commands do on EC2, in the same order."""
        bundle = render.render(settings, self.layout, self.role)
        stage = Path(self.layout.state_dir)
        for sub in ("files", "scripts"):
            shutil.rmtree(stage / sub, ignore_errors=True)
        stage.mkdir(parents=True, exist_ok=True)
        render.write_tree(bundle, stage)
        before = self.serving_processes()  # nothing on the first apply: it starts the daemons
        out = self.run(["bash", str(stage / "scripts/apply.sh")]).stdout
        self.wait_reloaded(before)  # apply.sh reloads postfix, dovecot and rspamd
        if self.role == "secondary":  # no passwords, no DKIM keys: nothing else to run
            self.settings, self.secrets, self.bundle = settings, secrets, bundle
            return out
        out += self.run(["bash", str(stage / "scripts/set-passwords.sh")],
                        stdin=render.password_stdin(settings, secrets)).stdout
        for d in settings.domains:
            if d not in self.dkim_keys:
                self.dkim_keys[d] = generate_rsa_key()
        before = self.serving_processes(("rspamd",))
        out += self.run(["bash", str(stage / "scripts/set-dkim-keys.sh")],
                        stdin=render.dkim_stdin(settings, self.dkim_keys)).stdout
        out += self.run(["bash", str(stage / "scripts/set-rspamd-password.sh")],
                        stdin=render.rspamd_password_stdin(secrets)).stdout
        # Signing starts once rspamd's workers from before the keys are gone.
        self.wait_rspamd_ready(before)
        self.settings, self.secrets, self.bundle = settings, secrets, bundle
        return out

    def wait_rspamd_ready(self, before: set[tuple[int, str, str]], timeout: float = 60.0) -> None:
        """Return once rspamd's workers from `before` are gone and its milter socket answers."""
        self.wait_reloaded(before, timeout)
        wait_until(lambda: self.rspamd_pid() is not None and Path(self.layout.milter_socket).exists(), timeout, 0.1,
                   "rspamd's milter socket", detail=lambda: f"see {self.root}/log/rspamd.log", error=LabError)

    def wait_ready(self, timeout: float = 30.0) -> None:
        ports = [svc.port for svc in catalog.role_services(self.settings.services, self.role) if not svc.admin_only]

        def listening() -> bool:
            out = self.run(["ss", "-Hltn"]).stdout
            return all(f":{p} " in out for p in ports)

        wait_until(listening, timeout, 0.2, f"all of ports {ports} to listen", detail=lambda: f"see {self.root}/log",
                   error=LabError)

    # -- helpers for clients -----------------------------------------------------------

    @property
    def cafile(self) -> str:
        return self.layout.cert_file

    def tls(self) -> ssl.SSLContext:
        return clients.tls_context(self.cafile)

    def queue_ids(self) -> list[str]:
        out = self.run(["postqueue", "-c", self.layout.postfix_dir, "-j"], check=False).stdout
        return [line for line in out.splitlines() if line.strip()]

    def wait_queue_empty(self, timeout: float = 30.0) -> None:
        wait_until(lambda: not self.queue_ids(), timeout, 0.2, "the mail queue to empty",
                   detail=lambda: f"still queued: {self.queue_ids()}", error=LabError)

    def maildir_files(self, address: str, folder: str = "INBOX") -> list[Path]:
        """The messages of `address`'s `folder` (Maildir++: INBOX at the top, others as .Name)."""
        local, domain = address.split("@")
        base = Path(self.layout.vmail_dir) / domain / local / "Maildir"
        if folder != "INBOX":
            base = base / f".{folder}"
        return sorted(p for sub in ("new", "cur") for p in (base / sub).glob("*") if p.is_file())

    def log(self, which: str = "postfix") -> str:
        path = Path(self.layout.postfix_log if which == "postfix" else self.layout.dovecot_log)
        return path.read_text(errors="replace") if path.exists() else ""


def install_fail2ban_package_files(dest: Path) -> None:
    """The package's filters and actions under `dest`, as the EL package puts them under
    /etc/fail2ban; apply.sh adds the rendered jail file."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in FAIL2BAN_PACKAGE_FILES:
        src = FAIL2BAN_PACKAGE_DIR / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)


# sshd's privilege separation directory, compiled into Debian's sshd. `sshd -t` and `sshd -T`
# refuse to run without it; Debian's ssh.service creates it (RuntimeDirectory=sshd), but the
# lab's machine may run no sshd. It is empty and root's, so the lab makes it and leaves it.
SSHD_PRIVSEP_DIR = Path("/run/sshd")


def install_sshd_stand_in(layout: catalog.Layout) -> None:
    """What the EL package gives sshd before apply.sh adds the drop-in, under the lab's root:
    a host key, and a main sshd_config that includes sshd_config.d/*.conf at its top, as EL's
    does, followed by the contrary values an image or a later drop-in may set (EL's
    50-redhat.conf, cloud-init's ssh_pwauth). sshd keeps the first value it reads, so the
    drop-in must win over them; the doctor's ssh-login check reads the result with sshd -T.
    No sshd is ever started."""
    config = Path(layout.sshd_config)
    dropins = Path(layout.sshd_dropin).parent
    dropins.mkdir(parents=True, exist_ok=True)
    key = config.parent / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config.write_text(f"Include {dropins}/*.conf\nPasswordAuthentication yes\nKbdInteractiveAuthentication yes\n"
                      f"PermitRootLogin yes\nHostKey {key}\n")
    SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)


def generate_rsa_key(bits: int = catalog.DKIM_KEY_BITS) -> str:
    """A private key in PEM, as pulumi-tls makes for the VM."""
    return subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}"],
                          capture_output=True, text=True, check=True).stdout


def public_key_pem(private_pem: str) -> str:
    return subprocess.run(["openssl", "pkey", "-pubout"], input=private_pem, capture_output=True, text=True,
                          check=True).stdout


def smoke_check(lab: Lab) -> list[str]:
    """Submit a message on 587, read it back over IMAPS, check that relaying is refused.
    Returns the failures (empty when all is well)."""
    s = lab.settings
    user = s.mailboxes[0]
    password = lab.secrets.passwords[user]
    failures = []
    with netns.entered(lab.ns):
        msg = clients.message(user, [user], "lab smoke check")
        with clients.smtp(587) as conn:
            conn.starttls(context=lab.tls())
            conn.login(user, password)
            conn.send_message(msg)
        lab.wait_queue_empty()
        found = [m for m in clients.imap_messages(993, user, password, lab.tls(), True)
                 if msg["Message-ID"].encode() in m]
        if not found:
            failures.append("a message submitted on 587 did not arrive in IMAP")
        code, _ = clients.rcpt_reply("victim@elsewhere.example")
        if code < 500:
            failures.append(f"relaying for an outside client was not refused (RCPT answered {code})")
    return failures


def secondary_smoke_check(primary: Lab, secondary: Lab) -> list[str]:
    """A message from outside to the secondary arrives at the primary; an unknown recipient is
    refused there. Returns the failures."""
    user = primary.settings.mailboxes[0]
    msg = clients.message("someone@outside.example", [user], "lab secondary check")
    with netns.entered(secondary.ns), clients.smtp(catalog.SMTP_PORT) as conn:
        conn.ehlo("mx.outside.example")
        conn.send_message(msg)
    failures = []
    try:
        wait_until(lambda: any(msg["Message-ID"].encode() in p.read_bytes() for p in primary.maildir_files(user)),
                   30, 0.2, "the message relayed by the secondary", error=LabError)
    except LabError:
        failures.append("a message sent to the secondary did not reach the primary's mailbox")
    with netns.entered(secondary.ns):
        code, _ = clients.rcpt_reply(f"nobody-{os.getpid()}@{primary.settings.primary_domain}")
    if code != 550:
        failures.append(f"the secondary did not refuse an unknown recipient (RCPT answered {code})")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mailserver lab", description=__doc__)
    ap.add_argument("--stack", default="dev", help="stack whose settings to run (default: dev)")
    ap.add_argument("--check", action="store_true", help="run the smoke check and exit")
    ap.add_argument("--keep", action="store_true", help="keep the lab directory (logs, mail) after stopping")
    ap.add_argument("--secondary", action="store_true",
                    help="run a backup MX too (secondaryMx), in its own namespace, relaying to this one")
    args = ap.parse_args(argv)

    raw = load_stack(args.stack)
    raw["mailboxPasswords"] = random_passwords(raw)
    if args.secondary:
        # The settings refuse secondaryMx with staging certificates (the secondary could not verify
        # the primary's); the lab's certificates are its own, so the CA setting means nothing here.
        raw.update(secondaryMx=True, acmeServer="letsencrypt")
    settings, secrets = parse(raw)
    lab = Lab(settings, secrets, keep=args.keep)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as running:
        running.enter_context(lab)
        secondary = None
        if args.secondary:
            secondary = running.enter_context(Lab(settings, secrets, keep=args.keep, role="secondary"))
            secondary.link_to(lab)
            # The primary's self-signed certificate is the one anchor the secondary trusts.
            secondary.trust_ca(Path(lab.layout.cert_file).read_text())
            print(f"lab: secondary MX {settings.secondary_hostname}, namespace {secondary.ns}, files in "
                  f"{secondary.root}; port 25 only, relaying to the primary at {catalog.LAB_PRIMARY_LINK}:25 over "
                  f"a veth link (its own end {catalog.LAB_SECONDARY_LINK})")
        print(f"lab: stack {args.stack}, {settings.hostname}, namespace {lab.ns}, files in {lab.root}")
        print(f"lab: server {clients.SERVER}; ports " + ", ".join(
            f"{svc.name} {svc.port}" for svc in settings.services if not svc.admin_only))
        for m in settings.mailboxes:
            print(f"lab: mailbox {m}  password {secrets.passwords[m]}")
        print(f"lab: certificate (self-signed) {lab.cafile}")
        print(f"lab: use a client inside the namespace, e.g. ip netns exec {lab.ns} swaks -s {clients.SERVER} "
              f"-p 587 -tls -au {settings.mailboxes[0]} -ap '<password>' -t {settings.mailboxes[0]}")
        if args.check:
            failures = smoke_check(lab) + (secondary_smoke_check(lab, secondary) if secondary else [])
            for f in failures:
                print(f"lab: FAIL {f}")
            print("lab: check " + ("failed" if failures else "passed: submission, IMAPS delivery, relay refused"
                                   + ("; the secondary relays to the primary" if secondary else "")))
            return 1 if failures else 0
        print("lab: running; Ctrl-C stops it and removes everything it started")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0
