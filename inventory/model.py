"""The inventory's data: one TOML file (format version 1) describing every environment the cockpit drives,
as frozen dataclasses. `inventory.load` reads and validates a file into them.

The format is defined by `docs/inventory.example.toml` and documented in `docs/inventory.md`.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from inventory.toml import quoted_list as _quoted_list

Role = Literal["app", "database"]
AccessMode = Literal["tunnel", "direct"]
TlsLayout = Literal["json", "separate", "shared"]
ConfigStoreKind = Literal["ssm", "envfile"]
Leg = Literal["postgres", "redis"]  # the servers a service is a client of
Material = Literal["ca", "cert", "key"]  # the INTERNAL_* values a service's hosts hold
ReadOnlyCommand = Literal["telpro_ssl_check", "running_check"]  # commands watch mode may run

ACCESS_MODES: Final[tuple[AccessMode, ...]] = ("tunnel", "direct")
TLS_LAYOUTS: Final[tuple[TlsLayout, ...]] = ("json", "separate", "shared")
CONFIG_STORE_KINDS: Final[tuple[ConfigStoreKind, ...]] = ("ssm", "envfile")
ROLES: Final[tuple[Role, ...]] = ("app", "database")
LEGS: Final[tuple[Leg, ...]] = ("postgres", "redis")
MATERIALS: Final[tuple[Material, ...]] = ("ca", "cert", "key")
READ_ONLY_COMMANDS: Final[tuple[ReadOnlyCommand, ...]] = ("telpro_ssl_check", "running_check")
OTHERS: Final = "others"  # the token `services_in_order` expands; no service may be named so

# Material -> the variable (a key of the service's TLS secret) that holds it, base64 PEM.
MATERIAL_VARIABLES: Final[Mapping[Material, str]] = MappingProxyType(
    {"ca": "INTERNAL_CA_CRT_B64", "cert": "INTERNAL_TLS_CERT_B64", "key": "INTERNAL_TLS_KEY_B64"}
)
DEFAULT_CONSUMES: Final[Mapping[Role, tuple[Leg, ...]]] = MappingProxyType(
    {"app": ("postgres", "redis"), "database": ()}
)
DEFAULT_TLS_MATERIAL: Final[Mapping[Role, tuple[Material, ...]]] = MappingProxyType(
    {"app": ("ca",), "database": ("ca", "cert", "key")}
)
DEFAULT_PG_HBA_PATH: Final = "/mnt/data/postgres/pg_hba.conf"
DEFAULT_KEY_OWNER: Final = "70:70"  # the runbook's owner of the key file (the Postgres uid of the official images)

DEFAULT_PATHS: Final[Mapping[str, str]] = MappingProxyType({"/etc/ssl/internal": "/etc/ssl/internal"})
DEFAULT_UPDATE_COMMAND: Final = "{root}/opt/services/{service}/update.sh --restart-only --yes"
DEFAULT_TELPRO_SSL_CHECK: Final = (
    "docker run --rm --entrypoint kamailio voiceai-telpro -I 2>/dev/null | grep -q hiredis_ssl"
)
DEFAULT_VARS: Final = "/opt/services/{service}/vars.yaml"

UPDATE_FIELDS: Final = ("root", "service", "host", "address")
COMMAND_FIELDS: Final = UPDATE_FIELDS  # every host command template: update, running_check, logs, telpro
HEALTH_FIELDS: Final = ("address", "host", "service")


# --------------------------------------------------------------------------------------------
# errors


class InventoryError(Exception):
    """A problem with the inventory: `source:line: key.path: what is wrong and what to do`."""

    def __init__(self, source: str, line: int | None, key: str, problem: str) -> None:
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


# --------------------------------------------------------------------------------------------
# the data


@dataclass(frozen=True, slots=True)
class SshSettings:
    """How the cockpit's SSH client behaves. Paths are local, `~`-expanded, absolute."""

    known_hosts: Path
    identity_files: tuple[Path, ...] = ()
    config: Path | None = None  # None: ~/.ssh/config is ignored
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    max_channels: int = 6
    max_connects_in_flight: int = 8


