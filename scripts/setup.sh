#!/usr/bin/env bash
# Install what the cockpit and its lab need on a Debian/Ubuntu machine: the servers
# (postgresql pgbouncer redis-server openssh-server) and a venv with the project.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(postgresql pgbouncer redis-server openssh-server openssh-client)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"; } >/tmp/cockpit-apt.log 2>&1; then
    for p in "${missing[@]}"; do
      dpkg -s "$p" >/dev/null 2>&1 || echo "setup: could not install Debian package '$p' (see /tmp/cockpit-apt.log)" >&2
    done
    exit 1
  fi
fi
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed"' || {
  echo "setup: Python >= 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
