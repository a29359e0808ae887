"""pg_hba.conf as Postgres reads it: which rules let a TCP connection in without TLS. Read from
`pg_hba_file_rules` (needs a superuser) by `probes.postgres`, or from the file on the database host when
the probe user may not query it (`hba_from_file`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HbaRule:
    """One row of ``pg_hba_file_rules`` (the file on disk, which may not be loaded yet)."""

    line_number: int
    type: str  # local, host, hostssl, hostnossl, hostgssenc, hostnogssenc
    database: tuple[str, ...]
    user_name: tuple[str, ...]
    address: str | None
    netmask: str | None
    auth_method: str | None
    error: str | None


_ALL_ADDRESSES = frozenset({"all", "0.0.0.0/0", "::/0", "0.0.0.0", "::0/0"})


def _covers_everything(r: HbaRule) -> bool:
    addr = (r.address or "all") + (f"/{r.netmask}" if r.netmask else "")
    everyone = ("all" in r.database or not r.database) and ("all" in r.user_name or not r.user_name)
    return everyone and (
        addr in _ALL_ADDRESSES
        or r.address in ("all", None)
        or (r.address in ("0.0.0.0", "::") and r.netmask in ("0.0.0.0", "::"))
    )


def plaintext_rules(rules: Sequence[HbaRule]) -> list[HbaRule]:
    """The rules that let a TCP connection without TLS in, as Postgres reads pg_hba.conf: first match
    wins, `hostssl` never matches a plaintext connection, and a `reject` rule lets nobody in — one
    for every database, user and address ends the search. `host`, `hostnossl` and `hostnogssenc` rules
    with another method let plaintext in (for someone)."""
    out: list[HbaRule] = []
    for r in rules:
        if r.error or r.type not in ("host", "hostnossl", "hostnogssenc"):
            continue
        if (r.auth_method or "").lower() == "reject":
            if _covers_everything(r):
                break
            continue
        out.append(r)
    return out


_HOST_TYPES = frozenset({"host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"})


def _hba_line(n: int, f: list[str]) -> HbaRule:
    """One non-empty line's fields as a rule (with its error when it cannot be one)."""
    kind = f[0].lower()
    if kind == "local":
        return HbaRule(
            n,
            "local",
            tuple(f[1].split(",")) if len(f) > 1 else (),
            tuple(f[2].split(",")) if len(f) > 2 else (),
            None,
            None,
            f[3] if len(f) > 3 else None,
            None if len(f) > 3 else "incomplete line",
        )
    if kind not in _HOST_TYPES:
        error = None if kind.startswith("include") else f"unknown rule type {f[0]!r}"
        return HbaRule(n, kind, (), (), None, None, None, error)
    if len(f) < 5:
        return HbaRule(n, kind, (), (), None, None, None, "incomplete line")
    address, netmask, rest = f[3], None, f[4:]
    if (
        "/" not in address
        and address not in ("all", "samehost", "samenet")
        and rest
        and rest[0].replace(".", "").replace(":", "").isdigit()
    ):
        netmask, rest = rest[0], rest[1:]
    return HbaRule(
        n,
        kind,
        tuple(f[1].split(",")),
        tuple(f[2].split(",")),
        address,
        netmask,
        rest[0] if rest else None,
        None if rest else "no auth method",
    )


def parse_hba(text: str) -> tuple[HbaRule, ...]:
    """pg_hba.conf's text as rules (the file on disk, read when the probe user may not query
    pg_hba_file_rules). Quoting and include directives are not needed for the decision: quoted
    tokens are kept as written, `include*` lines are kept as an unknown type (they make the file's
    answer unknowable here, see `hba_from_file`)."""
    rules: list[HbaRule] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            rules.append(_hba_line(n, line.split()))
    return tuple(rules)


def hba_from_file(text: str) -> tuple[bool | None, str]:
    """(hostssl-only?, why) from pg_hba.conf's text; None when the file includes others."""
    rules = parse_hba(text)
    if any(r.type.startswith("include") for r in rules):
        return None, "pg_hba.conf includes other files; their rules were not read"
    bad = [r for r in rules if r.error]
    if bad:
        return None, "; ".join(f"line {r.line_number}: {r.error}" for r in bad[:3])
    plain = plaintext_rules(rules)
    if plain:
        return False, f"line {', '.join(str(r.line_number) for r in plain)} let TCP connections in without TLS"
    return True, "no rule lets a TCP connection in without TLS"
