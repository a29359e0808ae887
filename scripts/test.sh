#!/usr/bin/env bash
# Install everything and run every test (unit, real-server and lab tests), then lint and type checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/pytest -q -p no:cacheprovider "$@"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
.venv/bin/mypy --strict inventory probes plans session tui cli lab
