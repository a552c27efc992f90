"""First boot and its repair, run for real against stand-ins for what only an EL host has.

packages.sh (the repositories and packages of the host) and the first remote command (which
waits for cloud-init, reports a failed first boot and runs packages.sh again) are executed by
bash here; `rpm`, `dnf`, `cloud-init`, `sleep` and `sudo` are small scripts that model an EL
host and its mirrors: packages that exist or not, EPEL reachable or not, a network that fails
the first downloads. What they model, and its source:
- dnf 4 installs a package list as one transaction, so one unknown package fails the whole
  list, unless --skip-broken (strict=0), which skips what cannot be installed (dnf.conf(5),
  "strict"); Stream 9 and 10 both run dnf 4.
- rpm -q --quiet exits 0 only when the package is installed.
- cloud-init status --wait exits 0 (done), 2 (done, recoverable errors), 1 (failed)
  (cloud-init's `status` documentation, 23.4+).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components import provision
from mailserver.core import catalog, render
from tests.support import dev_settings
from tests.tools.support import standin_host

BASE = catalog.el_packages("centos-stream-9")
EPEL = catalog.EPEL_PACKAGES

STANDINS = {
    "rpm": r"""#!/bin/bash
# rpm -q --quiet NAME
[ "$1" = -q ] && [ "$2" = --quiet ] && [ -e "$STATE/installed/$3" ]
""",
    "dnf": r"""#!/bin/bash
echo "dnf $*" >> "$STATE/calls"
if [ "$1" = config-manager ]; then /usr/bin/touch "$STATE/enabled-$3"; exit 0; fi
# A flaky network: the first $FAIL_FIRST downloads fail.
n=$(/usr/bin/cat "$STATE/failures" 2>/dev/null || echo 0)
if [ "$n" -lt "${FAIL_FIRST:-0}" ]; then
  echo $((n + 1)) > "$STATE/failures"; echo "Curl error (28): timeout" >&2; exit 1
fi
skip=""; pkgs=()
for a in "$@"; do
  case "$a" in -y|-q|install) ;; --skip-broken) skip=1 ;; *) pkgs+=("$a") ;; esac
done
available() {
  case "$1" in
    https://*epel-release-latest-*) [ -n "${EPEL_URL_OK:-}" ] ;;
    epel-release) [ -n "${EPEL_PACKAGE_OK:-}" ] ;;
    *) case " ${EPEL_ONLY} " in
         *" $1 "*) [ -e "$STATE/installed/epel-release" ] && [ -e "$STATE/enabled-crb" ] ;;
         *) case " ${UNAVAILABLE:-} " in *" $1 "*) false ;; *) true ;; esac ;;
       esac ;;
  esac
}
ok=(); for p in "${pkgs[@]}"; do
  if available "$p"; then ok+=("$p")
  elif [ -n "$skip" ]; then echo "No match for argument: $p" >&2
  else echo "Error: Unable to find a match: $p" >&2; exit 1; fi
done
for p in "${ok[@]}"; do
  case "$p" in https://*) p=epel-release ;; esac
  /usr/bin/touch "$STATE/installed/$p"
