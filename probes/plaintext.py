"""The "N of M on plaintext" verdict the Postgres, PgBouncer and Redis probes share: who is connected, and
how many are not on TLS. Any client on plaintext is a WARN naming them; none is OK. Whether that plaintext
is allowed at this point of the rollout is the plan's call (`plans.judge`), not the probe's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from probes.model import CheckResult, Verdict


def plaintext_verdict(
    check: str,
    target: str,
    what: str,
    total: int,
    plaintext: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    *,
    none: str,
    duration_ms: float,
    extra: Mapping[str, Any] | None = None,
) -> CheckResult:
    """`total` connections of which `plaintext` (one evidence row each, named by `names`) are not on TLS.

    `what` names one connection ("client", "backend", "server connection"); `none` is the summary when
    there are none at all. Evidence: total, tls, plaintext (+ `extra`)."""
    evidence: dict[str, Any] = {"total": total, "tls": total - len(plaintext), "plaintext": list(plaintext)}
    evidence.update(extra or {})
    if plaintext:
        shown = ", ".join(sorted(set(names)))
        summary = f"{len(plaintext)} of {total} {what}(s) on plaintext: {shown}"
        return CheckResult(check, target, Verdict.WARN, summary, evidence, duration_ms)
    summary = f"all {total} {what}(s) use TLS" if total else none
    return CheckResult(check, target, Verdict.OK, summary, evidence, duration_ms)
