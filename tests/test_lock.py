"""The fleet lock against a real moto server (SSM Parameter Store) on a loopback net of its own:
exactly one holder among racing acquirers, no release or break ever ends a newer holder, stale
holders on this machine are named, old generations are cleaned up."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from inventory.load import load_inventory
from inventory.model import Environment
from lab import procs
from lab.netclaim import claimed
from plans.lock import KEEP, FleetLock, LockError, LockInfo, stale_reason
from probes.aws import Aws

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto server of this module's own, on a claimed loopback net."""
    with claimed("cockpit-test-lock-") as (net, _dir):
        address, port = f"{net}.3", 5000
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", address, "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert procs.wait_port(address, port, 30, pid=proc.pid), "moto server did not start"
            yield f"http://{address}:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def inventory(endpoint: str, tmp_path: Path) -> Path:
    """An inventory with a namespace of this test's own (so tests sharing the server never meet)."""
    ns = f"t{uuid.uuid4().hex[:10]}/staging"
    path = tmp_path / "inventory.toml"
    path.write_text(f"""version = 1
default_env = "staging"
[environments.staging]
namespace = "{ns}"
region = "{REGION}"
endpoint_url = "{endpoint}"
managed_database = true
[[environments.staging.hosts]]
name = "staging-api-01"
address = "127.0.0.1"
service = "api"
""")
    return path


@pytest.fixture
def env(inventory: Path) -> Environment:
    return load_inventory(inventory).env()


def new_lock(env: Environment) -> FleetLock:
    return FleetLock(Aws(env), env.namespace)


def ssm_client(env: Environment) -> object:
    return boto3.client("ssm", region_name=REGION, endpoint_url=env.endpoint_url)  # type: ignore[call-overload]


def names(env: Environment) -> list[str]:
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=env.endpoint_url)  # type: ignore[call-overload]
    out: list[str] = []
    kw: dict[str, object] = {"Path": f"/{env.namespace}/cockpit/lock/", "Recursive": True}
    while True:
        page = ssm.get_parameters_by_path(**kw)
        out += [p["Name"].rsplit("/lock/", 1)[1] for p in page["Parameters"]]
        if not page.get("NextToken"):
            return sorted(out)
        kw["NextToken"] = page["NextToken"]


# ------------------------------------------------------------------------------------------------


def test_acquire_release_and_describe(env: Environment) -> None:
    async def go() -> None:
        lock, other = new_lock(env), new_lock(env)
        assert await lock.current() is None
        info = await lock.acquire("pg-2")
        assert lock.held == info and info.generation == 1 and info.step == "pg-2" and info.pid == os.getpid()
        cur = await other.current()
        assert cur is not None and cur.token == info.token and cur.stale is None
        with pytest.raises(LockError, match=r"held by .* \(pid \d+\), step pg-2"):
            await other.acquire("pg-3")
        with pytest.raises(LockError, match="already holds"):
            await lock.acquire("pg-3")
        assert await lock.release() is None and lock.held is None
        assert await other.current() is None
        again = await other.acquire("pg-3")
        assert again.generation == 2
        await other.release()

    asyncio.run(go())
    assert names(env) == ["0000000001", "0000000001/released", "0000000002", "0000000002/released"]


