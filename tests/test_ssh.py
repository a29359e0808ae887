"""probes.ssh against a real lab: OpenSSH sshd per host, a bastion, Redis on the DB host.

The module starts its own small lab on 127.0.31.x (bastion, database, two api hosts, one web
host) and stops it at the end. Timings are printed (run with `-s` to see them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest

from inventory.load import load_inventory
from inventory.model import Environment, Host
from lab import control, pki, procs, sshd
from lab.netclaim import claim_net, private_dir
from lab.topology import LabSpec
from probes.model import Verdict
from probes.ssh.pool import SshPool
from probes.ssh.reach import check_reachable
from probes.ssh.results import CommandResult, FileStat, SshError, SshErrorKind

pytestmark = pytest.mark.lab

_CLAIM = claim_net()  # held for this test process: no other run uses this net
NET = _CLAIM.net
LAB_DIR = private_dir("cockpit-test-ssh-")
API = "staging-api-01"
API2 = "staging-api-02"
WEB = "staging-web-01"
DB = "staging-database-01"


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def lab() -> Iterator[LabSpec]:
    spec = LabSpec(dir=str(LAB_DIR), net=NET, instances={"api": 2, "web": 1})
    control.check_binaries()  # a missing server package fails here with its name: never skipped
    try:
        control.up(spec)
    except BaseException:
        if (LAB_DIR / "lab.json").exists():
            control.down(LAB_DIR)
        raise
    try:
        yield spec
    finally:
        control.down(LAB_DIR)
        shutil.rmtree(LAB_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def env(lab: LabSpec) -> Environment:
    return load_inventory(lab.path / "inventory.toml").env(None)


@pytest.fixture
async def pool(env: Environment) -> AsyncIterator[SshPool]:
    async with SshPool(env) as p:
        yield p


def with_ssh(env: Environment, **changes: object) -> Environment:
    return dataclasses.replace(env, ssh=dataclasses.replace(env.ssh, **changes))  # type: ignore[arg-type]


def with_hosts(env: Environment, *extra: Host) -> Environment:
    return dataclasses.replace(env, hosts=(*env.hosts, *extra))


def host_key_fingerprint(lab: LabSpec, name: str) -> str:
    key = asyncssh.read_public_key(str(sshd.ssh_dir(lab) / "hostkeys" / f"{name}.pub"))
    return key.get_fingerprint()


def known_hosts_without(lab: LabSpec, name: str, dest: Path, replacement: str = "") -> Path:
    lines = (sshd.ssh_dir(lab) / "known_hosts").read_text().splitlines(keepends=True)
    kept = [line for line in lines if f"[{name}]:" not in line]
    assert len(kept) == len(lines) - 1
    dest.write_text("".join(kept) + replacement)
    return dest


def med(values: list[float]) -> float:
    return round(statistics.median(values), 2)


# --------------------------------------------------------------------------------------------
# commands and reuse


async def test_command_through_bastion(pool: SshPool, env: Environment) -> None:
    host = env.host(API)
    assert host.jump
    r = await pool.run(API, "echo $HOME; echo $SSH_CONNECTION; id -un")
    assert r.error is None and r.exit_status == 0, r
    # the lab's sshd gives sessions a home of its own: no machine login scripts run per command
    assert r.stdout.split()[0] == str(Path(env.ssh.known_hosts).parent / "home")
    server_addr, server_port = r.stdout.split()[3:5]
    assert (server_addr, int(server_port)) == (host.address, host.port)  # it is the app host's sshd
    assert r.stdout.split()[-1] == "root"
    assert pool.connected(API)
    assert pool.connection_count() == 2  # the bastion and the host
    print(f"\nconnect through bastion: {pool.connect_ms(API):.1f} ms; first command {r.duration_ms:.1f} ms")

    failed = await pool.run(API, "echo oops >&2; exit 3")
    assert failed.error is None and failed.exit_status == 3 and failed.stderr == "oops\n"
    assert not failed.ok

    fed = await pool.run(API, "cat", input="fed through stdin")
    assert fed.ok and fed.stdout == "fed through stdin"
    no_stdin = await pool.run(API, "cat")  # stdin is /dev/null without input: no hang
    assert no_stdin.ok and no_stdin.stdout == ""

    slow = await pool.run(API, "echo started; sleep 10", timeout=2.5)
    assert slow.error_kind is SshErrorKind.TIMEOUT and slow.error is not None
    assert slow.error.startswith("timed out after 2.5 s")
    assert slow.duration_ms < 4000

    rtts = [(await pool.run(API, "true")).duration_ms for _ in range(3)]
    print(f"command round trip (remote shell start-up included): median {med(rtts)} ms")
    assert pool.connection_count() == 2 and pool.connect_count(API) == 1

    await pool.aclose()
    assert pool.connection_count() == 0
    closed = await pool.run(API, "true")
    assert closed.error_kind is SshErrorKind.CLOSED


async def test_one_connection_per_host_with_parallel_commands(pool: SshPool, env: Environment) -> None:
    # 30 at once on one host: sshd's MaxSessions is 10, so this passes only through the channel limit
    results = await asyncio.gather(*(pool.run(API, f"echo {i}") for i in range(30)))
    assert [r.error for r in results if not r.ok] == []
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(30)]
    assert pool.connection_count() == 2

    more = await asyncio.gather(
        *(pool.run(h, "true") for h in (API, API2, WEB, DB) for _ in range(5)),
        pool.stat(API, "/"),
        pool.stat(DB, "/"),
    )
    assert all(isinstance(r, FileStat) or (isinstance(r, CommandResult) and r.ok) for r in more), more
    assert pool.connection_count() == 5  # four hosts touched + the bastion
    assert all(pool.connect_count(h) == 1 for h in (API, API2, WEB, DB))


async def test_check_reachable(pool: SshPool) -> None:
    first = await check_reachable(pool, API)
    assert first.verdict is Verdict.OK, first
    assert first.check == "ssh.reachable" and first.evidence["via"].startswith("bastion ")
    assert first.evidence["reused"] is False and "connect_ms" in first.evidence
    again = await check_reachable(pool, API)
    assert again.verdict is Verdict.OK and again.evidence["reused"] is True
    unknown = await check_reachable(pool, "no-such-host")
    assert unknown.verdict is Verdict.ERROR and "no host named 'no-such-host'" in unknown.summary


# --------------------------------------------------------------------------------------------
# SFTP


async def test_sftp_read_stat_and_atomic_write(pool: SshPool, lab: LabSpec) -> None:
    root = Path(lab.host(API).root)
    directory = root / "etc" / "cockpit-test"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    target = directory / "service.env"
    target.write_bytes(b"OLD=1\n")
    os.chown(target, 70, 70)
    os.chmod(target, 0o640)
    inode_before = target.stat().st_ino

    st = await pool.stat(API, str(target))
    assert isinstance(st, FileStat), st
    assert (st.size, st.uid, st.gid, st.permissions, st.is_file) == (6, 70, 70, 0o640, True)
    assert await pool.read_file(API, str(target), 100) == b"OLD=1\n"

    assert await pool.write_file_atomic(API, str(target), b"NEW=2\n") is None
    after = target.stat()
    assert target.read_bytes() == b"NEW=2\n"
    assert (after.st_uid, after.st_gid, after.st_mode & 0o7777) == (70, 70, 0o640)
    assert after.st_ino != inode_before  # replaced by rename, not rewritten in place
    assert sorted(p.name for p in directory.iterdir()) == ["service.env"]  # no temp file left

    fresh = directory / "fresh.txt"
    assert await pool.write_file_atomic(API, str(fresh), b"x", mode=0o600) is None
    assert fresh.stat().st_mode & 0o7777 == 0o600

    too_large = await pool.read_file(API, str(target), 3)
    assert isinstance(too_large, SshError) and too_large.kind is SshErrorKind.TOO_LARGE
    missing = await pool.read_file(API, str(directory / "nope"), 100)
    assert isinstance(missing, SshError) and missing.kind is SshErrorKind.NO_SUCH_FILE
    no_dir = await pool.write_file_atomic(API, str(directory / "nodir" / "f"), b"x")
    assert isinstance(no_dir, SshError) and no_dir.kind is SshErrorKind.NO_SUCH_FILE

    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        assert isinstance(await pool.stat(API, str(target)), FileStat)
        times.append((time.perf_counter() - t0) * 1000)
    print(f"\nSFTP stat over the held session: median {med(times)} ms")
    assert pool.connection_count() == 2


def _local_proc_net_tcp() -> str:
    return Path("/proc/net/tcp").read_text()


async def test_read_head_stops_when_the_caller_has_enough(pool: SshPool, lab: LabSpec) -> None:
    """The start of a file, chunk after chunk: reading stops at what the caller needs; the real
    /proc/net/tcp of the host is read only up to its first socket that does not listen."""
    from probes.collect import listening_ports, past_listeners

    directory = Path(lab.host(API).root) / "etc" / "cockpit-test-head"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    big = directory / "big.txt"
    big.write_bytes(b"a" * 20000 + b"STOP" + b"b" * 200000)
    head = await pool.read_head(API, str(big), 1 << 20, lambda d: b"STOP" in d, chunk=8192)
    assert isinstance(head, bytes) and b"STOP" in head and len(head) == 3 * 8192  # three chunks, not 220 kB
    whole = await pool.read_head(API, str(big), 1 << 20, lambda d: False)
    assert whole == big.read_bytes()
    too_large = await pool.read_head(API, str(big), 1000, lambda d: False, chunk=512)
    assert isinstance(too_large, SshError) and too_large.kind is SshErrorKind.TOO_LARGE
    missing = await pool.read_head(API, str(directory / "nope"), 100, lambda d: False)
    assert isinstance(missing, SshError) and missing.kind is SshErrorKind.NO_SUCH_FILE

    tcp = await pool.read_head(API, "/proc/net/tcp", 4 << 20, past_listeners, chunk=4096)
    full = _local_proc_net_tcp()  # the lab's hosts share this machine's network namespace
    assert isinstance(tcp, bytes) and (past_listeners(tcp) or len(tcp) >= len(full) - 4096)
    # every port listening on the API host's address is in the head that was read
    assert listening_ports(tcp.decode(), lab.host(API).address) == listening_ports(full, lab.host(API).address)


# --------------------------------------------------------------------------------------------
# forwards


async def test_forward_to_redis(pool: SshPool, env: Environment, lab: LabSpec) -> None:
    db = env.host(DB)
    addr = await pool.forward(DB, db.address, lab.redis_port)
    assert isinstance(addr, tuple) and addr[0] == "127.0.0.1", addr
    assert await pool.forward(DB, db.address, lab.redis_port) == addr  # cached for the session
    reader, writer = await asyncio.open_connection(*addr)
    try:
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            writer.write(b"PING\r\n")
            await writer.drain()
            reply = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
            times.append((time.perf_counter() - t0) * 1000)
            assert reply.startswith(b"-NOAUTH"), reply  # Redis answered: the tunnel works
    finally:
        writer.close()
    print(f"\nround trip through the forward (PING): median {med(times)} ms")
    assert pool.forward_error(DB, db.address, lab.redis_port) is None
    assert pool.connection_count() == 2

    closed_port = await pool.forward(DB, db.address, 1)  # nothing listens there
    assert isinstance(closed_port, tuple)
    r2, w2 = await asyncio.open_connection(*closed_port)
    assert await asyncio.wait_for(r2.read(), 5) == b""  # closed: the channel could not open
    w2.close()
    error = pool.forward_error(DB, db.address, 1)
    assert error is not None and error.kind is SshErrorKind.CHANNEL, error

    unknown = await pool.forward("no-such-host", db.address, 1)
    assert isinstance(unknown, SshError) and unknown.kind is SshErrorKind.UNKNOWN_HOST


async def test_tls_through_forward_is_not_delayed(pool: SshPool, env: Environment, tmp_path: Path) -> None:
    """A TLS handshake through the forward costs a few ms, not Nagle + delayed ACK (~40 ms each)."""
    material = pki.make_material("tls.test.internal")
    (tmp_path / "cert.pem").write_bytes(material.cert_pem)
    (tmp_path / "key.pem").write_bytes(material.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cadata=material.ca_pem.decode())

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline():
            writer.write(b"+PONG\r\n")
        writer.close()

    db = env.host(DB)
    server = await asyncio.start_server(answer, db.address, 0, ssl=server_ctx)
    try:
        port = server.sockets[0].getsockname()[1]
        addr = await pool.forward(DB, db.address, port)
        assert isinstance(addr, tuple), addr
        times = []
        for _ in range(11):
            t0 = time.perf_counter()
            reader, writer = await asyncio.open_connection(*addr, ssl=client_ctx, server_hostname="tls.test.internal")
            writer.write(b"PING\r\n")
            assert await asyncio.wait_for(reader.readline(), 5) == b"+PONG\r\n"
            times.append((time.perf_counter() - t0) * 1000)
            writer.close()
        print(f"\nverified TLS handshake + PING through the forward: median {med(times)} ms {sorted(times)}")
        # with Nagle on sshd's side every handshake waits for a delayed ACK (>= 40 ms): the lower
        # quartile stays clear of load spikes on a busy machine
        assert sorted(times)[len(times) // 4] < 35, times
    finally:
        server.close()


# --------------------------------------------------------------------------------------------
# failures


async def test_unknown_host_key_is_never_accepted(env: Environment, lab: LabSpec, tmp_path: Path) -> None:
    kh = known_hosts_without(lab, API, tmp_path / "known_hosts")
    async with SshPool(with_ssh(env, known_hosts=kh)) as pool:
        r = await pool.run(API, "touch /tmp/should-not-run")
        assert r.error_kind is SshErrorKind.HOST_KEY and r.error is not None and r.exit_status is None
        assert r.error.startswith(f"host key for {API} [{NET}.10]:2222 is not in {kh}"), r.error
        assert f"ssh-keyscan -p 2222 {NET}.10" in r.error
        assert "never accepts unknown keys" in r.error
        assert host_key_fingerprint(lab, API) in r.error  # what to verify with the host's owner
        assert not pool.connected(API) and pool.connection_count() == 1  # only the bastion

        t0 = time.perf_counter()
        again = await pool.run(API, "true")  # in back-off: fails fast with the same message
        assert (time.perf_counter() - t0) < 0.1 and again.error == r.error

        check = await check_reachable(pool, API)
        assert check.verdict is Verdict.FAIL and check.evidence["error_kind"] == "host-key"

        other = await pool.run(API2, "true")  # other hosts are unaffected
        assert other.ok


async def test_changed_host_key_is_refused(env: Environment, lab: LabSpec, tmp_path: Path) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()[:2]
    line = f"[{NET}.10]:2222 {' '.join(impostor)}\n"
    kh = known_hosts_without(lab, API, tmp_path / "known_hosts", replacement=line)
    async with SshPool(with_ssh(env, known_hosts=kh)) as pool:
        r = await pool.run(API, "true")
        assert r.error_kind is SshErrorKind.HOST_KEY and r.error is not None
        assert r.error.startswith(f"host key for {API} [{NET}.10]:2222 changed"), r.error
        assert f"ssh-keygen -R '[{NET}.10]:2222'" in r.error
        assert host_key_fingerprint(lab, API) in r.error
        assert not pool.connected(API)


async def test_wrong_client_key(env: Environment, tmp_path: Path) -> None:
    key = tmp_path / "id_wrong"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key))
    api = env.host(API)
    direct = dataclasses.replace(api, name="api-direct", jump=False)
    async with SshPool(with_hosts(with_ssh(env, identity_files=(key,)), direct)) as pool:
        r = await pool.run("api-direct", "true")
        assert r.error_kind is SshErrorKind.AUTH and r.error is not None
        assert r.error.startswith(f"authentication refused by api-direct [{NET}.10]:2222 for user root")
        jumped = await pool.run(API, "true")  # the bastion refuses first: one clear state
        assert jumped.error_kind is SshErrorKind.BASTION and jumped.error is not None
        assert jumped.error.startswith("bastion unreachable: authentication refused by bastion")
        assert pool.connection_count() == 0


def _start_agent(sock: Path, key: Path) -> subprocess.Popen[bytes]:
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    subprocess.run(
        ["ssh-add", str(key)],
        env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
        check=True,
        capture_output=True,
        timeout=10,
    )
    return agent


async def test_keys_from_the_agent_are_used(
    env: Environment, lab: LabSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No identity file in the inventory: the agent's key logs in (and without the agent, nothing does)."""
    agent = _start_agent(tmp_path / "agent.sock", sshd.client_key(lab))
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
        async with SshPool(with_ssh(env, identity_files=(), config=None)) as pool:
            r = await pool.run(API, "true")
            assert r.ok, r
        monkeypatch.delenv("SSH_AUTH_SOCK")
        async with SshPool(with_ssh(env, identity_files=(), config=None)) as pool:
            refused = await pool.run(API, "true")
            assert refused.error_kind is SshErrorKind.BASTION, refused
    finally:
        agent.terminate()
        agent.wait(5)


