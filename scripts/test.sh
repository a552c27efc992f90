#!/bin/bash
# Every test: lint, types, the settings/plan/render unit tests, the Pulumi mock tests, the real
# tools on the rendered bundle, and the lab end-to-end suite with real postfix and dovecot.
# Installs what it needs first (Debian packages, .venv), so it runs on a fresh Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy components mailserver tests bench __main__.py
exec .venv/bin/python -m pytest -q "$@"
