"""An app instance's side of a round: its own reads (the CA files its service uses or will use, whether
its process runs, its health URL, TelPro's build) and, from the database side, its connections.

A read that failed is `Unknown` with its reason — a CA file whose read timed out is not "missing".
Host commands (the running check, TelPro's build check) run only where the inventory defines them,
and in read-only mode (watch) only those the inventory marks read-only.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from inventory.model import Environment, Host, ReadOnlyCommand
from probes.collect.cache import TtlCache
from probes.collect.hostfiles import HostFiles, Missing
from probes.http import KeptHttp
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.snapshot import CaFile, Configured, DatabaseState, InstanceState, LegUse, LegView
from probes.ssh.readonly import ReadOnlyHosts

DEFAULT_CA = "/etc/ssl/internal/ca.crt"
REQUIRING = ("require", "verify-ca", "verify-full")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data.strip()).hexdigest()


@dataclass(frozen=True)
class HostReads:
    """What an instance's own reads returned this round."""

    ca: Mapping[str, bytes | Missing | Unknown] = field(default_factory=dict)  # container path → read
    running: tuple[bool | Unknown, CheckResult | None] = (Unknown(Why.NOT_CHECKED), None)
    telpro: tuple[bool | Unknown, CheckResult | None] = (Unknown(Why.NOT_CHECKED), None)
    health: tuple[bool | Unknown, bool | Unknown, CheckResult | None] = (
        Unknown(Why.NOT_CHECKED),
        Unknown(Why.NOT_CHECKED),
        None,
    )  # healthy, answered (= running), check