async def test_ssh_config_is_honoured(
    env: Environment, lab: LabSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key comes from the ssh config's IdentityFile for the hosts' addresses, as ssh would use it."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {NET}.*\n  IdentityFile {sshd.client_key(lab)}\n  User root\n")
    async with SshPool(with_ssh(env, identity_files=(), config=config)) as pool:
        r = await pool.run(API, "id -un")
        assert r.ok and r.stdout.strip() == "root", r
    async with SshPool(with_ssh(env, identity_files=(), config=None)) as pool:  # the same without it
        assert (await pool.run(API, "true")).error_kind is SshErrorKind.BASTION


async def test_ssh_config_proxyjump_must_agree_with_the_inventory(
    env: Environment, lab: LabSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ProxyJump in the ssh config is never silently ignored (the bastion bypassed): it must be the
    inventory's bastion, on a host the inventory says is jumped to; anything else is refused, saying what to fix."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = sshd.client_key(lab)
    bastion = f"root@{lab.bastion.address}:{lab.ssh_port}"
    api = next(h for h in env.hosts if h.name == API)
    direct = dataclasses.replace(api, name="api-direct", jump=False)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host {NET}.10\n  ProxyJump {bastion}\n  IdentityFile {key}\n  User root\n"
        f"Host {NET}.*\n  IdentityFile {key}\n  User root\n"
    )
    async with SshPool(
        with_ssh(dataclasses.replace(env, hosts=(*env.hosts, direct)), identity_files=(), config=cfg)
    ) as pool:
        same = await pool.run(API, "true")  # the config's jump host is the inventory's bastion: fine
        assert same.ok, same
        around = await pool.run("api-direct", "true")  # jump = false, but the config sends it through a jump host
        assert around.error_kind is SshErrorKind.CONFIG and "jump = false" in (around.error or ""), around
    cfg.write_text(
        f"Host {NET}.10\n  ProxyJump root@{NET}.77:2222\n  IdentityFile {key}\n  User root\n"
        f"Host {NET}.*\n  IdentityFile {key}\n  User root\n"
    )
    async with SshPool(with_ssh(env, identity_files=(), config=cfg)) as pool:
        other = await pool.run(API, "true")  # another jump host than the inventory's bastion: refused
        assert other.error_kind is SshErrorKind.CONFIG, other
        assert f"{NET}.77" in (other.error or "") and "make them agree" in (other.error or "")


