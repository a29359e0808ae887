"""Test helpers around a real lab: start/stop one, run commands over SSH through the bastion,
set rollout variables in SSM, and read the servers' live state."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from lab import aws, control, rolloutenv, scenarios
from lab.netclaim import claim_net, private_dir
from lab.topology import LabHost, LabSpec, parse_instances, parse_variants
from tests.tier import servers_allowed


@contextlib.contextmanager
def running_lab(instances: str = "", *, net: str | None = None, variants: str = "") -> Iterator[LabSpec]:
    """A lab of its own: a loopback /24 claimed under a lock (`lab.netclaim`) and a new directory,
    so two test runs on one machine never touch each other. Stopped and removed afterwards.
    `variants`: as `lab up --variant` ("hostile", "envfile,key-owner", ...)."""
    servers_allowed("the lab")
    with contextlib.ExitStack() as stack:
        if net is None:
            claim = claim_net()
            stack.callback(claim.release)
            net = claim.net
        d = private_dir("cockpit-test-lab-")
        stack.callback(shutil.rmtree, d, True)
        spec = LabSpec(dir=str(d), net=net, instances=parse_instances(instances), variants=parse_variants(variants))
        try:
            control.up(spec)
            yield spec
        finally:
            if (d / "lab.json").exists():
                left = control.down(d)
                assert not left, f"lab down left processes: {left}"


@contextlib.contextmanager
def cli_lab(instances: str = "", *, variants: str = "") -> Iterator[LabSpec]:
    """As `running_lab`, but started and stopped through the command line (`python -m lab up
    --variant ...` / `down`), on a claimed net and a new directory."""
    repo = Path(__file__).resolve().parent.parent
    with contextlib.ExitStack() as stack:
        claim = claim_net()
        stack.callback(claim.release)
        d = private_dir("cockpit-test-lab-")
        stack.callback(shutil.rmtree, d, True)

        def lab(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "lab", "--dir", str(d), *args],
                cwd=repo,
                text=True,
                capture_output=True,
                timeout=600,
                check=False,
                stdin=subprocess.DEVNULL,
            )

        try:
            r = lab("up", "--net", claim.net, "--instances", instances, "--variant", variants)
            assert r.returncode == 0, f"lab up --variant {variants} failed: {r.stderr[-2000:]}"
            yield LabSpec.load(d)
        finally:
            if (d / "lab.json").exists():
                r = lab("down")
                assert r.returncode == 0, f"lab down: {r.stdout} {r.stderr}"


def ssh(spec: LabSpec, host: LabHost, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cfg = Path(spec.dir) / "ssh" / "ssh_config"
    return subprocess.run(
        ["ssh", "-F", str(cfg), "-o", "BatchMode=yes", host.name, command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def update(spec: LabSpec, host: LabHost, *flags: str) -> subprocess.CompletedProcess[str]:
    script = f"{host.root}/opt/services/{host.service}/update.sh"
    return ssh(spec, host, " ".join([script, *(flags or ("--restart-only", "--yes"))]))


def set_var(spec: LabSpec, service: str, var: str, value: str | None) -> None:
    """Set (None: unset) a service's rollout variable where the lab's config store keeps it: SSM, or
    with the `envfile` variant the line in every host's rollout.env."""
    if spec.has("envfile"):
        for h in [spec.database, *spec.app_hosts()]:
            if h.service == service:
                rolloutenv.set_line(h, var, value)
        return
    ssm = aws.client(spec, "ssm")
    name = f"/{spec.namespace}/{service}/{var}"
    if value is None:
        with contextlib.suppress(ssm.exceptions.ParameterNotFound):
            ssm.delete_parameter(Name=name)
    else:
        ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def rollout_params(spec: LabSpec) -> dict[str, str]:
    ssm = aws.client(spec, "ssm")
    out: dict[str, str] = {}
    for svc in ("database", "api", "web", "voice", "ops", "telpro"):
        for p in ssm.get_parameters_by_path(Path=f"/{spec.namespace}/{svc}/")["Parameters"]:
            if p["Name"].rsplit("/", 1)[-1] in scenarios.rollout_vars(svc):
                out[p["Name"]] = p["Value"]
    return out


def ssl_request(address: str, port: int) -> bytes:
    """Send Postgres' SSLRequest; the one-byte answer is b'S' or b'N'."""
    with socket.create_connection((address, port), timeout=3) as s:
        s.sendall(bytes.fromhex("0000000804d2162f"))
        return s.recv(1)


def port_open(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
        return True
    return False


def pgbouncer_config(spec: LabSpec) -> dict[str, str]:
    import psycopg

    pw = aws.lab_secrets(spec)["PGBOUNCER_ADMIN_PASSWORD"]
    with psycopg.connect(
        host=spec.database.address,
        port=spec.pgbouncer_port,
        dbname="pgbouncer",
        user="pgbouncer_admin",
        password=pw,
        autocommit=True,
        prepare_threshold=None,
        sslmode="prefer",
        connect_timeout=5,
    ) as conn:
        rows = conn.execute("SHOW CONFIG").fetchall()
    return {r[0]: r[1] for r in rows}


def postgres_query(spec: LabSpec, sql: str) -> list[tuple[object, ...]]:
    import asyncpg

    async def go() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(
            host=spec.database.address,
            port=spec.postgres_port,
            user="voiceai",
            password=aws.lab_secrets(spec)["POSTGRES_PASSWORD"],
            database="voiceai",
            ssl="prefer",
            timeout=5,
        )
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(go())


def secret(spec: LabSpec, name: str) -> dict[str, str]:
    """A Secrets Manager JSON secret's keys and values (test use only: never print them)."""
    import json

    sm = aws.client(spec, "secretsmanager")
    return dict(json.loads(sm.get_secret_value(SecretId=name)["SecretString"]))


def meter(spec: LabSpec, host: LabHost, proc: str | None = None) -> dict[str, object]:
    """The instance's availability meter (var/lib/lab/<process>.meter.json)."""
    import json

    f = Path(host.root) / "var/lib/lab" / f"{proc or host.service}.meter.json"
    return dict(json.loads(f.read_text()))


def running_check(spec: LabSpec, host: LabHost) -> subprocess.CompletedProcess[str]:
    """The inventory's running_check for the host, its placeholders filled in, run over SSH."""
    import shlex
    import tomllib

    inv = tomllib.loads((Path(spec.dir) / "inventory.toml").read_text())
    tmpl = inv["environments"][spec.environment]["services"][host.service]["running_check"]
    cmd = tmpl.replace("{root}", shlex.quote(host.root)).replace("{service}", shlex.quote(host.service))
    return ssh(spec, host, cmd)
