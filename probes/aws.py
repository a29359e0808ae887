"""SSM Parameter Store and Secrets Manager: the one AWS facade, typed, off the event loop.

Everything the cockpit asks of AWS goes through `Aws`: the collector's reads, the config store, the fleet
lock and `certs push`. boto3 is synchronous, so every call goes through `asyncio.to_thread` with botocore
timeouts and the UI's loop never blocks. The session is built from the environment's own settings
(profile, region, endpoint) and, when given, explicit credentials; nothing is written to `os.environ`
(with a custom endpoint, a moto server or a proxy, the credential chain is told not to look for EC2
instance metadata on the network). Every failure becomes one `AwsError`, classified by botocore's
exception classes and AWS's error code (`exc.response["Error"]["Code"]`), never by type names: `why`
for code that decides, the message for people. "Not found" and "already exists" are answers, not
errors: `get_parameter` returns None, `create_parameter` returns False. Secret values are returned to
the caller and never logged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from inventory.model import Environment
from probes.model import Why

if TYPE_CHECKING:  # the stubs are a dev dependency: types only; boto3 itself is imported when first used
    import boto3
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import ListSecretsResponseTypeDef
    from mypy_boto3_ssm.client import SSMClient
    from mypy_boto3_ssm.type_defs import GetParametersByPathResultTypeDef

T = TypeVar("T")

DENIED_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    }
)
NOT_FOUND_CODES: Final = frozenset({"ResourceNotFoundException", "ParameterNotFound"})
EXISTS_CODES: Final = frozenset({"ParameterAlreadyExists", "ResourceExistsException"})


class AwsError(Exception):
    """An AWS call failed. `str()` is "<what>: <reason>"; `reason` alone lets a caller say `what` its own
    way; `why` says why it could not be measured; `code` is AWS's error code ("" when AWS never answered)."""

    def __init__(self, message: str, why: Why = Why.UNREACHABLE, *, reason: str = "", code: str = "") -> None:
        super().__init__(message)
        self.why = why
        self.reason = reason or message
        self.code = code


def error_code(exc: BaseException) -> str:
    """AWS's error code of a `ClientError` ("" for anything else)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def classify(exc: BaseException) -> Why:
    """Why an AWS call failed, for code that decides (the message is `explain`'s)."""
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError | ProfileNotFound):
        return Why.NO_CREDENTIALS
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return Why.TIMEOUT
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        return Why.UNREACHABLE
    code = error_code(exc)
    if code in DENIED_CODES or code == "403" or "not authorized to perform" in str(exc):
        return Why.REFUSED
    if code in NOT_FOUND_CODES:
        return Why.NOT_CHECKED
    return Why.UNREACHABLE


def _reason(exc: BaseException) -> str:
    """What went wrong, in words a person can act on (without the "<what>: " prefix)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "no AWS credentials — set AWS_PROFILE, the inventory's profile, or AWS_ACCESS_KEY_ID"
    if isinstance(exc, ProfileNotFound):
        return str(exc)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError):
        return f"AWS endpoint unreachable ({exc})"
    code = error_code(exc)
    if code in DENIED_CODES:
        return f"access denied by AWS ({code}) — check the identity's IAM policy for this namespace"
    text = str(exc)
    if code == "403" or "AccessDenied" in text or "not authorized to perform" in text:
        return "access denied by AWS — check the identity's IAM policy for this namespace"
    if code:
        message = exc.response.get("Error", {}).get("Message", "") if isinstance(exc, ClientError) else ""
        return f"{code}: {message}"
    return f"{type(exc).__name__}: {exc}"


def explain(exc: BaseException, what: str) -> str:
    """ "<what>: <reason>" for a failed AWS call."""
    return f"{what}: {_reason(exc)}"


def aws_error(exc: BaseException, what: str) -> AwsError:
    reason = _reason(exc)
    return AwsError(f"{what}: {reason}", classify(exc), reason=reason, code=error_code(exc))


@dataclass(frozen=True)
class Parameter:
    value: str
    version: int


@dataclass(frozen=True)
class AwsCredentials:
    """Explicit credentials (a test identity, a lab operator); None in `Aws` means boto3's own chain."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def _session(env: Environment, endpoint: str | None, credentials: AwsCredentials | None) -> boto3.session.Session:
    import boto3
    import botocore.session

    core = botocore.session.Session()
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id if credentials else None,
        aws_secret_access_key=credentials.secret_access_key if credentials else None,
        aws_session_token=credentials.session_token if credentials else None,
        region_name=env.region or None,
        profile_name=env.profile or None,
        botocore_session=core,
    )
    if endpoint and credentials is None:
        # a custom endpoint (a moto server, a proxy) never has EC2 instance metadata behind it: the
        # credential chain must not go looking for it on the network
        core.get_component("credential_provider").remove("iam-role")
    return session


