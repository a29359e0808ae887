"""The config store on real components: the env-file store on the lab's sshd hosts (staging-api-01
and -02), the SSM store on a moto server of its own with IAM enforced (an admin, and an operator
who may put but not delete parameters, as a too-narrow policy would allow)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from inventory.load import load_inventory
from inventory.model import Environment
from lab import procs
from lab.netclaim import claimed
from lab.topology import LabSpec
from plans.store import Change, EnvFileStore, SsmStore, StoreDisagreement, StoreError, StoreEvent
from probes.aws import Aws
from probes.ssh.pool import SshPool
from tests.tier import servers_allowed

HOSTS = ("staging-api-01", "staging-api-02")
STORE_PATH = "/opt/deployment/rollout-test.env"
FIXED_TIME = 1_700_000_000.25  # every backup of a test made "in the same second"

ORIGINAL = b"# rollout variables\nexport DATABASE_SSL_MODE=disable  # pinned by ops\nOTHER='keep me'\n"


# ------------------------------------------------------------------------------------------------
# env file, on the lab's hosts


@pytest.fixture
def files(lab: LabSpec) -> Iterator[dict[str, Path]]:
    """Each api host's copy of the store file (local paths into the hosts' roots), removed afterwards
    with every backup and temp file next to it."""
    out = {h: Path(lab.host(h).root) / STORE_PATH.lstrip("/") for h in HOSTS}
    for p in out.values():
        p.write_bytes(ORIGINAL)
    yield out
    for p in out.values():
        for leftover in p.parent.iterdir():
            if leftover.name.startswith(("rollout-test.env", ".rollout-test.env")):
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()


@pytest.fixture
def envfile_env(lab: LabSpec, tmp_path: Path) -> Environment:
    inv = tmp_path / "inventory.toml"
    inv.write_text(
        (Path(lab.dir) / "inventory.toml")
        .read_text()
        .replace('kind = "ssm"', f'kind = "envfile"\npath = "{STORE_PATH}"', 1)
    )
    return load_inventory(inv).env()


@pytest.fixture
async def store(envfile_env: Environment) -> AsyncIterator[EnvFileStore]:
    async with SshPool(envfile_env) as pool:
        yield EnvFileStore(envfile_env, pool, clock=lambda: FIXED_TIME)


def neighbours(files: dict[str, Path]) -> dict[str, list[str]]:
    """Every file next to each copy (backups, temp files), by host."""
    return {
        h: sorted(x.name for x in p.parent.iterdir() if "rollout-test" in x.name and x != p) for h, p in files.items()
    }


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".bak-*"))


STEP = [
    Change("api", "DATABASE_SSL_MODE", "disable", "verify-full"),
    Change("api", "DATABASE_SSL_CA_FILE", None, "/etc/ssl/internal/ca.crt"),
]


@pytest.mark.lab
async def test_envfile_hosts_that_disagree_are_named(store: EnvFileStore, files: dict[str, Path]) -> None:
    assert await store.read("api", "DATABASE_SSL_MODE") == "disable"  # the inline comment is not the value
    files["staging-api-02"].write_bytes(ORIGINAL.replace(b"=disable ", b"=verify-full "))
    with pytest.raises(StoreDisagreement) as exc:
        await store.read("api", "DATABASE_SSL_MODE")
    assert "staging-api-01='disable'" in str(exc.value) and "staging-api-02='verify-full'" in str(exc.value)
    assert exc.value.values == {"staging-api-01": "disable", "staging-api-02": "verify-full"}
    assert isinstance(exc.value, StoreError)
    assert await store.read_hosts("api", ["DATABASE_SSL_MODE", "OTHER", "REDIS_TLS_PORT"]) == {
        "staging-api-01": {"DATABASE_SSL_MODE": "disable", "OTHER": "keep me", "REDIS_TLS_PORT": None},
        "staging-api-02": {"DATABASE_SSL_MODE": "verify-full", "OTHER": "keep me", "REDIS_TLS_PORT": None},
    }
    # and a write refuses on the host that differs, before writing anywhere
    with pytest.raises(StoreError, match=r"staging-api-02: .*rollout-test.env: DATABASE_SSL_MODE is 'verify-full'"):
        await store.write_all(STEP)
    assert files["staging-api-01"].read_bytes() == ORIGINAL and neighbours(files) == {h: [] for h in HOSTS}


@pytest.mark.lab
async def test_envfile_step_written_fleet_wide_then_rolled_back(store: EnvFileStore, files: dict[str, Path]) -> None:
    events: list[StoreEvent] = []
    receipts = await store.write_all(STEP, progress=events.append)
    assert len(receipts) == 2 and all("(backup " in r for r in receipts)
    expected = (
        b"# rollout variables\nexport DATABASE_SSL_MODE=verify-full  # pinned by ops\nOTHER='keep me'\n"
        b"DATABASE_SSL_CA_FILE=/etc/ssl/internal/ca.crt\n"
    )
    for p in files.values():
        assert p.read_bytes() == expected  # the var absent from the file was written, not waited on
        (b,) = backups(p)
        assert b.read_bytes() == ORIGINAL and b.stat().st_mode & 0o777 == 0o600
    assert [(e.kind, e.host) for e in events] == [
        ("backed-up", HOSTS[0]),
        ("written", HOSTS[0]),
        ("backed-up", HOSTS[1]),
        ("written", HOSTS[1]),
    ]
    assert await store.read("api", "DATABASE_SSL_CA_FILE") == "/etc/ssl/internal/ca.crt"
    # the rollback: the engine passes the value from before the step where it knows it, else None
    await store.write_all(
        [
            Change("api", "DATABASE_SSL_MODE", "verify-full", "disable"),
            Change("api", "DATABASE_SSL_CA_FILE", "/etc/ssl/internal/ca.crt", None),
        ]
    )
    assert all(p.read_bytes() == ORIGINAL for p in files.values())


@pytest.mark.lab
async def test_envfile_failure_on_the_second_host_restores_the_first(
    store: EnvFileStore, files: dict[str, Path]
) -> None:
    """api-02's file turns into a directory once it is backed up: its replace fails (rename onto a
    directory), and api-01, already written, is restored."""
    events: list[StoreEvent] = []

    def sabotage(e: StoreEvent) -> None:
        events.append(e)
        if e.kind == "backed-up" and e.host == HOSTS[1]:
            files[HOSTS[1]].unlink()
            files[HOSTS[1]].mkdir()

    with pytest.raises(StoreError) as exc:
        await store.write_all(STEP, progress=sabotage)
    msg = str(exc.value)
    assert msg.startswith(f"{HOSTS[1]}: could not replace ") and "rollout-test.env" in msg
    assert f"restored {HOSTS[0]} from before the step" in msg
    assert files[HOSTS[0]].read_bytes() == ORIGINAL
    assert [(e.kind, e.host) for e in events][-1] == ("restored", HOSTS[0])
    assert [b.read_bytes() for b in backups(files[HOSTS[0]])] == [ORIGINAL]  # kept
    assert [b.read_bytes() for b in backups(files[HOSTS[1]])] == [ORIGINAL]
    assert not any(".tmp" in n for names in neighbours(files).values() for n in names)


@pytest.mark.lab
async def test_envfile_host_changed_during_the_step_restores_the_first(
    store: EnvFileStore, files: dict[str, Path]
) -> None:
    def edit_by_hand(e: StoreEvent) -> None:
        if e.kind == "written" and e.host == HOSTS[0]:
            files[HOSTS[1]].write_bytes(ORIGINAL + b"NEW=1\n")

    with pytest.raises(StoreError, match=f"{HOSTS[1]}: .* changed while the step was being written") as exc:
        await store.write_all(STEP, progress=edit_by_hand)
    assert f"restored {HOSTS[0]}" in str(exc.value)
    assert files[HOSTS[0]].read_bytes() == ORIGINAL
    assert files[HOSTS[1]].read_bytes() == ORIGINAL + b"NEW=1\n"  # the hand edit is kept
    assert backups(files[HOSTS[1]]) == []


@pytest.mark.lab
async def test_envfile_interrupted_after_a_host_is_written_restores_it(
    store: EnvFileStore, files: dict[str, Path]
) -> None:
    """Anything that stops the transaction once a host is written (here the caller's own progress
    callback raising) puts that host back before the exception goes on."""
    events: list[StoreEvent] = []

    def stop(e: StoreEvent) -> None:
        events.append(e)
        if e.kind == "written":
            raise RuntimeError("operator pulled the plug")

    with pytest.raises(RuntimeError, match="pulled the plug"):
        await store.write_all(STEP, progress=stop)
    assert [(e.kind, e.host) for e in events] == [
        ("backed-up", HOSTS[0]),
        ("written", HOSTS[0]),
        ("restored", HOSTS[0]),
    ]
    assert all(p.read_bytes() == ORIGINAL for p in files.values())


@pytest.mark.lab
async def test_envfile_unsupported_line_refuses_before_writing(store: EnvFileStore, files: dict[str, Path]) -> None:
    files[HOSTS[1]].write_bytes(ORIGINAL + b"SECRET_TOKEN hunter2\n")
    for attempt in (store.write_all(STEP), store.check_writable("api")):
        with pytest.raises(StoreError) as exc:
            await attempt
        assert str(exc.value).startswith(f"{HOSTS[1]}: /") and "rollout-test.env line 4: expected KEY=VALUE" in str(
            exc.value
        )
        assert "hunter2" not in str(exc.value)
    assert files[HOSTS[0]].read_bytes() == ORIGINAL
    assert neighbours(files) == {h: [] for h in HOSTS}  # no backup, no temp file, anywhere


@pytest.mark.lab
async def test_envfile_backups_within_one_second_are_unique(store: EnvFileStore, files: dict[str, Path]) -> None:
    values = ["disable", "require", "verify-ca", "verify-full"]
    for old, new in itertools.pairwise(values):
        await store.write_all([Change("api", "DATABASE_SSL_MODE", old, new)])
    for p in files.values():
        found = backups(p)
        assert len(found) == 3  # one per write, none overwritten, all stamped with the same instant
        assert len({b.name.rsplit("-", 1)[0] for b in found}) == 1
        held = sorted(b.read_bytes().split(b"DATABASE_SSL_MODE=")[1].split(b" ")[0] for b in found)
        assert held == sorted(v.encode() for v in values[:3])


@pytest.mark.lab
async def test_envfile_unset_keeps_a_line_the_step_did_not_write(store: EnvFileStore, files: dict[str, Path]) -> None:
    await store.write_all([Change("api", "DATABASE_SSL_MODE", "disable", "verify-full")])
    with pytest.raises(
        StoreError,
        match=f"{HOSTS[0]}: .*DATABASE_SSL_MODE is 'verify-full', the preview showed "
        "'disable' — changed since the preview",
    ):
        await store.write_all([Change("api", "DATABASE_SSL_MODE", "disable", None)])  # a stale preview
    # a pinned earlier line the step never wrote: an unset would lose it or leave it in effect
    for p in files.values():
        p.write_bytes(b"DATABASE_SSL_MODE=disable\n" + p.read_bytes())
    with pytest.raises(StoreError, match=r"line 1: DATABASE_SSL_MODE is also assigned here"):
        await store.write_all([Change("api", "DATABASE_SSL_MODE", "verify-full", None)])
    assert all(p.read_bytes().count(b"DATABASE_SSL_MODE=") == 2 for p in files.values())


@pytest.mark.lab
async def test_envfile_check_writable(store: EnvFileStore, files: dict[str, Path]) -> None:
    await store.check_writable("api")
    assert neighbours(files) == {h: [] for h in HOSTS}  # the temp files were removed
    assert all(p.read_bytes() == ORIGINAL for p in files.values())
    files[HOSTS[1]].unlink()
    with pytest.raises(StoreError, match=f"{HOSTS[1]}: .*rollout-test.env does not exist"):
        await store.check_writable("api")
    assert neighbours(files) == {h: [] for h in HOSTS}


# ------------------------------------------------------------------------------------------------
# SSM, on a moto server with IAM enforced

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def iam_moto() -> Iterator[dict[str, Any]]:
    """A moto server enforcing IAM: endpoint, admin keys, operator keys (Get*/Put, no Delete)."""
    servers_allowed("a moto server")
    with claimed("cockpit-test-store-") as (net, _dir):
        address, port = f"{net}.3", 5000
        endpoint = f"http://{address}:{port}"
        # the first 3 calls run unauthenticated (they create the admin); IAM is enforced after that
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", address, "-p", str(port)],
            env={"INITIAL_NO_AUTH_ACTION_COUNT": "3", "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert procs.wait_port(address, port, 30, pid=proc.pid), "moto server did not start"
            kw = {"region_name": REGION, "endpoint_url": endpoint}
            iam = boto3.client("iam", aws_access_key_id="x", aws_secret_access_key="x", **kw)  # type: ignore[call-overload]
            iam.create_user(UserName="admin")
            iam.put_user_policy(
                UserName="admin",
                PolicyName="all",
                PolicyDocument=json.dumps(
                    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
                ),
            )
            ak = iam.create_access_key(UserName="admin")["AccessKey"]
            admin = {"AWS_ACCESS_KEY_ID": ak["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": ak["SecretAccessKey"]}
            iam = boto3.client(
                "iam",
                aws_access_key_id=ak["AccessKeyId"],  # type: ignore[call-overload]
                aws_secret_access_key=ak["SecretAccessKey"],
                **kw,
            )
            iam.create_user(UserName="operator")
            iam.put_user_policy(
                UserName="operator",
                PolicyName="narrow",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["ssm:Get*", "ssm:Describe*", "ssm:PutParameter"],
                                "Resource": "*",
                            },
                        ],
                    }
                ),
            )
            ok_ = iam.create_access_key(UserName="operator")["AccessKey"]
            operator = {"AWS_ACCESS_KEY_ID": ok_["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": ok_["SecretAccessKey"]}
            yield {"endpoint": endpoint, "admin": admin, "operator": operator}
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def ssm_env(iam_moto: dict[str, Any], tmp_path: Path) -> Environment:
    ns = f"t{uuid.uuid4().hex[:10]}/staging"
    inv = tmp_path / "inventory.toml"
    inv.write_text(f"""version = 1
