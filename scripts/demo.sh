#!/usr/bin/env bash
# Install everything, start the lab (a real miniature platform on loopback) and open the cockpit on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/cockpit lab up "$@"
inv="$(.venv/bin/python -c 'from lab.topology import default_lab_dir; print(default_lab_dir() / "inventory.toml")')"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-lab-operator}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-lab-operator}" AWS_EC2_METADATA_DISABLED=true
exec .venv/bin/cockpit drive --inventory "$inv"
