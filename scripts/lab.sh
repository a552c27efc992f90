#!/bin/bash
# The lab: the mail server this program deploys, running here with real postfix and dovecot
# in a private network namespace. No cloud account needed. Installs what it needs first.
#   scripts/lab.sh                 run the dev stack until Ctrl-C
#   scripts/lab.sh --check         start, run the smoke check, stop
#   scripts/lab.sh --stack prod    another stack's settings
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m mailserver lab "$@"