class InstanceProbe:
    """Reads one app host; host commands and health answers cached as their nature allows."""

    def __init__(
        self,
        env: Environment,
        hosts: ReadOnlyHosts,
        files: HostFiles,
        *,
        timeout: float,
        read_only: bool,
        command_ttl: float = 3.0,
        telpro_ttl: float = 300.0,
    ) -> None:
        self.env = env
        self.hosts = hosts
        self.files = files
        self.timeout = timeout
        self.read_only = read_only
        self._http = KeptHttp()
        self._running: TtlCache[str, tuple[bool | Unknown, CheckResult]] = TtlCache(command_ttl)
        # the image changes only with a deploy or a restart (the engine invalidates after each)
        self._telpro: TtlCache[str, tuple[bool | Unknown, CheckResult]] = TtlCache(telpro_ttl)

    def close(self) -> None:
        self._http.close()

    def invalidate(self) -> None:
        self._running.clear()
        self._telpro.clear()

    def _may_run(self, name: str) -> bool:
        return not self.read_only or self.env.watch_may_run(name)

    # -------------------------------------------------------------------------------- host reads
    async def reads(self, host: Host, ca_paths: Sequence[str]) -> HostReads:
        settings = self.env.service(host.service)
        url = self.env.health_url(host)

        async def ca(path: str) -> tuple[str, bytes | Missing | Unknown]:
            return path, await self.files.read(host.name, self.env.host_path(host, path))

        async def nothing() -> tuple[bool | Unknown, CheckResult | None]:
            return Unknown(Why.NOT_CHECKED), None

        cas, running, telpro, health = await asyncio.gather(
            asyncio.gather(*(ca(p) for p in ca_paths)),
            self._running_check(host) if settings.running_check else nothing(),
            self._telpro_check(host) if host.service == "telpro" and self.env.commands.telpro_ssl_check else nothing(),
            self._health(host, url) if url else _no_health(),
        )
        return HostReads(dict(cas), running, telpro, health)

    async def _command(
        self, host: Host, name: ReadOnlyCommand, check: str, cache: TtlCache[str, tuple[bool | Unknown, CheckResult]]
    ) -> tuple[bool | Unknown, CheckResult]:
        """One of the inventory's named checks on the host (exit 0: yes, 1: no, else unknown)."""
        cached = cache.get(host.name)
        if cached is not None:
            return cached
        if not self._may_run(name):
            u = Unknown(
                Why.NOT_CHECKED,
                f"{name} is not marked read-only in the inventory ([commands] read_only), so watch does not run it",
            )
            return u, error_result(check, host.name, u.why, u.detail)
        r = await self.hosts.run_check(host.name, name, timeout=self.timeout + 2)
        if r.error is not None:
            u = Unknown(Why.TIMEOUT if "timed out" in r.error else Why.UNREACHABLE, r.error)
            return u, error_result(check, host.name, u.why, f"{name} could not run: {r.error}")
        out: tuple[bool | Unknown, CheckResult]
        if r.exit_status == 0:
            out = True, CheckResult(check, host.name, Verdict.OK, "yes", {"exit_status": 0})
        elif r.exit_status == 1:
            out = False, CheckResult(check, host.name, Verdict.WARN, "no", {"exit_status": 1})
        else:
            tail = (r.stderr or r.stdout).strip()[-200:]
            u = Unknown(Why.NOT_CHECKED, f"{name} failed (exit {r.exit_status}): {tail}")
            out = u, error_result(check, host.name, u.why, u.detail, exit_status=r.exit_status)
        return cache.put(host.name, out)

    async def _running_check(self, host: Host) -> tuple[bool | Unknown, CheckResult | None]:
        running, res = await self._command(host, "running_check", "instance.running", self._running)
        if running is True:
            res = CheckResult(res.check, res.target, Verdict.OK, f"{host.service} is running", res.evidence)
        elif running is False:
            res = CheckResult(
                res.check, res.target, Verdict.WARN, f"{host.service} is not running (stopped)", res.evidence
            )
        return running, res

    async def _telpro_check(self, host: Host) -> tuple[bool | Unknown, CheckResult | None]:
        has, res = await self._command(host, "telpro_ssl_check", "telpro.ssl_build", self._telpro)
        if has is True:
            res = CheckResult(res.check, res.target, Verdict.OK, "image has hiredis_ssl", res.evidence)
        elif has is False:
            res = CheckResult(
                res.check,
                res.target,
                Verdict.WARN,
                "image lacks hiredis_ssl — ship the SSL build before flipping Redis TLS",
                res.evidence,
            )
        return has, res

    async def _health(self, host: Host, url: str) -> tuple[bool | Unknown, bool | Unknown, CheckResult | None]:
        """GET the health URL through a tunnel from that host (its own side of the network).
        Returns (healthy, answered, check): a refused connection means nothing listens there."""
        u = urlsplit(url)
        ep = await self.hosts.forward(host.name, u.hostname or host.address, u.port or 80)
        if not isinstance(ep, tuple):
            unknown = Unknown(Why.UNREACHABLE, f"no tunnel for {url}: {ep}")
            return unknown, unknown, error_result("instance.health", host.name, unknown.why, unknown.detail)
        try:
            async with asyncio.timeout(self.timeout):
                head = await self._http.get(host.name, ep, u.path or "/", u.hostname or host.address)
        except ConnectionRefusedError:
            res = CheckResult("instance.health", host.name, Verdict.FAIL, f"{url}: connection refused (not running?)")
            return False, False, res
        except TimeoutError:
            unknown = Unknown(Why.TIMEOUT, f"{url}: no answer within {self.timeout:g}s")
            return unknown, unknown, error_result("instance.health", host.name, unknown.why, unknown.detail)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if "refused" in str(exc).lower() or (isinstance(exc, asyncio.IncompleteReadError) and not exc.partial):
                res = CheckResult("instance.health", host.name, Verdict.FAIL, f"{url}: no HTTP answer ({exc})")
                return False, False, res
            unknown = Unknown(Why.UNREACHABLE, f"{url}: {type(exc).__name__}: {exc}")
            return unknown, unknown, error_result("instance.health", host.name, unknown.why, unknown.detail)
        parts = head.decode("latin-1").split()
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if code == 200:
            return True, True, CheckResult("instance.health", host.name, Verdict.OK, f"{url}: 200")
        return (
            False,
            True,
            CheckResult("instance.health", host.name, Verdict.FAIL, f"{url}: {code or 'no HTTP answer'}"),
        )

    # -------------------------------------------------------------------------------- the state
    def state(
        self,
        host: Host,
        reachable: bool | Unknown,
        reads: HostReads | Unknown,
        configured: Mapping[str, Configured],
        ca_pem: bytes | None,
        database: DatabaseState | Unknown,
        ca_variables: Sequence[str],
    ) -> InstanceState:
        """The instance as this round saw it: its own reads (or why they are unknown), its configuration,
        and its connections as the database side saw them."""
        settings = self.env.service(host.service)
        unread = _unread(host, reachable, reads)
        ok_reads = reads if isinstance(reads, HostReads) and reachable is True else None
        checks: list[CheckResult] = []
        if ok_reads is None and reachable is not True:
            checks.append(
                error_result(
                    "ssh.reachable", host.name, unread.why, f"instance checks skipped: {unread.detail or 'unreachable'}"
                )
            )
        ca_files, ca_checks = _ca_files(host, ok_reads, configured, ca_pem, unread, ca_variables)
        checks += ca_checks
        running, healthy, telpro, process_checks = self._process(host, ok_reads, unread)
        checks += process_checks
        db_use = _use(database, host.name, ("leg1", "postgres"))
        redis_use = _use(database, host.name, ("redis",))
        drift = _drift(configured, db_use, redis_use)
        checks += _config_checks(host.name, configured, settings.consumes)
        for text in drift:
            checks.append(CheckResult("instance.drift", host.name, Verdict.WARN, text))
        return InstanceState(
            host=host.name,
            service=host.service,
            address=host.address,
            reachable=reachable,
            running=running,
            healthy=healthy,
            ca_files=ca_files,
            telpro_ssl=telpro,
            db=db_use,
            redis=redis_use,
            consumes=tuple(settings.consumes),
            configured=dict(configured),
            drift=tuple(drift),
            checks=tuple(checks),
        )

    def _process(
        self, host: Host, ok_reads: HostReads | None, unread: Unknown
    ) -> tuple[bool | Unknown, bool | Unknown, bool | Unknown, list[CheckResult]]:
        """(running, healthy, TelPro's SSL build, their checks): running from the running check, else from
        whether the health URL answered at all."""
        if ok_reads is None:
            gone = Unknown(unread.why, f"{host.name}: {unread.detail}")
            return gone, gone, gone, []
        healthy, answered, hres = ok_reads.health
        run_v, rres = ok_reads.running
        telpro, tres = ok_reads.telpro
        running = (
            run_v
            if not isinstance(run_v, Unknown) or run_v.why is not Why.NOT_CHECKED
            else (
                answered
                if not isinstance(answered, Unknown) or answered.why is not Why.NOT_CHECKED
                else Unknown(Why.NOT_CHECKED, f"{host.service} has no running check or health URL in the inventory")
            )
        )
        if not self.env.health_url(host):
            healthy = Unknown(Why.NOT_CHECKED, f"{host.service} has no health URL")
        return running, healthy, telpro, [c for c in (hres, rres, tres) if c is not None]


