"""Runbook step 1: push the cert material into Secrets Manager, validated first; check what is stored.

`push` validates CA, cert and key locally (chain, key match, SAN covers the DB's private DNS name, not
expired) and only then writes, for each consuming service, the values that service needs (the
inventory's `tls_material`: the private key only where TLS is served) and only where they change — in
the inventory's layout, merging with the keys already in a JSON secret (a secret write replaces the
whole JSON). The caller takes the fleet lock and journals it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from inventory.model import Environment
from probes import certs
from probes.aws import Aws, AwsError
from probes.collect.fleetconfig import cert_checks, needs_of, read_material
from probes.model import CheckResult, Verdict

KEYS = (certs.CA_VAR, certs.CERT_VAR, certs.KEY_VAR)


@dataclass(frozen=True)
class PushResult:
    ok: bool
    checks: tuple[CheckResult, ...]
    written: tuple[str, ...]  # secret names written
    reason: str
    unchanged: tuple[str, ...] = ()  # secret names that already held these values


def consumers(env: Environment) -> list[str]:
    """Every service whose hosts decode some of the INTERNAL_* material."""
    return [s for s in env.service_names if env.service(s).tls_material]


def validate(ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *, dns_name: str) -> list[CheckResult]:
    vals = [base64.b64encode(p).decode() for p in (ca_pem, cert_pem, key_pem)]
    return certs.check_material(
        vals[0], vals[1], vals[2], dns_name=dns_name, target="local files", now=datetime.now(UTC)
    )


def _wanted(env: Environment, values: dict[str, str]) -> dict[str, dict[str, str]]:
    """What each secret must hold: secret name -> {key: value}; a JSON secret holds the union of what
    its consumers need (the private key only where TLS is served)."""
    plan: dict[str, dict[str, str]] = {}
    for service in consumers(env):
        needed = {k: values[k] for k in needs_of(env, service)}
        if env.tls_secrets.layout == "separate":
            for k, v in needed.items():
                plan.setdefault(env.tls_secret_name(service, k), {})[k] = v
        else:
            plan.setdefault(env.tls_secret_name(service, KEYS[0]), {}).update(needed)
    return plan


class _Refused(Exception):
    """A secret the cockpit will not overwrite (the message says why)."""


def _new_text(name: str, current: str | None, wanted: dict[str, str], *, raw: bool) -> str | None:
    """The secret's new text, or None when it already holds `wanted`. A JSON secret is merged: every
    other key is kept (a secret write replaces the whole value)."""
    if raw:
        text = next(iter(wanted.values()))
        return None if current == text else text
    try:
        data = json.loads(current or "{}")
    except json.JSONDecodeError:
        raise _Refused(f"{name} is not JSON; fix it by hand first") from None
    if not isinstance(data, dict):
        raise _Refused(f"{name} is not a JSON object; fix it by hand first")
    if all(data.get(k) == v for k, v in wanted.items()):
        return None
    return json.dumps({**data, **wanted})


async def push(
    env: Environment, aws: Aws, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *, dry_run: bool = False
) -> PushResult:
    checks = tuple(validate(ca_pem, cert_pem, key_pem, dns_name=env.database.dns_name))
    bad = [c for c in checks if c.verdict in (Verdict.FAIL, Verdict.ERROR)]
    if bad:
        return PushResult(False, checks, (), "refused, nothing written: " + "; ".join(c.summary for c in bad))
    values = {k: base64.b64encode(p).decode() for k, p in zip(KEYS, (ca_pem, cert_pem, key_pem), strict=True)}
    raw = env.tls_secrets.layout == "separate"
    written: list[str] = []
    unchanged: list[str] = []
    try:
        for name, wanted in _wanted(env, values).items():
            current = await aws.secret_string(name)
            new_text = _new_text(name, current, wanted, raw=raw)
            if new_text is None:
                unchanged.append(name)
                continue
            if not dry_run:
                await (aws.create_secret(name, new_text) if current is None else aws.put_secret_string(name, new_text))
            written.append(name)
    except _Refused as exc:
        return PushResult(False, checks, tuple(written), str(exc))
    except AwsError as exc:
        return PushResult(
            False,
            checks,
            tuple(written),
            f"writing the cert material: {exc.reason}"
            + (f" (already written: {', '.join(written)})" if written else "; nothing written"),
            tuple(unchanged),
        )
    verb = "would write" if dry_run else "written to"
    text = f"{verb} {len(written)} secret(s)" + (f": {', '.join(written)}" if written else "")
    if unchanged:
        text += f"; {len(unchanged)} already held these values"
    return PushResult(True, checks, () if dry_run else tuple(written), text, tuple(unchanged))


async def check(env: Environment, aws: Aws) -> list[CheckResult]:
    """What is stored: every consuming service's material validated (what it needs), and all agree."""
    try:
        material, errors = await read_material(env, aws, lambda s: aws.secrets_under(f"{env.namespace}/{s}/"))
    except AwsError as exc:
        return [CheckResult("certs.present", env.name, Verdict.ERROR, str(exc), why=exc.why)]
    material = {s: v for s, v in material.items() if s in consumers(env)}
    return [*errors, *cert_checks(env, material)]
