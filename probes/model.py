"""Verdicts, check results and "could not measure": the data every probe returns and every layer reads.

A probe never raises; whatever happens becomes a `CheckResult`. `Verdict.ERROR` means "could not
measure" and is never counted as ok or as fail. A fact that could not be measured is an `Unknown`
(with a `Why`), never `None`, `False` or an empty string: `Unknown` refuses to be used as a truth value,
so `if fact:` on a fact that might be unknown fails loudly in tests instead of reading as "no".
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard, TypeVar

T = TypeVar("T")


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"  # could not measure

    @property
    def rank(self) -> int:
        """Severity for summaries: ok < warn < error < fail."""
        return _RANK[self]


_RANK = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.ERROR: 2, Verdict.FAIL: 3}


class Why(enum.StrEnum):
    """Why something could not be measured."""

    UNREACHABLE = "unreachable"  # the host or the server could not be reached
    TIMEOUT = "timeout"  # no answer within the time allowed
    NOT_CHECKED = "not-checked"  # not measured: nothing to measure with, not configured, or skipped
    REFUSED = "refused"  # access refused: permissions, authentication, IAM
    NO_CREDENTIALS = "no-credentials"  # the cockpit has no credentials for it
    STALE = "stale"  # measured too long ago to be trusted
    BUG = "bug"  # a bug in the cockpit: an exception inside a probe


@dataclass(frozen=True, slots=True)
class Unknown:
    """A fact that could not be measured, and why. It has no truth value on purpose."""

    why: Why
    detail: str = ""

    def __bool__(self) -> bool:
        raise TypeError(
            f"a fact that could not be measured has no truth value ({self}); test it with isinstance(x, Unknown)"
        )

    def __str__(self) -> str:
        return f"unknown ({self.why.value}{': ' + self.detail if self.detail else ''})"

    def to_json(self) -> dict[str, str]:
        return {"unknown": self.why.value, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Unknown:
        return cls(Why(str(data["unknown"])), str(data.get("detail", "")))


def is_unknown(value: object) -> TypeGuard[Unknown]:
    return isinstance(value, Unknown)


def known(value: T | Unknown) -> TypeGuard[T]:
    """True when `value` was measured (it is not an `Unknown`)."""
    return not isinstance(value, Unknown)


Fact = bool | Unknown  # a yes/no fact that may not have been measured


def first_unknown(*values: object) -> Unknown | None:
    """The first of `values` that could not be measured, or None when all were."""
    for v in values:
        if isinstance(v, Unknown):
            return v
    return None


def worst(verdicts: list[Verdict] | tuple[Verdict, ...]) -> Verdict:
    """The most severe verdict of several (ok when there are none)."""
    out = Verdict.OK
    for v in verdicts:
        if v.rank > out.rank:
            out = v
    return out


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome: what was checked, the verdict, a one-line summary, the evidence.

    `why` says why an ERROR verdict could not measure (None for other verdicts)."""

    check: str  # dotted id, e.g. "tls.postgres", "certs.san"
    target: str  # what it was checked on: a host, a service, "env"
    verdict: Verdict
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0
    why: Why | None = None

    def __post_init__(self) -> None:
        if self.verdict is Verdict.ERROR and self.why is None:
            object.__setattr__(self, "why", infer_why(self.summary))

    @property
    def unknown(self) -> Unknown | None:
        """This result as a could-not-measure, or None when it measured something."""
        if self.verdict is not Verdict.ERROR:
            return None
        return Unknown(self.why or Why.NOT_CHECKED, self.summary)

    def as_unknown(self) -> Unknown:
        """This result as a could-not-measure: its own for an ERROR, else not-checked with its summary
        (for callers that already know the measurement does not count). Never `r.unknown or …`:
        an Unknown has no truth value."""
        u = self.unknown
        return u if u is not None else Unknown(Why.NOT_CHECKED, self.summary)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "target": self.target,
            "verdict": self.verdict.value,
            "summary": self.summary,
            "evidence": dict(self.evidence),
            "duration_ms": round(self.duration_ms, 2),
        }
        if self.why is not None:
            out["why"] = self.why.value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        evidence = data.get("evidence", {})
        why = data.get("why")
        return cls(
            check=str(data["check"]),
            target=str(data["target"]),
            verdict=Verdict(data["verdict"]),
            summary=str(data["summary"]),
            evidence=dict(evidence) if isinstance(evidence, Mapping) else {},
            duration_ms=float(data.get("duration_ms", 0.0)),
            why=Why(why) if why is not None else None,
        )


_WHY_WORDS: tuple[tuple[Why, tuple[str, ...]], ...] = (
    (Why.BUG, ("probe bug", "internal error", "a bug in the cockpit")),
    (Why.TIMEOUT, ("timed out", "timeout", "no answer", "within ")),
    (Why.NO_CREDENTIALS, ("no aws credentials", "credentials unavailable", "no credentials")),
    (
        Why.REFUSED,
        (
            "permission",
            "access denied",
            "not authorized",
            "needs superuser",
            "refused by aws",
            "authentication",
            "login refused",
        ),
    ),
    (
        Why.UNREACHABLE,
        (
            "cannot reach",
            "unreachable",
            "refused the connection",
            "no route",
            "connection lost",
            "could not open a tunnel",
            "no tunnel",
        ),
    ),
)


def infer_why(summary: str) -> Why:
    """Why an ERROR result could not measure, read from the probes' own phrasing — for results built
    without an explicit `why` (new code passes one)."""
    text = summary.lower()
    for why, words in _WHY_WORDS:
        if any(w in text for w in words):
            return why
    return Why.NOT_CHECKED


def error_result(check: str, target: str, why: Why, summary: str, **evidence: Any) -> CheckResult:
    """An ERROR (could not measure) result with its reason."""
    return CheckResult(check, target, Verdict.ERROR, summary, evidence, why=why)


def bug_result(check: str, target: str, exc: BaseException, t0: float) -> CheckResult:
    """ERROR for an exception nobody anticipated: a bug in the probe, not a fact about the server."""
    return CheckResult(
        check,
        target,
        Verdict.ERROR,
        f"probe bug (not a server fact): {type(exc).__name__}: {exc}",
        {"exception": type(exc).__name__, "detail": str(exc)[:500]},
        (time.perf_counter() - t0) * 1000.0,
    )
