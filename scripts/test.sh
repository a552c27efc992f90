#!/bin/bash
# Every test: lint, types, then pytest over the four layers: tests/unit (pure Python),
# tests/program (the Pulumi program under mocks), tests/tools (real tools on the rendered bundle)
# and tests/lab (real postfix and dovecot; root). Arguments go to pytest: `-m "not lab"` is the
# quick loop. Installs what it needs first (Debian packages, .venv), so it runs on a fresh Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy components mailserver tests bench __main__.py
exec .venv/bin/python -m pytest -q "$@"