def test_many_concurrent_acquirers_exactly_one_holds(env: Environment) -> None:
    """Ten operators (threads, each with its own event loop and AWS client) race for the lock, five
    rounds in a row: every round exactly one wins, and the lock names that one."""
    clients = [Aws(env) for _ in range(10)]
    for _round in range(5):
        barrier = threading.Barrier(len(clients))
        results: list[LockInfo | BaseException] = []
        locks = [FleetLock(aws, env.namespace) for aws in clients]
        guard = threading.Lock()

        def contender(
            lock: FleetLock, barrier: threading.Barrier, results: list[LockInfo | BaseException], guard: threading.Lock
        ) -> None:
            async def go() -> LockInfo:
                barrier.wait()
                return await lock.acquire("pg-2")

            try:
                out: LockInfo | BaseException = asyncio.run(go())
            except BaseException as exc:
                out = exc
            with guard:
                results.append(out)

        threads = [threading.Thread(target=contender, args=(lk, barrier, results, guard)) for lk in locks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        winners = [r for r in results if isinstance(r, LockInfo)]
        losers = [r for r in results if not isinstance(r, LockInfo)]
        assert len(results) == len(clients)
        assert len(winners) == 1, results
        assert all(isinstance(r, LockError) for r in losers), losers
        holder = asyncio.run(new_lock(env).current())
        assert holder is not None and holder.token == winners[0].token
        (winner,) = [lk for lk in locks if lk.held is not None]
        asyncio.run(winner.release())
        assert asyncio.run(new_lock(env).current()) is None


def test_release_by_a_non_holder_never_removes_the_holder(env: Environment) -> None:
    async def go() -> None:
        first = new_lock(env)
        old = await first.acquire("pg-2")
        await first.release()
        holder = new_lock(env)
        info = await holder.acquire("pg-3")
        # a late release of the older generation (its marker exists: nothing happens)
        late = new_lock(env)
        late.held = old
        await late.release()
        # someone claiming the current generation with another token
        impostor = new_lock(env)
        impostor.held = LockInfo("mallory", "elsewhere", 1, "pg-3", time.time(), "not-the-token", info.generation)
        await impostor.release()
        cur = await new_lock(env).current()
        assert cur is not None and cur.token == info.token
        assert await holder.release() is None  # released by its holder, not broken

    asyncio.run(go())
    assert "0000000002/released" in names(env)


class PausedBreaker(FleetLock):
    """A breaker that stops between reading who holds the lock and marking it broken — the window in
    which the holder releases and someone else acquires. The SSM calls are the real ones."""

    def __init__(self, aws: Aws, namespace: str) -> None:
        super().__init__(aws, namespace)
        self.read_done = asyncio.Event()
        self.resume = asyncio.Event()

    async def _list(self, what: str):  # type: ignore[no-untyped-def]
        listing = await super()._list(what)
        if what == "breaking the lock":
            self.read_done.set()
            await self.resume.wait()
        return listing


def test_a_break_racing_a_release_and_a_new_acquire_never_removes_the_new_holder(env: Environment) -> None:
    async def go() -> None:
        a, b = new_lock(env), new_lock(env)
        aws = Aws(env)
        breaker = PausedBreaker(aws, env.namespace)
        await a.acquire("pg-2")
        task = asyncio.create_task(breaker.break_lock("looked stuck"))
        await breaker.read_done.wait()  # the breaker has seen a's generation as the holder
        await a.release()
        info_b = await b.acquire("pg-3")
        breaker.resume.set()
        ended = await task
        assert ended is None  # a's generation was already released: nothing was broken
        cur = await new_lock(env).current()
        assert cur is not None and cur.token == info_b.token
        assert await b.release() is None  # b's own release; nobody broke b

    asyncio.run(go())


def test_concurrent_release_break_and_acquire_keep_the_invariant(env: Environment) -> None:
    """Unforced interleavings, several rounds: the new holder is only ever ended by a break that
    returned that holder (a break of what it saw, not of a later generation)."""

    async def round_() -> None:
        a, b, breaker = new_lock(env), new_lock(env), new_lock(env)
        await a.acquire("pg-2")

        async def acquire_b() -> LockInfo | None:
            for _ in range(40):
                try:
                    return await b.acquire("pg-3")
                except LockError:
                    await asyncio.sleep(0.01)
            return None

        _, ended, got = await asyncio.gather(a.release(), breaker.break_lock("race"), acquire_b())
        cur = await new_lock(env).current()
        if got is not None and (ended is None or ended.token != got.token):
            assert cur is not None and cur.token == got.token
        if b.held is not None:
            await b.release()

    async def go() -> None:
        for _ in range(6):
            await round_()

    asyncio.run(go())


def test_stale_detection_for_a_dead_pid_on_this_machine(env: Environment) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    info = LockInfo("ops", host, dead.pid, "pg-2", time.time() - 60, "tok", 1)
    assert stale_reason(info) == f"pid {dead.pid} is not running on this machine"
    assert stale_reason(LockInfo("ops", "another-machine", dead.pid, "pg-2", time.time(), "t")) is None
    assert stale_reason(LockInfo("ops", host, os.getpid(), "pg-2", time.time(), "t")) is None
    # a live pid that started after the lock was taken is another process (the pid was reused)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        reused = LockInfo("ops", host, sleeper.pid, "pg-2", time.time() - 3600, "t")
        assert (
            stale_reason(reused) == f"pid {sleeper.pid} on this machine is another process now "
            "(started after the lock was taken)"
        )
        assert stale_reason(LockInfo("ops", host, sleeper.pid, "pg-2", time.time() + 5, "t")) is None
    finally:
        sleeper.kill()
        sleeper.wait()
    # through SSM: a holder written as the dead process left it
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=env.endpoint_url)  # type: ignore[call-overload]
    ssm.put_parameter(Name=f"/{env.namespace}/cockpit/lock/0000000001", Value=info.to_value(), Type="String")
    cur = asyncio.run(new_lock(env).current())
    assert cur is not None and cur.stale == f"pid {dead.pid} is not running on this machine"
    assert "stale: pid" in cur.describe()


