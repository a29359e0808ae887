"""Configured state: each rollout variable per service, resolved as the platform's fetch-env.sh does.

bootstrap `.env` → SSM `/${NAMESPACE}/<service>/<VAR>` → Secrets Manager JSON secrets under
`${NAMESPACE}/<service>/` → the `vars.yaml` default. Only the rollout variables are resolved —
never a host's whole environment, which holds every secret. The env-file backend reads a
KEY=VALUE file on each host instead of SSM.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

import yaml

from inventory.model import Environment
from probes.aws import Aws, AwsError
from probes.envparse import EnvValues, read_env
from probes.model import Unknown
from probes.snapshot import ConfigSource, Configured, ConfiguredValue

# platform variables the cockpit reads whatever the plan declares: the key owner, the Redis TLS port
PLATFORM_VARS: Mapping[str, tuple[str, ...]] = {
    "database": ("TLS_KEY_OWNER", "REDIS_TLS_PORT"),
    "app": ("REDIS_TLS_PORT",),
}


def rollout_vars(role: str, declared: Mapping[str, Iterable[str]] | None = None) -> tuple[str, ...]:
    """The variables to resolve for a service of `role`: those a plan declares for it (`declared`:
    role -> variables; none when None), plus the platform variables the cockpit reads. Which variables a
    rollout changes is the plan's to say (`plans.collecting` passes them); probes know none of their own."""
    kind = "database" if role == "database" else "app"
    base: Iterable[str] = declared.get(kind, ()) if declared is not None else ()
    return tuple(dict.fromkeys([*base, *PLATFORM_VARS.get(kind, ())]))


def parse_manifest(text: str, source: str) -> dict[str, dict[str, Any]]:
    """`vars.yaml` → {name: spec}; a malformed file raises ValueError naming it."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("variables"), list):
        raise ValueError(f"{source}: expected a mapping with a 'variables' list")
    out: dict[str, dict[str, Any]] = {}
    for i, v in enumerate(data["variables"]):
        if not isinstance(v, Mapping) or not isinstance(v.get("name"), str):
            raise ValueError(f"{source}: variables[{i}] has no name")
        out[v["name"]] = dict(v)
    return out


def parse_env_text(text: str | bytes) -> EnvValues:
    """A KEY=VALUE file's values as bash sourcing it would set them (`probes.envparse`, the parser
    the env-file store writes with: inline comments, quotes, `export`, last assignment wins).

    Lines it cannot read are not dropped: they are in the result's `problems` ("line N: why",
    never the line's text), and a caller must report them rather than read a missing key as unset.
    `str` input is taken as UTF-8 (undecodable bytes kept via surrogateescape)."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return read_env(data)


def resolve(
    variables: Iterable[str],
    *,
    bootstrap: Mapping[str, str],
    ssm: Mapping[str, tuple[str, int]],
    secrets: Mapping[str, str],
    manifest: Mapping[str, Mapping[str, Any]],
    envfile: Mapping[str, str] | None = None,
) -> dict[str, ConfiguredValue]:
    """Pure resolution of the named variables (later sources win; default only if unset)."""
    out: dict[str, ConfiguredValue] = {}
    for var in variables:
        cv = ConfiguredValue(None, ConfigSource.UNSET)
        if var in bootstrap:
            cv = ConfiguredValue(bootstrap[var], ConfigSource.BOOTSTRAP)
        if envfile is not None and var in envfile:
            cv = ConfiguredValue(envfile[var], ConfigSource.ENVFILE)
        if var in ssm:
            value, version = ssm[var]
            cv = ConfiguredValue(value, ConfigSource.SSM, version)
        if var in secrets:
            cv = ConfiguredValue(secrets[var], ConfigSource.SECRETS)
        if cv.source is ConfigSource.UNSET and "default" in manifest.get(var, {}):
            cv = ConfiguredValue(
                str(manifest[var]["default"]), ConfigSource.DEFAULT, ssm[var][1] if var in ssm else None
            )
        out[var] = cv
    return out


async def read_service_config(
    aws: Aws,
    env: Environment,
    service: str,
    role: str,
    *,
    manifest: Mapping[str, Mapping[str, Any]] | Unknown,
    bootstrap: Mapping[str, str] | Unknown | None = None,
    envfile: Mapping[str, str] | Unknown | None = None,
    secrets: Awaitable[dict[str, str]] | None = None,
    params: Awaitable[dict[str, Any]] | None = None,
    variables: Iterable[str] | None = None,
) -> dict[str, Configured]:
    """Resolve one service's rollout variables as the host would. A source that could not be read
    (AWS refused or unreachable, the host's vars.yaml / .env / env file unreadable) makes every
    variable it could decide an `Unknown` — never "unset" or the default.

    `secrets`/`params`: the service's Secrets Manager keys / SSM parameters when the caller already
    fetches them."""
    names = tuple(variables) if variables is not None else rollout_vars(role)
    for what, source in (("vars.yaml", manifest), ("the bootstrap .env", bootstrap), ("the env file", envfile)):
        if isinstance(source, Unknown):
            return {v: Unknown(source.why, f"{what}: {source.detail}") for v in names}
    assert not isinstance(manifest, Unknown) and not isinstance(bootstrap, Unknown)
    assert not isinstance(envfile, Unknown)
    try:
        found_params = await (params if params is not None else aws.parameters_by_path(f"/{env.namespace}/{service}/"))
        secret_keys = await (secrets if secrets is not None else aws.secrets_under(f"{env.namespace}/{service}/"))
    except AwsError as exc:
        return {v: Unknown(exc.why, str(exc)) for v in names}
    ssm = {k: (p.value, p.version) for k, p in found_params.items() if k in names}
    if env.config_store.kind != "ssm":
        ssm = {}
    found = {k: v for k, v in secret_keys.items() if k in names}  # drop every other (secret) key at once
    return dict(resolve(names, bootstrap=bootstrap or {}, ssm=ssm, secrets=found, manifest=manifest, envfile=envfile))