def _unread(host: Host, reachable: bool | Unknown, reads: HostReads | Unknown) -> Unknown:
    """Why the instance's own reads are unknown (NOT_CHECKED when they are not)."""
    if isinstance(reads, Unknown):
        return reads
    if reachable is not True:
        return reachable if isinstance(reachable, Unknown) else Unknown(Why.UNREACHABLE, f"{host.name} is unreachable")
    return Unknown(Why.NOT_CHECKED)


def _ca_files(
    host: Host,
    ok_reads: HostReads | None,
    configured: Mapping[str, Configured],
    ca_pem: bytes | None,
    unread: Unknown,
    ca_variables: Sequence[str],
) -> tuple[dict[str, CaFile | Unknown], list[CheckResult]]:
    """Each CA file read, compared with the internal CA; a check for each path the service uses now."""
    ca_files: dict[str, CaFile | Unknown] = {}
    checks: list[CheckResult] = []
    if ok_reads is None:
        for path in ca_paths_of(configured, ca_variables):
            ca_files[path] = Unknown(unread.why, f"{path} on {host.name}: {unread.detail}")
        return ca_files, checks
    for path, data in ok_reads.ca.items():
        ca_files[path] = _ca_state(data, ca_pem)
    for path in ca_paths_of(configured, ca_variables):
        state = ca_files.get(path)
        if state is None:
            continue
        if isinstance(state, Unknown):
            checks.append(
                error_result("instance.ca_file", host.name, state.why, f"{path}: could not check it: {state.detail}")
            )
        elif state is CaFile.MATCHES:
            checks.append(CheckResult("instance.ca_file", host.name, Verdict.OK, f"{path} is the internal CA"))
        elif state is CaFile.MISSING:
            checks.append(CheckResult("instance.ca_file", host.name, Verdict.FAIL, f"{path} is missing"))
        else:
            checks.append(
                CheckResult(
                    "instance.ca_file",
                    host.name,
                    Verdict.FAIL,
                    f"{path} is not the internal CA in Secrets Manager — restart to re-decode",
                )
            )
    return ca_files, checks