def test_old_generations_are_cleaned_up(env: Environment) -> None:
    async def go() -> None:
        lock = new_lock(env)
        for i in range(KEEP + 4):
            await lock.acquire(f"step-{i}")
            await lock.release()

    asyncio.run(go())
    top = KEEP + 4
    # after the last acquire, generations up to top - KEEP were deleted; the newest KEEP remain
    kept = sorted({int(n.split("/")[0]) for n in names(env)})
    assert kept == list(range(top - KEEP + 1, top + 1))
    assert all(f"{g:010d}/released" in names(env) for g in kept)
    # and the lock still works from there
    again = asyncio.run(new_lock(env).acquire("pg-9"))
    assert again.generation == top + 1


class PausedAcquirer(FleetLock):
    """An acquirer that stops after reading the generations, before creating its own."""

    def __init__(self, aws: Aws, namespace: str) -> None:
        super().__init__(aws, namespace)
        self.read_done = asyncio.Event()
        self.resume = asyncio.Event()

    async def _list(self, what: str):  # type: ignore[no-untyped-def]
        listing = await super()._list(what)
        if what == "taking the lock" and not self.read_done.is_set():
            self.read_done.set()
            await self.resume.wait()
        return listing


def test_an_acquirer_paused_across_a_cleanup_never_shares_the_lock(env: Environment) -> None:
    """The acquirer saw generation 0 free and would create 1; meanwhile the lock went round KEEP+2
    times and generation 1 was cleaned up, so its create succeeds — and it must still not hold."""

    async def go() -> None:
        slow = PausedAcquirer(Aws(env), env.namespace)
        task = asyncio.create_task(slow.acquire("pg-2"))
        await slow.read_done.wait()
        busy = new_lock(env)
        for i in range(KEEP + 2):
            await busy.acquire(f"step-{i}")
            if i < KEEP + 1:
                await busy.release()
        assert "0000000001" not in names(env)  # cleaned up
        slow.resume.set()
        with pytest.raises(LockError, match="lost a race"):
            await task
        assert slow.held is None
        cur = await new_lock(env).current()
        assert busy.held is not None and cur is not None and cur.token == busy.held.token
        assert "0000000001/released" in names(env)  # the re-created generation was given up
        await busy.release()

    asyncio.run(go())


HOLD_AND_WAIT = """
import asyncio, sys, time
from pathlib import Path
from plans.lock import FleetLock
from probes.aws import Aws
from inventory.load import load_inventory
env = load_inventory(Path(sys.argv[1])).env()
info = asyncio.run(FleetLock(Aws(env), env.namespace).acquire("pg-4"))
print("held", info.generation, flush=True)
time.sleep(120)
"""


def test_a_lock_left_by_a_killed_process_is_stale_and_can_be_broken(env: Environment, inventory: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, str(inventory)],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COCKPIT_OPERATOR": "night-shift"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("held"), (line, proc.stderr.read() if proc.stderr else "")
        alive = asyncio.run(new_lock(env).current())
        assert alive is not None and alive.pid == proc.pid and alive.stale is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    async def go() -> None:
        lock = new_lock(env)
        cur = await lock.current()
        assert cur is not None and cur.who == "night-shift" and cur.pid == proc.pid
        assert cur.stale == f"pid {proc.pid} is not running on this machine"
        with pytest.raises(LockError, match=r"stale: pid \d+ is not running.*cockpit lock --break"):
            await lock.acquire("pg-4")
        ended = await lock.break_lock("holder was killed")
        assert ended is not None and ended.token == cur.token and ended.stale is not None
        assert await lock.current() is None
        info = await lock.acquire("pg-4")
        assert info.generation == cur.generation + 1
        await lock.release()

    asyncio.run(go())
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=env.endpoint_url)  # type: ignore[call-overload]
    marker = ssm.get_parameter(Name=f"/{env.namespace}/cockpit/lock/0000000001/released")["Parameter"]["Value"]
    assert '"kind": "broken"' in marker and '"reason": "holder was killed"' in marker


def test_a_holder_learns_its_lock_was_broken(env: Environment) -> None:
    async def go() -> None:
        holder, other = new_lock(env), new_lock(env)
        await holder.acquire("pg-2")
        ended = await other.break_lock("maintenance")
        assert ended is not None
        marker = await holder.release()
        assert marker is not None and marker.kind == "broken" and marker.reason == "maintenance"
        assert "broken by" in marker.describe()

    asyncio.run(go())


def test_a_retried_create_that_had_succeeded_is_ours(env: Environment) -> None:
    """botocore retries a create whose answer was lost; the retry meets "already exists" with our own
    value there, which must count as created (else the lock would be held by us and known to nobody)."""

    async def go() -> None:
        lock = new_lock(env)
        name = f"/{env.namespace}/cockpit/lock/0000000001"
        value = LockInfo("ops", "here", 1, "pg-2", time.time(), "tok-a", 1).to_value()
        assert await lock._create(name, value) is True
        assert await lock._create(name, value) is True  # the same create, again: ours
        other = LockInfo("ops", "here", 1, "pg-2", time.time(), "tok-b", 1).to_value()
        assert await lock._create(name, other) is False

    asyncio.run(go())
