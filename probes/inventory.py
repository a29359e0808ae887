"""The inventory: one TOML file (format version 1) describing every environment the cockpit drives.

`load_inventory(path)` / `parse_inventory(text, source)` read and validate it into frozen dataclasses.
The format is defined by `docs/inventory.example.toml` and documented in `docs/inventory.md`.

Every problem becomes an `InventoryError` whose message names the file, the 1-based line and the
key path, and says what to do, e.g.::

    inventory.toml:14: environments.staging.database.postgres_port: expected an integer 1-65535, got "abc"

`tomllib` reports no line numbers for keys, so `_Locator` scans the text for them (tables, arrays of
tables with their index, dotted keys, inline tables and arrays); it is best effort and falls back to
the line of the enclosing table.
"""

from __future__ import annotations

import bisect
import difflib
import json
import os
import posixpath
import re
import shlex
import string
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

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
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_KEY_OWNER = re.compile(r"[0-9]+:[0-9]+\Z")

KeyPath = tuple[str | int, ...]
_S = TypeVar("_S", bound=str)


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


def format_key_path(path: KeyPath) -> str:
    """("environments", "staging", "hosts", 0, "port") -> 'environments.staging.hosts[0].port'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        out += f".{text}" if out else text
    return out


def _show(value: object) -> str:
    """A TOML-ish rendering of a parsed value for "got ..." phrases."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__} ({value})"


def _quoted_list(names: Sequence[str]) -> str:
    return ", ".join(json.dumps(n, ensure_ascii=False) for n in names) if names else "(none)"


