#!/usr/bin/env bash
# Install everything, start the lab (a real miniature platform on loopback) and open the cockpit on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/cockpit lab up "$@"
inv="$(.venv/bin/python -c 'from lab.topology import default_lab_dir; print(default_lab_dir() / "inventory.toml")')"
exec .venv/bin/cockpit status --inventory "$inv"