@dataclass(frozen=True, slots=True)
class Bastion:
    """The jump host for every host with `jump = true`."""

    address: str
    port: int = 22
    user: str = ""  # "": SSH's own rule (User from ~/.ssh/config, else the local login name)


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    host: str  # the name of the [[hosts]] entry running Postgres, PgBouncer and Redis ("" if managed)
    dns_name: str  # the private DNS name the certificate must cover
    access: AccessMode = "tunnel"
    postgres_port: int = 5432
    pgbouncer_port: int = 6432
    redis_port: int = 6379
    redis_tls_port: int = 6380
    dbname: str = "postgres"
    # "UID:GID" of the key file; "": TLS_KEY_OWNER of the database service's configuration, else 70:70
    key_owner: str = ""
    pg_hba_path: str = DEFAULT_PG_HBA_PATH  # container path, read over SFTP when pg_hba_file_rules is not readable

    def key_owner_ids(self) -> tuple[int, int] | None:
        """(uid, gid) of `key_owner`, or None when it is "" (resolve it from the configuration)."""
        if not self.key_owner:
            return None
        uid, gid = self.key_owner.split(":")
        return int(uid), int(gid)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where probe credentials live: one Secrets Manager JSON secret (or a KEY=VALUE file on the
    database host) and the keys inside it. A user name comes from its literal, else from its key;
    a password only ever from its key."""

    secret: str  # "" when `file` is set
    postgres_user_key: str = "POSTGRES_USER"
    postgres_password_key: str = "POSTGRES_PASSWORD"
    pgbouncer_admin_user_key: str = "PGBOUNCER_ADMIN_USER"
    pgbouncer_admin_password_key: str = "PGBOUNCER_ADMIN_PASSWORD"
    redis_password_key: str = "REDIS_PASSWORD"
    postgres_user: str = ""  # a literal user name, used instead of looking up postgres_user_key
    pgbouncer_admin_user: str = ""  # a literal user name, used instead of pgbouncer_admin_user_key
    file: str = ""  # container path on the database host of a KEY=VALUE file, used instead of `secret`

    @property
    def from_file(self) -> bool:
        """True when the keys are read from `file` on the database host, not from `secret`."""
        return bool(self.file)


@dataclass(frozen=True, slots=True)
class TlsSecrets:
    """Where the INTERNAL_* values live: per service ("json", "separate") or in one secret ("shared")."""

    layout: TlsLayout = "json"
    secret_suffix: str = "secrets"
    name: str = ""  # layout "shared" only: the one JSON secret holding every service's INTERNAL_* values

    @property
    def json_keys(self) -> bool:
        """True when each value is a key inside a JSON secret ("json", "shared"), False when it is its
        own secret ("separate")."""
        return self.layout != "separate"


@dataclass(frozen=True, slots=True)
class ConfigStore:
    kind: ConfigStoreKind = "ssm"
    path: str = ""  # envfile only: the KEY=VALUE file on every host of the service (host path)


@dataclass(frozen=True, slots=True)
class Commands:
    update: str = DEFAULT_UPDATE_COMMAND  # placeholders {root} {service} {host} {address}
    # {root} {service} {host} {address} are filled in; any other brace is kept as written
    telpro_ssl_check: str = DEFAULT_TELPRO_SSL_CHECK
    read_only: tuple[ReadOnlyCommand, ...] = ()  # the commands watch mode may run on hosts


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """One service's settings. The defaults of `consumes` and `tls_material` are those of role "app";
    the loader fills in the role's own (`DEFAULT_CONSUMES`, `DEFAULT_TLS_MATERIAL`)."""

    name: str
    role: Role = "app"
    vars: str = ""  # host path of the service's vars.yaml ({service} already substituted)
    health_url: str = ""  # "" = none; placeholders {address} {host} {service}
    pre_restart: str = ""  # "" = none; a command run on the instance before its restart
    consumes: tuple[Leg, ...] = DEFAULT_CONSUMES["app"]  # the servers it is a client of, in LEGS order
    tls_material: tuple[Material, ...] = DEFAULT_TLS_MATERIAL["app"]  # in MATERIALS order
    running_check: str = ""  # "" = none; exit 0: runs on the host, 1: does not, else unknown
    logs: str = ""  # "" = none; prints the service's recent log lines on the host

    @property
    def serves_tls(self) -> bool:
        """True when its hosts hold the server key: they serve TLS with the internal cert."""
        return "key" in self.tls_material


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    address: str
    service: str
    port: int = 22
    user: str = ""  # "": SSH's own rule (User from ~/.ssh/config, else the local login name)
    jump: bool = False
    root: str = "/"  # where the platform's paths live on this host