done
""",
    "sleep": """#!/bin/bash\necho "sleep $*" >> "$STATE/calls"\n""",
    "cloud-init": """#!/bin/bash\nexit "${CLOUD_INIT_RC:-0}"\n""",
    "tail": """#!/bin/bash\necho "tail $*"\n""",
    # sudo, install and bash: run as given, but install writes under $STATE.
    "sudo": """#!/bin/bash\nexec "$@"\n""",
    "install": r"""#!/bin/bash
if [ "$1" = -d ]; then exit 0; fi
# install -m MODE /dev/stdin PATH
/usr/bin/mkdir -p "$STATE/root$(/usr/bin/dirname "$4")" && /usr/bin/cat > "$STATE/root$4"
""",
    "bash": r"""#!/bin/bash
# bash PATH: the script install put under $STATE/root
case "$1" in /*) f="$STATE/root$1"; [ -e "$f" ] || f=$1; shift; exec /bin/bash "$f" "$@" ;; esac
exec /bin/bash "$@"
""",
}


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A fresh stand-in host: no package installed; stand-ins on an otherwise empty PATH."""
    return standin_host(tmp_path, STANDINS)


def run_packages(host: Path, with_curl: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    script = host / "packages.sh"
    script.write_text(render.render(dev_settings()[0]).scripts["packages.sh"])
    if with_curl:
        curl = host / "bin" / "curl"
        curl.write_text("#!/bin/bash\n")
        curl.chmod(0o755)
    environ = {"PATH": str(host / "bin"), "STATE": str(host), "EPEL_ONLY": " ".join(EPEL),
               "EPEL_PACKAGE_OK": "1", **env}
    return subprocess.run(["/bin/bash", str(script)], env=environ, capture_output=True, text=True, timeout=60,
                          check=False)


def installed(host: Path) -> set[str]:
    return {p.name for p in (host / "installed").iterdir()}


def calls(host: Path) -> list[str]:
    f = host / "calls"
    return f.read_text().splitlines() if f.exists() else []


def test_a_healthy_host_gets_every_package_and_epel_and_crb(host: Path) -> None:
    proc = run_packages(host)
    assert proc.returncode == 0, proc.stderr
    assert set(catalog.all_el_packages("centos-stream-9")) | {"epel-release"} <= installed(host)
    assert (host / "enabled-crb").exists()
    # The distribution's packages are asked for before EPEL exists: EPEL never holds them up.
    installs = [c for c in calls(host) if " install " in c]
    assert "postfix" in installs[0] and "epel-release" not in installs[0]


def test_a_second_run_installs_nothing(host: Path) -> None:
    assert run_packages(host).returncode == 0
    (host / "calls").unlink()
    assert run_packages(host).returncode == 0
    assert not [c for c in calls(host) if " install " in c]


def test_epel_unreachable_still_installs_postfix_and_dovecot_and_says_what_is_missing(host: Path) -> None:
    proc = run_packages(host, EPEL_PACKAGE_OK="")
    assert proc.returncode == 1
    assert {"postfix", "dovecot", "postfix-lmdb", "dovecot-pigeonhole"} <= installed(host)
    assert "still missing after" in proc.stderr and "fail2ban-server" in proc.stderr
    assert "EPEL is not installed" in proc.stderr
    # The next run, with EPEL back, repairs the host: nothing was remembered as done.
    proc = run_packages(host)
    assert proc.returncode == 0, proc.stderr
    assert set(EPEL) <= installed(host)


def test_epel_release_falls_back_to_the_epel_project_rpm(host: Path) -> None:
    proc = run_packages(host, EPEL_PACKAGE_OK="", EPEL_URL_OK="1")
    assert proc.returncode == 0, proc.stderr
    assert set(EPEL) <= installed(host)


def test_one_unavailable_package_does_not_keep_the_others_out(host: Path) -> None:
    # As one strict dnf transaction this would install nothing at all.
    proc = run_packages(host, UNAVAILABLE="postfix-lmdb")
    assert proc.returncode == 1
    assert {"postfix", "dovecot", *EPEL} <= installed(host) and "postfix-lmdb" not in installed(host)
    assert "still missing after 4 tries: postfix-lmdb" in proc.stderr


def test_failed_downloads_are_retried(host: Path) -> None:
    # The first two downloads fail (a mirror timing out, the address changing while the
    # Elastic IP is associated): the run still converges.
    proc = run_packages(host, FAIL_FIRST="2")
    assert proc.returncode == 0, proc.stderr
    assert set(catalog.all_el_packages("centos-stream-9")) <= installed(host)
    pause = catalog.PACKAGE_RETRY_PAUSE
    assert [c for c in calls(host) if c.startswith("sleep")] == [f"sleep {pause}", f"sleep {2 * pause}"]


def test_curl_is_installed_only_where_no_package_provides_the_command(host: Path) -> None:
    # EL9 images ship curl-minimal: asking dnf for curl there is a conflict error.
    assert run_packages(host, with_curl=True).returncode == 0
    assert "curl" not in installed(host)
    assert not any(c.split()[-1] == "curl" for c in calls(host))
    fresh = host / "fresh"
    for d in ("bin", "installed"):
        (fresh / d).mkdir(parents=True)
    for name, text in STANDINS.items():
        (fresh / "bin" / name).write_text(text)
        (fresh / "bin" / name).chmod(0o755)
    assert run_packages(fresh, with_curl=False).returncode == 0
    assert "curl" in installed(fresh)


# --- the first remote command ---------------------------------------------------------------


def run_wait(host: Path, cloud_init_rc: int, **env: str) -> subprocess.CompletedProcess[str]:
    script = render.render(dev_settings()[0]).scripts["packages.sh"]
    command = provision.wait_command(script)
    environ = {"PATH": str(host / "bin"), "STATE": str(host), "EPEL_ONLY": " ".join(EPEL),
               "EPEL_PACKAGE_OK": "1", "CLOUD_INIT_RC": str(cloud_init_rc), **env}
    curl = host / "bin" / "curl"
    curl.write_text("#!/bin/bash\n")
    curl.chmod(0o755)
    return subprocess.run(["/bin/bash", "-c", command], input=script, env=environ, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("rc", [0, 2])
def test_a_good_first_boot_is_not_reported(host: Path, rc: int) -> None:
    proc = run_wait(host, rc)
    assert proc.returncode == 0, proc.stderr
    assert "first boot failed" not in proc.stderr
    assert "postfix" in installed(host)  # packages.sh ran (and found everything missing here)


def test_a_failed_first_boot_shows_cloud_inits_log_and_is_repaired(host: Path) -> None:
    proc = run_wait(host, 1)
    assert proc.returncode == 0, proc.stderr
    assert "first boot failed (cloud-init status exit 1)" in proc.stderr
    assert f"tail -n {provision.CLOUD_INIT_LOG_LINES} /var/log/cloud-init-output.log" in proc.stderr
    assert set(catalog.all_el_packages("centos-stream-9")) <= installed(host)


def test_a_host_that_cannot_be_repaired_fails_the_command(host: Path) -> None:
    proc = run_wait(host, 1, EPEL_PACKAGE_OK="")
    assert proc.returncode != 0
    assert "still missing" in proc.stderr