async def test_missing_identity_file_and_unknown_host(env: Environment, tmp_path: Path) -> None:
    pool = SshPool(with_ssh(env, identity_files=(tmp_path / "absent",)))  # construction never raises
    try:
        r = await pool.run(API, "true")
        assert r.error_kind is SshErrorKind.CONFIG and r.error is not None and "absent" in r.error
        missing = await pool.read_file("nope", "/etc/hostname", 10)
        assert isinstance(missing, SshError) and missing.kind is SshErrorKind.UNKNOWN_HOST
    finally:
        await pool.aclose()
    no_file = with_ssh(env, known_hosts=tmp_path / "no_known_hosts")
    async with SshPool(no_file) as pool2:
        r2 = await pool2.run(API, "true")
        assert r2.error is not None and "does not exist" in r2.error and r2.error_kind is SshErrorKind.CONFIG


async def test_unreachable_address_fails_quickly(env: Environment) -> None:
    ghost = Host(name="ghost", address=f"{NET}.250", service="api", port=2222, user="root")
    ghost_jump = dataclasses.replace(ghost, name="ghost-jump", jump=True)
    async with SshPool(with_hosts(env, ghost, ghost_jump)) as pool:
        t0 = time.perf_counter()
        direct, jumped = await asyncio.gather(pool.run("ghost", "true"), pool.run("ghost-jump", "true"))
        elapsed = time.perf_counter() - t0
        assert elapsed < 3, elapsed
        assert direct.error_kind is SshErrorKind.UNREACHABLE, direct
        assert direct.error == f"unreachable: ghost [{NET}.250]:2222 refused the connection"
        assert jumped.error_kind is SshErrorKind.UNREACHABLE, jumped
        assert jumped.error is not None
        assert jumped.error.startswith("unreachable: the bastion could not connect to ghost-jump")
        check = await check_reachable(pool, "ghost")
        assert check.verdict is Verdict.FAIL


