"""Runbook step 1: push the cert material into Secrets Manager, validated first; check what is stored.

`push` validates CA, cert and key locally (chain, key match, SAN covers the DB's private DNS name, not
expired) and only then writes, for each consuming service, the values that service needs (the
inventory's `tls_material`: the private key only where TLS is served) and only where they change — in
the inventory's layout, merging with the keys already in a JSON secret (a secret write replaces the
whole JSON). The caller takes the fleet lock and journals it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inventory.model import Environment
from probes import certs
from probes.aws import Aws, AwsError, explain
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
    return certs.check_material(vals[0], vals[1], vals[2], dns_name=dns_name, target="local files",
                                now=datetime.now(UTC))


def _missing(exc: BaseException) -> bool:
    return type(exc).__name__ == "ResourceNotFoundException"


async def push(env: Environment, aws: Aws, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *,
               dry_run: bool = False) -> PushResult:
    checks = validate(ca_pem, cert_pem, key_pem, dns_name=env.database.dns_name)
    bad = [c for c in checks if c.verdict in (Verdict.FAIL, Verdict.ERROR)]
    if bad:
        return PushResult(False, tuple(checks), (), "refused, nothing written: " + "; ".join(c.summary for c in bad))
    values = {k: base64.b64encode(p).decode() for k, p in zip(KEYS, (ca_pem, cert_pem, key_pem), strict=True)}
    # what each secret must hold: (secret name -> {key: value}); a "shared" secret holds the union
    plan: dict[str, dict[str, str]] = {}
    for service in consumers(env):
        needed = {k: values[k] for k in needs_of(env, service)}
        if env.tls_secrets.layout == "separate":
            for k, v in needed.items():
                plan.setdefault(env.tls_secret_name(service, k), {})[k] = v
        else:
            plan.setdefault(env.tls_secret_name(service, KEYS[0]), {}).update(needed)
    sm: Any = aws.secretsmanager
    written: list[str] = []
    unchanged: list[str] = []
    try:
        for name, wanted in plan.items():
            raw = env.tls_secrets.layout == "separate"
            try:
                resp = await asyncio.to_thread(sm.get_secret_value, SecretId=name)
                text = resp.get("SecretString") or ("" if raw else "{}")
                current: Any = text if raw else json.loads(text)
            except json.JSONDecodeError:
                return PushResult(False, tuple(checks), tuple(written), f"{name} is not JSON; fix it by hand first")
            except Exception as exc:
                if not _missing(exc):
                    raise
                current = None
            if raw:
                new_text = next(iter(wanted.values()))
                if current == new_text:
                    unchanged.append(name)
                    continue
            else:
                if current is not None and not isinstance(current, dict):
                    return PushResult(False, tuple(checks), tuple(written), f"{name} is not a JSON object; fix it by "
                                                                            "hand first")
                base = dict(current or {})
                if all(base.get(k) == v for k, v in wanted.items()):
                    unchanged.append(name)
                    continue
                base.update(wanted)  # merge: every other key kept
                new_text = json.dumps(base)
            if dry_run:
                written.append(name)
                continue
            if current is None:
                await asyncio.to_thread(sm.create_secret, Name=name, SecretString=new_text)
            else:
                await asyncio.to_thread(sm.put_secret_value, SecretId=name, SecretString=new_text)
            written.append(name)
    except Exception as exc:
        return PushResult(False, tuple(checks), tuple(written),
                          explain(exc, "writing the cert material") + (f" (already written: {', '.join(written)})"
                                                                       if written else "; nothing written"),
                          tuple(unchanged))
    verb = "would write" if dry_run else "written to"
    text = f"{verb} {len(written)} secret(s)" + (f": {', '.join(written)}" if written else "")
    if unchanged:
        text += f"; {len(unchanged)} already held these values"
    return PushResult(True, tuple(checks), () if dry_run else tuple(written), text, tuple(unchanged))


async def check(env: Environment, aws: Aws) -> list[CheckResult]:
    """What is stored: every consuming service's material validated (what it needs), and all agree."""
    try:
        material, errors = await read_material(env, aws, lambda s: aws.secrets_under(f"{env.namespace}/{s}/"))
    except AwsError as exc:
        return [CheckResult("certs.present", env.name, Verdict.ERROR, str(exc), why=exc.why)]
    material = {s: v for s, v in material.items() if s in consumers(env)}
    return [*errors, *cert_checks(env, material)]
