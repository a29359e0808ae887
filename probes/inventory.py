"""The inventory: one TOML file (format version 1) describing every environment the cockpit drives.

`load_inventory(path)` / `parse_inventory(text, source)` read and validate it into frozen dataclasses.
The format is defined by `docs/inventory.example.toml` and documented in `docs/inventory.md`.

Every problem becomes an `InventoryError` whose message names the file, the 1-based line and the
key path, and says what to do, e.g.::

    inventory.toml:14: environments.staging.database.postgres_port: expected an integer 1-65535, got "abc"

The file is read by `probes.tomlreader`, shared with the plan loader: an unsupported `version` is
refused first, then files over 1 MiB, TOML nested deeper than 16 levels and syntax errors; its
`Locator` finds the line of each key (`tomllib` reports none). The names the cockpit derives from the
inventory are checked against what AWS and the file system accept: environment names become file
names (`<env>.jsonl`), namespaces and services become SSM parameter and Secrets Manager names.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

from probes import tomlreader
from probes.tomlreader import KeyPath, format_key_path, iter_key_lines
from probes.tomlreader import quoted_list as _quoted_list
from probes.tomlreader import show as _show

__all__ = [
    "InventoryError",
    "KeyPath",
    "format_key_path",
    "iter_key_lines",
    "load_inventory",
    "parse_inventory",
    "render_command",
]

SUPPORTED_VERSIONS: Final = (1,)

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

_UPDATE_FIELDS: Final = ("root", "service", "host", "address")
_COMMAND_FIELDS: Final = _UPDATE_FIELDS  # every host command template: update, running_check, logs, telpro
_HEALTH_FIELDS: Final = ("address", "host", "service")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_KEY_OWNER = re.compile(r"[0-9]+:[0-9]+\Z")

_S = TypeVar("_S", bound=str)

# Names that AWS and the file system accept (refused on load, naming the rule).
ENV_NAME_MAX: Final = 64  # an environment names files: <state dir>/<env>.jsonl
SSM_NAME_MAX: Final = 1011  # an SSM parameter name, /<namespace>/<service>/<VAR>
SSM_LEVELS_MAX: Final = 15  # levels of an SSM parameter name
SSM_VARIABLE_ROOM: Final = 64  # characters an SSM name keeps free for the variable at its end
SECRET_NAME_MAX: Final = 512  # a Secrets Manager secret name
_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_NAMESPACE_CHARS = re.compile(r"[A-Za-z0-9_./-]+\Z")  # what SSM and Secrets Manager names both accept
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]+\Z")
_SECRET_ARN = re.compile(r"arn:aws[A-Za-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+\Z")
_SECRET_ARN_MAX: Final = 2048


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

_PLACEHOLDER = re.compile(r"\{(" + "|".join(_COMMAND_FIELDS) + r")\}")
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
                f"no environment named {json.dumps(name)}; known environments: "
                f"{_quoted_list(self.env_names)}",
            ) from None


# --------------------------------------------------------------------------------------------
# loading


def _version_problem(value: object) -> str:
    supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
    return (
        f"unsupported inventory version {_show(value)}; this cockpit reads version {supported} "
        "only — upgrade the cockpit, or write the file in a supported version (see docs/inventory.md)"
    )


_VERSIONS: Final = tomlreader.Versions(SUPPORTED_VERSIONS, _version_problem)


def load_inventory(path: Path, *, max_bytes: int = tomlreader.MAX_BYTES) -> Inventory:
    """Read and validate the inventory at `path`; relative local paths resolve against its folder."""
    source = str(path)
    try:
        data = tomlreader.read_file(path, max_bytes=max_bytes)
    except OSError as e:
        raise InventoryError(
            source, None, "", f"cannot read the inventory ({e.strerror or e}); see docs/inventory.md"
        ) from e
    try:
        doc = tomlreader.parse_bytes(data, source, what="an inventory", versions=_VERSIONS, max_bytes=max_bytes)
    except tomlreader.TomlError as e:
        raise InventoryError(e.source, e.line, e.key, e.problem) from None
    return _build_inventory(_Ctx(doc, path.absolute().parent))


def parse_inventory(
    text: str, source: str, *, base_dir: Path | None = None, max_bytes: int = tomlreader.MAX_BYTES
) -> Inventory:
    """Validate inventory `text`. `source` names it in errors; relative local paths resolve
    against `base_dir` (default: the folder of `source`). `max_bytes` is the size limit (1 MiB)."""
    try:
        doc = tomlreader.parse_text(text, source, what="an inventory", versions=_VERSIONS, max_bytes=max_bytes)
    except tomlreader.TomlError as e:
        raise InventoryError(e.source, e.line, e.key, e.problem) from None
    return _build_inventory(_Ctx(doc, base_dir if base_dir is not None else Path(source).absolute().parent))


# --------------------------------------------------------------------------------------------
# validation


class _Wording:
    """The inventory's phrasing: `expected <what>, got <value>`; `required key is missing; add ...`."""

    def wrong(self, key: str, expected: str, got: str) -> str:
        return f"expected {expected}, got {got}"

    def missing(self, path: KeyPath, key: str) -> tuple[KeyPath, str]:
        where = format_key_path(path) or "the top level"
        return (*path, key), f"required key is missing; add `{key} = ...` to {where}"

    def unknown_key(self, key: str, allowed: Sequence[str]) -> str:
        return _unknown_key(key, allowed)