async def test_connect_timeout_then_fail_fast(env: Environment) -> None:
    silent = socket.socket()  # accepts TCP (backlog) but never speaks SSH
    silent.bind((f"{NET}.251", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        mute = Host(name="mute", address=f"{NET}.251", service="api", port=port, user="root")
        async with SshPool(with_ssh(with_hosts(env, mute), connect_timeout=1.0)) as pool:
            t0 = time.perf_counter()
            r = await pool.run("mute", "true")
            assert 0.9 < time.perf_counter() - t0 < 3
            assert r.error_kind is SshErrorKind.TIMEOUT and r.error is not None
            assert r.error.startswith("timed out after 1 s connecting to mute")
            t1 = time.perf_counter()
            again = await pool.run("mute", "true")
            assert time.perf_counter() - t1 < 0.1 and again.error == r.error  # back-off: fail fast
    finally:
        silent.close()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _stop_bastion(lab: LabSpec) -> None:
    """Stop the bastion's sshd and the per-connection sshd processes it forked (they would
    otherwise keep established connections alive)."""
    pid = procs.read_pid(sshd.pidfile(lab, lab.bastion))
    assert pid is not None
    children = _children(pid)
    assert sshd.stop(lab, lab.bastion)
    for child in children:
        procs.stop_pid(child, timeout=5)


async def test_bastion_down_then_back(env: Environment, lab: LabSpec) -> None:
    db = env.host(DB)
    async with SshPool(env) as pool:
        assert (await pool.run(API, "true")).ok
        assert isinstance(await pool.stat(DB, "/"), FileStat)
        fwd = await pool.forward(DB, db.address, lab.redis_port)
        assert isinstance(fwd, tuple)
        assert pool.connection_count() == 3
        try:
            _stop_bastion(lab)
            for _ in range(100):  # the drop is noticed as soon as the sockets close
                if pool.connection_count() == 0:
                    break
                await asyncio.sleep(0.05)
            assert pool.connection_count() == 0 and not pool.connected(API)

            results = await asyncio.gather(*(pool.run(h.name, "true") for h in env.hosts))
            assert {r.error_kind for r in results} == {SshErrorKind.BASTION}, results
            assert all(r.error and r.error.startswith("bastion unreachable: ") for r in results)
            assert "refused the connection" in (results[0].error or "")
            check = await check_reachable(pool, API)
            assert check.verdict is Verdict.ERROR and check.summary.startswith("bastion unreachable")
            async with SshPool(env) as fresh:  # a new session sees the same single state
                r = await fresh.run(WEB, "true")
                assert r.error_kind is SshErrorKind.BASTION
        finally:
            sshd.start(lab, lab.bastion)
            sshd.wait_ready(lab, lab.bastion)

        deadline = time.monotonic() + 10
        while True:  # back-off is at most a few seconds after these few failures
            r = await pool.run(API, "true")
            if r.ok or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert r.ok, r
        assert pool.connect_count(API) == 2  # re-established once
        reader, writer = await asyncio.open_connection(*fwd)  # the forward's port survived
        writer.write(b"PING\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).startswith(b"-NOAUTH")
        writer.close()
        assert pool.connection_count() == 3  # bastion, api, database
