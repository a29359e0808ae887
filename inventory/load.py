"""Reading the inventory: `load_inventory(path)` / `parse_inventory(text, source)` read and validate one
TOML file (format version 1) into `inventory.model.Inventory`.

Every problem becomes an `InventoryError` whose message names the file, the 1-based line and the
key path, and says what to do, e.g.::

    inventory.toml:14: environments.staging.database.postgres_port: expected an integer 1-65535, got "abc"

The file is read by `inventory.toml`, shared with the plan loader: an unsupported `version` is
refused first, then files over 1 MiB, TOML nested deeper than 16 levels and syntax errors; its
locator finds the line of each key (`tomllib` reports none). The names the cockpit derives from the
inventory are checked against what AWS and the file system accept (`inventory.names`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from inventory import toml
from inventory.model import Environment, Host, Inventory, InventoryError, TlsSecrets
from inventory.names import env_name_problem, namespace_problem
from inventory.tables import InventoryTable, LoadContext
from inventory.toml import did_you_mean
from inventory.toml import quoted_list as _quoted_list
from inventory.toml import show as _show
from inventory.tomllines import KeyPath
from inventory.validate import (
    CREDENTIAL_KEYS,
    DATABASE_KEYS,
    ENV_KEYS,
    SSH_KEYS,
    TLS_KEYS,
    TOP_KEYS,
    build_bastion,
    build_commands,
    build_config_store,
    build_credentials,
    build_database,
    build_hosts,
    build_paths,
    build_services,
    build_ssh,
    build_tls_secrets,
    check_aws_names,
    check_database_host,
    default_service,
    refuse_passwords,
)

SUPPORTED_VERSIONS: Final = (1,)


def _version_problem(value: object) -> str:
    supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
    return (
        f"unsupported inventory version {_show(value)}; this cockpit reads version {supported} "
        "only — upgrade the cockpit, or write the file in a supported version (see docs/inventory.md)"
    )


_VERSIONS: Final = toml.Versions(SUPPORTED_VERSIONS, _version_problem)


def load_inventory(path: Path, *, max_bytes: int = toml.MAX_BYTES) -> Inventory:
    """Read and validate the inventory at `path`; relative local paths resolve against its folder."""
    source = str(path)
    try:
        data = toml.read_file(path, max_bytes=max_bytes)
    except OSError as e:
        raise InventoryError(
            source, None, "", f"cannot read the inventory ({e.strerror or e}); see docs/inventory.md"
        ) from e
    try:
        doc = toml.parse_bytes(data, source, what="an inventory", versions=_VERSIONS, max_bytes=max_bytes)
    except toml.TomlError as e:
        raise InventoryError(e.source, e.line, e.key, e.problem) from None
    return _build_inventory(LoadContext(doc, path.absolute().parent))


def parse_inventory(
    text: str, source: str, *, base_dir: Path | None = None, max_bytes: int = toml.MAX_BYTES
) -> Inventory:
    """Validate inventory `text`. `source` names it in errors; relative local paths resolve
    against `base_dir` (default: the folder of `source`). `max_bytes` is the size limit (1 MiB)."""
    try:
        doc = toml.parse_text(text, source, what="an inventory", versions=_VERSIONS, max_bytes=max_bytes)
    except toml.TomlError as e:
        raise InventoryError(e.source, e.line, e.key, e.problem) from None
    return _build_inventory(LoadContext(doc, base_dir if base_dir is not None else Path(source).absolute().parent))


# --------------------------------------------------------------------------------------------
# the file, then each environment


def _build_inventory(ctx: LoadContext) -> Inventory:
    raw = ctx.doc.data
    # The version first: a newer file may use keys this loader does not know. (The reader has already
    # refused an unsupported version it could find without parsing.)
    if "version" not in raw:
        raise ctx.error(
            ("version",),
            f"required key is missing; add `version = {SUPPORTED_VERSIONS[-1]}` at the top of the file",
        )
    version = raw["version"]
    if not _VERSIONS.accepts(version):
        raise ctx.error(("version",), _version_problem(version))
    assert isinstance(version, int)
    top = ctx.table((), raw, TOP_KEYS)
    envs = _build_environments(ctx, top)
    _check_after(ctx, envs)
    default_env = _default_env(top, envs)
    return Inventory(version=version, default_env=default_env, environments=MappingProxyType(envs), source=ctx.source)


def _build_environments(ctx: LoadContext, top: InventoryTable) -> dict[str, Environment]:
    env_tables = top.raw_table("environments")
    if not env_tables:
        raise top.error("environments", "no environment is defined; add at least one [environments.<name>] table")
    envs: dict[str, Environment] = {}
    for name, data in env_tables.items():
        path: KeyPath = ("environments", name)
        if problem := env_name_problem(name):
            raise ctx.error(path, problem)
        if not isinstance(data, dict):
            raise ctx.error(path, f"expected a table [environments.{name}], got {_show(data)}")
        envs[name] = _build_environment(ctx, name, ctx.table(path, data, ENV_KEYS))
    return envs


def _check_after(ctx: LoadContext, envs: Mapping[str, Environment]) -> None:
    """Each `after` names an environment, and no environments wait for each other in a cycle."""
    names = list(envs)
    for env in envs.values():
        if env.after and env.after not in envs:
            raise ctx.error(
                ("environments", env.name, "after"),
                f"names no environment ({json.dumps(env.after)}); known environments: "
                f'{_quoted_list(names)} ("" = none)',
            )
    # each environment waits for at most one other: walk each chain once (linear in the environments)
    walked: dict[str, bool] = {}  # name -> True while on the current walk, False once done
    for env in envs.values():
        chain: list[str] = []
        nxt = env.name
        while nxt and nxt not in walked:
            walked[nxt] = True
            chain.append(nxt)
            nxt = envs[nxt].after
        if nxt and walked[nxt]:
            cycle = " → ".join([*chain[chain.index(nxt) :], nxt])
            raise ctx.error(
                ("environments", env.name, "after"),
                f"environments wait for each other in a cycle ({cycle}); "
                'the first environment of a rollout must have after = ""',
            )
        for name in chain:
            walked[name] = False


def _default_env(top: InventoryTable, envs: Mapping[str, Environment]) -> str:
    names = list(envs)
    default_env = top.text("default_env", "")
    if default_env:
        if default_env not in envs:
            near = did_you_mean(default_env, names)
            hint = f"did you mean {json.dumps(near)}? " if near else ""
            raise top.error(
                "default_env",
                f"names no environment ({json.dumps(default_env)}); {hint}known environments: {_quoted_list(names)}",
            )
    elif len(envs) == 1:
        default_env = names[0]
    return default_env


def _namespace(t: InventoryTable) -> str:
    namespace = t.text("namespace", nonempty=True, hint=' (the platform\'s NAMESPACE, like "voiceai/staging")')
    if namespace.startswith("/") or namespace.endswith("/"):
        raise t.error("namespace", f'write the namespace without a leading or trailing "/", got {_show(namespace)}')
    if problem := namespace_problem(namespace):
        raise t.error("namespace", problem)
    return namespace


def _build_environment(ctx: LoadContext, name: str, t: InventoryTable) -> Environment:
    namespace = _namespace(t)
    region, profile, endpoint_url = t.text("region", ""), t.text("profile", ""), t.text("endpoint_url", "")
    protected, after = t.flag("protected", False), t.text("after", "")
    managed = t.flag("managed_database", False)
    ssh = build_ssh(ctx, t.table("ssh", SSH_KEYS))
    bastion = build_bastion(t)
    database = build_database(t.table("database", DATABASE_KEYS, required=not managed), managed)
    refuse_passwords(ctx, t)
    credentials = build_credentials(t.table("credentials", CREDENTIAL_KEYS), namespace)
    tt = t.table("tls_secrets", TLS_KEYS)
    tls = build_tls_secrets(tt) if tt is not None else TlsSecrets()
    store = build_config_store(t)
    paths = build_paths(ctx, t)
    commands = build_commands(t)
    services = build_services(ctx, t)
    declared = list(services)
    hosts = build_hosts(ctx, t, bastion)
    for h in hosts:
        if h.service not in services:
            services[h.service] = default_service(h.service)
    if not managed:
        check_database_host(ctx, t.path, database, hosts, services)
    env = Environment(
        name=name,
        namespace=namespace,
        region=region,
        profile=profile,
        endpoint_url=endpoint_url,
        protected=protected,
        after=after,
        managed_database=managed,
        ssh=ssh,
        bastion=bastion,
        database=database,
        credentials=credentials,
        tls_secrets=tls,
        config_store=store,
        paths=paths,
        commands=commands,
        services=MappingProxyType(services),
        hosts=tuple(hosts),
        source=ctx.source,
    )
    check_aws_names(ctx, t, env, _origins(t, declared, hosts))
    return env


def _origins(t: InventoryTable, declared: list[str], hosts: list[Host]) -> dict[str, KeyPath]:
    """Where each service is named first: its [services.<name>] table, else the first host naming it."""
    origins: dict[str, KeyPath] = {s: (*t.path, "services", s) for s in declared}
    for i, h in enumerate(hosts):
        origins.setdefault(h.service, (*t.path, "hosts", i, "service"))
    return origins