async def _no_health() -> tuple[bool | Unknown, bool | Unknown, CheckResult | None]:
    u = Unknown(Why.NOT_CHECKED, "no health URL")
    return u, u, None


def ca_paths_of(configured: Mapping[str, Configured], ca_variables: Sequence[str]) -> list[str]:
    """The CA paths the service uses now (its configured CA-file variables, else the runbook path)."""
    out: list[str] = []
    for var in ca_variables:
        v = configured.get(var)
        if v is not None and not isinstance(v, Unknown) and v.value and v.value.startswith("/"):
            out.append(v.value)
    return list(dict.fromkeys(out or [DEFAULT_CA]))


def _ca_state(data: bytes | Missing | Unknown, ca_pem: bytes | None) -> CaFile | Unknown:
    if isinstance(data, Unknown):
        return data
    if isinstance(data, Missing):
        return CaFile.MISSING
    if ca_pem is None:
        return Unknown(Why.NOT_CHECKED, "the internal CA is not known (not readable in Secrets Manager)")
    return CaFile.MATCHES if _sha(data) == _sha(ca_pem) else CaFile.DIFFERS


def _use(database: DatabaseState | Unknown, host: str, legs: Sequence[str]) -> LegUse | Unknown:
    if isinstance(database, Unknown):
        return database
    tls = plain = 0
    for leg in legs:
        view = database.leg(leg)  # type: ignore[arg-type]
        if isinstance(view, Unknown):
            return view
        assert isinstance(view, LegView)
        for c in view.connections:
            if c.instance == host:
                if c.tls:
                    tls += 1
                else:
                    plain += 1
    return LegUse(tls, plain)


def _value(configured: Mapping[str, Configured], var: str) -> str | Unknown | None:
    v = configured.get(var)
    if v is None:
        return None
    if isinstance(v, Unknown):
        return v
    return v.value


def _drift(configured: Mapping[str, Configured], db: LegUse | Unknown, redis: LegUse | Unknown) -> list[str]:
    out: list[str] = []
    mode = _value(configured, "DATABASE_SSL_MODE")
    if isinstance(db, LegUse) and db.seen and isinstance(mode, str | None):
        if mode in REQUIRING and db.plain:
            out.append(
                f"DATABASE_SSL_MODE={mode} configured, but connected to PgBouncer in plaintext (not restarted since?)"
            )
        if mode == "disable" and db.tls:
            out.append("DATABASE_SSL_MODE=disable configured, but connected with TLS (not restarted since?)")
    rtls = _value(configured, "REDIS_TLS_ENABLED")
    if isinstance(redis, LegUse) and redis.seen and isinstance(rtls, str | None):
        wants = rtls == "true"
        if (wants and redis.plain) or (not wants and redis.tls):
            out.append(
                f"REDIS_TLS_ENABLED={rtls} configured, but connected to Redis "
                f"{'in plaintext' if wants else 'with TLS'} (not restarted since?)"
            )
    return out


def _config_checks(host: str, configured: Mapping[str, Configured], consumes: Sequence[Any]) -> list[CheckResult]:
    out: list[CheckResult] = []
    mode = _value(configured, "DATABASE_SSL_MODE")
    if "postgres" in consumes and "DATABASE_SSL_MODE" in configured and (mode is None or mode == ""):
        out.append(
            CheckResult(
                "config.sslmode",
                host,
                Verdict.WARN,
                "DATABASE_SSL_MODE unset: the driver's default 'prefer' goes to unverified TLS as soon "
                "as PgBouncer allows it — set it explicitly",
            )
        )
    return out
