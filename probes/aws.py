"""SSM Parameter Store and Secrets Manager through boto3, off the event loop.

boto3 is synchronous; every call goes through `asyncio.to_thread` with botocore timeouts so the
UI's loop never blocks. Credentials come from boto3's standard chain (or the inventory's profile);
the endpoint from the inventory or `AWS_ENDPOINT_URL`. Secret values are returned to the caller
and never logged.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inventory.model import Environment
from probes.model import Why


class AwsError(Exception):
    """An AWS call failed, with a reason a person can act on, and why it could not be measured."""

    def __init__(self, message: str, why: Why = Why.UNREACHABLE) -> None:
        super().__init__(message)
        self.why = why


def classify(exc: BaseException) -> Why:
    """Why an AWS call failed, for code that decides (the message is `explain`'s)."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"):
        return Why.NO_CREDENTIALS
    if name in ("ConnectTimeoutError", "ReadTimeoutError"):
        return Why.TIMEOUT
    if name in ("EndpointConnectionError", "ConnectionClosedError"):
        return Why.UNREACHABLE
    err = getattr(exc, "response", {}).get("Error", {}) if hasattr(exc, "response") else {}
    code = str(err.get("Code", ""))
    if code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
                "ExpiredTokenException", "403") or "not authorized to perform" in str(exc):
        return Why.REFUSED
    if code in ("ResourceNotFoundException", "ParameterNotFound"):
        return Why.NOT_CHECKED
    return Why.UNREACHABLE


def aws_error(exc: BaseException, what: str) -> AwsError:
    return AwsError(explain(exc, what), classify(exc))


def explain(exc: BaseException, what: str) -> str:
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return f"{what}: no AWS credentials — set AWS_PROFILE, the inventory's profile, or AWS_ACCESS_KEY_ID"
    if name == "ProfileNotFound":
        return f"{what}: {exc}"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
        return f"{what}: AWS endpoint unreachable ({exc})"
    err = getattr(exc, "response", {}).get("Error", {}) if hasattr(exc, "response") else {}
    code = err.get("Code", "")
    if code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
                "InvalidSignatureException", "ExpiredTokenException"):
        return f"{what}: access denied by AWS ({code}) — check the identity's IAM policy for this namespace"
    text = str(exc)
    if code == "403" or "AccessDenied" in text or "not authorized to perform" in text:
        return f"{what}: access denied by AWS — check the identity's IAM policy for this namespace"
    if code:
        return f"{what}: {code}: {err.get('Message', '')}"
    return f"{what}: {name}: {exc}"


@dataclass(frozen=True)
class Parameter:
    value: str
    version: int


class Aws:
    """One boto3 session per environment; clients built once and reused."""

    def __init__(self, env: Environment, *, timeout: float = 5.0) -> None:
        import boto3
        from botocore.config import Config

        self.env = env
        cfg = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2, "mode": "standard"})
        endpoint = env.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        if endpoint:
            # a custom endpoint (a moto server, a proxy) never has EC2 instance metadata behind it:
            # do not let the credential chain go looking for it on the network
            os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        try:
            session = boto3.session.Session(profile_name=env.profile or None, region_name=env.region or None)
            self._ssm: Any = session.client("ssm", endpoint_url=endpoint, config=cfg)
            self._sm: Any = session.client("secretsmanager", endpoint_url=endpoint, config=cfg)
        except Exception as exc:
            raise aws_error(exc, "AWS set-up") from None

    @property
    def ssm(self) -> Any:
        return self._ssm

    @property
    def secretsmanager(self) -> Any:
        return self._sm

    async def _call(self, what: str, fn: Any, /, **kw: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, **kw)
        except Exception as exc:
            raise aws_error(exc, what) from None

    async def parameters_by_path(self, prefix: str) -> dict[str, Parameter]:
        """Every parameter directly under prefix, by basename."""
        out: dict[str, Parameter] = {}
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Path": prefix, "Recursive": False, "WithDecryption": True}
            if token:
                kw["NextToken"] = token
            page = await self._call(f"SSM {prefix}", self._ssm.get_parameters_by_path, **kw)
            for p in page.get("Parameters", []):
                out[p["Name"].rsplit("/", 1)[-1]] = Parameter(p["Value"], int(p.get("Version", 0)))
            token = page.get("NextToken")
            if not token:
                return out

    async def secret_names(self, prefix: str) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Filters": [{"Key": "name", "Values": [prefix]}]}
            if token:
                kw["NextToken"] = token
            page = await self._call(f"Secrets Manager {prefix}*", self._sm.list_secrets, **kw)
            names += [s["Name"] for s in page.get("SecretList", []) if s["Name"].startswith(prefix)]
            token = page.get("NextToken")
            if not token:
                return sorted(names)

    async def secret_json(self, name: str, *, raw_ok: bool = False) -> dict[str, str]:
        """A JSON secret's keys. A secret that is not a JSON object is an error (never "missing
        keys"), unless `raw_ok`: then a plain value is returned under the key of its basename."""
        resp = await self._call(f"secret {name}", self._sm.get_secret_value, SecretId=name)
        raw = resp.get("SecretString") or ""
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            if raw_ok:
                return {name.rsplit("/", 1)[-1]: raw}
            raise AwsError(f"secret {name} is not JSON; the platform expects a JSON object of KEY: value pairs "
                           "— fix the secret", Why.NOT_CHECKED) from None
        if not isinstance(data, Mapping):
            if raw_ok:
                return {name.rsplit("/", 1)[-1]: raw}
            raise AwsError(f"secret {name}: JSON but not an object; the platform expects KEY: value pairs",
                           Why.NOT_CHECKED)
        return {str(k): str(v) for k, v in data.items()}

    async def secrets_under(self, prefix: str) -> dict[str, str]:
        """All keys of all secrets named prefix*, merged in name order (as fetch-env.sh does)."""
        merged: dict[str, str] = {}
        for name in await self.secret_names(prefix):
            merged.update(await self.secret_json(name))
        return merged
