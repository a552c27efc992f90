"""spam-packages.sh, run for real with real gpg, against stand-ins for rpm, dnf and the download.

rspamd comes from its vendor's repository over plain http (catalog.RSPAMD_REPO): the signing
key is what makes it trustworthy, so the script must refuse any key but the pinned one, before
a repository file, a key or a package is installed. The fingerprint is read by real gpg from
the downloaded file; the stand-in "download" serves a key made here. The script's absolute
paths (/etc/yum.repos.d...) are moved under the test's directory.

The SELinux module the script loads on EL is compiled by checkmodule and packaged by
semodule_package (Debian's checkpolicy and semodule-utils), as the script does on the host.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.core import catalog, render
from tests.support import dev_settings
from tests.tools.support import standin_host

STANDINS = {
    # curl -fsS --retry N -o FILE URL: "downloads" the key the test made.
    "curl": '#!/bin/bash\nwhile [ "$1" != -o ]; do shift; done\n/bin/cp "$SERVED_KEY" "$2"\n',
    # rpm -q NAME | rpm --import FILE
    "rpm": '#!/bin/bash\ncase "$1" in\n  -q) [ -e "$STATE/installed/$2" ] ;;\n'
           '  --import) echo "rpm --import $2" >> "$STATE/calls" ;;\nesac\n',
    "dnf": '#!/bin/bash\necho "dnf $*" >> "$STATE/calls"\n'
           'for a in "$@"; do case "$a" in -*|install) ;; *) /usr/bin/touch "$STATE/installed/$a" ;; esac; done\n',
    # A host without SELinux: the module step is tested on its own below.
    "selinuxenabled": "#!/bin/bash\nexit 1\n",
}
PATHS = ("/etc/pki/rpm-gpg", "/etc/yum.repos.d", "/var/lib/mailserver")


def make_key(home: Path, uid: str = "test@example.invalid") -> tuple[Path, str]:
    """An OpenPGP signing key, exported, and its fingerprint (as gpg prints it)."""
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
                   env=env, check=True, capture_output=True)
    key = home.parent / f"served-{home.name}.asc"
    key.write_bytes(subprocess.run(["gpg", "--armor", "--export", uid], env=env, check=True,
                                   capture_output=True).stdout)
    listing = subprocess.run(["gpg", "--with-colons", "--list-keys"], env=env, check=True, capture_output=True,
                             text=True).stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    return key, fpr


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Path]:
    standin_host(tmp_path, STANDINS)
    for path in PATHS:
        (tmp_path / "root" / path.lstrip("/")).mkdir(parents=True)
    yield tmp_path
    # gpg starts an agent for each home it generated a key in: stop them all.
    for home in tmp_path.glob("gnupg*"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)


def run_script(host: Path, served: Path, fingerprint: str | None = None) -> subprocess.CompletedProcess[str]:
    settings, _ = dev_settings()
    text = render.render(settings).scripts["spam-packages.sh"]
    repo = catalog.RSPAMD_REPO[settings.os]
    if fingerprint:
        text = text.replace(repo.fingerprint, fingerprint)
    for path in PATHS:
        text = text.replace(path, f"{host}/root{path}")
    script = host / "spam-packages.sh"
    script.write_text(text)
    env = {"PATH": f"{host / 'bin'}:/usr/bin:/bin", "STATE": str(host), "SERVED_KEY": str(served),
           "GNUPGHOME": str(host / "gnupg-script"), "HOME": str(host)}
    (host / "gnupg-script").mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_key_of_another_fingerprint_is_refused_before_anything_is_installed(host: Path) -> None:
    served, fpr = make_key(host / "gnupg")
    proc = run_script(host, served)  # the script pins rspamd's fingerprint; the served key is not it
    assert proc.returncode == 1
    assert fpr in proc.stderr and catalog.RSPAMD_REPO["centos-stream-9"].fingerprint in proc.stderr
    assert not list((host / "root/etc/pki/rpm-gpg").iterdir())
    assert not list((host / "root/etc/yum.repos.d").iterdir())
    assert not list((host / "installed").iterdir())


def test_the_pinned_key_beside_another_one_is_refused(host: Path) -> None:
    """dnf trusts every key of a gpgkey file: a second key served beside the pinned one would
    sign packages as well as rspamd's own."""
    pinned, fpr = make_key(host / "gnupg")
    other, _ = make_key(host / "gnupg-other", "other@example.invalid")
    both = host / "both.asc"
    both.write_bytes(pinned.read_bytes() + other.read_bytes())
    proc = run_script(host, both, fingerprint=fpr)
    assert proc.returncode == 1 and "2 keys" in proc.stderr, proc.stderr
    assert not list((host / "root/etc/pki/rpm-gpg").iterdir())
    assert not list((host / "installed").iterdir())


def test_a_download_that_is_no_key_is_refused_with_a_reason(host: Path) -> None:
    page = host / "page.html"
    page.write_text("<html>captive portal</html>")
    proc = run_script(host, page)
    assert proc.returncode == 1 and "holds no key" in proc.stderr, proc.stderr
    assert not list((host / "installed").iterdir())


def test_the_pinned_key_is_imported_and_the_repository_checks_signatures(host: Path) -> None:
    served, fpr = make_key(host / "gnupg")
    proc = run_script(host, served, fingerprint=fpr)
    assert proc.returncode == 0, proc.stderr
    key = host / "root/etc/pki/rpm-gpg/RPM-GPG-KEY-rspamd"
    assert key.read_bytes() == served.read_bytes()
    repo = (host / "root/etc/yum.repos.d/rspamd.repo").read_text()
    # Packages and the repository's metadata are both checked against that key alone.
    assert "gpgcheck=1" in repo and "repo_gpgcheck=1" in repo and f"gpgkey=file://{key}" in repo
    assert "baseurl=http://rspamd.com/rpm-stable/centos-9/$basearch" in repo
    settings, _ = dev_settings()
    assert {"rspamd", catalog.KV_STORES[settings.os].package} <= {p.name for p in (host / "installed").iterdir()}
    # A second run finds the key and the packages there: nothing fetched or installed again.
    served.write_text("not a key")
    (host / "calls").unlink()
    again = run_script(host, served, fingerprint=fpr)
    assert again.returncode == 0, again.stderr
    assert not (host / "calls").exists()


def test_the_selinux_module_compiles_and_packages(tmp_path: Path) -> None:
    te = tmp_path / f"{catalog.RSPAMD_SELINUX_MODULE}.te"
    te.write_text(render.selinux_module() + "\n")
    # checkmodule insists that the output be named after the module, as the script names it.
    mod, pp = te.with_suffix(".mod"), te.with_suffix(".pp")
    proc = subprocess.run(["checkmodule", "-M", "-m", "-o", str(mod), str(te)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(["semodule_package", "-o", str(pp), "-m", str(mod)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and pp.stat().st_size > 0, proc.stderr
    # It allows connecting to rspamd's sockets, nothing else: no read or write of other files.
    allows = [line for line in render.selinux_module().splitlines() if line.startswith("allow ")]
    assert allows and all(line.endswith(("var_run_t:sock_file write;",
                                         "unconfined_service_t:unix_stream_socket connectto;")) for line in allows)
