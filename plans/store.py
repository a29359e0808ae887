"""The config store: where rollout variables are read and changed — SSM parameters, or a KEY=VALUE
file on every host of a service.

One interface for both (`ConfigStore`): `read` (every host must agree), `read_hosts` (each host's
view), `check_writable` (a preflight that writes nothing the platform reads), and `write_all`,
which applies one step's changes all-or-nothing: compare-and-swap first (every current value must
be what the caller previewed), then the writes, and on a failure the ones already made are put
back — the error says what was reverted, or exactly what now holds what when a revert failed too.
The env-file rules (backups, what an unset may delete) are in docs/store.md.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from inventory.model import Environment, Host
from plans import envfile
from probes.aws import Aws, AwsError
from probes.ssh.pool import SshPool
from probes.ssh.results import SshError, SshErrorKind

SSM_MAX_VALUE: Final = 4096  # bytes, standard-tier parameters
ENV_MAX_BYTES: Final = 1 << 20  # an env file larger than this is not one the cockpit edits


class StoreError(Exception):
    """A read or write did not happen (or was undone); the message says why and what to do. `partial`: a
    write failed and could not be wholly undone — the store holds part of the step (the message says what)."""

    def __init__(self, message: str, *, partial: bool = False) -> None:
        super().__init__(message)
        self.partial = partial


class StoreDisagreement(StoreError):
    """The hosts of a service hold different values for one variable; `values` is host -> value."""

    def __init__(self, service: str, var: str, values: Mapping[str, str | None], path: str) -> None:
        self.service = service
        self.var = var
        self.values = dict(values)
        shown = ", ".join(f"{h}={_show(v)}" for h, v in self.values.items())
        super().__init__(
            f"{service}: {var} differs between the hosts' {path}: {shown} — the cockpit does not "
            f"guess which one is right; make them agree, then preview again"
        )


@dataclass(frozen=True)
class Change:
    """One variable of one service going from → to (on every host of it, for the env-file store)."""

    service: str
    var: str
    old: str | None  # None = unset
    new: str | None  # None = unset (back to the manifest default)

    def describe(self, env: Environment) -> str:
        where = (
            env.ssm_path(self.service, self.var)
            if env.config_store.kind == "ssm"
            else f"{env.config_store.path} [{self.service}] {self.var}"
        )
        return f"{where}: ({_show(self.old)} → {_show(self.new)})"

    def reverse(self) -> Change:
        return Change(self.service, self.var, self.new, self.old)


StoreEventKind = Literal["backed-up", "written", "restored"]


@dataclass(frozen=True)
class StoreEvent:
    """Progress of an env-file transaction, for the caller's log: one host's file backed up,
    replaced, or restored after a later host failed."""

    kind: StoreEventKind
    host: str
    path: str
    detail: str = ""  # the backup's path, for "backed-up"


Progress = Callable[[StoreEvent], None]


def _show(v: str | None) -> str:
    return "unset" if v is None else repr(v)


class ConfigStore(Protocol):
    async def read(self, service: str, var: str) -> str | None: ...

    async def read_hosts(self, service: str, vars: Sequence[str]) -> dict[str, dict[str, str | None]]: ...

    async def check_writable(self, service: str) -> None: ...

    async def write_all(self, changes: Sequence[Change], *, progress: Progress | None = None) -> list[str]: ...

    async def write(self, change: Change) -> str: ...


def _check_unique(changes: Sequence[Change]) -> None:
    seen: set[tuple[str, str]] = set()
    for c in changes:
        if (c.service, c.var) in seen:
            raise StoreError(f"{c.service} {c.var} is changed twice in one step; nothing was written")
        seen.add((c.service, c.var))


# ------------------------------------------------------------------------------------------------
# SSM


class SsmStore:
    """Rollout variables as SSM parameters `/${namespace}/<service>/<VAR>`."""

    def __init__(self, env: Environment, aws: Aws) -> None:
        self.env = env
        self.aws = aws

    async def _get(self, name: str) -> str | None:
        try:
            p = await self.aws.get_parameter(name)
        except AwsError as exc:
            raise StoreError(f"reading {name}: {exc.reason}") from None
        return p.value if p is not None else None

    async def read(self, service: str, var: str) -> str | None:
        return await self._get(self.env.ssm_path(service, var))

    async def read_hosts(self, service: str, vars: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """The service's values, the same for each of its hosts (SSM has one value per service)."""
        try:
            params = await self.aws.parameters_by_path(f"/{self.env.namespace}/{service}/")
        except AwsError as exc:
            raise StoreError(str(exc)) from None
        values: dict[str, str | None] = {v: (params[v].value if v in params else None) for v in vars}
        return {h.name: dict(values) for h in self.env.hosts_for(service)}

    async def check_writable(self, service: str) -> None:
        """Put, read back and delete `/${namespace}/cockpit/preflight/<nonce>` — a name nothing on
        the platform reads (a probe under the service's own path would be picked up by a restart)."""
        name = f"/{self.env.namespace}/cockpit/preflight/{os.urandom(6).hex()}"
        value = f"preflight for {service} at {time.time():.0f}"
        try:
            await self.aws.create_parameter(name, value)
        except AwsError as exc:
            raise StoreError(
                f"preflight: writing {name}: {exc.reason} — the cockpit cannot write to SSM; nothing was changed"
            ) from None
        try:
            back = await self._get(name)
            problem = None if back == value else f"preflight: {name} read back as {_show(back)}, not as written"
        except StoreError as exc:
            problem = f"preflight: {exc}"
        try:
            await self.aws.delete_parameter(name)
        except AwsError as exc:
            problem = problem or (
                f"preflight: deleting {name}: {exc.reason} — a rollback that unsets a "
                "variable deletes its parameter and would fail the same way; the probe "
                "parameter is left (nothing reads it): delete it once the policy allows"
            )
        if problem:
            raise StoreError(problem)

    def _validate(self, c: Change) -> None:
        if c.new is None:
            return
        name = self.env.ssm_path(c.service, c.var)
        if c.new == "":
            raise StoreError(f"{name}: SSM cannot hold an empty value (unset it instead); nothing was written")
        if len(c.new.encode()) > SSM_MAX_VALUE:
            raise StoreError(
                f"{name}: the value is {len(c.new.encode())} bytes, more than SSM's {SSM_MAX_VALUE}; "
                "nothing was written"
            )

    async def _apply(self, name: str, current: str | None, new: str | None) -> str:
        """Make `name` hold `new` (None: deleted); `current` is what it holds now. Returns a receipt;
        raises AwsError."""
        if new is None:
            if current is None:
                return f"{name} already unset"
            await self.aws.delete_parameter(name)  # already gone is as good
            return f"{name} deleted"
        version = await self.aws.put_parameter(name, new, new=current is None)
        return f"{name} version {version}"

    async def write_all(self, changes: Sequence[Change], *, progress: Progress | None = None) -> list[str]:
        """Compare-and-swap, then write in order; on a failure revert what was written (see module doc)."""
        _check_unique(changes)
        for c in changes:
            self._validate(c)
        names = [self.env.ssm_path(c.service, c.var) for c in changes]
        currents = await asyncio.gather(*(self._get(n) for n in names))
        for c, name, current in zip(changes, names, currents, strict=True):
            if current != c.old:
                raise StoreError(
                    f"{name} refused: it holds {_show(current)}, the preview showed {_show(c.old)} — "
                    "someone changed it since the preview; preview again (nothing was written)"
                )
        receipts: list[str] = []
        done: list[tuple[str, Change]] = []
        for c, name in zip(changes, names, strict=True):
            try:
                receipts.append(await self._apply(name, c.old, c.new))
            except AwsError as exc:
                text = await self._undo(f"writing {name}: {exc.reason}", name, c, done)
                raise StoreError(text, partial="REVERT FAILED" in text) from None
            done.append((name, c))
        return receipts

    async def _undo(self, failed: str, name: str, change: Change, done: list[tuple[str, Change]]) -> str:
        """Revert `done` (newest first); the message says what was reverted, or what holds what now."""
        try:
            now = await self._get(name)
            state = f"{name} holds {_show(now)}"
        except StoreError:
            state = f"{name} could not be re-read"
        reverted: list[str] = []
        stuck: list[str] = []
        for done_name, c in reversed(done):
            try:
                await self._apply(done_name, c.new, c.old)
                reverted.append(f"{done_name} back to {_show(c.old)}")
            except AwsError as exc:
                stuck.append(
                    f"{done_name} now holds {_show(c.new)} (should be {_show(c.old)}; its revert failed: {exc.reason})"
                )
        parts = [failed, state]
        if stuck:
            parts.append(
                "REVERT FAILED — "
                + "; ".join(stuck)
                + ("; reverted: " + ", ".join(reverted) if reverted else "")
                + " — set those by hand"
            )
        elif reverted:
            parts.append("reverted: " + ", ".join(reverted))
        else:
            parts.append("nothing was written")
        return "; ".join(parts) + "; nothing was restarted"

    async def write(self, change: Change) -> str:
        return (await self.write_all([change]))[0]


