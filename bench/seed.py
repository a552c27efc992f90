"""The baseline: a postfix instance configured as the seed guide's stock path, built minimally
under its own temporary root and network namespace.

What makes it the seed's path: the domain is in mydestination, the recipient is a system
user (a throwaway account this module creates and removes), and postfix's own local(8)
delivers into ~/Maildir/ (home_mailbox = Maildir/). No milter, no LMTP, no dovecot, no
recipient map: one postfix process chain, as the guide installs it. The rest is the minimum
to run a second instance beside the lab (own queue, own log, no chroot, as the lab's).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from mailserver.lab import netns
from mailserver.lab.server import LAB_BASE

from .common import BenchError, count_files

DOMAIN = "example.com"

MAIN_CF = """\
# The seed guide's stock delivery path, for the benchmark baseline.
compatibility_level = 3.6
myhostname = seed.{domain}
mydomain = {domain}
myorigin = $mydomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain
mynetworks = 127.0.0.0/8
home_mailbox = Maildir/
alias_maps = lmdb:{conf}/aliases
alias_database = lmdb:{conf}/aliases
message_size_limit = 10485760
mailbox_size_limit = 1073741824
smtpd_banner = $myhostname ESMTP
biff = no
append_dot_mydomain = no
queue_directory = {root}/spool
data_directory = {root}/lib
maillog_file = {root}/log/postfix.log
maillog_file_prefixes = {root}/log
"""

# The daemons a delivery on port 25 touches, plus what master expects; chroot off.
MASTER_CF = """\
smtp       inet  n  -  n  -     -  smtpd
pickup     unix  n  -  n  60    1  pickup
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
tlsmgr     unix  -  -  n  1000? 1  tlsmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
verify     unix  -  -  n  -     1  verify
flush      unix  n  -  n  1000? 0  flush
proxymap   unix  -  -  n  -     -  proxymap
proxywrite unix  -  -  n  -     1  proxymap
smtp       unix  -  -  n  -     -  smtp
relay      unix  -  -  n  -     -  smtp
showq      unix  n  -  n  -     -  showq
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
discard    unix  -  -  n  -     -  discard
local      unix  -  n  n  -     -  local
virtual    unix  -  n  n  -     -  virtual
lmtp       unix  -  -  n  -     -  lmtp
anvil      unix  -  -  n  -     1  anvil
scache     unix  -  -  n  -     1  scache
postlog    unix-dgram n - n -   1  postlogd
"""


def remove_stale_users() -> None:
    """Remove throwaway users a killed bench run left behind: named msbench<pid>, home under
    the bench's directory, and that pid no longer running."""
    for entry in pwd.getpwall():
        m = re.fullmatch(r"msbench(\d+)", entry.pw_name)
        if m and entry.pw_dir.startswith(f"{LAB_BASE}/seed-") and not Path(f"/proc/{m.group(1)}").exists():
            subprocess.run(["userdel", "--remove", entry.pw_name], check=False, capture_output=True)


class Seed:
    """A running seed-style postfix. Use as a context manager: the instance, its namespace,
    its directory and its system user are all removed on exit."""

    def __init__(self) -> None:
        LAB_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="seed-", dir=LAB_BASE))
        self.root.chmod(0o755)
        self.conf = self.root / "etc"
        self.ns = f"msseed-{os.getpid()}"
        self.user = f"msbench{os.getpid()}"
        self.home = self.root / "home" / self.user
        self.address = f"{self.user}@{DOMAIN}"
        self._user_created = False
        self._ns_created = False

    @property
    def maildir_new(self) -> Path:
        return self.home / "Maildir" / "new"

    def delivered(self) -> int:
        return count_files(self.maildir_new) + count_files(self.home / "Maildir" / "cur")

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(netns.cmd(self.ns, argv), stdout=out, stderr=subprocess.STDOUT, text=True,
                                  check=False, timeout=600)
            out.seek(0)
            text = out.read()
        if check and proc.returncode != 0:
            raise BenchError(f"seed: {' '.join(argv)} failed ({proc.returncode}): {text}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, text, "")

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        remove_stale_users()
        try:
            pwd.getpwnam(self.user)
            raise BenchError(f"seed: user {self.user} already exists; remove it first")
        except KeyError:
            pass
        (self.root / "home").mkdir(mode=0o755)
        subprocess.run(["useradd", "--system", "--create-home", "--home-dir", str(self.home),
                        "--shell", "/usr/sbin/nologin", "--comment", "mailserver bench (throwaway)", self.user],
                       check=True)
        self._user_created = True
        self.conf.mkdir()
        for sub in ("log", "spool", "lib"):
            (self.root / sub).mkdir()
        shutil.chown(self.root / "lib", "postfix", "postfix")
        (self.root / "lib").chmod(0o700)
        (self.conf / "main.cf").write_text(MAIN_CF.format(domain=DOMAIN, conf=self.conf, root=self.root))
        (self.conf / "master.cf").write_text(MASTER_CF)
        (self.conf / "aliases").write_text("postmaster: root\n")
        if netns.exists(self.ns):
            netns.delete(self.ns)
        netns.create(self.ns)
        self._ns_created = True
        self.run(["postalias", "-c", str(self.conf), f"lmdb:{self.conf}/aliases"])
        self.run(["postfix", "-c", str(self.conf), "check"])
        self.run(["postfix", "-c", str(self.conf), "start"])
        self.run(["bash", "-c", "for i in $(seq 100); do ss -Hltn | grep -q ':25 ' && exit 0; sleep 0.1; done; exit 1"])

    def queue_empty(self) -> bool:
        out = self.run(["postqueue", "-c", str(self.conf), "-j"], check=False).stdout
        return not out.strip()

    def stop(self) -> None:
        if self._ns_created:
            self.run(["postfix", "-c", str(self.conf), "stop"], check=False)
            netns.delete(self.ns)
            self._ns_created = False
        if self._user_created:
            subprocess.run(["userdel", "--remove", self.user], check=False, capture_output=True)
            self._user_created = False
        shutil.rmtree(self.root, ignore_errors=True)
