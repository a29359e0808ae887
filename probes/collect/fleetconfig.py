"""The configured side of a round: each service's rollout variables as its hosts would resolve them,
the probe credentials, and the cert material in Secrets Manager (checked as each service needs it).

Every AWS call of a round is made once and shared (a service's SSM parameters and secrets serve its
configuration and its cert checks); answers are reused for `config_ttl` seconds, and never when they
could not be read.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from probes import certs
from probes.aws import Aws, AwsError, Parameter
from probes.collect.hostfiles import HostFiles, Missing
from probes.config import parse_env_text, parse_manifest, read_service_config, rollout_vars
from probes.inventory import MATERIAL_VARIABLES, Environment, Host
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.snapshot import Configured

TLS_KEYS = (certs.CA_VAR, certs.CERT_VAR, certs.KEY_VAR)
PROBE_DEFAULT_KEYS = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "PGBOUNCER_ADMIN_USER",
    "PGBOUNCER_ADMIN_PASSWORD",
    "REDIS_PASSWORD",
)


@dataclass(frozen=True)
class ProbeCredentials:
    """Who the cockpit's probes log in as. A user that could not be determined is `Unknown`: the
    probe that needs it does not run (no silent fallback to a default user)."""

    pg_user: str | Unknown
    pg_password: str | None
    admin_user: str | Unknown
    admin_password: str | None
    redis_password: str | None


Material = dict[str, tuple[str | None, str | None, str | None]]  # service -> (CA, cert, key) base64 values


def decode_pem(b64: str | None) -> bytes | None:
    if not b64:
        return None
    try:
        return base64.b64decode(b64, validate=True)
    except ValueError:
        return None


class FleetConfig:
    """One environment's configured state, read once per round (and reused for `config_ttl`)."""

    def __init__(
        self,
        env: Environment,
        aws: Callable[[], Aws],
        files: HostFiles,
        *,
        variables: Mapping[str, Sequence[str]] | None = None,
        config_ttl: float = 3.0,
    ) -> None:
        self.env = env
        self._aws = aws
        self.files = files
        self.variables = variables
        self.config_ttl = config_ttl
        self._round: dict[str, asyncio.Future[Any]] = {}
        self._round_at = float("-inf")
        self._configs: dict[str, tuple[float, dict[str, Configured]]] = {}
        self._manifests: dict[str, tuple[bytes, dict[str, dict[str, Any]]]] = {}

    def new_round(self, now: float) -> None:
        if now - self._round_at > self.config_ttl:
            self._round = {}
            self._configs.clear()
            self._round_at = now

    def invalidate(self) -> None:
        self._round = {}
        self._configs.clear()
        self._round_at = float("-inf")

    def containers(self, service: str) -> list[str]:
        """What a restart of the service recreates on each host, from its vars.yaml (`containers` of every
        declared variable), when a round has read it; [] when unknown."""
        cached = self._manifests.get(service)
        if cached is None:
            return []
        out: dict[str, None] = {}
        for spec in cached[1].values():
            for c in spec.get("containers") or ():
                out[str(c)] = None
        return list(out)

    def variables_for(self, service: str) -> tuple[str, ...]:
        return rollout_vars(self.env.service(service).role, self.variables)

    # -- AWS reads, once per round -------------------------------------------------------------
    def _once(self, key: str, make: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        fut = self._round.get(key)
        if fut is None:
            fut = self._round[key] = asyncio.ensure_future(make())
        return fut

    def params(self, service: str) -> asyncio.Future[dict[str, Parameter]]:
        return self._once(
            "params:" + service, lambda: self._aws().parameters_by_path(f"/{self.env.namespace}/{service}/")
        )

    def secrets(self, service: str) -> asyncio.Future[dict[str, str]]:
        return self._once("secrets:" + service, lambda: self._aws().secrets_under(f"{self.env.namespace}/{service}/"))

    def start(self) -> None:
        """Start this round's AWS reads now (they need nothing from SSH)."""
        for svc in self.env.service_names:
            if svc not in self._configs:
                self.params(svc)
            self.secrets(svc)

    # -- configuration ---------------------------------------------------------------------------
    async def manifest(self, service: str, host: Host) -> dict[str, dict[str, Any]] | Unknown:
        """The service's vars.yaml (declared variables and defaults). Missing or malformed is a
        could-not-read: the variables it would default are unknown, never "unset"."""
        path = self.env.host_path(host, self.env.service(service).vars.format(service=service))
        data = await self.files.read(host.name, path)
        if isinstance(data, Unknown):
            return data
        if isinstance(data, Missing):
            return Unknown(
                Why.NOT_CHECKED,
                f"{host.name}:{path} does not exist — the service's manifest is needed to know its defaults",
            )
        cached = self._manifests.get(service)
        if cached is not None and cached[0] == data:
            return cached[1]
        try:
            manifest = parse_manifest(data.decode("utf-8", "replace"), f"{host.name}:{path}")
        except ValueError as exc:
            return Unknown(Why.NOT_CHECKED, str(exc))
        self._manifests[service] = (data, manifest)
        return manifest

    async def env_file(self, host: Host, path: str, *, missing_ok: bool) -> dict[str, str] | Unknown:
        """A KEY=VALUE file on the host, parsed as bash would read it."""
        data = await self.files.read(host.name, self.env.host_path(host, path))
        if isinstance(data, Unknown):
            return data
        if isinstance(data, Missing):
            return {} if missing_ok else Unknown(Why.NOT_CHECKED, f"{host.name}:{path} does not exist")
        values = parse_env_text(data)
        if values.problems:  # bash would read something here that the cockpit cannot: never guess
            first = values.problems[0]
            return Unknown(
                Why.NOT_CHECKED,
                f"{host.name}:{path}: {first.message}"
                f" — the cockpit reads the file as bash would, and cannot read this line",
            )
        return dict(values)

    async def host_config(self, service: str, host: Host) -> dict[str, Configured]:
        """What `host` resolves the service's rollout variables to (manifest, bootstrap .env, env-file
        store, SSM, Secrets Manager) — per host, since the env-file store lives on each host."""
        role = self.env.service(service).role
        manifest = await self.manifest(service, host)
        boot = await self.env_file(host, "/opt/deployment/.env", missing_ok=True)
        store = self.env.config_store
        envfile = await self.env_file(host, store.path, missing_ok=True) if store.kind == "envfile" else None
        return await read_service_config(
            self._aws(),
            self.env,
            service,
            role,
            manifest=manifest,
            bootstrap=boot,
            envfile=envfile,
            secrets=self.secrets(service),
            params=self.params(service),
            variables=rollout_vars(role, self.variables),
        )

    async def service_config(self, service: str, host: Host | Unknown) -> dict[str, Configured]:
        """The service's resolved values, read on its first reachable host (cached for the round)."""
        cached = self._configs.get(service)
        if cached is not None:
            return dict(cached[1])
        role = self.env.service(service).role
        names = rollout_vars(role, self.variables)
        if isinstance(host, Unknown):
            return {v: Unknown(host.why, f"no host of {service} could be read: {host.detail}") for v in names}
        values = await self.host_config(service, host)
        if not any(isinstance(v, Unknown) for v in values.values()):
            self._configs[service] = (asyncio.get_running_loop().time(), values)
        return values

    # -- probe credentials -------------------------------------------------------------------------
    async def credentials(self) -> tuple[ProbeCredentials | None, CheckResult]:
        c = self.env.credentials
        source = c.file or c.secret
        data: Mapping[str, str]
        if c.file:
            db = self.env.database_host
            read = await self.env_file(db, c.file, missing_ok=False)
            if isinstance(read, Unknown):
                return None, error_result(
                    "probe.credentials",
                    f"{db.name}:{c.file}",
                    read.why,
                    f"probe credentials file {db.name}:{c.file} could not be read: {read.detail}",
                )
            data = read
        else:
            try:
                data = await self._aws().secret_json(c.secret)
            except AwsError as exc:
                return None, error_result("probe.credentials", c.secret, exc.why, str(exc))

        def user(literal: str, key: str, what: str) -> str | Unknown:
            if literal:
                return literal
            if data.get(key):
                return data[key]
            return Unknown(
                Why.NO_CREDENTIALS,
                f"no {what} user for the probes: set credentials."
                f"{'postgres_user' if what == 'Postgres' else 'pgbouncer_admin_user'}"
                f" in the inventory or add {key} to {source}",
            )

        creds = ProbeCredentials(
            pg_user=user(c.postgres_user, c.postgres_user_key, "Postgres"),
            pg_password=data.get(c.postgres_password_key) or None,
            admin_user=user(c.pgbouncer_admin_user, c.pgbouncer_admin_user_key, "PgBouncer admin"),
            admin_password=data.get(c.pgbouncer_admin_password_key) or None,
            redis_password=data.get(c.redis_password_key) or None,
        )
        lacking = [u.detail for u in (creds.pg_user, creds.admin_user) if isinstance(u, Unknown)]
        lacking += [
            f"{source} lacks {k}"
            for k, v in (
                (c.postgres_password_key, creds.pg_password),
                (c.pgbouncer_admin_password_key, creds.admin_password),
                (c.redis_password_key, creds.redis_password),
            )
            if v is None
        ]
        if lacking:
            return creds, CheckResult(
                "probe.credentials",
                source,
                Verdict.WARN,
                "; ".join(lacking) + " — those probes run without it or do not run",
            )
        return creds, CheckResult(
            "probe.credentials", source, Verdict.OK, "probe credentials read (values never shown)"
        )

    # -- cert material -----------------------------------------------------------------------------
    async def material(self) -> tuple[Material, list[CheckResult]]:
        """Each consuming service's INTERNAL_* values, from wherever the inventory says they live."""
        return await read_material(
            self.env,
            self._aws(),
            self.secrets,
            lambda name: self._once("shared-tls", lambda: self._aws().secret_json(name)),
        )

    def cert_checks(self, material: Material) -> list[CheckResult]:
        return cert_checks(self.env, material)


def needs_of(env: Environment, service: str) -> tuple[str, ...]:
    """The INTERNAL_* variables `service` holds and needs (the inventory's `tls_material`)."""
    return tuple(MATERIAL_VARIABLES[m] for m in env.service(service).tls_material)


def cert_checks(env: Environment, material: Material) -> list[CheckResult]:
    """The cert checks of each service's material (as much as it needs), and their agreement."""
    results: list[CheckResult] = []
    now = datetime.now(UTC)
    needs = {s: needs_of(env, s) for s in material}
    for service, (ca, cert, key) in sorted(material.items()):
        results += certs.check_material(
            ca, cert, key, dns_name=env.database.dns_name, target=service, now=now, needs=needs[service]
        )
    if len(material) > 1:
        results.append(certs.check_agreement(material, target="all services", needs=needs))
    return results


async def read_material(
    env: Environment,
    aws: Aws,
    secrets_of: Callable[[str], Awaitable[dict[str, str]]],
    shared: Callable[[str], Awaitable[dict[str, str]]] | None = None,
) -> tuple[Material, list[CheckResult]]:
    """Each service's (CA, cert, key) values in the inventory's layout: keys of the service's JSON
    secrets ("json"), one secret per value ("separate"), or one secret for every service ("shared")."""
    out: Material = {}
    errors: list[CheckResult] = []
    layout = env.tls_secrets.layout

    async def one(service: str) -> None:
        try:
            data: dict[str, str]
            if layout == "json":
                data = await secrets_of(service)
            elif layout == "shared":
                name = env.tls_secret_name(service, TLS_KEYS[0])
                data = await (shared(name) if shared is not None else aws.secret_json(name))
            else:
                data = {}
                for k in TLS_KEYS:
                    try:
                        d = await aws.secret_json(env.tls_secret_name(service, k), raw_ok=True)
                    except AwsError as exc:
                        if exc.why is not Why.NOT_CHECKED:  # a secret that does not exist is a missing value
                            raise
                        continue
                    value = d.get(k) or next(iter(d.values()), None)
                    if value:
                        data[k] = value
            if layout == "shared":  # one secret for all, by design: each service holds only what it uses from it
                needs = needs_of(env, service)
                data = {k: v for k, v in data.items() if k in needs}
            out[service] = (data.get(TLS_KEYS[0]), data.get(TLS_KEYS[1]), data.get(TLS_KEYS[2]))
        except AwsError as exc:
            errors.append(error_result("certs.present", service, exc.why, str(exc)))

    await asyncio.gather(*(one(s) for s in env.service_names))
    return out, errors
