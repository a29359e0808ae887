"""Named fleet states for demos and tests: one after each runbook step, and the broken ones.

A scenario sets the rollout variables (in SSM, or with the `envfile` variant in every host's
rollout.env), the cert material in Secrets Manager and the TelPro build, restarts the hosts,
stops the processes a straggler scenario names (configuration untouched, SSH still up), then
zeroes the meters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab import aws, hostfs, pki, rolloutenv
from lab.manifests import APP_ROLLOUT, CA_FILE, DATABASE_ROLLOUT, TLS_VARS
from lab.topology import APP_SERVICES, LabError, LabSpec

Settings = dict[str, dict[str, str]]  # service -> {VAR: value}; absent = unset (manifest default)


def _apps(s: Settings, **values: str) -> None:
    for a in APP_SERVICES:
        s[a].update(values)


PG_STEPS: list[Callable[[Settings], None]] = [
    lambda s: None,  # step 1: certs provisioned (the lab always pushes them)
    lambda s: s["database"].update(POSTGRES_TLS_ENABLED="on"),
    lambda s: s["database"].update(PGBOUNCER_SERVER_TLS_SSLMODE="verify-ca"),
    lambda s: s["database"].update(PGBOUNCER_CLIENT_TLS_SSLMODE="allow"),
    # as the runbook says: verify-full, with DATABASE_SSL_CA_FILE at the decoded CA
    lambda s: _apps(s, DATABASE_SSL_MODE="verify-full", DATABASE_SSL_CA_FILE=CA_FILE),
    lambda s: s["database"].update(PGBOUNCER_CLIENT_TLS_SSLMODE="require"),
    lambda s: s["database"].update(POSTGRES_FORCE_SSL="on"),
]
REDIS_STEPS: list[Callable[[Settings], None]] = [
    lambda s: s["database"].update(REDIS_TLS_ENABLED="true"),
    lambda s: _apps(s, REDIS_TLS_ENABLED="true", REDIS_TLS_CA_FILE=CA_FILE),
    lambda s: s["database"].update(REDIS_FORCE_TLS="true"),
]


def _empty() -> Settings:
    return {svc: {} for svc in ("database", *APP_SERVICES)}


def pg(n: int) -> Settings:
    s = _empty()
    for step in PG_STEPS[:n]:
        step(s)
    return s


def redis(n: int, base: Settings | None = None) -> Settings:
    s = base if base is not None else pg(7)
    for step in REDIS_STEPS[:n]:
        step(s)
    return s


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    settings: Settings
    material: str = "good"  # a lab.pki variant stored in every consuming service's secret
    drop_secret_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    telpro_ssl: bool = True
    no_restart: tuple[str, ...] = ()  # services whose hosts keep running what they run
    stopped: tuple[str, ...] = ()  # app services whose processes are stopped afterwards (`docker stop`)


def _straggler() -> Settings:
    s = pg(5)
    redis(2, s)
    for var in ("DATABASE_SSL_MODE", "DATABASE_SSL_CA_FILE", "REDIS_TLS_ENABLED", "REDIS_TLS_CA_FILE"):
        s["voice"].pop(var)
    return s


def _straggler_stopped_pg() -> Settings:
    s = pg(5)
    s["ops"].clear()  # still plaintext
    return s


def _straggler_stopped_redis() -> Settings:
    s = redis(2)
    for var in ("REDIS_TLS_ENABLED", "REDIS_TLS_CA_FILE"):
        s["telpro"].pop(var)  # still plaintext for Redis
    return s


def _telpro_no_ssl() -> Settings:
    s = pg(5)
    redis(2, s)
    s["telpro"].pop("REDIS_TLS_ENABLED")
    s["telpro"].pop("REDIS_TLS_CA_FILE")
    return s


def _tls_on() -> Settings:
    return redis(1, pg(2))


SCENARIOS: dict[str, Scenario] = {
    "fresh": Scenario("fresh", "plaintext everywhere; cert material provisioned (runbook step 1 done)", pg(1)),
    **{f"pg-{n}": Scenario(f"pg-{n}", f"after Postgres step {n}", pg(n)) for n in range(1, 8)},
    **{
        f"redis-{n}": Scenario(f"redis-{n}", f"after every Postgres step and Redis step {n}", redis(n))
        for n in range(1, 4)
    },
    "done": Scenario("done", "the whole runbook applied: TLS on every leg, plaintext refused", redis(3)),
    "straggler": Scenario("straggler", "every service flipped (Postgres step 5, Redis step 2) but voice", _straggler()),
    "bad-san": Scenario(
        "bad-san",
        "Postgres and Redis TLS on, serving a cert whose SAN lacks the DB's DNS name",
        _tls_on(),
        material="bad-san",
    ),
    "expired": Scenario("expired", "Postgres and Redis TLS on, serving an expired cert", _tls_on(), material="expired"),
    "wrong-ca": Scenario(
        "wrong-ca", "Postgres and Redis TLS on; INTERNAL_CA_CRT_B64 is an unrelated CA", _tls_on(), material="wrong-ca"
    ),
    "key-mismatch": Scenario(
        "key-mismatch",
        "INTERNAL_TLS_KEY_B64 does not match the cert (stored, not applied)",
        pg(1),
        material="key-mismatch",
        no_restart=("database", *APP_SERVICES),
    ),
    "secret-missing": Scenario(
        "secret-missing",
        "voice's secret lacks the INTERNAL_* values",
        pg(1),
        drop_secret_keys={"voice": ("INTERNAL_CA_CRT_B64", "INTERNAL_TLS_CERT_B64", "INTERNAL_TLS_KEY_B64")},
    ),
    "straggler-stopped-pg": Scenario(
        "straggler-stopped-pg",
        "Postgres step 5 on every app but ops, whose config is still plaintext and whose process is stopped",
        _straggler_stopped_pg(),
        stopped=("ops",),
    ),
    "straggler-stopped-redis": Scenario(
        "straggler-stopped-redis",
        "Postgres done, Redis step 2 on every app but telpro, whose Redis config is "
        "still plaintext and whose process is stopped",
        _straggler_stopped_redis(),
        stopped=("telpro",),
    ),
    "telpro-no-ssl": Scenario(
        "telpro-no-ssl",
        "TelPro runs the image without hiredis_ssl; every other service is on TLS",
        _telpro_no_ssl(),
        telpro_ssl=False,
    ),
}


def rollout_vars(service: str) -> dict[str, str]:
    return dict(DATABASE_ROLLOUT) if service == "database" else dict(APP_ROLLOUT)


def write_config(spec: LabSpec, sc: Scenario) -> None:
    """Put the scenario's rollout variables, secrets and TelPro build in place (no restart)."""
    if spec.has("envfile"):
        if sc.drop_secret_keys:
            raise LabError(
                f"scenario {sc.name}: the envfile variant keeps the TLS material in one shared secret "
                f"({spec.shared_tls_secret_name}); one service's secret cannot lack it there"
            )
        _write_envfiles(spec, sc)
    else:
        _write_ssm(spec, sc)
    sm = aws.client(spec, "secretsmanager")
    base = aws.material(spec)
    m = base if sc.material == "good" else pki.variant(sc.material, base, spec.db_dns_name)
    tls = aws.tls_values(m)
    for service in sc.settings:
        name = aws.secret_name(spec, service)
        current = aws.apply_tls(spec, service, json.loads(sm.get_secret_value(SecretId=name)["SecretString"]), tls)
        for k in sc.drop_secret_keys.get(service, ()):
            current.pop(k, None)
        aws.put_secret(sm, name, current)
    if spec.has("envfile"):
        aws.put_secret(sm, spec.shared_tls_secret_name, {k: tls[k] for k in TLS_VARS})
    for h in spec.app_hosts():
        if h.service == "telpro":
            hostfs.set_telpro_ssl(spec, h, sc.telpro_ssl)