_WORDING: Final = _Wording()


class _Ctx:
    """The document being validated: errors with its lines, and local paths against its folder."""

    def __init__(self, doc: tomlreader.Document, base_dir: Path) -> None:
        self.doc = doc
        self.source = doc.source
        self.base_dir = base_dir

    def line(self, path: KeyPath) -> int:
        return self.doc.line_of(path)

    def error(self, path: KeyPath, problem: str) -> InventoryError:
        return InventoryError(self.source, self.line(path), format_key_path(path), problem)

    def table(self, path: KeyPath, data: Mapping[str, Any], allowed: Sequence[str] | None) -> _Table:
        return _Table(data, path, fail=self.error, wording=_WORDING, allowed=allowed)

    def local_path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base_dir / p


_REQUIRED: Final = tomlreader.REQUIRED


class _Table(tomlreader.Table):
    """A table of the inventory: the shared getters, plus ports, host paths and command templates."""

    def abs_path(self, key: str, default: object = _REQUIRED, *, what: str = "a path on the host") -> str:
        value = self.text(key, default, hint=f' (an absolute {what}, like "/etc/ssl/internal")')
        if not value.startswith("/"):
            raise self.error(key, f"expected an absolute {what} starting with /, got {_show(value)}")
        _no_nul(self, (key,), value)
        return _clean_abs(value)

    def port(self, key: str, default: object) -> int:
        return self.integer(key, default, 1, 65535)

    def positive_float(self, key: str, default: object) -> float:
        """A finite number of seconds > 0."""
        return self.seconds(key, default)

    def template(self, key: str, default: object, fields: Sequence[str]) -> str:
        value = self.text(key, default)
        problem = _template_problem(value, fields)
        if problem:
            raise self.error(key, problem)
        return value


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    near = tomlreader.did_you_mean(key, allowed)
    if near:
        return f"unknown key {_show(key)}; did you mean {json.dumps(near)}?"
    return f"unknown key {_show(key)}; valid keys here: {', '.join(allowed)}"


def _template_problem(value: str, fields: Sequence[str]) -> str:
    known = " ".join("{" + f + "}" for f in fields)
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as e:
        return (
            f"bad placeholder syntax ({e}); placeholders are {known}, write {{{{ and }}}} for literal braces"
        )
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in fields or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            near = tomlreader.did_you_mean(name, fields)
            hint = f" (did you mean {{{near}}}?)" if near else ""
            return (
                f"unknown placeholder {shown}{hint}; placeholders are {known}, "
                "write {{ and }} for literal braces"
            )
    return ""


