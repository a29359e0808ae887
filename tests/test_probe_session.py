"""The kept-session base the Postgres, PgBouncer and Redis sessions share (`probes.session.KeptSession`) and the
"N of M on plaintext" verdict they share (`probes.plaintext`). The real sessions are tested against real servers
in test_probe_servers; here the lifecycle itself, with an in-memory connection. Fast tier: no server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from probes.model import CheckResult, Verdict
from probes.plaintext import plaintext_verdict
from probes.session import KeptSession


class Refused(Exception):
    """What the fake server answers when it refuses a connection."""


class Stale(Exception):
    """A kept connection that went away (the server restarted)."""


@dataclass
class Conn:
    n: int
    closed: bool = False


@dataclass(frozen=True)
class Facts:
    connected: bool
    results: tuple[CheckResult, ...]
    conn: int | None = None


@dataclass
class Server:
    """What the fake server does next: refuse connects, fail queries, or answer (counting and overlapping)."""

    refuse: bool = False
    fail_next: list[Exception] = field(default_factory=list)
    opened: int = 0
    queries: int = 0
    running: int = 0
    most_at_once: int = 0
    crash_on_open: bool = False


class FakeSession(KeptSession[Conn, int, Facts]):
    check = "fake"
    connect_errors = (Refused,)

    def __init__(self, server: Server) -> None:
        super().__init__("127.0.0.1", 5, timeout=1.0)
        self.server = server

    async def _open(self) -> Conn:
        if self.server.crash_on_open:
            raise KeyError("a bug")
        if self.server.refuse:
            raise Refused("refused")
        self.server.opened += 1
        return Conn(self.server.opened)

    async def _close(self, conn: Conn) -> None:
        conn.closed = True

    def _closed(self, conn: Conn) -> bool:
        return conn.closed

    async def _query(self, conn: Conn) -> int:
        s = self.server
        s.running += 1
        s.most_at_once = max(s.most_at_once, s.running)
        try:
            await asyncio.sleep(0)
            s.queries += 1
            if s.fail_next:
                raise s.fail_next.pop(0)
            return conn.n
        finally:
            s.running -= 1

    def _read(self, raw: int, t0: float) -> Facts:
        return Facts(True, (CheckResult("fake.query", self.target, Verdict.OK, "answered"),), raw)

    def _stale(self, exc: Exception) -> bool:
        return isinstance(exc, Stale)

    def _connect_failed(self, exc: BaseException, t0: float) -> CheckResult:
        return CheckResult("fake.connect", self.target, Verdict.FAIL, f"refused: {exc}")

    def _query_failed(self, exc: Exception, t0: float) -> CheckResult:
        return CheckResult("fake.query", self.target, Verdict.ERROR, f"query failed: {exc}")

    def _facts(self, t0: float, results: list[CheckResult]) -> Facts:
        return Facts(False, tuple(results))


def test_the_connection_opens_lazily_once_and_is_kept() -> None:
    server = Server()
    s = FakeSession(server)
    assert server.opened == 0  # nothing before the first sample

    async def go() -> list[Facts]:
        return [await s.sample() for _ in range(3)]

    facts = asyncio.run(go())
    assert [f.conn for f in facts] == [1, 1, 1] and server.opened == 1 and server.queries == 3


def test_a_stale_kept_connection_is_replaced_at_once_in_the_same_sample() -> None:
    server = Server()
    s = FakeSession(server)

    async def go() -> tuple[Facts, Facts]:
        first = await s.sample()
        server.fail_next.append(Stale("server restarted"))
        return first, await s.sample()

    first, second = asyncio.run(go())
    assert first.conn == 1 and second.connected and second.conn == 2 and server.opened == 2


def test_a_failure_that_is_not_staleness_is_reported_and_the_connection_dropped() -> None:
    server = Server()
    s = FakeSession(server)

    async def go() -> tuple[Facts, Facts]:
        await s.sample()
        server.fail_next.append(TimeoutError())
        failed = await s.sample()
        return failed, await s.sample()

    failed, after = asyncio.run(go())
    assert not failed.connected and failed.results[0].verdict is Verdict.ERROR
    assert server.opened == 2 and after.conn == 2  # no retry within the failed sample; reconnected on the next


def test_a_fresh_connection_is_never_retried() -> None:
    server = Server(fail_next=[Stale("gone at once")])
    facts = asyncio.run(FakeSession(server).sample())
    assert not facts.connected and server.opened == 1 and "query failed" in facts.results[0].summary


def test_a_refused_connect_is_a_result_and_a_bug_is_said_to_be_one() -> None:
    refused = asyncio.run(FakeSession(Server(refuse=True)).sample())
    assert [(r.check, r.verdict) for r in refused.results] == [("fake.connect", Verdict.FAIL)]
    bug = asyncio.run(FakeSession(Server(crash_on_open=True)).sample())
    (r,) = bug.results
    assert r.check == "fake.connect" and r.verdict is Verdict.ERROR and "probe bug (not a server fact)" in r.summary


def test_samples_never_overlap() -> None:
    server = Server()
    s = FakeSession(server)

    async def go() -> None:
        await asyncio.gather(*(s.sample() for _ in range(5)))

    asyncio.run(go())
    assert server.queries == 5 and server.most_at_once == 1


def test_n_of_m_on_plaintext_names_each_client_once() -> None:
    rows = [{"addr": "10.0.0.1"}, {"addr": "10.0.0.2"}, {"addr": "10.0.0.3"}]
    r = plaintext_verdict(
        "x.clients", "db:1", "client", 5, rows, ["voice", "api", "voice"], none="no clients", duration_ms=1.0
    )
    assert r.verdict is Verdict.WARN and r.summary == "3 of 5 client(s) on plaintext: api, voice"
    assert r.evidence == {"total": 5, "tls": 2, "plaintext": rows}
    ok = plaintext_verdict(
        "x.clients", "db:1", "client", 4, [], [], none="no clients", duration_ms=1.0, extra={"hidden": 1}
    )
    assert ok.verdict is Verdict.OK and ok.summary == "all 4 client(s) use TLS" and ok.evidence["hidden"] == 1
    none = plaintext_verdict("x.clients", "db:1", "client", 0, [], [], none="no clients", duration_ms=1.0)
    assert none.verdict is Verdict.OK and none.summary == "no clients"