def _write_ssm(spec: LabSpec, sc: Scenario) -> None:
    ssm = aws.client(spec, "ssm")
    for service, values in sc.settings.items():
        for var in rollout_vars(service):
            name = f"/{spec.namespace}/{service}/{var}"
            if var in values:
                ssm.put_parameter(Name=name, Value=values[var], Type="String", Overwrite=True)
            else:
                try:
                    ssm.delete_parameter(Name=name)
                except ssm.exceptions.ParameterNotFound:
                    pass


def _write_envfiles(spec: LabSpec, sc: Scenario) -> None:
    """Every host's rollout.env: the file as ops left it, with the scenario's values set."""
    for h in [spec.database, *spec.app_hosts()]:
        values = sc.settings.get(h.service, {})
        rolloutenv.write(
            h, rolloutenv.render(h.service, {k: v for k, v in values.items() if k in rollout_vars(h.service)})
        )


def apply(spec: LabSpec, name: str) -> list[str]:
    """Put the fleet in scenario `name`; returns the hosts restarted."""
    from lab import control

    if name not in SCENARIOS:
        raise LabError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    sc = SCENARIOS[name]
    write_config(spec, sc)
    restart = [h for h in [spec.database, *spec.app_hosts()] if h.service not in sc.no_restart]
    control._restart(spec, restart)
    for h in spec.app_hosts():
        if h.service in sc.stopped:
            control.stop_service(spec, h)
    control.reset_meters(spec)
    return [h.name for h in restart]


def describe() -> str:
    return "\n".join(f"  {s.name:<24} {s.description}" for s in SCENARIOS.values())


def applied_path(root: str) -> Path:
    return Path(root) / "run" / "applied.json"
