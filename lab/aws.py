"""The lab's AWS: a moto server (SSM Parameter Store + Secrets Manager) on loopback, and its seed."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from lab import pki, procs
from lab.manifests import TLS_VARS
from lab.topology import APP_SERVICES, PROBE_CONSOLE_USER, PROBE_ROLE, LabError, LabSpec

CONSUMERS = ("database", *APP_SERVICES)
PASSWORDS = (
    "POSTGRES_PASSWORD",
    "PGBOUNCER_ADMIN_PASSWORD",
    "REDIS_PASSWORD",
    "PROBE_POSTGRES_PASSWORD",
    "PROBE_PGBOUNCER_PASSWORD",
)


def client(spec: LabSpec, service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(  # type: ignore[call-overload]  # any service name: the lab's helpers take it as a str
        service,
        region_name=spec.region,
        endpoint_url=spec.aws_endpoint,
        aws_access_key_id="lab-operator",
        aws_secret_access_key="lab-operator",
        config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2}),
    )


def pidfile(spec: LabSpec) -> Path:
    return spec.path / "aws" / "moto.pid"


def start(spec: LabSpec) -> bool:
    """Start moto unless running. True if it was started now (its memory is empty)."""
    if procs.running(pidfile(spec)) and procs.port_open(spec.aws_address, spec.aws_port):
        return False
    if not procs.port_free(spec.aws_address, spec.aws_port):
        raise LabError(
            f"AWS stand-in: {spec.aws_address}:{spec.aws_port} is already in use; "
            "stop what holds it or choose another --net"
        )
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise LabError("moto[server] is not installed: pip install 'moto[server]'") from None
    env = dict(os.environ)
    env.pop("AWS_ENDPOINT_URL", None)
    pid = procs.start_daemon(
        [sys.executable, "-m", "moto.server", "-H", spec.aws_address, "-p", str(spec.aws_port)],
        pidfile=pidfile(spec),
        logfile=spec.path / "aws" / "moto.log",
        env=env,
    )
    if not procs.wait_port(spec.aws_address, spec.aws_port, 30, pid=pid):
        raise LabError("AWS stand-in (moto) did not start: see " + str(spec.path / "aws" / "moto.log"))
    return True


def stop(spec: LabSpec) -> bool:
    return procs.stop_pidfile(pidfile(spec))


def lab_secrets(spec: LabSpec) -> dict[str, str]:
    """The lab's passwords, kept 0600 in the lab dir so a restarted moto gets the same ones."""
    path = spec.path / "aws" / "seed-secrets.json"
    data: dict[str, str] = dict(json.loads(path.read_text())) if path.exists() else {}
    if all(k in data for k in PASSWORDS):
        return data
    for k in PASSWORDS:
        data.setdefault(k, secrets.token_urlsafe(18))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return data


