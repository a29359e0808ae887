"""The fleet lock: one per environment, visible to every operator's cockpit, never stranded.

SSM Parameter Store has an atomic create (`put_parameter(Overwrite=False)`) but no conditional
delete: "read it, see it is mine, delete it" can delete a lock someone else took in between. So
the lock is append-only, in generations under `/${namespace}/cockpit/lock/`:

- `…/lock/<gen>` (10 digits, so names sort) holds who, from where (host, pid), which step, since
  when, and a random token. It is created with `Overwrite=False` and never changed.
- `…/lock/<gen>/released` marks that generation released; also created with `Overwrite=False`,
  by its holder (release) or by anyone (break, which records who broke it and why).
- The lock is held when the highest generation has no released marker. Acquiring creates
  generation top+1 (only one creator can win it) and then checks that it is still the highest
  (a cockpit that was paused while old generations were cleaned up could otherwise re-create one).

No operation ever removes or rewrites a newer generation: a release or a break names the
generation it ends, and a late one finds that generation already released. Generations below the
newest `KEEP` are deleted after an acquire (best effort: deleting an old generation is harmless,
and the lock works with `ssm:PutParameter` and `ssm:GetParametersByPath` alone).

A holder on this machine whose process is gone is reported as stale (`LockInfo.stale`); a stale
lock is still only broken explicitly, and the caller journals that.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import socket
import time
from dataclasses import dataclass, replace
from typing import Final, Literal

from probes.aws import Aws, AwsError

GEN_DIGITS: Final = 10
KEEP: Final = 5  # newest generations kept; older ones are deleted after an acquire
_GEN_RE: Final = re.compile(rf"(\d{{{GEN_DIGITS}}})(/released)?")

MarkerKind = Literal["released", "broken", "superseded"]


class LockError(Exception):
    """The lock is held by someone else (the message says who), or could not be taken."""


@dataclass(frozen=True)
class LockInfo:
    """A generation's holder. `generation` and `stale` are derived when read, not stored."""

    who: str
    where: str
    pid: int
    step: str
    since: float
    token: str
    generation: int = 0
    stale: str | None = None  # why the holder looks gone ("pid 1234 is not running on this machine")

    def describe(self) -> str:
        age = time.time() - self.since
        text = f"{self.who} on {self.where} (pid {self.pid}), step {self.step}, for {age:.0f}s"
        return f"{text} — stale: {self.stale}" if self.stale else text

    def to_value(self) -> str:
        return json.dumps(
            {
                "who": self.who,
                "where": self.where,
                "pid": self.pid,
                "step": self.step,
                "since": self.since,
                "token": self.token,
            }
        )


@dataclass(frozen=True)
class LockMarker:
    """A generation's end: released by its holder, broken by someone (with a reason), or superseded
    (a racing acquirer's own generation, given up)."""

    kind: MarkerKind
    who: str
    where: str
    pid: int
    at: float
    reason: str = ""

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"{self.kind} by {self.who} on {self.where} (pid {self.pid}) at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.at))}{why}"
        )

    def to_value(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "who": self.who,
                "where": self.where,
                "pid": self.pid,
                "at": self.at,
                "reason": self.reason,
            }
        )


@dataclass(frozen=True)
class _Listing:
    holders: dict[int, LockInfo]
    markers: dict[int, LockMarker]

    @property
    def top(self) -> int:
        return max([*self.holders, *self.markers], default=0)

    def holder(self) -> LockInfo | None:
        """The highest generation's holder, or None when the lock is free."""
        top = self.top
        if top == 0 or top in self.markers:
            return None
        return self.holders.get(top)


def lock_name(namespace: str) -> str:
    """The folder of the lock's generations (`…/lock/<gen>`, `…/lock/<gen>/released`)."""
    return f"/{namespace}/cockpit/lock"


def operator() -> str:
    return os.environ.get("COCKPIT_OPERATOR") or getpass.getuser()