# ------------------------------------------------------------------------------------------------
# env file


@dataclass(frozen=True)
class _HostFile:
    """One host's copy of the file, as read, and what a step makes of it."""

    host: Host
    path: str
    data: bytes
    new: bytes


class EnvFileStore:
    """Rollout variables in a KEY=VALUE file on every host of the service (edited in place).

    `clock` names backups (`<file>.bak-<YYYYmmddTHHMMSS.ffffff>-<nonce>`); tests pin it."""

    def __init__(self, env: Environment, pool: SshPool, *, clock: Callable[[], float] = time.time) -> None:
        self.env = env
        self.pool = pool
        self.clock = clock
        if not env.config_store.path:
            raise StoreError("config_store.kind = envfile needs config_store.path")

    def _path(self, host: Host) -> str:
        return self.env.host_path(host, self.env.config_store.path)

    def _hosts(self, service: str) -> tuple[Host, ...]:
        hosts = self.env.hosts_for(service)
        if not hosts:
            raise StoreError(f"{service}: no hosts in the inventory, so no env file to read or write")
        return hosts

    async def _read(self, host: Host, *, must_exist: bool) -> bytes | None:
        path = self._path(host)
        data = await self.pool.read_file(host.name, path, ENV_MAX_BYTES)
        if isinstance(data, bytes):
            return data
        if data.kind == SshErrorKind.NO_SUCH_FILE:
            if must_exist:
                raise StoreError(
                    f"{host.name}: {path} does not exist — the env-file store edits an existing file "
                    "(check config_store.path); nothing was written"
                )
            return None
        raise StoreError(f"{host.name}: cannot read {path}: {data}")

    def _scan(self, host: Host, data: bytes) -> dict[str, str]:
        try:
            return {k: e.value for k, e in envfile.parse(data).items()}
        except envfile.EnvFileError as exc:
            raise StoreError(f"{host.name}: {self._path(host)} {exc} — fix that line first") from None

    async def _values(self, service: str) -> list[tuple[Host, dict[str, str] | None]]:
        hosts = self._hosts(service)
        datas = await asyncio.gather(*(self._read(h, must_exist=False) for h in hosts))
        return [(h, None if d is None else self._scan(h, d)) for h, d in zip(hosts, datas, strict=True)]

    async def read(self, service: str, var: str) -> str | None:
        """The value on every host of the service; StoreDisagreement if they differ (a host without
        the file reads as unset)."""
        _valid_key(var)
        if not self.env.hosts_for(service):
            return None
        per_host = {h.name: (vals or {}).get(var) for h, vals in await self._values(service)}
        if len(set(per_host.values())) > 1:
            raise StoreDisagreement(service, var, per_host, self.env.config_store.path)
        return next(iter(per_host.values()))

    async def read_hosts(self, service: str, vars: Sequence[str]) -> dict[str, dict[str, str | None]]:
        for v in vars:
            _valid_key(v)
        if not self.env.hosts_for(service):
            return {}
        return {h.name: {v: (vals or {}).get(v) for v in vars} for h, vals in await self._values(service)}

    async def check_writable(self, service: str) -> None:
        """Parse every host's file (an unsupported line fails here), then on every host write a temp
        file next to it, read it back and remove it. Nothing the platform reads is touched."""
        hosts = self._hosts(service)
        datas = await asyncio.gather(*(self._read(h, must_exist=True) for h in hosts))
        for h, d in zip(hosts, datas, strict=True):
            self._scan(h, d or b"")
        results = await asyncio.gather(*(self._probe_dir(h) for h in hosts), return_exceptions=True)
        problems = [str(r) for r in results if isinstance(r, BaseException)]
        if problems:
            raise StoreError("; ".join(problems))

    async def _probe_dir(self, host: Host) -> None:
        path = self._path(host)
        directory, base = posixpath.split(path)
        tmp = posixpath.join(directory, f".{base}.cockpit-preflight-{os.urandom(4).hex()}")
        marker = f"cockpit preflight {time.time():.0f}\n".encode()
        err = await self.pool.write_file_atomic(host.name, tmp, marker, mode=0o600)
        if err is not None:
            raise StoreError(f"{host.name}: cannot write next to {path}: {err}")
        try:
            back = await self.pool.read_file(host.name, tmp, 4096)
            if back != marker:
                why = back if isinstance(back, SshError) else f"{len(back)} bytes, not the {len(marker)} written"
                raise StoreError(f"{host.name}: a test file next to {path} did not read back as written ({why})")
        finally:
            r = await self.pool.run(host.name, f"rm -f -- {shlex.quote(tmp)}")
            if not r.ok:
                raise StoreError(
                    f"{host.name}: could not remove the test file {tmp}: "
                    f"{r.error or r.stderr.strip() or f'exit {r.exit_status}'}"
                )

    def _plan(self, host: Host, data: bytes, changes: Sequence[Change]) -> bytes:
        path = self._path(host)
        try:
            values = self._scan(host, data)
        except StoreError as exc:
            raise StoreError(f"{exc}; nothing was written") from None
        new = data
        for c in changes:
            current = values.get(c.var)
            if current != c.old:
                raise StoreError(
                    f"{host.name}: {path}: {c.var} is {_show(current)}, the preview showed "
                    f"{_show(c.old)} — changed since the preview; preview again (nothing was written)"
                )
            try:
                if c.new is not None:
                    new = envfile.set_value(new, c.var, c.new)
                elif c.old is not None:
                    new = envfile.unset_written(new, c.var, c.old)
            except envfile.EnvFileError as exc:
                raise StoreError(f"{host.name}: {path} {exc}; nothing was written") from None
        return new

    async def write_all(self, changes: Sequence[Change], *, progress: Progress | None = None) -> list[str]:
        """One step's changes on every host of their service(s), all-or-nothing (see docs/store.md)."""
        _check_unique(changes)
        for c in changes:
            try:
                envfile.validate_key(c.var)
                if c.new is not None:
                    envfile.validate_value(c.new)
            except envfile.EnvFileError as exc:
                raise StoreError(f"{c.service} {c.var}: {exc}; nothing was written") from None
        services = list(dict.fromkeys(c.service for c in changes))
        hosts = [h for s in services for h in self._hosts(s)]
        datas = await asyncio.gather(*(self._read(h, must_exist=True) for h in hosts))
        files: list[_HostFile] = []
        for h, d in zip(hosts, datas, strict=True):
            data = d or b""
            files.append(
                _HostFile(h, self._path(h), data, self._plan(h, data, [c for c in changes if c.service == h.service]))
            )
        written: list[tuple[_HostFile, str]] = []
        receipts: list[str] = []
        try:
            for f in files:
                if f.new == f.data:
                    receipts.append(f"{f.host.name}:{f.path} unchanged")
                    continue
                backup = await self._replace(f, written, progress)
                receipts.append(f"{f.host.name}:{f.path} (backup {backup})")
        except StoreError as exc:
            text = await self._restore(written, progress)
            raise StoreError(str(exc) + text, partial="RESTORE FAILED" in text) from None
        except BaseException:  # cancelled mid-transaction: put back what was written, then stop
            await asyncio.shield(self._restore(written, progress))
            raise
        return receipts

    async def _replace(self, f: _HostFile, written: list[tuple[_HostFile, str]], progress: Progress | None) -> str:
        """Re-read (it must still be what was planned from), back up, replace (and add it to
        `written` at once, so a failure from here on restores it); the backup's path."""
        name = f.host.name
        now = await self._read(f.host, must_exist=True)
        if now != f.data:
            raise StoreError(f"{name}: {f.path} changed while the step was being written; it was left as it is")
        backup = await self._backup_name(f)
        err = await self.pool.write_file_atomic(name, backup, f.data, mode=0o600)
        if err is not None:
            raise StoreError(f"{name}: could not write the backup {backup}: {err}; {f.path} was left as it is")
        if progress:
            progress(StoreEvent("backed-up", name, f.path, backup))
        err = await self.pool.write_file_atomic(name, f.path, f.new)
        if err is not None:
            raise StoreError(f"{name}: could not replace {f.path}: {err}; it was left as it is")
        written.append((f, backup))
        if progress:
            progress(StoreEvent("written", name, f.path, backup))
        return backup

    async def _backup_name(self, f: _HostFile) -> str:
        """A backup name no file has: timestamp (to the microsecond, so names sort in time order) and a
        random nonce (two writes at the same instant still differ), checked with a stat."""
        now = self.clock()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
        for _ in range(8):
            candidate = f"{f.path}.bak-{stamp}-{os.urandom(4).hex()}"
            st = await self.pool.stat(f.host.name, candidate)
            if isinstance(st, SshError):
                if st.kind == SshErrorKind.NO_SUCH_FILE:
                    return candidate
                raise StoreError(
                    f"{f.host.name}: cannot check the backup name {candidate}: {st}; {f.path} was left as it is"
                )
        raise StoreError(f"{f.host.name}: no free backup name next to {f.path}; it was left as it is")

    async def _restore(self, written: list[tuple[_HostFile, str]], progress: Progress | None) -> str:
        """Put back every host already written (newest first); the sentence that says how it went."""
        if not written:
            return "; no host was changed"
        restored: list[str] = []
        stuck: list[str] = []
        for f, backup in reversed(written):
            err = await self.pool.write_file_atomic(f.host.name, f.path, f.data)
            if err is None:
                restored.append(f.host.name)
                if progress:
                    progress(StoreEvent("restored", f.host.name, f.path, backup))
            else:
                stuck.append(
                    f"{f.host.name}: {f.path} still holds the step's change ({err}) — copy its backup "
                    f"back by hand: cp -p {shlex.quote(backup)} {shlex.quote(f.path)}"
                )
        text = f"; restored {', '.join(restored)} from before the step" if restored else ""
        if stuck:
            text += "; RESTORE FAILED — " + "; ".join(stuck)
        return text

    async def write(self, change: Change) -> str:
        return "; ".join(await self.write_all([change]))


def _valid_key(var: str) -> None:
    try:
        envfile.validate_key(var)
    except envfile.EnvFileError as exc:
        raise StoreError(str(exc)) from None


def make_store(env: Environment, aws: Aws, pool: SshPool) -> ConfigStore:
    if env.config_store.kind == "envfile":
        return EnvFileStore(env, pool)
    return SsmStore(env, aws)


__all__ = [
    "AwsError",
    "Change",
    "ConfigStore",
    "EnvFileStore",
    "Progress",
    "SsmStore",
    "StoreDisagreement",
    "StoreError",
    "StoreEvent",
    "make_store",
]
