"""How a cert check's result is made: guarded (an exception in a check is an ERROR that says it is a
cockpit bug, never a fact about the material), timed, and scrubbed — a result that would carry key
material is withheld. Plus the date wording the checks share."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from probes.model import CheckResult, Verdict, Why
from probes.pem import PEM_BODY, short


def result(
    check: str, target: str, verdict: Verdict, summary: str, evidence: Mapping[str, Any] | None = None
) -> CheckResult:
    return CheckResult(check=check, target=target, verdict=verdict, summary=summary, evidence=evidence or {})


def not_checked(check: str, target: str, why: str) -> CheckResult:
    return result(check, target, Verdict.ERROR, f"not checked: {why}", {"not_checked": why})


def bug(check: str, target: str, e: BaseException) -> CheckResult:
    # The message is kept short; check_material/check_agreement withhold any result that would
    # quote key material (`scrubbed`).
    what = f"{type(e).__name__}: {short(e, 200)}"
    return CheckResult(
        check,
        target,
        Verdict.ERROR,
        f"internal error in the cockpit's {check} check ({what}) — a bug in the cockpit, "
        "not a problem with the cert material; please report it",
        {"internal_error": True, "exception": what},
        why=Why.BUG,
    )


def guarded(check: str, target: str, fn: Callable[[], CheckResult]) -> CheckResult:
    t0 = time.perf_counter()
    try:
        res = fn()
    except Exception as e:
        res = bug(check, target, e)
    ms = (time.perf_counter() - t0) * 1000.0
    return CheckResult(res.check, res.target, res.verdict, res.summary, res.evidence, ms)


def secret_fragments(values: Sequence[str | None], decoded_keys: Sequence[bytes]) -> list[str]:
    """Strings that must never show up in a result: the base64 values and private key bodies."""
    out: list[str] = []
    for v in values:
        if v and v.strip():
            compact = "".join(v.split())
            out.append(compact[:32])  # any 32-char run is plenty to recognise a leak
            out.extend(line for line in v.split() if len(line) >= 16)
    for pem in decoded_keys:
        for body in PEM_BODY.findall(pem):
            out.extend(line.decode("ascii", "replace") for line in body.split() if len(line) >= 16)
    return out


def scrubbed(res: CheckResult, fragments: Sequence[str]) -> CheckResult:
    """Defence in depth: withhold a result that would carry key material (a bug if it happens)."""
    if not fragments:
        return res
    blob = json.dumps(res.to_json(), default=str)
    if any(f in blob for f in fragments):
        return result(
            res.check,
            res.target,
            Verdict.ERROR,
            f"internal error in the cockpit's {res.check} check: its result would have shown key "
            "material and was withheld — a bug in the cockpit; please report it",
            {"internal_error": True, "withheld": True},
        )
    return res


def aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def day(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d")


def n_days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"
