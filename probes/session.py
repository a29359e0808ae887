"""One kept connection to a server for repeated `sample()` calls: a refresh every second must not reconnect.

`KeptSession` is the lifecycle the Postgres, PgBouncer and Redis sessions share: the connection opens
lazily (under the session's timeout), is kept between samples, is dropped after any failure, and is opened
again on the next sample — once at once when a kept connection went stale (the server restarted). Samples
never overlap. Nothing raises: a connect or query failure is a result in the facts, and an exception
nobody anticipated is a `bug_result` (`<check>.connect`). Each session says how to open, query, read and
close its own kind of connection.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from typing import ClassVar, Generic, TypeVar

from probes.model import CheckResult, bug_result

C = TypeVar("C")  # the driver's connection
R = TypeVar("R")  # what one round of queries returned
F = TypeVar("F")  # the facts a sample returns


class KeptSession(ABC, Generic[C, R, F]):
    """A kept connection to `host:port`; `sample()` returns facts, never raises."""

    check: ClassVar[str]  # "postgres", "pgbouncer", "redis": the prefix of the session's check ids
    connect_errors: ClassVar[tuple[type[BaseException], ...]] = (Exception,)  # a failed open, as a result

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._conn: C | None = None
        self._lock = asyncio.Lock()

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def sample(self) -> F:
        async with self._lock:
            t0 = time.perf_counter()
            try:
                return await self._sample(t0, retry=True)
            except Exception as exc:
                await self.aclose()
                return self._facts(t0, [bug_result(f"{self.check}.connect", self.target, exc, t0)])

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._close(conn)

    async def _sample(self, t0: float, *, retry: bool) -> F:
        if self._conn is not None and self._closed(self._conn):
            self._conn = None
        reused = self._conn is not None
        if self._conn is None:
            try:
                async with asyncio.timeout(self.timeout):
                    self._conn = await self._open()
            except self.connect_errors as exc:
                return self._facts(t0, [self._connect_failed(exc, t0)])
        conn = self._conn
        try:
            async with asyncio.timeout(self.timeout):
                raw = await self._query(conn)
        except Exception as exc:  # only driver calls: whatever they raise is about the connection
            await self.aclose()
            if reused and retry and self._stale(exc):
                # the kept connection went stale (the server restarted?): one fresh attempt
                return await self._sample(t0, retry=False)
            return self._facts(t0, [self._query_failed(exc, t0)])
        return self._read(raw, t0)

    # -- what each kind of session says ---------------------------------------------------------
    @abstractmethod
    async def _open(self) -> C:
        """A new connection (bounded by the session's timeout)."""

    @abstractmethod
    async def _close(self, conn: C) -> None:
        """Close politely, briefly; never raise."""

    def _closed(self, conn: C) -> bool:
        """True when the kept connection is known to be closed (it is opened again)."""
        return False

    @abstractmethod
    async def _query(self, conn: C) -> R:
        """One round of queries on the connection (bounded by the session's timeout)."""

    @abstractmethod
    def _read(self, raw: R, t0: float) -> F:
        """The facts, and their check results, from what the queries returned."""

    @abstractmethod
    def _stale(self, exc: Exception) -> bool:
        """True when a query failure on a kept connection means it went stale: try once more."""

    @abstractmethod
    def _connect_failed(self, exc: BaseException, t0: float) -> CheckResult:
        """The result of a failed open."""

    @abstractmethod
    def _query_failed(self, exc: Exception, t0: float) -> CheckResult:
        """The result of a failed round of queries."""

    @abstractmethod
    def _facts(self, t0: float, results: list[CheckResult]) -> F:
        """Facts that could not be read, with the results that say why."""