def material(spec: LabSpec) -> pki.Material:
    """The lab's internal CA and server cert (SANs: the DB's private DNS name and address)."""
    d = spec.path / "pki"
    names = ("ca.crt", "server.crt", "server.key", "ca.key")
    if all((d / n).exists() for n in names):
        return pki.Material(*((d / n).read_bytes() for n in names))
    m = pki.make_material(spec.db_dns_name, [spec.database.address])
    d.mkdir(parents=True, exist_ok=True)
    for n, data in zip(names, (m.ca_pem, m.cert_pem, m.key_pem, m.ca_key_pem), strict=True):
        fd = os.open(d / n, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return m


def secret_name(spec: LabSpec, service: str) -> str:
    return f"{spec.namespace}/{service}/secrets"


def tls_values(m: pki.Material) -> dict[str, str]:
    return {
        "INTERNAL_CA_CRT_B64": pki.b64(m.ca_pem),
        "INTERNAL_TLS_CERT_B64": pki.b64(m.cert_pem),
        "INTERNAL_TLS_KEY_B64": pki.b64(m.key_pem),
    }


def tls_keys(spec: LabSpec, service: str) -> tuple[str, ...]:
    """The INTERNAL_* values a service's own secret holds: only the database serves TLS, so only it
    gets the key; apps hold the CA and the cert, or the CA alone (`ca-only-secrets`)."""
    if service == "database":
        return TLS_VARS
    return TLS_VARS[:1] if spec.has("ca-only-secrets") else TLS_VARS[:2]


def tls_material_names(spec: LabSpec, service: str) -> list[str]:
    """The same as the inventory's `tls_material` words ("ca", "cert", "key")."""
    return [
        {"INTERNAL_CA_CRT_B64": "ca", "INTERNAL_TLS_CERT_B64": "cert", "INTERNAL_TLS_KEY_B64": "key"}[k]
        for k in tls_keys(spec, service)
    ]


def apply_tls(spec: LabSpec, service: str, secret: dict[str, str], tls: dict[str, str]) -> dict[str, str]:
    """`secret` with exactly the INTERNAL_* keys the service's secret may hold, from `tls`; none with the
    `envfile` variant, whose TLS material lives in the one shared secret."""
    keep = () if spec.has("envfile") else tls_keys(spec, service)
    out = {k: v for k, v in secret.items() if k not in TLS_VARS}
    out.update({k: tls[k] for k in keep if k in tls})
    return out


def probe_credentials(spec: LabSpec) -> dict[str, str]:
    """What the cockpit's probe logs in with: the platform's admin users, or (`probe-not-superuser`)
    its own role and PgBouncer stats user. Values are secrets: never print them."""
    pw = lab_secrets(spec)
    if spec.has("probe-not-superuser"):
        return {
            "POSTGRES_USER": PROBE_ROLE,
            "POSTGRES_PASSWORD": pw["PROBE_POSTGRES_PASSWORD"],
            "PGBOUNCER_ADMIN_USER": PROBE_CONSOLE_USER,
            "PGBOUNCER_ADMIN_PASSWORD": pw["PROBE_PGBOUNCER_PASSWORD"],
            "REDIS_PASSWORD": pw["REDIS_PASSWORD"],
        }
    return {
        "POSTGRES_USER": "voiceai",
        "POSTGRES_PASSWORD": pw["POSTGRES_PASSWORD"],
        "PGBOUNCER_ADMIN_USER": "pgbouncer_admin",
        "PGBOUNCER_ADMIN_PASSWORD": pw["PGBOUNCER_ADMIN_PASSWORD"],
        "REDIS_PASSWORD": pw["REDIS_PASSWORD"],
    }


def put_secret(sm: Any, name: str, value: dict[str, str]) -> None:
    body = json.dumps(value)
    try:
        sm.put_secret_value(SecretId=name, SecretString=body)
    except sm.exceptions.ResourceNotFoundException:
        sm.create_secret(Name=name, SecretString=body)


def seed(spec: LabSpec) -> None:
    """Non-rollout SSM parameters and each service's JSON secret (its passwords and INTERNAL_* values
    as `apply_tls` says); per variant, the shared TLS secret and the probe's own secret."""
    ssm = client(spec, "ssm")
    sm = client(spec, "secretsmanager")
    pw = lab_secrets(spec)
    tls = tls_values(material(spec))
    ns = spec.namespace
    ssm.put_parameter(
        Name=f"/{ns}/database/DATABASE_PRIVATE_DNS", Value=spec.db_dns_name, Type="String", Overwrite=True
    )
    for svc in APP_SERVICES:
        for k, v in {
            "DATABASE_HOST": spec.db_dns_name,
            "REDIS_HOST": spec.db_dns_name,
            "DATABASE_PORT": str(spec.pgbouncer_port),
        }.items():
            ssm.put_parameter(Name=f"/{ns}/{svc}/{k}", Value=v, Type="String", Overwrite=True)
    database = {
        "POSTGRES_USER": "voiceai",
        "POSTGRES_PASSWORD": pw["POSTGRES_PASSWORD"],
        "PGBOUNCER_ADMIN_USER": "pgbouncer_admin",
        "PGBOUNCER_ADMIN_PASSWORD": pw["PGBOUNCER_ADMIN_PASSWORD"],
        "REDIS_PASSWORD": pw["REDIS_PASSWORD"],
    }
    if spec.has("probe-not-superuser"):
        database.update(
            {
                "PROBE_POSTGRES_USER": PROBE_ROLE,
                "PROBE_POSTGRES_PASSWORD": pw["PROBE_POSTGRES_PASSWORD"],
                "PGBOUNCER_STATS_USER": PROBE_CONSOLE_USER,
                "PGBOUNCER_STATS_PASSWORD": pw["PROBE_PGBOUNCER_PASSWORD"],
            }
        )
    put_secret(sm, secret_name(spec, "database"), apply_tls(spec, "database", database, tls))
    for svc in APP_SERVICES:
        put_secret(
            sm,
            secret_name(spec, svc),
            apply_tls(
                spec,
                svc,
                {
                    "DATABASE_PASSWORD": pw["POSTGRES_PASSWORD"],
                    "REDIS_PASSWORD": pw["REDIS_PASSWORD"],
                },
                tls,
            ),
        )
    if spec.has("envfile"):
        put_secret(sm, spec.shared_tls_secret_name, dict(tls))
    if spec.has("probe-not-superuser") and not spec.has("envfile"):
        creds = probe_credentials(spec)
        put_secret(
            sm,
            spec.probe_secret_name,
            {k: creds[k] for k in ("POSTGRES_PASSWORD", "PGBOUNCER_ADMIN_PASSWORD", "REDIS_PASSWORD")},
        )


def wait_ready(spec: LabSpec, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    ssm = client(spec, "ssm")
    while True:
        try:
            ssm.describe_parameters(MaxResults=1)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
