"""Where the cockpit keeps its files on this machine: `$XDG_STATE_HOME/rollout-cockpit`
(`~/.local/state/rollout-cockpit` when it is unset) — the local journal (plans), the recordings and the
screenshots (cli). One copy, at the bottom layer, so every layer that writes locally agrees on it."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """`$XDG_STATE_HOME/rollout-cockpit` (default `~/.local/state/rollout-cockpit`)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rollout-cockpit"