def me(step: str) -> LockInfo:
    return LockInfo(
        who=operator(),
        where=socket.gethostname(),
        pid=os.getpid(),
        step=step,
        since=time.time(),
        token=os.urandom(8).hex(),
    )


def _marker(kind: MarkerKind, reason: str = "") -> LockMarker:
    return LockMarker(kind, operator(), socket.gethostname(), os.getpid(), time.time(), reason)


def _process_started(pid: int) -> float | None:
    """When process `pid` started (epoch seconds, ±1 s), from /proc; None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as fh:
            btime = next(int(ln.split()[1]) for ln in fh if ln.startswith(b"btime "))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, counted from field 3
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def stale_reason(info: LockInfo, *, host: str | None = None) -> str | None:
    """Why `info`'s holder is gone, when that can be known: only for holders on this machine."""
    if info.where != (host or socket.gethostname()) or info.pid <= 0 or info.pid == os.getpid():
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return f"pid {info.pid} is not running on this machine"
    except PermissionError:
        pass  # it runs, as another user
    started = _process_started(info.pid)
    if started is not None and started > info.since + 2:
        return f"pid {info.pid} on this machine is another process now (started after the lock was taken)"
    return None


class FleetLock:
    """The environment's lock: `acquire(step)`, `release()`, `break_lock(reason)`, `current()`."""

    def __init__(self, aws: Aws, namespace: str) -> None:
        self.aws = aws
        self.name = lock_name(namespace)
        self.held: LockInfo | None = None

    # -- names ---------------------------------------------------------------------------------
    def _gen_name(self, gen: int) -> str:
        return f"{self.name}/{gen:0{GEN_DIGITS}d}"

    def _marker_name(self, gen: int) -> str:
        return f"{self._gen_name(gen)}/released"

    # -- SSM -----------------------------------------------------------------------------------
    async def _list(self, what: str) -> _Listing:
        prefix = self.name + "/"
        try:
            found = await self.aws.parameters_under(prefix)
        except AwsError as exc:
            raise LockError(f"{what}: reading the lock {self.name}: {exc.reason}") from None
        holders: dict[int, LockInfo] = {}
        markers: dict[int, LockMarker] = {}
        for name, p in found.items():
            m = _GEN_RE.fullmatch(name[len(prefix) :]) if name.startswith(prefix) else None
            if m is None:
                continue
            gen = int(m.group(1))
            if m.group(2):
                markers[gen] = _parse_marker(p.value)
            else:
                holders[gen] = _parse_holder(p.value, gen)
        return _Listing(holders, markers)

    async def _create(self, name: str, value: str) -> bool:
        """Create `name` (atomic); False when someone else's value is there. Other failures raise.

        "Already exists" with our own value means the AWS client retried a create that had succeeded
        (the first answer was lost): that is ours. Every value holds a timestamp, so it is unique."""
        if await self.aws.create_parameter(name, value):
            return True
        return await self._get(name) == value

    async def _get(self, name: str) -> str | None:
        p = await self.aws.get_parameter(name)
        return p.value if p is not None else None

    def _with_stale(self, info: LockInfo) -> LockInfo:
        return replace(info, stale=stale_reason(info))

    # -- the API -------------------------------------------------------------------------------
    async def current(self) -> LockInfo | None:
        """Who holds the lock now (with `stale` set when the holder looks gone), or None when free."""
        holder = (await self._list("who holds the lock")).holder()
        return self._with_stale(holder) if holder is not None else None

    async def acquire(self, step: str) -> LockInfo:
        if self.held is not None:
            raise LockError(f"this cockpit already holds the fleet lock (step {self.held.step}); release it first")
        listing = await self._list("taking the lock")
        holder = listing.holder()
        if holder is not None:
            raise LockError(_held_message(self._with_stale(holder)))
        gen = listing.top + 1
        info = replace(me(step), generation=gen)
        try:
            created = await self._create(self._gen_name(gen), info.to_value())
        except AwsError as exc:
            raise LockError(f"taking the lock {self._gen_name(gen)}: {exc.reason}") from None
        if not created:
            now = await self.current()
            raise LockError(_held_message(now) if now else "the fleet lock was taken and released meanwhile; try again")
        after = await self._list("checking the lock just taken")
        if after.top != gen:  # a newer generation exists: ours was re-created from a stale view
            with contextlib.suppress(Exception):
                await self._create(
                    self._marker_name(gen), _marker("superseded", "a newer generation exists").to_value()
                )
            now = await self.current()
            raise LockError(
                (_held_message(now) if now else "the fleet lock changed hands meanwhile")
                + " (lost a race for it; try again)"
            )
        self.held = info
        await self._cleanup(after)
        return info

    async def release(self) -> LockMarker | None:
        """Release the generation this cockpit holds (never another one).

        Returns the marker of whoever broke it meanwhile, if someone did; None otherwise."""
        held, self.held = self.held, None
        if held is None:
            return None
        what = f"releasing the lock {self._gen_name(held.generation)}"
        try:
            value = await self._get(self._gen_name(held.generation))
            if value is None or _parse_holder(value, held.generation).token != held.token:
                return None  # not ours (or gone): nothing of ours to release
            if await self._create(self._marker_name(held.generation), _marker("released").to_value()):
                return None
            existing = await self._get(self._marker_name(held.generation))
        except AwsError as exc:
            raise LockError(
                f"{what}: {exc.reason} — it stays held; break it with `cockpit lock --break --reason …` once fixed"
            ) from None
        marker = _parse_marker(existing) if existing is not None else None
        return marker if marker is not None and marker.kind == "broken" else None

    async def break_lock(self, reason: str = "") -> LockInfo | None:
        """Mark the current generation released, recording who broke it and why; returns the holder
        it ended (None when the lock was free, or was released meanwhile). The caller journals it."""
        holder = (await self._list("breaking the lock")).holder()
        if holder is None:
            return None
        try:
            created = await self._create(self._marker_name(holder.generation), _marker("broken", reason).to_value())
        except AwsError as exc:
            raise LockError(f"breaking the lock {self._gen_name(holder.generation)}: {exc.reason}") from None
        if self.held is not None and self.held.generation == holder.generation:
            self.held = None
        return self._with_stale(holder) if created else None

    async def _cleanup(self, listing: _Listing) -> None:
        """Delete generations below the newest KEEP (best effort; they are released or superseded)."""
        floor = listing.top - KEEP
        names = [self._gen_name(g) for g in listing.holders if g <= floor] + [
            self._marker_name(g) for g in listing.markers if g <= floor
        ]
        for i in range(0, len(names), 10):
            with contextlib.suppress(AwsError):
                await self.aws.delete_parameters(names[i : i + 10])


def _held_message(holder: LockInfo | None) -> str:
    who = holder.describe() if holder else "someone"
    hint = (
        "break it with `cockpit lock --break --reason …`"
        if holder and holder.stale
        else "wait, or break it explicitly if it is stale"
    )
    return f"the fleet lock is held by {who}; {hint}"


def _parse_holder(value: str, gen: int) -> LockInfo:
    try:
        d = json.loads(value)
        return LockInfo(
            str(d["who"]), str(d["where"]), int(d["pid"]), str(d["step"]), float(d["since"]), str(d["token"]), gen
        )
    except (ValueError, TypeError, KeyError):
        return LockInfo("?", "?", 0, "?", 0.0, "unparseable", gen)


def _parse_marker(value: str) -> LockMarker:
    try:
        d = json.loads(value)
        kind = d.get("kind")
        return LockMarker(
            kind if kind in ("released", "broken", "superseded") else "released",
            str(d["who"]),
            str(d["where"]),
            int(d["pid"]),
            float(d["at"]),
            str(d.get("reason", "")),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return LockMarker("released", "?", "?", 0, 0.0, "unparseable marker")


__all__ = ["FleetLock", "LockError", "LockInfo", "LockMarker", "lock_name", "me", "stale_reason"]
