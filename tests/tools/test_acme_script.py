"""The rendered acme.sh against stand-ins: a `curl` that serves files from a directory and an
acme.sh release that records what it is asked to do (the real acme.sh needs Let's Encrypt and
Cloudflare). What is proven here is the script's own logic: the pinned files are checked before
anything is installed, the installer gets exactly those files laid out like the release, an
older acme.sh is replaced, and a certificate issued under another renewal schedule is issued
again with --days. How acme.sh itself keeps --days is cited from its source in
mailserver/core/certificates.py (renewal_days_left) and in the script's comments.

The tests render with the catalog's URLs but the stand-in files' sums: the real sums are those
of acme.sh 3.1.3's files, which are not part of this project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from mailserver.core import catalog, certificates, render
from tests.support import dev_settings

HOST = dev_settings()[0].hostname
SERVER = dev_settings()[0].acme_server
DAYS = certificates.acme_renewal_days()

# A stand-in acme.sh release. It mimics the behaviour the script relies on, each from acme.sh
# 3.1.3's source: --version prints the project URL and v$VER (version()); --install copies
# ./acme.sh and ./dnsapi/* into --home (install()); --issue returns 2 for an existing
# certificate unless --force (issue(): RENEW_SKIP) and saves Le_RenewalDays='N' from --days in
# <home>/<domain>_ecc/<domain>.conf (_savedomainconf); --info prints that conf as key=value
# (info(), _readdomainconf).
ACME_STANDIN = r"""#!/bin/bash
VER=@VERSION@
args=" $* "
home="" domain="" force="" days=""
while [ $# -gt 0 ]; do
  case "$1" in
    --home) home=$2; shift ;;
    -d) domain=$2; shift ;;
    --days) days=$2; shift ;;
    --force) force=1 ;;
  esac
  shift
