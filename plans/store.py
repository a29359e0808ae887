"""The config store's write side: where rollout variables are changed (SSM or a host env file).

Both backends keep the previous value for rollback (SSM keeps every version; the env-file
backend writes a backup next to the file) and replace values atomically. Writes are
compare-and-swap: the caller passes what it previewed, and a store that changed since refuses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from plans import envfile
from probes.aws import Aws, AwsError
from probes.inventory import Environment
from probes.ssh import SshPool


class StoreError(Exception):
    """A write did not happen; the message says why and what to do."""


@dataclass(frozen=True)
class Change:
    """One variable of one service (or one host, for the env-file store) going from → to."""

    service: str
    var: str
    old: str | None  # None = unset
    new: str | None  # None = unset (back to the manifest default)

    def describe(self, env: Environment) -> str:
        where = env.ssm_path(self.service, self.var) if env.config_store.kind == "ssm" else \
            f"{env.config_store.path} [{self.service}] {self.var}"
        return f"{where}: ({_show(self.old)} → {_show(self.new)})"

    def reverse(self) -> Change:
        return Change(self.service, self.var, self.new, self.old)


def _show(v: str | None) -> str:
    return "unset" if v is None else v


class ConfigStore(Protocol):
    async def read(self, service: str, var: str) -> str | None: ...

    async def write(self, change: Change) -> str: ...  # returns a receipt (version, backup path)


class SsmStore:
    """Rollout variables as SSM parameters `/${namespace}/<service>/<VAR>`."""

    def __init__(self, env: Environment, aws: Aws) -> None:
        self.env = env
        self.aws = aws

    async def read(self, service: str, var: str) -> str | None:
        params = await self.aws.parameters_by_path(f"/{self.env.namespace}/{service}/")
        p = params.get(var)
        return p.value if p else None

    async def write(self, change: Change) -> str:
        import asyncio

        current = await self.read(change.service, change.var)
        if current != change.old:
            raise StoreError(f"{change.describe(self.env)} refused: the store now holds {_show(current)} — "
                             "someone changed it since the preview; preview again")
        name = self.env.ssm_path(change.service, change.var)
        ssm: Any = self.aws.ssm
        try:
            if change.new is None:
                if current is not None:
                    await asyncio.to_thread(ssm.delete_parameter, Name=name)
                return f"{name} deleted"
            resp = await asyncio.to_thread(ssm.put_parameter, Name=name, Value=change.new, Type="String",
                                           Overwrite=True)
            return f"{name} version {resp.get('Version')}"
        except Exception as exc:
            from probes.aws import explain

            raise StoreError(explain(exc, f"writing {name}") + "; nothing was restarted") from None


class EnvFileStore:
    """Rollout variables in a KEY=VALUE file on every host of the service (edited in place)."""

    def __init__(self, env: Environment, pool: SshPool) -> None:
        self.env = env
        self.pool = pool
        if not env.config_store.path:
            raise StoreError("config_store.kind = envfile needs config_store.path")

    def _path(self, host_root: str) -> str:
        return host_root.rstrip("/") + self.env.config_store.path

    async def _read_host(self, host_name: str, path: str) -> bytes:
        data = await self.pool.read_file(host_name, path, 1 << 20)
        if isinstance(data, bytes):
            return data
        if getattr(data, "kind", "") == "no-such-file":
            return b""
        raise StoreError(f"{host_name}: cannot read {path}: {data}")

    async def read(self, service: str, var: str) -> str | None:
        hosts = self.env.hosts_for(service)
        if not hosts:
            return None
        data = await self._read_host(hosts[0].name, self._path(hosts[0].root))
        return envfile.get(data, var)

    async def write(self, change: Change) -> str:
        receipts = []
        for host in self.env.hosts_for(change.service):
            path = self._path(host.root)
            data = await self._read_host(host.name, path)
            current = envfile.get(data, change.var)
            if current != change.old:
                raise StoreError(f"{host.name}:{path}: {change.var} is {_show(current)}, expected "
                                 f"{_show(change.old)} — changed since the preview; preview again")
            new = envfile.unset(data, change.var) if change.new is None else \
                envfile.set_value(data, change.var, change.new)
            if data:
                backup = f"{path}.bak-{time.strftime('%Y%m%dT%H%M%S')}"
                err = await self.pool.write_file_atomic(host.name, backup, data, mode=0o600)
                if err is not None:
                    raise StoreError(f"{host.name}: could not write the backup {backup}: {err}; nothing changed")
            err = await self.pool.write_file_atomic(host.name, path, new)
            if err is not None:
                raise StoreError(f"{host.name}: could not replace {path}: {err}")
            receipts.append(f"{host.name}:{path}")
        return "; ".join(receipts)


def make_store(env: Environment, aws: Aws, pool: SshPool) -> ConfigStore:
    if env.config_store.kind == "envfile":
        return EnvFileStore(env, pool)
    return SsmStore(env, aws)


__all__ = ["AwsError", "Change", "ConfigStore", "EnvFileStore", "SsmStore", "StoreError", "make_store"]
