"""Where the cockpit keeps its files on this machine (XDG), and where the inventory is by default.

The recordings and the palette's screenshots live under the state directory (`inventory.statedir`,
`$XDG_STATE_HOME/rollout-cockpit`), where the local journal (plans/journal.py) lives too.
"""

from __future__ import annotations

import os
from pathlib import Path

from inventory.statedir import state_dir


def recordings_dir() -> Path:
    """`$XDG_STATE_HOME/rollout-cockpit/recordings`: where drive and watch sessions are recorded."""
    return state_dir() / "recordings"


def screenshots_dir() -> Path:
    """Where the palette's Screenshot writes: `$XDG_STATE_HOME/rollout-cockpit/screenshots` (made when needed),
    next to the recordings — not Textual's default, a Downloads folder that may not exist."""
    return state_dir() / "screenshots"


def default_inventory() -> Path:
    """The inventory when no --inventory is given: `$COCKPIT_INVENTORY`, else the lab's."""
    env = os.environ.get("COCKPIT_INVENTORY")
    if env:
        return Path(env)
    from lab.topology import default_lab_dir

    return default_lab_dir() / "inventory.toml"
