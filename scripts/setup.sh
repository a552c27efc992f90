#!/bin/bash
# Install what the lab and the tests need on a Debian 12 machine, idempotently:
# Debian's postfix, dovecot, cloud-init and shellcheck (the real tools the rendered
# bundle is checked with), then a Python virtual environment in .venv.
# Nothing is started and no system mail configuration is written: the lab runs its own
# instances from a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages and the lab needs network namespaces)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# python3 itself first: the package list below comes from mailserver/core/catalog.py.
if ! command -v python3 >/dev/null; then
  apt-get update -q
  apt-get install -y -q python3 python3-venv
fi

read -r -a packages <<< "$(python3 -m mailserver.core.catalog debian-packages)"
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # "No configuration": the package must not write a system main.cf or start a system MTA
  # for us; the lab brings its own configuration.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  # Nor may any other package start a system service: on a machine with systemd, dovecot,
  # opendkim, fail2ban (with an sshd jail), unbound (which takes over resolv.conf) and sshd
  # would start at once and again at every boot. A policy-rc.d that says no (unless the
  # machine has one) stops the start; the units the install enabled are disabled after.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ -n "$own_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  if [ -n "$own_policy" ] && [ -d /run/systemd/system ]; then
    for p in "${missing[@]}"; do
      case "$p" in
        dovecot-core) unit=dovecot ;; opendkim) unit=opendkim ;; fail2ban) unit=fail2ban ;;
        unbound) unit=unbound ;; openssh-server) unit=ssh ;; *) continue ;;
      esac
      systemctl disable "$unit" >/dev/null 2>&1 || true
    done
  fi
fi

# The virtual environment, rebuilt only when the requirements change.
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