default_env = "staging"
[environments.staging]
namespace = "{ns}"
region = "{REGION}"
endpoint_url = "{iam_moto["endpoint"]}"
managed_database = true
[[environments.staging.hosts]]
name = "staging-api-01"
address = "127.0.0.1"
service = "api"
[[environments.staging.hosts]]
name = "staging-api-02"
address = "127.0.0.2"
service = "api"
""")
    return load_inventory(inv).env()


def as_identity(monkeypatch: pytest.MonkeyPatch, keys: dict[str, str]) -> None:
    for k, v in keys.items():
        monkeypatch.setenv(k, v)


def params(env: Environment, admin: dict[str, str]) -> dict[str, str]:
    ssm = boto3.client(
        "ssm",
        region_name=REGION,
        endpoint_url=env.endpoint_url,  # type: ignore[call-overload]
        aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"],
    )
    out: dict[str, str] = {}
    kw: dict[str, Any] = {"Path": f"/{env.namespace}/", "Recursive": True}
    while True:
        page = ssm.get_parameters_by_path(**kw)
        out.update({p["Name"][len(env.namespace) + 2 :]: p["Value"] for p in page["Parameters"]})
        if not page.get("NextToken"):
            return out
        kw["NextToken"] = page["NextToken"]


def seed(env: Environment, admin: dict[str, str], values: dict[str, str]) -> None:
    ssm = boto3.client(
        "ssm",
        region_name=REGION,
        endpoint_url=env.endpoint_url,  # type: ignore[call-overload]
        aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"],
    )
    for name, value in values.items():
        ssm.put_parameter(Name=f"/{env.namespace}/{name}", Value=value, Type="String", Overwrite=True)


@pytest.mark.lab
async def test_ssm_write_all_read_hosts_and_compare_and_swap(
    ssm_env: Environment, iam_moto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = iam_moto["admin"]
    as_identity(monkeypatch, admin)
    seed(ssm_env, admin, {"api/DATABASE_SSL_MODE": "disable"})
    store = SsmStore(ssm_env, Aws(ssm_env))
    receipts = await store.write_all(STEP)
    assert len(receipts) == 2 and "version 2" in receipts[0] and "version 1" in receipts[1]
    assert params(ssm_env, admin) == {
        "api/DATABASE_SSL_MODE": "verify-full",
        "api/DATABASE_SSL_CA_FILE": "/etc/ssl/internal/ca.crt",
    }
    assert await store.read_hosts("api", ["DATABASE_SSL_MODE", "REDIS_TLS_PORT"]) == {
        h: {"DATABASE_SSL_MODE": "verify-full", "REDIS_TLS_PORT": None} for h in HOSTS
    }
    # the same step again: the store no longer holds what that preview showed -> nothing written
    with pytest.raises(
        StoreError,
        match=r"DATABASE_SSL_MODE refused: it holds 'verify-full', the preview showed "
        r"'disable'.*nothing was written",
    ):
        await store.write_all(
            [
                Change("api", "DATABASE_SSL_CA_FILE", "/etc/ssl/internal/ca.crt", None),
                Change("api", "DATABASE_SSL_MODE", "disable", "require"),
            ]
        )
    assert params(ssm_env, admin)["api/DATABASE_SSL_CA_FILE"] == "/etc/ssl/internal/ca.crt"
    # values SSM cannot hold are refused before anything is written
    for bad in ("", "x" * 5000):
        with pytest.raises(StoreError, match="nothing was written"):
            await store.write_all(
                [Change("api", "REDIS_TLS_PORT", None, "6380"), Change("api", "DATABASE_SSL_MODE", "verify-full", bad)]
            )
    assert "api/REDIS_TLS_PORT" not in params(ssm_env, admin)
    assert await store.read("api", "REDIS_TLS_PORT") is None


@pytest.mark.lab
async def test_ssm_failure_on_the_second_write_reverts_the_first(
    ssm_env: Environment, iam_moto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = iam_moto["admin"]
    seed(ssm_env, admin, {"api/DATABASE_SSL_MODE": "verify-full", "api/DATABASE_SSL_CA_FILE": "/ca.crt"})
    as_identity(monkeypatch, iam_moto["operator"])  # may put, may not delete
    store = SsmStore(ssm_env, Aws(ssm_env))
    mode, ca = ssm_env.ssm_path("api", "DATABASE_SSL_MODE"), ssm_env.ssm_path("api", "DATABASE_SSL_CA_FILE")
    with pytest.raises(StoreError) as exc:
        await store.write_all(
            [
                Change("api", "DATABASE_SSL_MODE", "verify-full", "disable"),
                Change("api", "DATABASE_SSL_CA_FILE", "/ca.crt", None),
            ]
        )
    msg = str(exc.value)
    assert msg.startswith(f"writing {ca}: access denied")
    assert f"{ca} holds '/ca.crt'" in msg and f"reverted: {mode} back to 'verify-full'" in msg
    assert "nothing was restarted" in msg
    assert params(ssm_env, admin) == {"api/DATABASE_SSL_MODE": "verify-full", "api/DATABASE_SSL_CA_FILE": "/ca.crt"}


@pytest.mark.lab
async def test_ssm_failed_revert_says_which_parameter_holds_what(
    ssm_env: Environment, iam_moto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = iam_moto["admin"]
    seed(ssm_env, admin, {"api/DATABASE_SSL_CA_FILE": "/ca.crt"})
    as_identity(monkeypatch, iam_moto["operator"])
    store = SsmStore(ssm_env, Aws(ssm_env))
    mode = ssm_env.ssm_path("api", "DATABASE_SSL_MODE")
    with pytest.raises(StoreError) as exc:  # the revert of the first (a delete: it was unset) is denied too
        await store.write_all(
            [
                Change("api", "DATABASE_SSL_MODE", None, "verify-full"),
                Change("api", "DATABASE_SSL_CA_FILE", "/ca.crt", None),
            ]
        )
    msg = str(exc.value)
    assert f"REVERT FAILED — {mode} now holds 'verify-full' (should be unset; its revert failed: access denied" in msg
    assert params(ssm_env, admin)["api/DATABASE_SSL_MODE"] == "verify-full"


@pytest.mark.lab
async def test_ssm_check_writable(
    ssm_env: Environment, iam_moto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = iam_moto["admin"]
    as_identity(monkeypatch, admin)
    await SsmStore(ssm_env, Aws(ssm_env)).check_writable("api")
    assert params(ssm_env, admin) == {}  # the probe parameter is gone again
    as_identity(monkeypatch, iam_moto["operator"])
    with pytest.raises(
        StoreError,
        match=r"preflight: deleting .*/cockpit/preflight/.*access denied.*rollback that "
        r"unsets a variable",
    ):
        await SsmStore(ssm_env, Aws(ssm_env)).check_writable("api")
    left = params(ssm_env, admin)
    assert list(left) and all(k.startswith("cockpit/preflight/") for k in left)  # never under a service's path


@pytest.mark.lab
async def test_the_fleet_lock_needs_no_delete_permission(
    ssm_env: Environment, iam_moto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock on the same IAM-enforcing server: the operator (no ssm:Delete*) takes and releases it
    round after round; only the best-effort cleanup of old generations is denied, and ignored."""
    from plans.lock import KEEP, FleetLock

    as_identity(monkeypatch, iam_moto["operator"])
    lock = FleetLock(Aws(ssm_env), ssm_env.namespace)
    for i in range(KEEP + 2):
        info = await lock.acquire(f"step-{i}")
        assert info.generation == i + 1
        await lock.release()
    assert await lock.current() is None
    left = params(ssm_env, iam_moto["admin"])
    assert "cockpit/lock/0000000001" in left  # cleanup was denied: old generations stay, harmlessly