def _one_of(choices: Sequence[str]) -> str:
    quoted = [json.dumps(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


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


def load_inventory(path: Path) -> Inventory:
    """Read and validate the inventory at `path`; relative local paths resolve against its folder."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InventoryError(
            source, None, "", f"cannot read the inventory ({e.strerror or e}); see docs/inventory.md"
        ) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InventoryError(source, line, "", "the file is not valid UTF-8; save it as UTF-8") from e
    return parse_inventory(text, source, base_dir=path.absolute().parent)


def parse_inventory(text: str, source: str, *, base_dir: Path | None = None) -> Inventory:
    """Validate inventory `text`. `source` names it in errors; relative local paths resolve
    against `base_dir` (default: the folder of `source`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(text, source, e) from None
    ctx = _Ctx(text, source, base_dir if base_dir is not None else Path(source).absolute().parent)
    return _build_inventory(ctx, raw)


_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*\Z")
_AT_END = re.compile(r"\s*\(at end of document\)\s*\Z")


def _syntax_error(text: str, source: str, e: tomllib.TOMLDecodeError) -> InventoryError:
    msg = str(e)
    lineno: int | None = getattr(e, "lineno", None)
    colno: int | None = getattr(e, "colno", None)
    msg = getattr(e, "msg", msg)
    if m := _AT_LINE.search(msg):
        lineno, colno = int(m.group(1)), int(m.group(2))
        msg = msg[: m.start()]
    elif m := _AT_END.search(msg):
        lineno, colno = text.count("\n") + 1, None
        msg = msg[: m.start()] + " (at the end of the file)"
    line = lineno if lineno is not None else 1
    where = f" (column {colno})" if colno is not None else ""
    key = _guess_key_at(text, line)
    return InventoryError(source, line, key, f"TOML syntax error: {msg}{where}; fix the TOML syntax there")


_HEADER_LINE = re.compile(r"\s*(\[\[?)(.*?)\]\]?\s*(#.*)?\Z")
_KEY_LINE = re.compile(r"\s*([^=#\[\s][^=#]*?)\s*=")


def _guess_key_at(text: str, lineno: int) -> str:
    """Best effort for syntax errors (the text does not parse): the table in force at `lineno`
    and the key written on it."""
    lines = text.splitlines()
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}
    for raw in lines[: max(lineno - 1, 0)]:
        m = _HEADER_LINE.match(raw)
        if not m:
            continue
        keys = _split_key(m.group(2))
        if keys is None:
            continue
        if m.group(1) == "[[":
            counts[keys] = counts.get(keys, -1) + 1
            table = (*keys, counts[keys])
        else:
            table = keys
    key: KeyPath = table
    if 0 < lineno <= len(lines):
        m = _HEADER_LINE.match(lines[lineno - 1])
        km = _KEY_LINE.match(lines[lineno - 1])
        if m:
            keys = _split_key(m.group(2))
            key = keys if keys is not None else ()
        elif km:
            keys = _split_key(km.group(1))
            if keys is not None:
                key = table + keys
    return format_key_path(key)


def _split_key(text: str) -> tuple[str, ...] | None:
    try:
        loc = _Locator(text, scan=False)
        keys, pos = loc.keys(0)
        return keys if loc.skip_spaces(pos) == len(text) else None
    except (_ScanError, IndexError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# the key locator


class _ScanError(Exception):
    pass


_ESCAPES: Final = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}


class _Locator:
    """Maps key paths to the 1-based line where they are written. Runs on text that tomllib
    accepted; stops quietly at anything it does not understand (what it found so far stays)."""

    def __init__(self, text: str, *, scan: bool = True) -> None:
        self.text = text
        self.n = len(text)
        self.lines: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        if scan:
            try:
                self._scan()
            except (_ScanError, IndexError, ValueError):
                pass

    def line_of(self, path: KeyPath) -> int:
        """The key's line; else the nearest enclosing table's; else 1."""
        p = path
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return 1

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    # -- scanning ------------------------------------------------------------------------------
    def _mark(self, path: KeyPath, line: int, *, force: bool = False) -> None:
        for i in range(1, len(path) + 1):
            self.lines.setdefault(path[:i], line)
        if force:
            self.lines[path] = line

    def _resolve(self, keys: tuple[str, ...]) -> KeyPath:
        """A header's path, with the current index of each array of tables it passes through."""
        out: KeyPath = ()
        for i, k in enumerate(keys):
            out = (*out, k)
            if i < len(keys) - 1 and out in self._arrays:
                out = (*out, self._arrays[out])
        return out

    def _scan(self) -> None:
        t = self.text
        table: KeyPath = ()
        pos = 0
        while True:
            pos = self.skip_blank(pos)
            if pos >= self.n:
                return
            line = self.line_at(pos)
            if t.startswith("[[", pos):
                keys, pos = self.keys(pos + 2)
                pos = self.expect(pos, "]]")
                path = self._resolve(keys)
                index = self._arrays.get(path, -1) + 1
                self._arrays[path] = index
                table = (*path, index)
                self._mark(table, line, force=True)
            elif t[pos] == "[":
                keys, pos = self.keys(pos + 1)
                pos = self.expect(pos, "]")
                table = self._resolve(keys)
                self._mark(table, line, force=True)
            else:
                keys, pos = self.keys(pos)
                pos = self.expect(pos, "=")
                path = table + keys
                self._mark(path, line)
                pos = self._value(path, self.skip_spaces(pos))

    def skip_spaces(self, pos: int) -> int:
        while pos < self.n and self.text[pos] in " \t":
            pos += 1
        return pos

    def skip_blank(self, pos: int) -> int:
        """Spaces, newlines and comments."""
        t = self.text
        while pos < self.n:
            c = t[pos]
            if c in " \t\r\n":
                pos += 1
            elif c == "#":
                end = t.find("\n", pos)
                pos = self.n if end < 0 else end
            else:
                break
        return pos

    def expect(self, pos: int, token: str) -> int:
        pos = self.skip_spaces(pos)
        if not self.text.startswith(token, pos):
            raise _ScanError(f"expected {token!r} at {pos}")
        return pos + len(token)

    def keys(self, pos: int) -> tuple[tuple[str, ...], int]:
        """A dotted key starting at `pos` (spaces allowed around parts and dots)."""
        t = self.text
        out: list[str] = []
        while True:
            pos = self.skip_spaces(pos)
            c = t[pos]
            if c == '"':
                key, pos = self._basic_string(pos)
            elif c == "'":
                end = t.index("'", pos + 1)
                key, pos = t[pos + 1 : end], end + 1
            else:
                start = pos
                while pos < self.n and (t[pos].isascii() and (t[pos].isalnum() or t[pos] in "_-")):
                    pos += 1
                if pos == start:
                    raise _ScanError(f"no key at {pos}")
                key = t[start:pos]
            out.append(key)
            pos = self.skip_spaces(pos)
            if pos < self.n and t[pos] == ".":
                pos += 1
                continue
            return tuple(out), pos

    def _basic_string(self, pos: int) -> tuple[str, int]:
        t = self.text
        pos += 1
        out: list[str] = []
        while True:
            c = t[pos]
            if c == '"':
                return "".join(out), pos + 1
            if c == "\\":
                e = t[pos + 1]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    pos += 2
                elif e == "u":
                    out.append(chr(int(t[pos + 2 : pos + 6], 16)))
                    pos += 6
                elif e == "U":
                    out.append(chr(int(t[pos + 2 : pos + 10], 16)))
                    pos += 10
                elif e == "x":
                    out.append(chr(int(t[pos + 2 : pos + 4], 16)))
                    pos += 4
                else:
                    raise _ScanError(f"bad escape at {pos}")
            elif c == "\n":
                raise _ScanError(f"newline in string at {pos}")
            else:
                out.append(c)
                pos += 1

    def _value(self, path: KeyPath, pos: int) -> int:
        t = self.text
        if t.startswith('"""', pos) or t.startswith("'''", pos):
            quote = t[pos : pos + 3]
            pos += 3
            while True:
                if quote == '"""' and t[pos] == "\\":
                    pos += 2
                elif t.startswith(quote, pos):
                    pos += 3
                    extra = 0
                    while extra < 2 and pos < self.n and t[pos] == quote[0]:
                        pos += 1
                        extra += 1
                    return pos
                else:
                    pos += 1
        c = t[pos]
        if c == '"':
            return self._basic_string(pos)[1]
        if c == "'":
            return t.index("'", pos + 1) + 1
        if c == "[":
            pos += 1
            index = 0
            while True:
                pos = self.skip_blank(pos)
                if t[pos] == "]":
                    return pos + 1
                element = (*path, index)
                self._mark(element, self.line_at(pos))
                pos = self._value(element, pos)
                index += 1
                pos = self.skip_blank(pos)
                if t[pos] == ",":
                    pos += 1
                elif t[pos] != "]":
                    raise _ScanError(f"bad array at {pos}")
        if c == "{":
            pos += 1
            while True:
                pos = self.skip_blank(pos)
                if t[pos] == "}":
                    return pos + 1
                line = self.line_at(pos)
                keys, pos = self.keys(pos)
                pos = self.expect(pos, "=")
                sub = path + keys
                self._mark(sub, line)
                pos = self._value(sub, self.skip_blank(pos))
                pos = self.skip_blank(pos)
                if t[pos] == ",":
                    pos += 1
                elif t[pos] != "}":
                    raise _ScanError(f"bad inline table at {pos}")
        start = pos
        while pos < self.n and t[pos] not in ",]}\r\n#":
            pos += 1
        if pos == start:
            raise _ScanError(f"no value at {pos}")
        return pos


# --------------------------------------------------------------------------------------------
# validation


class _Ctx:
    def __init__(self, text: str, source: str, base_dir: Path) -> None:
        self.text = text
        self.source = source
        self.base_dir = base_dir
        self._locator: _Locator | None = None

    def line(self, path: KeyPath) -> int:
        if self._locator is None:
            self._locator = _Locator(self.text)
        return self._locator.line_of(path)

    def error(self, path: KeyPath, problem: str) -> InventoryError:
        return InventoryError(self.source, self.line(path), format_key_path(path), problem)

    def local_path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base_dir / p


_REQUIRED: Final = object()


class _Table:
    """One TOML table being read: typed getters, and unknown keys refused up front."""

    def __init__(self, ctx: _Ctx, path: KeyPath, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
        self.ctx = ctx
        self.path = path
        self.data = data
        for key in data:
            if key not in allowed:
                raise ctx.error((*path, key), _unknown_key(key, allowed))

    def error(self, key: str, problem: str) -> InventoryError:
        return self.ctx.error((*self.path, key), problem)

    def _get(self, key: str, default: object) -> object:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            where = format_key_path(self.path) or "the top level"
            raise self.error(key, f"required key is missing; add `{key} = ...` to {where}")
        return default

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, default: object = _REQUIRED, *, nonempty: bool = False, hint: str = "") -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string{hint}, got {_show(value)}")
        if nonempty and not value.strip():
            raise self.error(key, f"must not be empty{hint or '; give a value'}")
        return value

    def abs_path(self, key: str, default: object = _REQUIRED, *, what: str = "a path on the host") -> str:
        value = self.text(key, default, hint=f' (an absolute {what}, like "/etc/ssl/internal")')
        if not value.startswith("/"):
            raise self.error(key, f"expected an absolute {what} starting with /, got {_show(value)}")
        return _clean_abs(value)

    def integer(self, key: str, default: object, lo: int, hi: int | None = None) -> int:
        value = self._get(key, default)
        rng = f" {lo}-{hi}" if hi is not None else f" >= {lo}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer{rng}, got {_show(value)}")
        if value < lo or (hi is not None and value > hi):
            raise self.error(key, f"expected an integer{rng}, got {value}")
        return value

    def port(self, key: str, default: object) -> int:
        return self.integer(key, default, 1, 65535)

    def positive_float(self, key: str, default: object) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.error(key, f"expected a number of seconds > 0, got {_show(value)}")
        return float(value)

    def flag(self, key: str, default: object) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_show(value)}")
        return value

    def enum(self, key: str, choices: Sequence[_S], default: object) -> _S:
        value = self._get(key, default)
        if not isinstance(value, str) or value not in choices:
            near = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
            hint = f"; did you mean {json.dumps(near[0])}?" if near else ""
            raise self.error(key, f"expected {_one_of(choices)}, got {_show(value)}{hint}")
        return choices[choices.index(value)]

    def enum_list(self, key: str, choices: Sequence[_S], default: Sequence[_S]) -> tuple[_S, ...]:
        """An array of distinct names from `choices`, returned in the order of `choices`."""
        value = self._get(key, list(default))
        if not isinstance(value, list):
            raise self.error(key, f"expected an array of {_one_of(choices)}, got {_show(value)}")
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in choices:
                near = difflib.get_close_matches(item, choices, n=1) if isinstance(item, str) else []
                hint = f"; did you mean {json.dumps(near[0])}?" if near else ""
                raise self.ctx.error(
                    (*self.path, key, i), f"expected {_one_of(choices)}, got {_show(item)}{hint}"
                )
            if item in seen:
                raise self.ctx.error((*self.path, key, i), f"{json.dumps(item)} is listed twice; keep one")
            seen.add(item)
        return tuple(c for c in choices if c in seen)

    def str_list(self, key: str, default: Sequence[str]) -> list[str]:
        value = self._get(key, list(default))
        if not isinstance(value, list):
            raise self.error(key, f"expected an array of strings, got {_show(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.ctx.error((*self.path, key, i), f"expected a non-empty string, got {_show(item)}")
        return list(value)

    def table(self, key: str, allowed: Sequence[str], *, required: bool = False) -> _Table | None:
        if key not in self.data:
            if required:
                raise self.error(
                    key, f"required table is missing; add [{format_key_path((*self.path, key))}]"
                )
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_show(value)}")
        return _Table(self.ctx, (*self.path, key), value, allowed)

    def raw_table(self, key: str) -> dict[str, Any] | None:
        """A table whose keys are names (environments, services, paths): no key check."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_show(value)}")
        return value

    def tables(self, key: str, allowed: Sequence[str]) -> list[_Table]:
        """An array of tables ([[key]])."""
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.error(
                key,
                f"expected an array of tables ([[{format_key_path((*self.path, key))}]]), got {_show(value)}",
            )
        out: list[_Table] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.ctx.error((*self.path, key, i), f"expected a table, got {_show(item)}")
            out.append(_Table(self.ctx, (*self.path, key, i), item, allowed))
        return out

    def template(self, key: str, default: object, fields: Sequence[str]) -> str:
        value = self.text(key, default)
        problem = _template_problem(value, fields)
        if problem:
            raise self.error(key, problem)
        return value


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if near:
        return f"unknown key {json.dumps(key)}; did you mean {json.dumps(near[0])}?"
    return f"unknown key {json.dumps(key)}; valid keys here: {', '.join(allowed)}"


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
            near = difflib.get_close_matches(name, fields, n=1)
            hint = f" (did you mean {{{near[0]}}}?)" if near else ""
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


def _build_inventory(ctx: _Ctx, raw: dict[str, Any]) -> Inventory:
    # The version first: a newer file may use keys this loader does not know.
    supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
    if "version" not in raw:
        raise ctx.error(
            ("version",),
            f"required key is missing; add `version = {SUPPORTED_VERSIONS[-1]}` at the top of the file",
        )
    version = raw["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_VERSIONS:
        raise ctx.error(
            ("version",),
            f"unsupported inventory version {_show(version)}; this cockpit reads version {supported} "
            "only — upgrade the cockpit, or write the file in a supported version (see docs/inventory.md)",
        )
    top = _Table(ctx, (), raw, _TOP_KEYS)
    env_tables = top.raw_table("environments")
    if not env_tables:
        raise top.error(
            "environments", "no environment is defined; add at least one [environments.<name>] table"
        )
    envs: dict[str, Environment] = {}
    for name, data in env_tables.items():
        path: KeyPath = ("environments", name)
        if not name.strip():
            raise ctx.error(path, "an environment name must not be empty")
        if not isinstance(data, dict):
            raise ctx.error(path, f"expected a table [environments.{name}], got {_show(data)}")
        envs[name] = _build_environment(ctx, name, _Table(ctx, path, data, _ENV_KEYS))

    names = list(envs)
    for env in envs.values():
        if env.after and env.after not in envs:
            raise ctx.error(
                ("environments", env.name, "after"),
                f"names no environment ({json.dumps(env.after)}); known environments: "
                f'{_quoted_list(names)} ("" = none)',
            )
    for env in envs.values():
        chain = [env.name]
        nxt = env.after
        while nxt:
            if nxt in chain:
                cycle = " → ".join([*chain[chain.index(nxt) :], nxt])
                raise ctx.error(
                    ("environments", env.name, "after"),
                    f"environments wait for each other in a cycle ({cycle}); "
                    'the first environment of a rollout must have after = ""',
                )
            chain.append(nxt)
            nxt = envs[nxt].after

    default_env = top.text("default_env", "")
    if default_env:
        if default_env not in envs:
            near = difflib.get_close_matches(default_env, names, n=1)
            hint = f"did you mean {json.dumps(near[0])}? " if near else ""
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
        services[sname] = _build_service(sname, _Table(ctx, spath, sdata, _SERVICE_KEYS))

    hosts = _build_hosts(ctx, t, bastion)
    for h in hosts:
        if h.service not in services:
            services[h.service] = _default_service(h.service)

    if not managed:
        _check_database_host(ctx, t.path, database, hosts, services)

    return Environment(
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
        if tt.has("secret_suffix"):
            raise tt.error("secret_suffix", 'is not used with layout = "shared" (name is the secret); remove it')
        return TlsSecrets(layout=layout, name=name)
    if tt.has("name"):
        raise tt.error("name", 'is only read with layout = "shared"; remove it, or set layout = "shared"')
    suffix = tt.text("secret_suffix", "secrets", nonempty=True)
    if suffix.startswith("/") or suffix.endswith("/"):
        raise tt.error("secret_suffix", f'write it without a leading or trailing "/", got {_show(suffix)}')
    return TlsSecrets(layout=layout, secret_suffix=suffix)


def _build_ssh(ctx: _Ctx, st: _Table | None) -> SshSettings:
    if st is None:
        return SshSettings(
            known_hosts=ctx.local_path("~/.ssh/known_hosts"), config=ctx.local_path("~/.ssh/config")
        )
    known_hosts = st.text(
        "known_hosts", "~/.ssh/known_hosts", nonempty=True, hint="; host keys are always verified"
    )
    config = st.text("config", "~/.ssh/config")
    return SshSettings(
        known_hosts=ctx.local_path(known_hosts),
        identity_files=tuple(ctx.local_path(p) for p in st.str_list("identity_files", ())),
        config=ctx.local_path(config) if config else None,
        connect_timeout=st.positive_float("connect_timeout", 10.0),
        command_timeout=st.positive_float("command_timeout", 60.0),
        max_channels=st.integer("max_channels", 6, 1),
        max_connects_in_flight=st.integer("max_connects_in_flight", 8, 1),
    )


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
    ptable = _Table(ctx, (*t.path, "paths"), table, tuple(table))
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


def _check_service_name(ctx: _Ctx, path: KeyPath, name: str) -> None:
    if name == OTHERS:
        raise ctx.error(
            path, f'"{OTHERS}" is reserved (it means "every remaining service"); rename the service'
        )
    if not _SERVICE_NAME.match(name):
        raise ctx.error(
            path,
            f"bad service name {json.dumps(name)}; use letters, digits, '_', '-' or '.' "
            "(it becomes part of SSM and Secrets Manager names)",
        )


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
            near = difflib.get_close_matches(database.host, names, n=1)
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


def iter_key_lines(text: str) -> Iterator[tuple[str, int]]:
    """Every key path the locator finds in `text`, with its line (for tests and debugging)."""
    loc = _Locator(text)
    for path, line in loc.lines.items():
        yield format_key_path(path), line
