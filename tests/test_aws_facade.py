"""The AWS facade (`probes.aws`): failures classified by botocore's classes and AWS's error codes (never by
type names), one `AwsError` with a `why`, and a session that never writes the process's environment.
Fast: no server (the one endpoint dialled is a closed loopback port)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)

from inventory.load import parse_inventory
from inventory.model import Environment
from probes.aws import Aws, AwsCredentials, AwsError, classify, explain
from probes.model import Why


def client_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "GetParameter")


@pytest.mark.parametrize(
    ("exc", "why", "words"),
    [
        (NoCredentialsError(), Why.NO_CREDENTIALS, "no AWS credentials"),
        (ProfileNotFound(profile="ops"), Why.NO_CREDENTIALS, "ops"),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"), Why.TIMEOUT, "AWS endpoint unreachable"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), Why.UNREACHABLE, "AWS endpoint unreachable"),
        (client_error("AccessDeniedException", "no"), Why.REFUSED, "access denied by AWS (AccessDeniedException)"),
        (client_error("ExpiredTokenException"), Why.REFUSED, "access denied by AWS (ExpiredTokenException)"),
        (client_error("ParameterNotFound", "gone"), Why.NOT_CHECKED, "ParameterNotFound: gone"),
        (client_error("ThrottlingException", "slow down"), Why.UNREACHABLE, "ThrottlingException: slow down"),
    ],
)
def test_failures_are_classified_by_botocore_classes_and_codes(exc: Exception, why: Why, words: str) -> None:
    assert classify(exc) is why
    text = explain(exc, "reading /ns/x")
    assert text.startswith("reading /ns/x: ") and words in text


def test_a_look_alike_type_name_is_not_a_classification() -> None:
    class NoCredentialsError(Exception):  # named like botocore's on purpose
        pass

    class AccessDeniedException(Exception):
        pass

    assert classify(NoCredentialsError()) is Why.UNREACHABLE
    assert classify(AccessDeniedException()) is Why.UNREACHABLE


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is: nothing listens there


def env_with_endpoint(endpoint: str) -> Environment:
    text = f"""version = 1
default_env = "staging"
[environments.staging]
namespace = "voiceai/staging"
region = "eu-west-1"
endpoint_url = "{endpoint}"
managed_database = true
[[environments.staging.hosts]]
name = "staging-api-01"
address = "127.0.0.1"
service = "api"
"""
    return parse_inventory(text, "aws test inventory", base_dir=Path.cwd()).env()


def test_building_the_clients_writes_nothing_to_the_environment() -> None:
    before = dict(os.environ)
    Aws(env_with_endpoint(f"http://127.0.0.1:{closed_port()}"))
    Aws(env_with_endpoint(f"http://127.0.0.1:{closed_port()}"), credentials=AwsCredentials("a", "b"))
    assert dict(os.environ) == before


def test_an_unreachable_endpoint_is_one_aws_error_with_its_why() -> None:
    aws = Aws(
        env_with_endpoint(f"http://127.0.0.1:{closed_port()}"),
        timeout=1.0,
        credentials=AwsCredentials("lab-operator", "lab-operator"),
    )
    with pytest.raises(AwsError) as exc:
        asyncio.run(aws.get_parameter("/voiceai/staging/api/DATABASE_SSL_MODE"))
    assert exc.value.why is Why.UNREACHABLE and exc.value.code == ""
    assert str(exc.value) == f"reading /voiceai/staging/api/DATABASE_SSL_MODE: {exc.value.reason}"
    assert exc.value.reason.startswith("AWS endpoint unreachable")