@dataclass(frozen=True, slots=True)
class Environment:
    name: str
    namespace: str
    ssh: SshSettings
    database: DatabaseSettings
    credentials: Credentials
    region: str = ""  # "": boto3's own resolution (AWS_REGION, the profile, ...)
    profile: str = ""
    endpoint_url: str = ""
    protected: bool = False
    after: str = ""
    managed_database: bool = False
    bastion: Bastion | None = None
    tls_secrets: TlsSecrets = TlsSecrets()
    config_store: ConfigStore = ConfigStore()
    paths: Mapping[str, str] = field(default_factory=lambda: DEFAULT_PATHS)
    commands: Commands = Commands()
    # every service named by a services table or by a host, in that order (see `service_names`)
    services: Mapping[str, ServiceSettings] = field(default_factory=lambda: MappingProxyType({}))
    hosts: tuple[Host, ...] = ()
    source: str = field(default="", compare=False)

    # -- services and hosts ----------------------------------------------------------------
    @property
    def service_names(self) -> tuple[str, ...]:
        """Services tables in file order, then services only named by hosts, in host order."""
        return tuple(self.services)

    def service(self, name: str) -> ServiceSettings:
        try:
            return self.services[name]
        except KeyError:
            raise KeyError(
                f"environment {self.name!r} has no service {name!r}; known: {', '.join(self.services)}"
            ) from None

    def hosts_for(self, service: str) -> tuple[Host, ...]:
        """The hosts running `service`, in inventory order."""
        return tuple(h for h in self.hosts if h.service == service)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"environment {self.name!r} has no host {name!r}")

    @property
    def database_host(self) -> Host:
        if self.managed_database:
            raise InventoryError(
                self.source,
                None,
                f"environments.{self.name}.managed_database",
                "this environment uses a managed database (RDS/ElastiCache): there is no database host "
                "to flip, and the runbook does not apply",
            )
        return self.host(self.database.host)

    def services_in_order(self, order: Sequence[str]) -> list[str]:
        """Expand a restart order such as ["api", "web", "voice", "ops", "others"].

        Named services are kept (in the given order, once each) when this environment has them;
        the token "others" is replaced, where it stands, by every remaining service whose role
        is "app", in inventory order (`service_names`). Database-role services are never
        added by "others". Without "others" only the named services are returned.
        """
        named = {s for s in order if s != OTHERS}
        out: list[str] = []
        for item in order:
            if item == OTHERS:
                for s, settings in self.services.items():
                    if s not in named and settings.role == "app" and s not in out:
                        out.append(s)
            elif item in self.services and item not in out:
                out.append(item)
        return out

    # -- paths and names -------------------------------------------------------------------
    def host_path(self, host: Host, path: str) -> str:
        """Where a container/platform path lives on `host`: apply `paths` (longest prefix), then
        prefix the host's `root`. `/etc/ssl/internal/ca.crt` on a host with root `/srv/h1` and
        paths {"/etc/ssl/internal" = "/opt/tls"} -> `/srv/h1/opt/tls/ca.crt`."""
        if not path.startswith("/"):
            raise ValueError(f"host_path needs an absolute path, got {path!r}")
        path = posixpath.normpath(path)
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        best: tuple[str, str] | None = None
        for src, dst in self.paths.items():
            if _path_under(path, src) and (best is None or len(src) > len(best[0])):
                best = (src, dst)
        if best is not None:
            src, dst = best
            rest = path[len(src.rstrip("/")) :]
            path = (dst.rstrip("/") + rest) or "/"
        root = host.root.rstrip("/")
        return root + path if root else path

    def ssm_path(self, service: str, var: str) -> str:
        return f"/{self.namespace}/{service}/{var}"

    def secret_name(self, service: str) -> str:
        return f"{self.namespace}/{service}/{self.tls_secrets.secret_suffix}"

    def tls_secret_name(self, service: str, var: str) -> str:
        """The secret holding `var` for `service`: the service's JSON secret ("json"), its own secret
        ("separate"), or the one secret every service shares ("shared")."""
        if self.tls_secrets.layout == "separate":
            return f"{self.namespace}/{service}/{var}"
        if self.tls_secrets.layout == "shared":
            return self.tls_secrets.name
        return self.secret_name(service)

    # -- services by what they use ----------------------------------------------------------------
    def consumers_of(self, leg: Leg) -> tuple[str, ...]:
        """The services that are clients of `leg` ("postgres" or "redis"), in inventory order."""
        return tuple(name for name, s in self.services.items() if leg in s.consumes)

    def services_serving_tls(self) -> tuple[str, ...]:
        """The services whose hosts hold the server key (tls_material has "key"), in inventory order."""
        return tuple(name for name, s in self.services.items() if s.serves_tls)

    # -- commands ----------------------------------------------------------------------------
    def _command_values(self, host: Host) -> dict[str, str]:
        return {"root": host.root.rstrip("/"), "service": host.service, "host": host.name, "address": host.address}

    def update_command(self, host: Host) -> str:
        """`commands.update` for `host`, every placeholder shell-quoted; {root} is the host's root
        without a trailing "/"."""
        return render_command(self.commands.update, self._command_values(host))

    def running_check_command(self, host: Host) -> str:
        """The host's service `running_check`, shell-quoted, or "" when the service has none."""
        template = self.service(host.service).running_check
        return render_command(template, self._command_values(host)) if template else ""

    def logs_command(self, host: Host) -> str:
        """The host's service `logs` command, shell-quoted, or "" when the service has none."""
        template = self.service(host.service).logs
        return render_command(template, self._command_values(host)) if template else ""

    def telpro_check_command(self, host: Host) -> str:
        """`commands.telpro_ssl_check` for `host`: {root} {service} {host} {address} shell-quoted,
        every other brace kept as written (the key predates templates)."""
        return render_command(self.commands.telpro_ssl_check, self._command_values(host), literal_braces=True)

    def watch_may_run(self, name: str) -> bool:
        """True when read-only observers (watch mode) may run the host command `name`."""
        return name in self.commands.read_only

    def health_url(self, host: Host) -> str:
        """The host's service health URL, or "" when the service has none."""
        template = self.service(host.service).health_url
        if not template:
            return ""
        return template.format(address=host.address, host=host.name, service=host.service)


