"""AWS write denied: the preflight finds the config store not writable, nothing is written or restarted,
the reason is clear.

A second moto server runs with IAM enforcement on; the operator's identity may read everything
and put parameters (the lock) but not delete them, as a too-narrow IAM policy would allow; rolling
back pg-2 deletes POSTGRES_TLS_ENABLED (back to the manifest default) and is denied."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from lab import aws as lab_aws
from lab import procs, scenarios
from lab.topology import LabSpec
from plans.engine import Engine
from tests.enginekit import with_engine

pytestmark = pytest.mark.lab


@pytest.fixture
def denied_aws(lab: LabSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    scenarios.apply(lab, "pg-2")
    address, port = f"{lab.net}.4", 5056
    endpoint = f"http://{address}:{port}"
    # the first 3 calls run unauthenticated (they create the admin); IAM is enforced after that
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", address, "-p", str(port)],
        env={"INITIAL_NO_AUTH_ACTION_COUNT": "3", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert procs.wait_port(address, port, 30, pid=proc.pid)
        kw = {"region_name": lab.region, "endpoint_url": endpoint}
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
        admin = {"aws_access_key_id": ak["AccessKeyId"], "aws_secret_access_key": ak["SecretAccessKey"], **kw}
        iam = boto3.client("iam", **admin)  # type: ignore[call-overload]
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
                            "Action": [
                                "ssm:Get*",
                                "ssm:Describe*",
                                "secretsmanager:Get*",
                                "secretsmanager:List*",
                                "secretsmanager:Describe*",
                            ],
                            "Resource": "*",
                        },
                        {"Effect": "Allow", "Action": ["ssm:PutParameter"], "Resource": "*"},
                    ],
                }
            ),
        )
        ok_ = iam.create_access_key(UserName="operator")["AccessKey"]
        # copy the lab's configuration into it, as admin
        src_sm, src_ssm = lab_aws.client(lab, "secretsmanager"), lab_aws.client(lab, "ssm")
        dst_sm = boto3.client("secretsmanager", **admin)  # type: ignore[call-overload]
        dst_ssm = boto3.client("ssm", **admin)  # type: ignore[call-overload]
        for s in src_sm.list_secrets()["SecretList"]:
            value = src_sm.get_secret_value(SecretId=s["Name"])["SecretString"]
            dst_sm.create_secret(Name=s["Name"], SecretString=value)
        for svc in ("database", "api", "web", "voice", "ops", "telpro"):
            for p in src_ssm.get_parameters_by_path(Path=f"/{lab.namespace}/{svc}/")["Parameters"]:
                dst_ssm.put_parameter(Name=p["Name"], Value=p["Value"], Type="String")
        inv = tmp_path / "inventory.toml"
        inv.write_text((Path(lab.dir) / "inventory.toml").read_text().replace(lab.aws_endpoint, endpoint))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ok_["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ok_["SecretAccessKey"])
        yield inv
    finally:
        proc.terminate()
        proc.wait(10)


def test_aws_write_denied_restarts_nothing(lab: LabSpec, denied_aws: Path) -> None:
    pidfile = Path(lab.database.root) / "run" / "postgres.pid"
    pid_before = pidfile.read_text()

    async def go(engine: Engine) -> tuple[str, str]:
        await engine.acquire_lock("pg-2")  # allowed: a put
        p = await engine.preview("pg-2", direction="rollback")
        assert p.open, p.closed_reasons
        out = await engine.apply(p, reason="denied test")
        engine.lock.held = None  # its release (a delete) is denied too; this moto is thrown away
        return out.stage, out.reason

    stage, reason = with_engine(lab, go, inventory=denied_aws)
    # the preflight proves the store writable (and its probe removable) before the step writes anything
    assert stage == "preflight", (stage, reason)
    assert "access denied" in reason.lower() and "nothing was written" in reason, reason
    time.sleep(0.5)
    assert pidfile.read_text() == pid_before  # Postgres was not restarted