done
conf="$home/${domain}_ecc/$domain.conf"
echo "v$VER$args" >>"$ACME_CALLS"
case "$args" in
  *" --version "*) echo "https://github.com/acmesh-official/acme.sh"; echo "v$VER" ;;
  *" --install "*)
    # What the installer was given: every file below its working directory, with its sum.
    find . -type f -print0 | sort -z | xargs -0 sha256sum >"$ACME_CALLS.installer"
    mkdir -p "$home/dnsapi"
    cp acme.sh "$home/" && cp dnsapi/* "$home/dnsapi/" ;;
  *" --info "*)
    [ -f "$conf" ] || exit 1
    echo "DOMAIN_CONF=$conf"
    sed "s/^\([A-Za-z_]*\)='\(.*\)'$/\1=\2/" "$conf" ;;
  *" --issue "*)
    if [ "${ISSUE_RC:-0}" != 0 ]; then exit "$ISSUE_RC"; fi
    if [ -f "$conf" ] && [ -z "$force" ]; then exit 2; fi
    mkdir -p "${conf%/*}"
    printf "Le_Domain='%s'\nLe_RenewalDays='%s'\n" "$domain" "$days" >"$conf" ;;
esac
"""

CURL_STANDIN = r"""#!/bin/bash
out="" url=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift ;;
    -*) ;;
    *) url=$1 ;;
  esac
  shift
done
echo "$url" >>"$CURL_CALLS"
src="$WEB/${url#https://}"
if [ ! -f "$src" ]; then
  echo "curl: (22) The requested URL returned error: 404" >&2
  exit 22
fi
cp "$src" "$out"
"""


def standin(version: str) -> str:
    return ACME_STANDIN.replace("@VERSION@", version)


@dataclasses.dataclass
class Host:
    """acme.sh's home, the stand-in web and the calls both stand-ins saw."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "acme-home"

    @property
    def conf(self) -> Path:
        return self.home / f"{HOST}_ecc" / f"{HOST}.conf"

    def serve(self, f: catalog.PinnedFile, text: str) -> None:
        path = self.root / "web" / f.url.removeprefix("https://")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def install_old(self, version: str = "3.1.1") -> None:
        """An acme.sh installed before, with a certificate it issued: 3.1.1 saved no
        Le_RenewalDays (it left its 60-day default out of the conf)."""
        self.home.mkdir()
        (self.home / "acme.sh").write_text(standin(version))
        (self.home / "acme.sh").chmod(0o755)
        self.conf.parent.mkdir()
        self.conf.write_text(f"Le_Domain='{HOST}'\nLe_NextRenewTime='1900000000'\n")
        (self.home / ".mailserver-ca").write_text(SERVER + "\n")

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        path = self.root / "acme.sh"
        path.write_text(script)
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "curl").write_text(CURL_STANDIN)
        (bin_dir / "curl").chmod(0o755)
        environ = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ACME_HOME": str(self.home), "WEB": str(self.root / "web"),
                   "ACME_CALLS": str(self.root / "acme-calls"), "CURL_CALLS": str(self.root / "curl-calls"),
                   "TMPDIR": str(self.root), **env}
        return subprocess.run(["bash", str(path)], input="cf-token\n", capture_output=True, text=True,
                              env=environ, check=False, timeout=60)

    def lines(self, name: str) -> list[str]:
        path = self.root / name
        return path.read_text().splitlines() if path.exists() else []

    def acme_calls(self) -> list[str]:
        return self.lines("acme-calls")

    def installed_version(self) -> str:
        return subprocess.run([str(self.home / "acme.sh"), "--version"], capture_output=True, text=True, check=True,
                              env={**os.environ, "ACME_CALLS": os.devnull}).stdout.splitlines()[-1]


RELEASE = {f.path: standin(catalog.ACME_SH_VERSION) if f.path == "acme.sh" else f"# stand-in {f.path}\n"
           for f in catalog.ACME_SH_FILES}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(tmp_path)
    for f in catalog.ACME_SH_FILES:
        h.serve(f, RELEASE[f.path])
    return h


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> str:
    """acme.sh rendered for the dev stack, pinned to the stand-in release's sums."""
    pins = tuple(dataclasses.replace(f, sha256=sha256(RELEASE[f.path])) for f in catalog.ACME_SH_FILES)
    monkeypatch.setattr(catalog, "ACME_SH_FILES", pins)
    return render.render(dev_settings()[0]).scripts["acme.sh"]


def issue_calls(h: Host) -> list[str]:
    return [c for c in h.acme_calls() if " --issue " in c]


def test_a_new_host_gets_the_pinned_files_and_a_certificate_on_the_schedule(host: Host, script: str) -> None:
    proc = host.run(script)
    assert proc.returncode == 0, proc.stderr
    assert host.lines("curl-calls") == [f.url for f in catalog.ACME_SH_FILES]
    # The installer ran from a directory laid out like the release, holding exactly the pinned files.
    installer_saw = sorted(line.split(maxsplit=1)[::-1] for line in host.lines("acme-calls.installer"))
    assert installer_saw == sorted([f"./{path}", sha256(text)] for path, text in RELEASE.items())
    assert host.installed_version() == f"v{catalog.ACME_SH_VERSION}"
    [issue] = issue_calls(host)
    assert f" --server {SERVER} --dns dns_cf -d {HOST} --keylength ec-256 --days {DAYS} " in issue + " "
    assert "--force" not in issue  # nothing to replace
    assert f"Le_RenewalDays='{DAYS}'" in host.conf.read_text()
    assert any(" --install-cert " in c and "--reloadcmd systemctl reload postfix dovecot" in c
               for c in host.acme_calls())
    assert (host.home / ".mailserver-ca").read_text() == SERVER + "\n"

    # The next run finds acme.sh and the certificate current: no download, no new certificate.
    proc = host.run(script)
    assert proc.returncode == 0, proc.stderr
    assert len(host.lines("curl-calls")) == len(catalog.ACME_SH_FILES)
    assert len(issue_calls(host)) == 2 and "--force" not in issue_calls(host)[-1]


@pytest.mark.parametrize("tampered", [f.path for f in catalog.ACME_SH_FILES])
@pytest.mark.parametrize("old", [None, "3.1.1"])
def test_a_file_that_does_not_match_its_sum_installs_nothing(host: Host, script: str, tampered: str,
                                                             old: str | None) -> None:
    if old:
        host.install_old(old)
    before = sorted(p.relative_to(host.home).as_posix() for p in host.home.rglob("*")) if old else []
    host.serve(next(f for f in catalog.ACME_SH_FILES if f.path == tampered), RELEASE[tampered] + "echo evil\n")
    proc = host.run(script)
    assert proc.returncode != 0
    assert f"{tampered}: FAILED" in proc.stderr
    assert "do not match their pinned sha256 sums; nothing installed" in proc.stderr
    assert not any(" --install " in c for c in host.acme_calls())
    assert not host.lines("acme-calls.installer")
    assert not issue_calls(host)
    if old:  # the old acme.sh is untouched and still the one that runs
        assert sorted(p.relative_to(host.home).as_posix() for p in host.home.rglob("*")) == before
        assert host.installed_version() == f"v{old}"
    else:
        assert not host.home.exists()
    assert not list(host.root.glob("tmp.*"))  # the download directory is gone


def test_a_file_that_cannot_be_downloaded_installs_nothing(host: Host, script: str) -> None:
    (host.root / "web" / catalog.ACME_SH_FILES[1].url.removeprefix("https://")).unlink()
    proc = host.run(script)
    assert proc.returncode != 0
    assert f"could not download {catalog.ACME_SH_FILES[1].url}; nothing installed" in proc.stderr
    assert not host.home.exists() and not host.acme_calls()


def test_an_older_acme_sh_is_upgraded_and_its_certificate_moves_to_the_schedule(host: Host, script: str) -> None:
    """acme.sh 3.1.1 on an existing host: the version pin replaces it, and its certificate,
    whose next renewal 3.1.1 set 60 days out, is issued again now with --days; after that
    the schedule holds and runs leave the certificate alone."""
    host.install_old("3.1.1")
    proc = host.run(script)
    assert proc.returncode == 0, proc.stderr
    assert host.lines("curl-calls") == [f.url for f in catalog.ACME_SH_FILES]
    assert host.lines("acme-calls.installer")
    assert host.installed_version() == f"v{catalog.ACME_SH_VERSION}"
    [issue] = issue_calls(host)
    assert issue.startswith(f"v{catalog.ACME_SH_VERSION} ")  # the new acme.sh issues
    assert f"--days {DAYS} --force" in issue
    assert f"Le_RenewalDays='{DAYS}'" in host.conf.read_text()

    proc = host.run(script)
    assert proc.returncode == 0, proc.stderr
    assert "--force" not in issue_calls(host)[-1]


def test_a_certificate_with_other_days_is_issued_again(host: Host, script: str) -> None:
    """The same pinned version, but a certificate issued with another --days (an earlier policy)."""
    host.install_old(catalog.ACME_SH_VERSION)
    host.conf.write_text(f"Le_Domain='{HOST}'\nLe_RenewalDays='{DAYS + 30}'\n")
    proc = host.run(script)
    assert proc.returncode == 0, proc.stderr
    assert not host.lines("curl-calls")  # already the pinned version
    assert "--force" in issue_calls(host)[-1]
    assert f"Le_RenewalDays='{DAYS}'" in host.conf.read_text()


def test_a_ca_switch_forces_a_new_certificate(host: Host, script: str) -> None:
    host.install_old(catalog.ACME_SH_VERSION)
    host.conf.write_text(f"Le_Domain='{HOST}'\nLe_RenewalDays='{DAYS}'\n")
    other = next(s for s in catalog.ACME_SERVERS if s != SERVER)
    (host.home / ".mailserver-ca").write_text(other + "\n")
    proc = host.run(script)
    assert proc.returncode == 0, proc.stderr
    assert "--force" in issue_calls(host)[-1]
    assert (host.home / ".mailserver-ca").read_text() == SERVER + "\n"


def test_a_failed_issuance_keeps_the_previous_certificate(host: Host, script: str) -> None:
    host.install_old(catalog.ACME_SH_VERSION)
    other = next(s for s in catalog.ACME_SERVERS if s != SERVER)
    (host.home / ".mailserver-ca").write_text(other + "\n")
    proc = host.run(script, ISSUE_RC="1")
    assert proc.returncode == 1
    assert "issuance failed (acme.sh exit 1); the previous certificate stays in place" in proc.stderr
    assert not any(" --install-cert " in c for c in host.acme_calls())
    # The CA is not recorded as switched, so the next run forces the new certificate again.
    assert (host.home / ".mailserver-ca").read_text() == other + "\n"


def test_a_token_is_required(host: Host, script: str) -> None:
    path = host.root / "acme.sh"
    path.write_text(script)
    proc = subprocess.run(["bash", str(path)], input="", capture_output=True, text=True, check=False, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "ACME_HOME": str(host.home)})
    assert proc.returncode == 1 and "no Cloudflare token on stdin" in proc.stderr
    assert not host.home.exists()