# --------------------------------------------------------------------------------------------
# command templates

_PLACEHOLDER = re.compile(r"\{(" + "|".join(COMMAND_FIELDS) + r")\}")
_SHELL_BREAK = frozenset(" \t\n;&|()<>")  # characters that end a shell word


def render_command(template: str, values: Mapping[str, str], *, literal_braces: bool = False) -> str:
    """Fill a command template, each placeholder quoted as its own shell word part.

    "{root}/opt/services/{service}/update.sh" with root "/srv/h 1" gives
    `'/srv/h 1'/opt/services/api/update.sh`: values that need no quoting are left bare (so commands
    read as before), an empty value glued to other text vanishes and a standalone one becomes `''`.
    With `literal_braces`, only the known placeholders are replaced and other braces stay as written;
    otherwise the template is a `str.format` template (`{{` and `}}` for literal braces)."""
    parts: list[tuple[str, str | None]] = []  # (literal text, placeholder name or None)
    if literal_braces:
        pos = 0
        for m in _PLACEHOLDER.finditer(template):
            parts.append((template[pos : m.start()], m.group(1)))
            pos = m.end()
        parts.append((template[pos:], None))
    else:
        parts = [(lit, name) for lit, name, _, _ in string.Formatter().parse(template)]
    out: list[str] = []
    for i, (literal, name) in enumerate(parts):
        out.append(literal)
        if name is None:
            continue
        value = values[name]
        if value:
            out.append(shlex.quote(value))
            continue
        before = "".join(out)[-1:]
        after = parts[i + 1][0][:1] if i + 1 < len(parts) else ""
        glued = (before and before not in _SHELL_BREAK) or (after and after not in _SHELL_BREAK)
        out.append("" if glued else "''")
    return "".join(out)


def _path_under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


@dataclass(frozen=True, slots=True)
class Inventory:
    version: int
    default_env: str  # "" only when several environments exist and none is the default
    environments: Mapping[str, Environment]
    source: str = field(default="", compare=False)

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(self.environments)

    def env(self, name: str | None = None) -> Environment:
        """The named environment, or `default_env` when `name` is None."""
        if name is None:
            if not self.default_env:
                raise InventoryError(
                    self.source,
                    None,
                    "default_env",
                    f"no default environment is set; choose one of {_quoted_list(self.env_names)} "
                    '(or set default_env = "..." in the inventory)',
                )
            name = self.default_env
        try:
            return self.environments[name]
        except KeyError:
            raise InventoryError(
                self.source,
                None,
                "environments",
                f"no environment named {json.dumps(name)}; known environments: {_quoted_list(self.env_names)}",
            ) from None
