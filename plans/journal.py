"""The journal: JSON lines, locally and on the fleet, of who did what, when and why.

Local: `$XDG_STATE_HOME/rollout-cockpit/journal/<env>.jsonl` (mode 0600). Fleet: appended to
`/var/log/rollout-cockpit/journal.jsonl` on the database host, which every operator reads.
Entries never hold secrets: values of rollout variables only, never passwords or key material.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from probes.inventory import Environment
from probes.ssh import SshPool

FLEET_PATH = "/var/log/rollout-cockpit/journal.jsonl"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rollout-cockpit"


class Journal:
    def __init__(self, env: Environment, pool: SshPool | None, *, local_dir: Path | None = None) -> None:
        self.env = env
        self.pool = pool
        d = local_dir or state_dir() / "journal"
        d.mkdir(parents=True, exist_ok=True)
        self.local = d / f"{env.name}.jsonl"
        self.who = os.environ.get("COCKPIT_OPERATOR") or getpass.getuser()
        self.where = socket.gethostname()

    def _entry(self, event: str, **fields: Any) -> dict[str, Any]:
        return {"v": 1, "ts": time.time(), "env": self.env.name, "who": self.who, "where": self.where,
                "event": event, **fields}

    async def write(self, event: str, **fields: Any) -> dict[str, Any]:
        entry = self._entry(event, **fields)
        line = json.dumps(entry, sort_keys=True)
        fd = os.open(self.local, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        if self.pool is not None and not self.env.managed_database:
            db = self.env.database_host
            err = await self.pool.append_file(db.name, self.env.host_path(db, FLEET_PATH), (line + "\n").encode())
            if err is not None:
                entry["fleet_journal_error"] = str(err)
        return entry

    async def read_fleet(self, limit: int = 500) -> list[dict[str, Any]]:
        if self.pool is None:
            return []
        db = self.env.database_host
        data = await self.pool.read_file(db.name, self.env.host_path(db, FLEET_PATH), 16 << 20)
        if not isinstance(data, bytes):
            return []
        out = []
        for line in data.decode("utf-8", "replace").splitlines()[-limit:]:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
