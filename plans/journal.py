"""The journal: JSON lines, locally and on the fleet, of who did what, when and why.

Local: `$XDG_STATE_HOME/rollout-cockpit/journal/<env>.jsonl` (mode 0600). Fleet: appended to
`/var/log/rollout-cockpit/journal.jsonl` on the database host, which every operator (and every watcher)
reads. Entries never hold secrets: values of rollout variables only, never passwords or key material.

A journal write never fails silently. The local write is the record of last resort: when it fails the
write raises `JournalError` (the engine refuses to act without it). A fleet write that fails is kept in
`<env>.pending.jsonl` and uploaded, in order, before the next entry that reaches the fleet — the entry
says so (`fleet_journal_error`), and the engine tells the operator.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Protocol

from inventory.model import Environment
from inventory.statedir import state_dir
from probes.ssh.results import SshError, SshErrorKind

FLEET_PATH = "/var/log/rollout-cockpit/journal.jsonl"
MAX_READ = 16 << 20


class FleetFiles(Protocol):
    """Where the fleet journal lives: files on the fleet's hosts (the SSH pool)."""

    async def append_file(self, host_name: str, path: str, data: bytes) -> SshError | None: ...

    async def read_file(self, host_name: str, path: str, max_bytes: int) -> bytes | SshError: ...


class JournalError(Exception):
    """The journal could not be written; the message says where and why."""


class Journal:
    def __init__(self, env: Environment, pool: FleetFiles | None, *, local_dir: Path | None = None) -> None:
        self.env = env
        self.pool = pool
        self.dir = local_dir or state_dir() / "journal"
        self.local = self.dir / f"{env.name}.jsonl"
        self.pending = self.dir / f"{env.name}.pending.jsonl"
        self.who = os.environ.get("COCKPIT_OPERATOR") or getpass.getuser()
        self.where = socket.gethostname()

    def _entry(self, event: str, **fields: Any) -> dict[str, Any]:
        return {
            "v": 1,
            "ts": time.time(),
            "env": self.env.name,
            "who": self.who,
            "where": self.where,
            "event": event,
            **fields,
        }

    def _append_local(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise JournalError(
                f"the local journal {path} cannot be written: {exc.strerror or exc} — fix it "
                "(disk full? permissions?) before changing the fleet"
            ) from None

    @property
    def _fleet(self) -> tuple[str, str] | None:
        if self.pool is None or self.env.managed_database:
            return None
        db = self.env.database_host
        return db.name, self.env.host_path(db, FLEET_PATH)

    async def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append an entry locally (JournalError if that fails) and on the fleet (a failure there is kept
        for later and said in the returned entry's `fleet_journal_error`)."""
        entry = self._entry(event, **fields)
        line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        self._append_local(self.local, line)
        fleet = self._fleet
        if fleet is None or self.pool is None:
            return entry
        backlog = self.pending.read_bytes() if self.pending.exists() else b""
        err = await self.pool.append_file(fleet[0], fleet[1], backlog + line)
        if err is not None:
            entry["fleet_journal_error"] = str(err)
            self._append_local(self.pending, line)
        elif backlog:
            self.pending.unlink(missing_ok=True)
        return entry

    async def check_writable(self) -> None:
        """Preflight: both journals can take an entry (the fleet one is tested by appending nothing to
        it, which needs the same permissions as a real append)."""
        self._append_local(self.local, b"")
        fleet = self._fleet
        if fleet is not None and self.pool is not None:
            err = await self.pool.append_file(fleet[0], fleet[1], b"")
            if err is not None:
                raise JournalError(f"the fleet journal {fleet[0]}:{FLEET_PATH} cannot be written: {err}")

    def read_local(self, limit: int = 500) -> list[dict[str, Any]]:
        """The last `limit` entries of this machine's journal (damaged lines skipped)."""
        try:
            with open(self.local, "rb") as fh:
                size = fh.seek(0, 2)
                fh.seek(max(0, size - MAX_READ))
                data = fh.read()
        except OSError:
            return []
        return _parse(data, limit)

    async def read_fleet(self, limit: int = 500) -> list[dict[str, Any]]:
        fleet = self._fleet
        if fleet is None or self.pool is None:
            return []
        data = await self.pool.read_file(fleet[0], fleet[1], MAX_READ)
        if isinstance(data, bytes):
            return _parse(data, limit)
        if data.kind is SshErrorKind.NO_SUCH_FILE:
            return []  # no fleet journal yet: nothing was ever applied through it
        # could not read it: unfinished intents are unknown, never "none"
        raise JournalError(f"the fleet journal {fleet[1]} on {fleet[0]} could not be read: {data.message}")


def _parse(data: bytes, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in data.decode("utf-8", "replace").splitlines()[-limit:]:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict):
            out.append(e)
    return out
