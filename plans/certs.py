"""Runbook step 1: push the cert material into Secrets Manager, validated first; check what is stored.

`push` validates CA, cert and key locally (chain, key match, SAN covers the DB's private DNS
name, not expired) and only then writes the three base64 values into each consuming service's
JSON secret, merging with the keys already there (a secret write replaces the whole JSON).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from probes import certs
from probes.aws import Aws, AwsError, explain
from probes.inventory import Environment
from probes.model import CheckResult, Verdict

KEYS = (certs.CA_VAR, certs.CERT_VAR, certs.KEY_VAR)


@dataclass(frozen=True)
class PushResult:
    ok: bool
    checks: tuple[CheckResult, ...]
    written: tuple[str, ...]  # secret names written
    reason: str


def consumers(env: Environment) -> list[str]:
    """Every service whose hosts decode INTERNAL_* ("scope: all")."""
    return list(env.service_names)


def validate(ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *, dns_name: str) -> list[CheckResult]:
    vals = [base64.b64encode(p).decode() for p in (ca_pem, cert_pem, key_pem)]
    return certs.check_material(vals[0], vals[1], vals[2], dns_name=dns_name, target="local files",
                                now=datetime.now(UTC))


async def push(env: Environment, aws: Aws, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *,
               dry_run: bool = False) -> PushResult:
    checks = validate(ca_pem, cert_pem, key_pem, dns_name=env.database.dns_name)
    bad = [c for c in checks if c.verdict in (Verdict.FAIL, Verdict.ERROR)]
    if bad:
        return PushResult(False, tuple(checks), (), "refused, nothing written: " + "; ".join(c.summary for c in bad))
    values = {k: base64.b64encode(p).decode() for k, p in zip(KEYS, (ca_pem, cert_pem, key_pem), strict=True)}
    names = [env.secret_name(s) if env.tls_secrets.layout == "json" else s for s in consumers(env)]
    if dry_run:
        return PushResult(True, tuple(checks), (), "dry run: would write " + ", ".join(names))
    sm: Any = aws.secretsmanager
    written: list[str] = []
    try:
        for service in consumers(env):
            if env.tls_secrets.layout == "json":
                name = env.secret_name(service)
                try:
                    current = json.loads((await asyncio.to_thread(sm.get_secret_value, SecretId=name))
                                         .get("SecretString") or "{}")
                    if not isinstance(current, dict):
                        return PushResult(False, tuple(checks), tuple(written),
                                          f"{name} is not a JSON object; fix it by hand first")
                    current.update(values)  # merge: every other key kept
                    await asyncio.to_thread(sm.put_secret_value, SecretId=name, SecretString=json.dumps(current))
                except Exception as exc:
                    if type(exc).__name__ != "ResourceNotFoundException":
                        raise
                    await asyncio.to_thread(sm.create_secret, Name=name, SecretString=json.dumps(values))
                written.append(name)
            else:
                for k, v in values.items():
                    name = env.tls_secret_name(service, k)
                    try:
                        await asyncio.to_thread(sm.put_secret_value, SecretId=name, SecretString=v)
                    except Exception as exc:
                        if type(exc).__name__ != "ResourceNotFoundException":
                            raise
                        await asyncio.to_thread(sm.create_secret, Name=name, SecretString=v)
                    written.append(name)
    except Exception as exc:
        return PushResult(False, tuple(checks), tuple(written),
                          explain(exc, "writing the cert material") + (f" (already written: {', '.join(written)})"
                                                                       if written else "; nothing written"))
    return PushResult(True, tuple(checks), tuple(written), f"written to {len(written)} secrets")


async def check(env: Environment, aws: Aws) -> list[CheckResult]:
    """What is stored: every consuming service's material validated, and all agree."""
    material: dict[str, tuple[str | None, str | None, str | None]] = {}
    out: list[CheckResult] = []
    for service in consumers(env):
        try:
            if env.tls_secrets.layout == "json":
                data = await aws.secrets_under(f"{env.namespace}/{service}/")
                material[service] = (data.get(KEYS[0]), data.get(KEYS[1]), data.get(KEYS[2]))
            else:
                vals: list[str | None] = []
                for k in KEYS:
                    try:
                        d = await aws.secret_json(env.tls_secret_name(service, k))
                        vals.append(d.get(k) or next(iter(d.values()), None))
                    except AwsError:
                        vals.append(None)
                material[service] = (vals[0], vals[1], vals[2])
        except AwsError as exc:
            out.append(CheckResult("certs.present", service, Verdict.ERROR, str(exc)))
    now = datetime.now(UTC)
    for service, (ca, cert, key) in material.items():
        out += certs.check_material(ca, cert, key, dns_name=env.database.dns_name, target=service, now=now)
    if len(material) > 1:
        out.append(certs.check_agreement(material, target="all services"))
    return out
