"""Verdicts and check results: the data every probe returns and every layer above reads.

A probe never raises; whatever happens becomes a `CheckResult`. `Verdict.ERROR` means
"could not measure" and is never counted as ok or as fail.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"  # could not measure

    @property
    def rank(self) -> int:
        """Severity for summaries: ok < warn < error < fail."""
        return {"ok": 0, "warn": 1, "error": 2, "fail": 3}[self.value]


def worst(verdicts: list[Verdict] | tuple[Verdict, ...]) -> Verdict:
    """The most severe verdict of several (ok when there are none)."""
    out = Verdict.OK
    for v in verdicts:
        if v.rank > out.rank:
            out = v
    return out


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome: what was checked, the verdict, a one-line summary, the evidence."""

    check: str  # dotted id, e.g. "tls.postgres", "certs.san"
    target: str  # what it was checked on: a host, a service, "env"
    verdict: Verdict
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "target": self.target,
            "verdict": self.verdict.value,
            "summary": self.summary,
            "evidence": dict(self.evidence),
            "duration_ms": round(self.duration_ms, 2),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            check=str(data["check"]),
            target=str(data["target"]),
            verdict=Verdict(data["verdict"]),
            summary=str(data["summary"]),
            evidence=dict(data.get("evidence", {})),
            duration_ms=float(data.get("duration_ms", 0.0)),
        )
