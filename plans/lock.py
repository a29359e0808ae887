"""The fleet lock: one per environment, visible to every operator's cockpit.

An SSM parameter `/${namespace}/cockpit/lock`, created only if absent (`Overwrite=False` is an
atomic create), holding who, from where, which step and since when. It is held from preview
through apply and verify. A stale lock is broken only explicitly, and that is journaled.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from probes.aws import Aws, explain


class LockError(Exception):
    """The lock is held by someone else (the message says who), or could not be taken."""


@dataclass(frozen=True)
class LockInfo:
    who: str
    where: str
    pid: int
    step: str
    since: float
    token: str

    def describe(self) -> str:
        age = time.time() - self.since
        return f"{self.who} on {self.where} (pid {self.pid}), step {self.step}, for {age:.0f}s"


def lock_name(namespace: str) -> str:
    return f"/{namespace}/cockpit/lock"


def me(step: str) -> LockInfo:
    return LockInfo(who=os.environ.get("COCKPIT_OPERATOR") or getpass.getuser(), where=socket.gethostname(),
                    pid=os.getpid(), step=step, since=time.time(), token=os.urandom(8).hex())


class FleetLock:
    def __init__(self, aws: Aws, namespace: str) -> None:
        self.aws = aws
        self.name = lock_name(namespace)
        self.held: LockInfo | None = None
        self._token: str | None = None

    async def current(self) -> LockInfo | None:
        ssm: Any = self.aws.ssm
        try:
            resp = await asyncio.to_thread(ssm.get_parameter, Name=self.name)
        except Exception as exc:
            if type(exc).__name__ == "ParameterNotFound":
                return None
            raise LockError(explain(exc, f"reading the lock {self.name}")) from None
        try:
            return LockInfo(**json.loads(resp["Parameter"]["Value"]))
        except (ValueError, TypeError):
            return LockInfo("?", "?", 0, "?", 0.0, "unparseable")

    async def acquire(self, step: str) -> LockInfo:
        info = me(step)
        ssm: Any = self.aws.ssm
        try:
            await asyncio.to_thread(ssm.put_parameter, Name=self.name, Value=json.dumps(asdict(info)),
                                    Type="String", Overwrite=False)
        except Exception as exc:
            if type(exc).__name__ == "ParameterAlreadyExists":
                holder = await self.current()
                raise LockError(f"the fleet lock is held by {holder.describe() if holder else 'someone'}; "
                                "wait, or break it explicitly if it is stale") from None
            raise LockError(explain(exc, f"taking the lock {self.name}")) from None
        self.held = info
        return info

    async def release(self) -> None:
        if self.held is None:
            return
        self._token = self.held.token
        cur = await self.current()
        self.held = None
        if cur is not None and cur.token == (self._token or ""):
            ssm: Any = self.aws.ssm
            try:
                await asyncio.to_thread(ssm.delete_parameter, Name=self.name)
            except Exception as exc:
                raise LockError(explain(exc, f"releasing the lock {self.name}") + " — it stays held; break it "
                                "with `cockpit lock --break --reason …` once fixed") from None

    async def break_lock(self) -> LockInfo | None:
        """Remove whoever's lock (the caller journals it, with the reason)."""
        cur = await self.current()
        if cur is not None:
            ssm: Any = self.aws.ssm
            try:
                await asyncio.to_thread(ssm.delete_parameter, Name=self.name)
            except Exception as exc:
                if type(exc).__name__ != "ParameterNotFound":
                    raise LockError(explain(exc, f"breaking the lock {self.name}")) from None
        return cur