def _clean_abs(value: str) -> str:
    """A normalised absolute POSIX path: no trailing slash (except "/"), no "." or ".." parts."""
    out = posixpath.normpath(value)
    return "/" + out.lstrip("/") if out.startswith("//") else out


_TOP_KEYS: Final = ("version", "default_env", "environments")
_ENV_KEYS: Final = (
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
_SSH_KEYS: Final = (
    "known_hosts",
    "identity_files",
    "config",
    "connect_timeout",
    "command_timeout",
    "max_channels",
    "max_connects_in_flight",
)
_BASTION_KEYS: Final = ("address", "port", "user")
_DATABASE_KEYS: Final = (
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
_CREDENTIAL_KEYS: Final = (
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
_TLS_KEYS: Final = ("layout", "secret_suffix", "name")
_STORE_KEYS: Final = ("kind", "path")
_COMMAND_KEYS: Final = ("update", "telpro_ssl_check", "read_only")
_SERVICE_KEYS: Final = (
    "role",
    "vars",
    "health_url",
    "pre_restart",
    "consumes",
    "tls_material",
    "running_check",
    "logs",
)
_HOST_KEYS: Final = ("name", "address", "port", "user", "service", "jump", "root")


def _build_inventory(ctx: _Ctx) -> Inventory:
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
    top = ctx.table((), raw, _TOP_KEYS)
    env_tables = top.raw_table("environments")
    if not env_tables:
        raise top.error(
            "environments", "no environment is defined; add at least one [environments.<name>] table"
        )
    envs: dict[str, Environment] = {}
    for name, data in env_tables.items():
        path: KeyPath = ("environments", name)
        if problem := env_name_problem(name):
            raise ctx.error(path, problem)
        if not isinstance(data, dict):
            raise ctx.error(path, f"expected a table [environments.{name}], got {_show(data)}")
        envs[name] = _build_environment(ctx, name, ctx.table(path, data, _ENV_KEYS))

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

    default_env = top.text("default_env", "")
    if default_env:
        if default_env not in envs:
            near = tomlreader.did_you_mean(default_env, names)
            hint = f"did you mean {json.dumps(near)}? " if near else ""
            raise top.error(
                "default_env",
                f"names no environment ({json.dumps(default_env)}); {hint}known environments: "
                f"{_quoted_list(names)}",
            )
    elif len(envs) == 1:
        default_env = names[0]
    return Inventory(
        version=version, default_env=default_env, environments=MappingProxyType(envs), source=ctx.source
    )


def _build_environment(ctx: _Ctx, name: str, t: _Table) -> Environment:
    namespace = t.text(
        "namespace", nonempty=True, hint=' (the platform\'s NAMESPACE, like "voiceai/staging")'
    )
    if namespace.startswith("/") or namespace.endswith("/"):
        raise t.error(
            "namespace", f'write the namespace without a leading or trailing "/", got {_show(namespace)}'
        )
    if problem := namespace_problem(namespace):
        raise t.error("namespace", problem)
    region = t.text("region", "")
    profile = t.text("profile", "")
    endpoint_url = t.text("endpoint_url", "")
    protected = t.flag("protected", False)
    after = t.text("after", "")
    managed = t.flag("managed_database", False)

    ssh = _build_ssh(ctx, t.table("ssh", _SSH_KEYS))

    bastion: Bastion | None = None
    if (bt := t.table("bastion", _BASTION_KEYS)) is not None:
        bastion = Bastion(
            address=bt.text("address", nonempty=True), port=bt.port("port", 22), user=bt.text("user", "")
        )

    dt = t.table("database", _DATABASE_KEYS, required=not managed)
    database = _build_database(dt, managed)

    _refuse_passwords(ctx, t)
    ct = t.table("credentials", _CREDENTIAL_KEYS)
    credentials = _build_credentials(ct, namespace)

    tls = TlsSecrets()
    if (tt := t.table("tls_secrets", _TLS_KEYS)) is not None:
        tls = _build_tls_secrets(tt)

    store = ConfigStore()
    if (st := t.table("config_store", _STORE_KEYS)) is not None:
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
        store = ConfigStore(kind=kind, path=path)

    paths = _build_paths(ctx, t)

    commands = Commands()
    if (cmt := t.table("commands", _COMMAND_KEYS)) is not None:
        commands = Commands(
            update=cmt.template("update", DEFAULT_UPDATE_COMMAND, _UPDATE_FIELDS),
            telpro_ssl_check=cmt.text("telpro_ssl_check", DEFAULT_TELPRO_SSL_CHECK, nonempty=True),
            read_only=cmt.enum_list("read_only", READ_ONLY_COMMANDS, ()),
        )
        if not commands.update.strip():
            raise cmt.error("update", "must not be empty; give the command that restarts a service")

    services: dict[str, ServiceSettings] = {}
    service_tables = t.raw_table("services") or {}
    for sname, sdata in service_tables.items():
        spath: KeyPath = (*t.path, "services", sname)
        _check_service_name(ctx, spath, sname)
        if not isinstance(sdata, dict):
            raise ctx.error(spath, f"expected a table [{format_key_path(spath)}], got {_show(sdata)}")
        services[sname] = _build_service(sname, ctx.table(spath, sdata, _SERVICE_KEYS))

    hosts = _build_hosts(ctx, t, bastion)
    for h in hosts:
        if h.service not in services:
            services[h.service] = _default_service(h.service)

    if not managed:
        _check_database_host(ctx, t.path, database, hosts, services)

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
    origins: dict[str, KeyPath] = {s: (*t.path, "services", s) for s in service_tables}
    for i, h in enumerate(hosts):
        origins.setdefault(h.service, (*t.path, "hosts", i, "service"))
    _check_aws_names(ctx, t, env, origins)
    return env


def _build_tls_secrets(tt: _Table) -> TlsSecrets:
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


def env_name_problem(name: str) -> str:
    """Why `name` cannot name an environment ("" when it can): it names files, <env>.jsonl."""
    if _ENV_NAME.match(name) and ".." not in name and len(name) <= ENV_NAME_MAX:
        return ""
    return (
        f"bad environment name {_show(name)}; use letters, digits, '_', '-' and '.', starting with a letter "
        f'or digit, without "..", at most {ENV_NAME_MAX} characters (the cockpit names files after it: '
        "<env>.jsonl)"
    )


def namespace_problem(namespace: str) -> str:
    """Why SSM or Secrets Manager would refuse names under `namespace` ("" when they accept them)."""
    if not _NAMESPACE_CHARS.match(namespace):
        return (
            f"the namespace may hold only letters, digits, '_', '.', '-' and '/' (what SSM parameter names "
            f"and Secrets Manager names both accept), got {_show(namespace)}"
        )
    if "//" in namespace:
        return f'the namespace has an empty level ("//"), which SSM parameter names refuse; got {_show(namespace)}'
    if namespace.lower().startswith(("aws", "ssm")):
        return (
            'SSM refuses parameter names that begin with "aws" or "ssm" (in any case), and every SSM name '
            f"here begins with /<namespace>/; got {_show(namespace)}"
        )
    levels = namespace.count("/") + 3  # /<namespace>/<service>/<VAR>
    if levels > SSM_LEVELS_MAX:
        return (
            f"SSM parameter names have at most {SSM_LEVELS_MAX} levels, and /<namespace>/<service>/<VAR> "
            f"would have {levels}; use a namespace of at most {SSM_LEVELS_MAX - 2} levels"
        )
    return ""


def secret_name_problem(name: str, *, what: str = "a Secrets Manager secret name") -> str:
    """Why Secrets Manager would refuse `name` ("" when it accepts it): letters, digits and /_+=.@-,
    at most 512 characters (an ARN of a secret is accepted as well)."""
    if _SECRET_ARN.match(name) and len(name) <= _SECRET_ARN_MAX:
        return ""
    if not _SECRET_NAME.match(name):
        return f"{what} may hold only letters, digits and /_+=.@- (Secrets Manager's rule), got {_show(name)}"
    if len(name) > SECRET_NAME_MAX:
        return f"{what} is {len(name)} characters long; Secrets Manager allows at most {SECRET_NAME_MAX}"
    return ""


def _check_aws_names(ctx: _Ctx, t: _Table, env: Environment, origins: Mapping[str, KeyPath]) -> None:
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


def _build_ssh(ctx: _Ctx, st: _Table | None) -> SshSettings:
    if st is None:
        return SshSettings(
            known_hosts=ctx.local_path("~/.ssh/known_hosts"), config=ctx.local_path("~/.ssh/config")
        )
    known_hosts = st.text(
        "known_hosts", "~/.ssh/known_hosts", nonempty=True, hint="; host keys are always verified"
    )
    config = st.text("config", "~/.ssh/config")
    identity_files = st.str_list("identity_files", (), nonempty_items=True)
    _no_nul(st, ("known_hosts",), known_hosts)
    _no_nul(st, ("config",), config)
    for i, p in enumerate(identity_files):
        _no_nul(st, ("identity_files", i), p)
    return SshSettings(
        known_hosts=ctx.local_path(known_hosts),
        identity_files=tuple(ctx.local_path(p) for p in identity_files),
        config=ctx.local_path(config) if config else None,
        connect_timeout=st.positive_float("connect_timeout", 10.0),
        command_timeout=st.positive_float("command_timeout", 60.0),
        max_channels=st.integer("max_channels", 6, 1),
        max_connects_in_flight=st.integer("max_connects_in_flight", 8, 1),
    )


def _no_nul(t: _Table, rel: KeyPath, path: str) -> None:
    """A path with a NUL character is refused: no file system can name it (and os.path raises)."""
    if "\x00" in path:
        raise t.error_at(rel, f"a path cannot hold a NUL character, got {_show(path)}")


def _build_database(dt: _Table | None, managed: bool) -> DatabaseSettings:
    if dt is None:  # only when managed_database = true
        return DatabaseSettings(host="", dns_name="")
    required: object = "" if managed else _REQUIRED
    return DatabaseSettings(
        host=dt.text(
            "host", required, nonempty=not managed, hint=" (the name of the database [[hosts]] entry)"
        ),
        dns_name=dt.text(
            "dns_name", required, nonempty=not managed, hint=" (the DNS name the certificate must cover)"
        ),
        access=dt.enum("access", ACCESS_MODES, "tunnel"),
        postgres_port=dt.port("postgres_port", 5432),
        pgbouncer_port=dt.port("pgbouncer_port", 6432),
        redis_port=dt.port("redis_port", 6379),
        redis_tls_port=dt.port("redis_tls_port", 6380),
        dbname=dt.text("dbname", "postgres", nonempty=True),
        key_owner=_key_owner(dt),
        pg_hba_path=dt.abs_path("pg_hba_path", DEFAULT_PG_HBA_PATH, what="container path of pg_hba.conf"),
    )


def _key_owner(dt: _Table) -> str:
    value = dt.text("key_owner", "")
    if value and not _KEY_OWNER.match(value):
        raise dt.error(
            "key_owner",
            f'expected "UID:GID" in digits, like "{DEFAULT_KEY_OWNER}", or "" (read TLS_KEY_OWNER from the '
            f"database service's configuration, else {DEFAULT_KEY_OWNER}), got {_show(value)}",
        )
    return value


_PASSWORD_KEY = re.compile(r"(.*_)?(pass|passwd|password)\Z", re.IGNORECASE)


def _refuse_passwords(ctx: _Ctx, t: _Table) -> None:
    """A password written in the inventory is refused as such, not as a mere unknown key."""
    table = t.raw_table("credentials")
    for key in table or ():
        if key not in _CREDENTIAL_KEYS and _PASSWORD_KEY.match(key):
            named = f"{key}_key" if f"{key}_key" in _CREDENTIAL_KEYS else "postgres_password_key"
            raise ctx.error(
                (*t.path, "credentials", key),
                "a password is never written in the inventory; name the key that holds it in the secret "
                f'(or file) instead, e.g. {named} = "{named.removesuffix("_key").upper()}", and remove {key}',
            )


def _build_credentials(ct: _Table | None, namespace: str) -> Credentials:
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
        pgbouncer_admin_user_key=ct.text(
            "pgbouncer_admin_user_key", d.pgbouncer_admin_user_key, nonempty=True
        ),
        pgbouncer_admin_password_key=ct.text(
            "pgbouncer_admin_password_key", d.pgbouncer_admin_password_key, nonempty=True
        ),
        redis_password_key=ct.text("redis_password_key", d.redis_password_key, nonempty=True),
    )


def _build_paths(ctx: _Ctx, t: _Table) -> Mapping[str, str]:
    table = t.raw_table("paths")
    if table is None:
        return DEFAULT_PATHS
    ptable = ctx.table((*t.path, "paths"), table, None)
    out: dict[str, str] = {}
    for src in table:
        if not src.startswith("/"):
            raise ptable.error(src, "the key must be an absolute container path starting with /")
        out[_clean_abs(src)] = ptable.abs_path(src, what="host path (relative to the host's root)")
    return MappingProxyType(out)


def _default_role(service: str) -> Role:
    return "database" if service == "database" else "app"


def _default_service(service: str) -> ServiceSettings:
    role = _default_role(service)
    return ServiceSettings(
        name=service,
        role=role,
        vars=DEFAULT_VARS.format(service=service),
        consumes=DEFAULT_CONSUMES[role],
        tls_material=DEFAULT_TLS_MATERIAL[role],
    )


def service_name_problem(name: str) -> str:
    """Why `name` cannot name a service ("" when it can): it becomes part of SSM and Secrets Manager
    names, /<namespace>/<service>/<VAR>."""
    if _SERVICE_NAME.match(name):
        return ""
    return (
        f"bad service name {_show(name)}; use letters, digits, '_', '-' or '.' "
        "(it becomes part of SSM and Secrets Manager names)"
    )


def _check_service_name(ctx: _Ctx, path: KeyPath, name: str) -> None:
    if name == OTHERS:
        raise ctx.error(
            path, f'"{OTHERS}" is reserved (it means "every remaining service"); rename the service'
        )
    if problem := service_name_problem(name):
        raise ctx.error(path, problem)


def _build_service(name: str, st: _Table) -> ServiceSettings:
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
        vars=_clean_abs(vars_path),
        health_url=st.template("health_url", "", _HEALTH_FIELDS),
        pre_restart=st.text("pre_restart", ""),
        consumes=st.enum_list("consumes", LEGS, DEFAULT_CONSUMES[role]),
        tls_material=material,
        running_check=st.template("running_check", "", _COMMAND_FIELDS),
        logs=st.template("logs", "", _COMMAND_FIELDS),
    )


def _build_hosts(ctx: _Ctx, t: _Table, bastion: Bastion | None) -> list[Host]:
    hosts: list[Host] = []
    by_name: dict[str, int] = {}
    by_endpoint: dict[tuple[str, int], int] = {}
    for i, ht in enumerate(t.tables("hosts", _HOST_KEYS)):
        name = ht.text("name", nonempty=True)
        service = ht.text("service", nonempty=True, hint=' (the platform service, like "api")')
        _check_service_name(ctx, (*ht.path, "service"), service)
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


def _check_database_host(
    ctx: _Ctx,
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
            near = [n] if (n := tomlreader.did_you_mean(database.host, names)) else []
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
