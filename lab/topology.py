"""The lab's shape: which hosts exist, their loopback addresses, names and folders.

A `LabSpec` is written to `<lab dir>/lab.json` by `lab up`, so `down`, `status` and
`scenario` work on exactly the fleet that was started.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

APP_SERVICES = ("api", "web", "voice", "ops", "telpro")
DEFAULT_INSTANCES = {"api": 2, "web": 1, "voice": 2, "ops": 1, "telpro": 1}
DB_UID = 70  # the Postgres uid of the official images; the runbook's key owner is 70:70
KEY_OWNER_UID = 999  # the `key-owner` variant's DB uid/gid (a Redis-style container uid)

# Platform variants: each breaks one assumption the default lab shares with the cockpit.
Variant = Literal["no-default-ca", "key-owner", "ca-only-secrets", "probe-not-superuser", "envfile"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
VARIANT_HELP: dict[str, str] = {
    "no-default-ca": 'apps have no default CA path (DATABASE_SSL_CA_FILE defaults to "")',
    "key-owner": f"the DB servers run as uid/gid {KEY_OWNER_UID}; TLS_KEY_OWNER defaults to "
    f'"{KEY_OWNER_UID}:{KEY_OWNER_UID}"',
    "ca-only-secrets": "app services' secrets hold INTERNAL_CA_CRT_B64 only",
    "probe-not-superuser": "the probe is role cockpit_probe (pg_monitor, not superuser); its passwords are "
    "in the secret <namespace>/cockpit/probe",
    "envfile": "rollout variables in /opt/deployment/rollout.env on each host, TLS material in one shared "
    "secret <namespace>/shared/tls, probe credentials in /opt/deployment/probe.env",
    "hostile": "no-default-ca, key-owner, ca-only-secrets and probe-not-superuser at once",
}
HOSTILE: tuple[Variant, ...] = ("no-default-ca", "key-owner", "ca-only-secrets", "probe-not-superuser")

# Names the variants give things (the cockpit's inventory refers to them)
PROBE_ROLE = "cockpit_probe"  # probe-not-superuser: LOGIN, member of pg_monitor
PROBE_CONSOLE_USER = "cockpit_stats"  # probe-not-superuser: PgBouncer stats_users (read-only SHOW)
ROLLOUT_ENV = "/opt/deployment/rollout.env"  # envfile: the rollout variables' host file
PROBE_ENV = "/opt/deployment/probe.env"  # envfile: the probe credentials' host file (database host)


def default_lab_dir() -> Path:
    """Root keeps the lab outside /root, whose 0700 would stop the uid-70 servers reading it."""
    env = os.environ.get("COCKPIT_LAB_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/rollout-cockpit/lab")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "rollout-cockpit" / "lab"


class LabError(Exception):
    """A problem a person can act on; the CLI prints it and exits 1."""


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    service: str  # "bastion", "database", or an app service
    root: str  # the host's filesystem root inside the lab dir

    @property
    def role(self) -> str:
        if self.service in ("bastion", "database"):
            return self.service
        return "app"


@dataclass(frozen=True)
class LabSpec:
    dir: str
    net: str = "127.0.10"  # first three octets of every lab address
    environment: str = "staging"
    project: str = "voiceai"
    region: str = "eu-west-1"
    ssh_port: int = 2222
    aws_port: int = 5000
    postgres_port: int = 5432
    pgbouncer_port: int = 6432
    redis_port: int = 6379
    redis_tls_port: int = 6380
    health_port: int = 8080
    instances: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_INSTANCES))
    variants: tuple[Variant, ...] = ()  # atoms only ("hostile" is expanded by parse_variants)

    def has(self, variant: Variant) -> bool:
        return variant in self.variants

    @property
    def db_uid(self) -> int:
        """The uid (and gid) the DB servers run as."""
        return KEY_OWNER_UID if self.has("key-owner") else DB_UID

    @property
    def key_owner(self) -> str:
        """TLS_KEY_OWNER's manifest default: who owns the decoded server.key."""
        return f"{self.db_uid}:{self.db_uid}"

    @property
    def probe_secret_name(self) -> str:
        return f"{self.namespace}/cockpit/probe"

    @property
    def shared_tls_secret_name(self) -> str:
        return f"{self.namespace}/shared/tls"

    # -- derived names -------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def namespace(self) -> str:
        return f"{self.project}/{self.environment}"

    @property
    def db_dns_name(self) -> str:
        return f"{self.environment}-database-01.{self.project}.internal"

    @property
    def bastion(self) -> LabHost:
        name = f"{self.environment}-bastion-01"
        return LabHost(name, f"{self.net}.1", "bastion", self._root(name))

    @property
    def database(self) -> LabHost:
        name = f"{self.environment}-database-01"
        return LabHost(name, f"{self.net}.2", "database", self._root(name))

    @property
    def aws_address(self) -> str:
        return f"{self.net}.3"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{self.aws_address}:{self.aws_port}"

    def _root(self, name: str) -> str:
        return str(self.path / "hosts" / name)

    def app_hosts(self) -> list[LabHost]:
        out: list[LabHost] = []
        n = 10
        for service in APP_SERVICES:
            for i in range(1, self.instances.get(service, 0) + 1):
                name = f"{self.environment}-{service}-{i:02d}"
                out.append(LabHost(name, f"{self.net}.{n}", service, self._root(name)))
                n += 1
        if n > 255:
            raise ValueError(f"too many instances for one /24 ({n - 10}); at most 245 app instances")
        return out

    def hosts(self) -> list[LabHost]:
        """Every host with an sshd: bastion, database, apps."""
        return [self.bastion, self.database, *self.app_hosts()]

    def host(self, name: str) -> LabHost:
        for h in self.hosts():
            if h.name == name:
                return h
        raise KeyError(f"no lab host named {name!r}")

    # -- persistence ---------------------------------------------------------------------
    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "lab.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> LabSpec:
        f = directory / "lab.json"
        if not f.exists():
            raise FileNotFoundError(f"{f}: no lab here (run `cockpit lab up --dir {directory}` first)")
        data = json.loads(f.read_text())
        data["variants"] = tuple(data.get("variants", ()))
        return cls(**data)


def parse_instances(text: str) -> dict[str, int]:
    """`api=3,voice=4` -> counts merged over the defaults; errors name the bad part."""
    out = dict(DEFAULT_INSTANCES)
    if not text:
        return out
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, count = part.partition("=")
        if not sep or name not in APP_SERVICES or not count.isdigit():
            raise ValueError(
                f"--instances: bad entry {part!r}; expected SERVICE=N with SERVICE one of {', '.join(APP_SERVICES)}"
            )
        out[name] = int(count)
    return out


def parse_variants(text: str) -> tuple[Variant, ...]:
    """`key-owner,envfile` -> the variant atoms in canonical order ("hostile" expanded); errors name the part."""
    chosen: set[str] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part == "hostile":
            chosen.update(HOSTILE)
        elif part in VARIANTS:
            chosen.add(part)
        else:
            raise ValueError(
                f"--variant: unknown variant {part!r}; expected a comma-separated list of "
                f"{', '.join([*VARIANTS, 'hostile'])}"
            )
    return tuple(v for v in VARIANTS if v in chosen)
