"""Intents: what an apply is about to write, recorded in the journals before the first write, so a write
that stops half-way (a killed process, a failed store) is never silent: until a matching completion
record exists, `plan` shows the intent as a danger with the exact remedy, and the next advance or
rollback of that target completes or reverts it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["advance", "rollback", "restart"]


@dataclass(frozen=True, slots=True)
class IntentChange:
    var: str
    old: str | None
    new: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"var": self.var, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class Intent:
    token: str  # ties the intent to its completion record
    step: str
    service: str  # the service whose config store values change
    direction: Direction
    changes: tuple[IntentChange, ...]
    who: str
    where: str
    ts: float

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "step": self.step,
            "service": self.service,
            "direction": self.direction,
            "changes": [c.to_json() for c in self.changes],
        }

    @classmethod
    def from_entry(cls, e: Mapping[str, Any]) -> Intent | None:
        """The intent in a journal entry (event "intent"), or None when it is not one or is malformed."""
        if e.get("event") != "intent":
            return None
        try:
            changes = tuple(IntentChange(str(c["var"]), c.get("old"), c.get("new")) for c in e.get("changes", ()))
            direction = e.get("direction")
            if direction not in ("advance", "rollback", "restart"):
                return None
            return cls(
                str(e["token"]),
                str(e["step"]),
                str(e["service"]),
                direction,
                changes,
                str(e.get("who", "?")),
                str(e.get("where", "?")),
                float(e.get("ts", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def unfinished(entries: Iterable[Mapping[str, Any]]) -> list[Intent]:
    """Intents with no later completion, oldest first. An intent is complete when its own "intent-done"
    record follows (whatever its outcome: the store then holds what it says), or when a later apply of the
    same step and service finished ("intent-done" ok, or "apply-done" ok): that apply completed or reverted it."""
    open_: dict[str, Intent] = {}
    for e in entries:
        if not isinstance(e, Mapping):
            continue
        intent = Intent.from_entry(e)
        if intent is not None:
            open_[intent.token] = intent
            continue
        event = e.get("event")
        if event == "intent-done":
            open_.pop(str(e.get("token")), None)
        if event in ("intent-done", "apply-done") and e.get("ok") is True and e.get("step"):
            for token, i in list(open_.items()):
                if i.step == e.get("step") and i.service == e.get("service"):
                    del open_[token]
    return sorted(open_.values(), key=lambda i: i.ts)


def merge(*sources: Sequence[Intent]) -> list[Intent]:
    """Unfinished intents from several journals (the fleet's and this machine's), each once."""
    seen: dict[str, Intent] = {}
    for src in sources:
        for i in src:
            seen.setdefault(i.token, i)
    return sorted(seen.values(), key=lambda i: i.ts)