class Aws:
    """One boto3 session per environment; typed clients built once and reused.

    `credentials`: explicit keys; None uses boto3's chain (the inventory's `profile`, AWS_PROFILE, the
    access-key variables, ...). The endpoint is the inventory's `endpoint_url`, else `AWS_ENDPOINT_URL`."""

    def __init__(self, env: Environment, *, timeout: float = 5.0, credentials: AwsCredentials | None = None) -> None:
        from botocore.config import Config

        self.env = env
        cfg = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2, "mode": "standard"})
        endpoint = env.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        try:
            session = _session(env, endpoint, credentials)
            self._ssm: SSMClient = session.client("ssm", endpoint_url=endpoint, config=cfg)
            self._sm: SecretsManagerClient = session.client("secretsmanager", endpoint_url=endpoint, config=cfg)
        except Exception as exc:
            raise aws_error(exc, "AWS set-up") from None

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:
            raise aws_error(exc, what) from None

    # -- SSM Parameter Store ---------------------------------------------------------------------
    def _parameters_page(self, prefix: str, recursive: bool, token: str) -> GetParametersByPathResultTypeDef:
        if token:
            return self._ssm.get_parameters_by_path(
                Path=prefix, Recursive=recursive, WithDecryption=True, NextToken=token
            )
        return self._ssm.get_parameters_by_path(Path=prefix, Recursive=recursive, WithDecryption=True)

    async def _parameters(self, prefix: str, *, recursive: bool) -> dict[str, Parameter]:
        out: dict[str, Parameter] = {}
        token = ""
        while True:
            page = await self._call(f"SSM {prefix}", functools.partial(self._parameters_page, prefix, recursive, token))
            for p in page.get("Parameters", []):
                out[p["Name"]] = Parameter(p["Value"], int(p.get("Version", 0)))
            token = page.get("NextToken", "")
            if not token:
                return out

    async def parameters_by_path(self, prefix: str) -> dict[str, Parameter]:
        """Every parameter directly under prefix, by basename."""
        found = await self._parameters(prefix, recursive=False)
        return {name.rsplit("/", 1)[-1]: p for name, p in found.items()}

    async def parameters_under(self, prefix: str) -> dict[str, Parameter]:
        """Every parameter under prefix, at any depth, by full name."""
        return await self._parameters(prefix, recursive=True)

    async def get_parameter(self, name: str) -> Parameter | None:
        """The parameter's value and version; None when it does not exist."""
        try:
            resp = await asyncio.to_thread(self._ssm.get_parameter, Name=name, WithDecryption=True)
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise aws_error(exc, f"reading {name}") from None
        return Parameter(resp["Parameter"]["Value"], int(resp["Parameter"].get("Version", 0)))

    async def create_parameter(self, name: str, value: str) -> bool:
        """Create a `String` parameter, atomically (`Overwrite=False`); False when the name exists."""
        try:
            await asyncio.to_thread(self._ssm.put_parameter, Name=name, Value=value, Type="String", Overwrite=False)
        except Exception as exc:
            if error_code(exc) in EXISTS_CODES:
                return False
            raise aws_error(exc, f"writing {name}") from None
        return True

    async def put_parameter(self, name: str, value: str, *, new: bool) -> int:
        """Write `value` over whatever is there; returns the new version. `new`: the parameter does not
        exist yet and is created as a `String` (an existing one keeps its type: a SecureString stays so)."""
        write = (
            (lambda: self._ssm.put_parameter(Name=name, Value=value, Overwrite=True, Type="String"))
            if new
            else (lambda: self._ssm.put_parameter(Name=name, Value=value, Overwrite=True))
        )
        resp = await self._call(f"writing {name}", write)
        return int(resp.get("Version", 0))

    async def delete_parameter(self, name: str) -> bool:
        """Delete the parameter; False when it did not exist."""
        try:
            await asyncio.to_thread(self._ssm.delete_parameter, Name=name)
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                return False
            raise aws_error(exc, f"deleting {name}") from None
        return True

    async def delete_parameters(self, names: Sequence[str]) -> None:
        """Delete many parameters (ten per call, SSM's limit); names that do not exist are ignored."""
        for i in range(0, len(names), 10):
            batch = list(names[i : i + 10])
            delete = functools.partial(self._ssm.delete_parameters, Names=batch)
            await self._call(f"deleting {', '.join(batch)}", delete)

    # -- Secrets Manager -------------------------------------------------------------------------
    def _secrets_page(self, prefix: str, token: str) -> ListSecretsResponseTypeDef:
        if token:
            return self._sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}], NextToken=token)
        return self._sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}])

    async def secret_names(self, prefix: str) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            page = await self._call(f"Secrets Manager {prefix}*", functools.partial(self._secrets_page, prefix, token))
            names += [s["Name"] for s in page.get("SecretList", []) if s.get("Name", "").startswith(prefix)]
            token = page.get("NextToken", "")
            if not token:
                return sorted(names)

    async def secret_string(self, name: str) -> str | None:
        """The secret's text ("" when it holds binary only); None when there is no such secret."""
        try:
            resp = await asyncio.to_thread(self._sm.get_secret_value, SecretId=name)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise aws_error(exc, f"secret {name}") from None
        return resp.get("SecretString") or ""

    async def create_secret(self, name: str, text: str) -> None:
        await self._call(f"creating secret {name}", lambda: self._sm.create_secret(Name=name, SecretString=text))

    async def put_secret_string(self, name: str, text: str) -> None:
        """Replace the secret's whole value (a JSON secret: the caller merges keys first)."""
        await self._call(f"writing secret {name}", lambda: self._sm.put_secret_value(SecretId=name, SecretString=text))

    async def secret_json(self, name: str, *, raw_ok: bool = False) -> dict[str, str]:
        """A JSON secret's keys. A secret that is not a JSON object is an error (never "missing
        keys"), unless `raw_ok`: then a plain value is returned under the key of its basename.
        A secret that does not exist is an error (`code` ResourceNotFoundException)."""
        resp = await self._call(f"secret {name}", lambda: self._sm.get_secret_value(SecretId=name))
        raw = resp.get("SecretString") or ""
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            if raw_ok:
                return {name.rsplit("/", 1)[-1]: raw}
            raise AwsError(
                f"secret {name} is not JSON; the platform expects a JSON object of KEY: value pairs — fix the secret",
                Why.NOT_CHECKED,
            ) from None
        if not isinstance(data, Mapping):
            if raw_ok:
                return {name.rsplit("/", 1)[-1]: raw}
            raise AwsError(
                f"secret {name}: JSON but not an object; the platform expects KEY: value pairs", Why.NOT_CHECKED
            )
        return {str(k): str(v) for k, v in data.items()}

    async def secrets_under(self, prefix: str) -> dict[str, str]:
        """All keys of all secrets named prefix*, merged in name order (as fetch-env.sh does)."""
        merged: dict[str, str] = {}
        for name in await self.secret_names(prefix):
            merged.update(await self.secret_json(name))
        return merged
