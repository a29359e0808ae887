"""The inventory's tables, one builder each: read with the typed getters, checked, and turned into the
frozen data of `inventory.model`. `inventory.load` walks the file and calls them per environment."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from inventory.model import (
    ACCESS_MODES,
    COMMAND_FIELDS,
    CONFIG_STORE_KINDS,
    DEFAULT_CONSUMES,
    DEFAULT_KEY_OWNER,
    DEFAULT_PATHS,
    DEFAULT_PG_HBA_PATH,
    DEFAULT_TELPRO_SSL_CHECK,
    DEFAULT_TLS_MATERIAL,
    DEFAULT_UPDATE_COMMAND,
    DEFAULT_VARS,
    HEALTH_FIELDS,
    LEGS,
    MATERIAL_VARIABLES,
    MATERIALS,
    OTHERS,
    READ_ONLY_COMMANDS,
    ROLES,
    TLS_LAYOUTS,
    UPDATE_FIELDS,
    Bastion,
    Commands,
    ConfigStore,
    Credentials,
    DatabaseSettings,
    Environment,
    Host,
    Role,
    ServiceSettings,
    SshSettings,
    TlsSecrets,
)
from inventory.names import (
    SECRET_NAME_MAX,
    SSM_NAME_MAX,
    SSM_VARIABLE_ROOM,
    secret_name_problem,
    service_name_problem,
)
from inventory.tables import REQUIRED, InventoryTable, LoadContext, clean_abs, no_nul
from inventory.toml import did_you_mean
from inventory.toml import quoted_list as _quoted_list
from inventory.toml import show as _show
from inventory.tomllines import KeyPath, format_key_path

_KEY_OWNER = re.compile(r"[0-9]+:[0-9]+\Z")

TOP_KEYS: Final = ("version", "default_env", "environments")
ENV_KEYS: Final = (
    "namespace",
    "region",
    "profile",
    "endpoint_url",
    "protected",
    "after",
    "managed_database",
    "ssh",
    "bastion",
    "database",
    "credentials",
    "tls_secrets",
    "config_store",
    "paths",
    "commands",
    "services",
    "hosts",
)
SSH_KEYS: Final = (
    "known_hosts",
    "identity_files",
    "config",
    "connect_timeout",
    "command_timeout",
    "max_channels",
    "max_connects_in_flight",
)
BASTION_KEYS: Final = ("address", "port", "user")
DATABASE_KEYS: Final = (
    "host",
    "dns_name",
    "access",
    "postgres_port",
    "pgbouncer_port",
    "redis_port",
    "redis_tls_port",
    "dbname",
    "key_owner",
    "pg_hba_path",
)
CREDENTIAL_KEYS: Final = (
    "secret",
    "file",
    "postgres_user",
    "postgres_user_key",
    "postgres_password_key",
    "pgbouncer_admin_user",
    "pgbouncer_admin_user_key",
    "pgbouncer_admin_password_key",
    "redis_password_key",
)
TLS_KEYS: Final = ("layout", "secret_suffix", "name")
STORE_KEYS: Final = ("kind", "path")
COMMAND_KEYS: Final = ("update", "telpro_ssl_check", "read_only")
SERVICE_KEYS: Final = (
    "role",
    "vars",
    "health_url",
    "pre_restart",
    "consumes",
    "tls_material",
    "running_check",
    "logs",
)
HOST_KEYS: Final = ("name", "address", "port", "user", "service", "jump", "root")


def build_tls_secrets(tt: InventoryTable) -> TlsSecrets:
    layout = tt.enum("layout", TLS_LAYOUTS, "json")
    if layout == "shared":
        if not tt.has("name"):
            raise tt.error(
                "name",
                'layout = "shared" needs name = "..." (the one Secrets Manager JSON secret holding every '
                'service\'s INTERNAL_* values, e.g. "voiceai/staging/internal-tls")',
            )
        name = tt.text("name", nonempty=True)
        if problem := secret_name_problem(name):
            raise tt.error("name", problem)
        if tt.has("secret_suffix"):
            raise tt.error("secret_suffix", 'is not used with layout = "shared" (name is the secret); remove it')
        return TlsSecrets(layout=layout, name=name)
    if tt.has("name"):
        raise tt.error("name", 'is only read with layout = "shared"; remove it, or set layout = "shared"')
    suffix = tt.text("secret_suffix", "secrets", nonempty=True)
    if suffix.startswith("/") or suffix.endswith("/"):
        raise tt.error("secret_suffix", f'write it without a leading or trailing "/", got {_show(suffix)}')
    if problem := secret_name_problem(suffix, what="the secret suffix (the end of a secret name)"):
        raise tt.error("secret_suffix", problem)
    return TlsSecrets(layout=layout, secret_suffix=suffix)


def check_aws_names(ctx: LoadContext, t: InventoryTable, env: Environment, origins: Mapping[str, KeyPath]) -> None:
    """Every SSM parameter and secret name the cockpit derives for `env` fits the AWS limits."""
    for service, origin in origins.items():
        ssm = len(env.ssm_path(service, "")) + SSM_VARIABLE_ROOM
        if ssm > SSM_NAME_MAX:
            raise ctx.error(
                origin,
                f"the SSM parameter names of service {_show(service)} would be {ssm} characters long with a "
                f"{SSM_VARIABLE_ROOM}-character variable name; SSM allows at most {SSM_NAME_MAX} — shorten the "
                "namespace or the service name",
            )
        names = [env.tls_secret_name(service, var) for var in MATERIAL_VARIABLES.values()]
        longest = max([env.secret_name(service), *names], key=len)
        if len(longest) > SECRET_NAME_MAX:
            shown = longest.replace(env.namespace, "<namespace>", 1)
            raise ctx.error(
                origin,
                f"the secret {shown} of service {_show(service)} would be {len(longest)} characters long; Secrets "
                f"Manager allows at most {SECRET_NAME_MAX} — shorten the namespace or the service name",
            )
    secret = env.credentials.secret
    if secret and (problem := secret_name_problem(secret, what="the credentials secret")):
        explicit = (ct := t.raw_table("credentials")) is not None and "secret" in ct
        raise ctx.error((*t.path, "credentials", "secret") if explicit else (*t.path, "namespace"), problem)


def build_ssh(ctx: LoadContext, st: InventoryTable | None) -> SshSettings:
    if st is None:
        return SshSettings(known_hosts=ctx.local_path("~/.ssh/known_hosts"), config=ctx.local_path("~/.ssh/config"))
    known_hosts = st.text("known_hosts", "~/.ssh/known_hosts", nonempty=True, hint="; host keys are always verified")
    config = st.text("config", "~/.ssh/config")
    identity_files = st.str_list("identity_files", (), nonempty_items=True)
    no_nul(st, ("known_hosts",), known_hosts)
    no_nul(st, ("config",), config)
    for i, p in enumerate(identity_files):
        no_nul(st, ("identity_files", i), p)
    return SshSettings(
        known_hosts=ctx.local_path(known_hosts),
        identity_files=tuple(ctx.local_path(p) for p in identity_files),
        config=ctx.local_path(config) if config else None,
        connect_timeout=st.positive_float("connect_timeout", 10.0),
        command_timeout=st.positive_float("command_timeout", 60.0),
        max_channels=st.integer("max_channels", 6, 1),
        max_connects_in_flight=st.integer("max_connects_in_flight", 8, 1),
    )


def build_database(dt: InventoryTable | None, managed: bool) -> DatabaseSettings:
    if dt is None:  # only when managed_database = true
        return DatabaseSettings(host="", dns_name="")
    required: object = "" if managed else REQUIRED
    return DatabaseSettings(
        host=dt.text("host", required, nonempty=not managed, hint=" (the name of the database [[hosts]] entry)"),
        dns_name=dt.text("dns_name", required, nonempty=not managed, hint=" (the DNS name the certificate must cover)"),
        access=dt.enum("access", ACCESS_MODES, "tunnel"),
        postgres_port=dt.port("postgres_port", 5432),
        pgbouncer_port=dt.port("pgbouncer_port", 6432),
        redis_port=dt.port("redis_port", 6379),
        redis_tls_port=dt.port("redis_tls_port", 6380),
        dbname=dt.text("dbname", "postgres", nonempty=True),
        key_owner=_key_owner(dt),
        pg_hba_path=dt.abs_path("pg_hba_path", DEFAULT_PG_HBA_PATH, what="container path of pg_hba.conf"),
    )


def _key_owner(dt: InventoryTable) -> str:
    value = dt.text("key_owner", "")
    if value and not _KEY_OWNER.match(value):
        raise dt.error(
            "key_owner",
            f'expected "UID:GID" in digits, like "{DEFAULT_KEY_OWNER}", or "" (read TLS_KEY_OWNER from the '
            f"database service's configuration, else {DEFAULT_KEY_OWNER}), got {_show(value)}",
        )
    return value


_PASSWORD_KEY = re.compile(r"(.*_)?(pass|passwd|password)\Z", re.IGNORECASE)


def refuse_passwords(ctx: LoadContext, t: InventoryTable) -> None:
    """A password written in the inventory is refused as such, not as a mere unknown key."""
    table = t.raw_table("credentials")
    for key in table or ():
        if key not in CREDENTIAL_KEYS and _PASSWORD_KEY.match(key):
            named = f"{key}_key" if f"{key}_key" in CREDENTIAL_KEYS else "postgres_password_key"
            raise ctx.error(
                (*t.path, "credentials", key),
                "a password is never written in the inventory; name the key that holds it in the secret "
                f'(or file) instead, e.g. {named} = "{named.removesuffix("_key").upper()}", and remove {key}',
            )


def build_credentials(ct: InventoryTable | None, namespace: str) -> Credentials:
    default_secret = f"{namespace}/database/secrets"
    if ct is None:
        return Credentials(secret=default_secret)
    d = Credentials(secret=default_secret)
    if ct.has("secret") and ct.has("file"):
        raise ct.error(
            "file",
            "set either secret (a Secrets Manager JSON secret) or file (a KEY=VALUE file on the database "
            "host), not both; remove one",
        )
    file = ""
    if ct.has("file"):
        file = ct.abs_path("file", what="path of the KEY=VALUE file on the database host")
    return Credentials(
        secret="" if file else ct.text("secret", default_secret, nonempty=True),
        file=file,
        postgres_user=ct.text("postgres_user", ""),
        postgres_user_key=ct.text("postgres_user_key", d.postgres_user_key, nonempty=True),
        postgres_password_key=ct.text("postgres_password_key", d.postgres_password_key, nonempty=True),
        pgbouncer_admin_user=ct.text("pgbouncer_admin_user", ""),
        pgbouncer_admin_user_key=ct.text("pgbouncer_admin_user_key", d.pgbouncer_admin_user_key, nonempty=True),
        pgbouncer_admin_password_key=ct.text(
            "pgbouncer_admin_password_key", d.pgbouncer_admin_password_key, nonempty=True
        ),
        redis_password_key=ct.text("redis_password_key", d.redis_password_key, nonempty=True),
    )


def build_paths(ctx: LoadContext, t: InventoryTable) -> Mapping[str, str]:
    table = t.raw_table("paths")
    if table is None:
        return DEFAULT_PATHS
    ptable = ctx.table((*t.path, "paths"), table, None)
    out: dict[str, str] = {}
    for src in table:
        if not src.startswith("/"):
            raise ptable.error(src, "the key must be an absolute container path starting with /")
        out[clean_abs(src)] = ptable.abs_path(src, what="host path (relative to the host's root)")
    return MappingProxyType(out)


def _default_role(service: str) -> Role:
    return "database" if service == "database" else "app"


def default_service(service: str) -> ServiceSettings:
    role = _default_role(service)
    return ServiceSettings(
        name=service,
        role=role,
        vars=DEFAULT_VARS.format(service=service),
        consumes=DEFAULT_CONSUMES[role],
        tls_material=DEFAULT_TLS_MATERIAL[role],
    )


def check_service_name(ctx: LoadContext, path: KeyPath, name: str) -> None:
    if name == OTHERS:
        raise ctx.error(path, f'"{OTHERS}" is reserved (it means "every remaining service"); rename the service')
    if problem := service_name_problem(name):
        raise ctx.error(path, problem)


def build_service(name: str, st: InventoryTable) -> ServiceSettings:
    vars_template = st.template("vars", DEFAULT_VARS, ("service",))
    vars_path = vars_template.format(service=name)
    if not vars_path.startswith("/"):
        raise st.error("vars", f"expected an absolute path on the host, got {_show(vars_template)}")
    role = st.enum("role", ROLES, _default_role(name))
    material = st.enum_list("tls_material", MATERIALS, DEFAULT_TLS_MATERIAL[role])
    if "ca" not in material:
        raise st.error(
            "tls_material",
            'must include "ca": every service verifies the internal CA (INTERNAL_CA_CRT_B64)',
        )
    if "key" in material and "cert" not in material:
        raise st.error(
            "tls_material",
            '"key" without "cert": a host that holds the server key (INTERNAL_TLS_KEY_B64) needs its '
            'certificate too; add "cert", or remove "key"',
        )
    return ServiceSettings(
        name=name,
        role=role,
        vars=clean_abs(vars_path),
        health_url=st.template("health_url", "", HEALTH_FIELDS),
        pre_restart=st.text("pre_restart", ""),
        consumes=st.enum_list("consumes", LEGS, DEFAULT_CONSUMES[role]),
        tls_material=material,
        running_check=st.template("running_check", "", COMMAND_FIELDS),
        logs=st.template("logs", "", COMMAND_FIELDS),
    )


def build_hosts(ctx: LoadContext, t: InventoryTable, bastion: Bastion | None) -> list[Host]:
    hosts: list[Host] = []
    by_name: dict[str, int] = {}
    by_endpoint: dict[tuple[str, int], int] = {}
    for i, ht in enumerate(t.tables("hosts", HOST_KEYS)):
        name = ht.text("name", nonempty=True)
        service = ht.text("service", nonempty=True, hint=' (the platform service, like "api")')
        check_service_name(ctx, (*ht.path, "service"), service)
        host = Host(
            name=name,
            address=ht.text("address", nonempty=True, hint=" (an IP address or DNS name)"),
            port=ht.port("port", 22),
            user=ht.text("user", ""),
            service=service,
            jump=ht.flag("jump", False),
            root=ht.abs_path("root", "/", what="path on the host"),
        )
        if name in by_name:
            first = by_name[name]
            raise ht.error(
                "name",
                f"duplicate host name {json.dumps(name)} (already used by hosts[{first}], line "
                f"{ctx.line((*t.path, 'hosts', first, 'name'))}); host names must be unique",
            )
        endpoint = (host.address.lower(), host.port)
        if endpoint in by_endpoint:
            first = by_endpoint[endpoint]
            raise ht.error(
                "address",
                f"duplicate address {host.address}:{host.port} (already used by hosts[{first}] "
                f"{json.dumps(hosts[first].name)}, line {ctx.line((*t.path, 'hosts', first, 'address'))}); "
                "each host entry must be a different machine",
            )
        if host.jump and bastion is None:
            raise ht.error(
                "jump",
                f"jump = true but there is no bastion; add a [{format_key_path((*t.path, 'bastion'))}] table "
                "or set jump = false",
            )
        by_name[name] = i
        by_endpoint[endpoint] = i
        hosts.append(host)
    return hosts


def check_database_host(
    ctx: LoadContext,
    env_path: KeyPath,
    database: DatabaseSettings,
    hosts: Sequence[Host],
    services: Mapping[str, ServiceSettings],
) -> None:
    db_indexes = [i for i, h in enumerate(hosts) if services[h.service].role == "database"]
    if len(db_indexes) > 1:
        first, second = hosts[db_indexes[0]], hosts[db_indexes[1]]
        raise ctx.error(
            (*env_path, "hosts", db_indexes[1], "service"),
            f"a second database host ({json.dumps(second.name)}; the first is {json.dumps(first.name)}); "
            'an environment has exactly one host whose service has role = "database" — '
            "put the others in their own environment",
        )
    names = [h.name for h in hosts]
    if database.host not in names:
        if db_indexes:  # the one host whose service has role "database" is the likely meant one
            near = [hosts[db_indexes[0]].name]
        else:
            near = [n] if (n := did_you_mean(database.host, names)) else []
        hint = f"did you mean {json.dumps(near[0])}? " if near else ""
        raise ctx.error(
            (*env_path, "database", "host"),
            f"names no host ({json.dumps(database.host)}); {hint}add a "
            f"[[{format_key_path((*env_path, 'hosts'))}]] entry with that name, or use one of: "
            f"{_quoted_list(names)}",
        )
    db = next(h for h in hosts if h.name == database.host)
    role = services[db.service].role
    if role != "database":
        raise ctx.error(
            (*env_path, "database", "host"),
            f"names host {json.dumps(db.name)}, whose service {json.dumps(db.service)} has role "
            f"{json.dumps(role)}; point it at the host running Postgres, PgBouncer and Redis, "
            f'or give that service role = "database"',
        )


def build_bastion(t: InventoryTable) -> Bastion | None:
    bt = t.table("bastion", BASTION_KEYS)
    if bt is None:
        return None
    return Bastion(address=bt.text("address", nonempty=True), port=bt.port("port", 22), user=bt.text("user", ""))


def build_config_store(t: InventoryTable) -> ConfigStore:
    st = t.table("config_store", STORE_KEYS)
    if st is None:
        return ConfigStore()
    kind = st.enum("kind", CONFIG_STORE_KINDS, "ssm")
    path = st.text("path", "")
    if kind == "envfile":
        if not path:
            raise st.error(
                "path",
                'kind = "envfile" needs path = "/absolute/path/on/the/host" '
                '(the KEY=VALUE file on every host of the service, e.g. "/opt/deployment/rollout.env")',
            )
        path = st.abs_path("path", what="path of the env file on the host")
    elif path:
        raise st.error("path", 'is only read with kind = "envfile"; remove it, or set kind = "envfile"')
    return ConfigStore(kind=kind, path=path)


def build_commands(t: InventoryTable) -> Commands:
    cmt = t.table("commands", COMMAND_KEYS)
    if cmt is None:
        return Commands()
    commands = Commands(
        update=cmt.template("update", DEFAULT_UPDATE_COMMAND, UPDATE_FIELDS),
        telpro_ssl_check=cmt.text("telpro_ssl_check", DEFAULT_TELPRO_SSL_CHECK, nonempty=True),
        read_only=cmt.enum_list("read_only", READ_ONLY_COMMANDS, ()),
    )
    if not commands.update.strip():
        raise cmt.error("update", "must not be empty; give the command that restarts a service")
    return commands


def build_services(ctx: LoadContext, t: InventoryTable) -> dict[str, ServiceSettings]:
    """The [services.<name>] tables, in file order (services only named by hosts are added later)."""
    services: dict[str, ServiceSettings] = {}
    for sname, sdata in (t.raw_table("services") or {}).items():
        spath: KeyPath = (*t.path, "services", sname)
        check_service_name(ctx, spath, sname)
        if not isinstance(sdata, dict):
            raise ctx.error(spath, f"expected a table [{format_key_path(spath)}], got {_show(sdata)}")
        services[sname] = build_service(sname, ctx.table(spath, sdata, SERVICE_KEYS))
    return services
