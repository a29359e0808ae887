"""The `vars.yaml` manifests the lab installs: every variable each service consumes.

Shape as on the platform: name, required, required_when, default, sensitive, source, containers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.topology import LabSpec

CA_FILE = "/etc/ssl/internal/ca.crt"
TLS_VARS = ("INTERNAL_CA_CRT_B64", "INTERNAL_TLS_CERT_B64", "INTERNAL_TLS_KEY_B64")

# rollout variables and their lab defaults (plaintext everywhere)
DATABASE_ROLLOUT = {
    "POSTGRES_TLS_ENABLED": "off",
    "POSTGRES_FORCE_SSL": "off",
    "PGBOUNCER_SERVER_TLS_SSLMODE": "disable",
    "PGBOUNCER_CLIENT_TLS_SSLMODE": "disable",
    "REDIS_TLS_ENABLED": "false",
    "REDIS_FORCE_TLS": "false",
}
APP_ROLLOUT = {
    "DATABASE_SSL_MODE": "disable",
    "DATABASE_SSL_CA_FILE": CA_FILE,
    "REDIS_TLS_ENABLED": "false",
    "REDIS_TLS_CA_FILE": "",
}

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ALLOWED: dict[str, tuple[str, ...]] = {
    "POSTGRES_TLS_ENABLED": ("on", "off"),
    "POSTGRES_FORCE_SSL": ("on", "off"),
    "PGBOUNCER_SERVER_TLS_SSLMODE": SSL_MODES,
    "PGBOUNCER_CLIENT_TLS_SSLMODE": SSL_MODES,
    "REDIS_TLS_ENABLED": ("true", "false"),
    "REDIS_FORCE_TLS": ("true", "false"),
    "DATABASE_SSL_MODE": ("", *SSL_MODES),
}


def _var(name: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "required": kw.pop("required", False)}
    out.update(kw)
    return out


# probe-not-superuser: the probe's own Postgres role and PgBouncer console user, which the database
# service provisions from its secret (the same passwords the cockpit reads from <namespace>/cockpit/probe)
PROBE_VARS = ("PROBE_POSTGRES_USER", "PROBE_POSTGRES_PASSWORD", "PGBOUNCER_STATS_USER", "PGBOUNCER_STATS_PASSWORD")


def database_manifest(*, key_owner: str = "70:70", probe_users: bool = False) -> dict[str, Any]:
    pg = ["voiceai-postgres"]
    bouncer = ["voiceai-pgbouncer"]
    redis = ["voiceai-redis"]
    probe = (
        [
            _var("PROBE_POSTGRES_USER", default="cockpit_probe", containers=pg + bouncer),
            _var("PROBE_POSTGRES_PASSWORD", sensitive=True, containers=pg + bouncer),
            _var("PGBOUNCER_STATS_USER", default="cockpit_stats", containers=bouncer),
            _var("PGBOUNCER_STATS_PASSWORD", sensitive=True, containers=bouncer),
        ]
        if probe_users
        else []
    )
    return {
        "service": "database",
        "variables": [
            _var("POSTGRES_USER", required=True, default="voiceai", containers=pg + bouncer),
            _var("POSTGRES_PASSWORD", required=True, sensitive=True, containers=pg + bouncer),
            _var("POSTGRES_DB", default="voiceai", containers=pg + bouncer),
            _var("PGBOUNCER_ADMIN_USER", default="pgbouncer_admin", containers=bouncer),
            _var("PGBOUNCER_ADMIN_PASSWORD", required=True, sensitive=True, containers=bouncer),
            _var("REDIS_PASSWORD", required=True, sensitive=True, containers=redis),
            _var("DATABASE_PRIVATE_DNS", required=True, containers=["voiceai-otel-collector"]),
            _var("POSTGRES_TLS_ENABLED", default="off", containers=pg),
            _var("POSTGRES_FORCE_SSL", default="off", containers=pg),
            _var("PGBOUNCER_SERVER_TLS_SSLMODE", default="disable", containers=bouncer),
            _var("PGBOUNCER_CLIENT_TLS_SSLMODE", default="disable", containers=bouncer),
            _var("REDIS_TLS_ENABLED", default="false", containers=[*redis, "voiceai-otel-collector"]),
            _var("REDIS_TLS_PORT", default="6380", containers=[*redis, "voiceai-otel-collector"]),
            _var("REDIS_FORCE_TLS", default="false", containers=redis),
            _var("REDIS_ENDPOINT", source="local", containers=["voiceai-otel-collector"]),
            # uid:gid that owns the decoded server.key (the Postgres container's user)
            _var("TLS_KEY_OWNER", default=key_owner, containers=pg + bouncer + redis),
            *probe,
            *[
                _var(
                    v,
                    sensitive=True,
                    required_when="POSTGRES_TLS_ENABLED=on or REDIS_TLS_ENABLED=true",
                    containers=pg + bouncer + redis,
                )
                for v in TLS_VARS
            ],
        ],
    }


def app_manifest(service: str, *, default_ca: str = CA_FILE) -> dict[str, Any]:
    c = [f"voiceai-{service}"]
    return {
        "service": service,
        "variables": [
            _var("DATABASE_HOST", required=True, containers=c),
            _var("DATABASE_PORT", default="6432", containers=c),
            _var("DATABASE_NAME", default="voiceai", containers=c),
            _var("DATABASE_USER", default="voiceai", containers=c),
            _var("DATABASE_PASSWORD", required=True, sensitive=True, containers=c),
            _var("DATABASE_SSL_MODE", default="disable", containers=c),
            _var("DATABASE_SSL_CA_FILE", default=default_ca, containers=c),
            _var("REDIS_HOST", required=True, containers=c),
            _var("REDIS_PORT", default="6379", containers=c),
            _var("REDIS_TLS_PORT", default="6380", containers=c),
            _var("REDIS_TLS_ENABLED", default="false", containers=c),
            _var("REDIS_TLS_CA_FILE", default="", containers=c),
            _var("REDIS_PASSWORD", required=True, sensitive=True, containers=c),
            *[_var(v, sensitive=True, containers=c) for v in TLS_VARS],
        ],
    }


def manifest(service: str, spec: LabSpec | None = None) -> dict[str, Any]:
    """The service's vars.yaml as the lab (or the `spec`'s variants) installs it."""
    if service == "database":
        if spec is None:
            return database_manifest()
        return database_manifest(key_owner=spec.key_owner, probe_users=spec.has("probe-not-superuser"))
    no_ca = spec is not None and spec.has("no-default-ca")
    return app_manifest(service, default_ca="" if no_ca else CA_FILE)
