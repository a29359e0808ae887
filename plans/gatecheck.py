"""The shape of one gate check — what it may know (`GateContext`), what it answers (`GateVerdict`) — and
the phrasing every check shares: counts, lists of hosts by service, closed-before-unknown. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

from plans.facts import NO_DATABASE, join, sorted_hosts
from plans.model import Plan, Step
from probes.model import Unknown
from probes.snapshot import Connection, DatabaseState, FleetSnapshot, InstanceState, LegView

__all__ = [
    "UNIDENTIFIED",
    "GateCheck",
    "GateContext",
    "GateStatus",
    "GateVerdict",
    "clients_text",
    "combine",
    "database_of",
    "instances_text",
    "leg_view",
    "plural",
    "unknown_text",
]

GateStatus = Literal["open", "closed", "unknown"]


@dataclass(frozen=True, slots=True)
class GateContext:
    """What a gate may know besides the snapshot: the plan, the step it guards or verifies, the service."""

    plan: Plan
    step: Step | None
    service: str | None


GateVerdict = tuple[GateStatus, str]
GateCheck = Callable[[FleetSnapshot, GateContext], GateVerdict]


def plural(n: int, what: str) -> str:
    """plural(1, "connection") -> "1 connection"; plural(2, "connection") -> "2 connections"."""
    return f"{n} {what}" + ("" if n == 1 else "s")


def combine(closed: list[str], unknown: list[str], ok: str) -> GateVerdict:
    """Closed wins over unknown (a measured problem is reason enough); both block."""
    if closed:
        return "closed", "; ".join(closed + unknown)
    if unknown:
        return "unknown", "; ".join(unknown)
    return "open", ok


def unknown_text(u: Unknown) -> str:
    """Why a fact could not be measured, as shown inside a reason: "timeout: no answer"."""
    return f"{u.why.value}: {u.detail}" if u.detail else u.why.value


def database_of(s: FleetSnapshot) -> DatabaseState | GateVerdict:
    """The database host's state, or the "unknown" verdict of a gate that needs it when it was not observed."""
    if isinstance(s.database, Unknown):
        return "unknown", f"{NO_DATABASE} ({unknown_text(s.database)})"
    if s.database.reachable is not True:
        r = s.database.reachable
        return "unknown", NO_DATABASE + (f" ({unknown_text(r)})" if isinstance(r, Unknown) else "")
    return s.database


def leg_view(s: FleetSnapshot, leg: Literal["leg1", "leg2", "postgres", "redis"], what: str) -> LegView | str:
    """Who is connected on `leg`, or why that could not be read (a reason to show)."""
    view = s.leg(leg)
    if isinstance(view, Unknown):
        return f"who is connected to {what} could not be read ({unknown_text(view)}) — refresh"
    return view


UNIDENTIFIED: Final = "an unidentified client"


def instances_text(
    insts: Iterable[InstanceState], note: Callable[[InstanceState], str] = lambda i: ""
) -> tuple[str, str]:
    """("voice (staging-voice-01, staging-voice-02) and ops (staging-ops-01)", "voice and ops"), in
    inventory order — stable from one poll to the next."""
    groups: dict[str, list[str]] = {}
    for i in insts:
        groups.setdefault(i.service, []).append(i.host + note(i))
    return join(f"{svc} ({', '.join(hosts)})" for svc, hosts in groups.items()), join(groups)


def clients_text(conns: Iterable[Connection]) -> str:
    """The clients behind connections, by service ("an unidentified client" for an unknown address)."""
    groups: dict[str, list[str]] = {}
    for c in conns:
        who = c.service if c.service and c.service != "?" else UNIDENTIFIED
        groups.setdefault(who, []).append(c.instance or c.addr)
    return join(f"{svc} ({', '.join(sorted_hosts(where))})" for svc, where in sorted(groups.items()))
