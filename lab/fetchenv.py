"""The lab's `fetch-env.sh`: resolve each variable a service declares, as the platform does.

Order (later wins): bootstrap `/opt/deployment/.env` → SSM `/${NAMESPACE}/<service>/<VAR>` →
Secrets Manager JSON secrets named `${NAMESPACE}/<service>/...` → the manifest default (only
when nothing else set it). Prints `export` lines for `init.sh` to evaluate; writes nothing,
except with `--format file --output P` ("for diffing what the host would resolve").

The `envfile` variant's platform adds a host file after SSM (`LAB_ENV_FILE` in lab.env, read by
bash itself: inline comments stripped as bash strips them) and shared secrets before the service's
own (`LAB_SHARED_SECRETS`, comma-separated names).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from lab import rolloutenv


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:]
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def load_manifest(root: Path, service: str) -> list[dict[str, Any]]:
    path = root / "opt" / "services" / service / "vars.yaml"
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("variables"), list):
        raise ValueError(f"{path}: expected a mapping with a 'variables' list")
    return list(data["variables"])


def aws_clients(bootstrap: dict[str, str]) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    cfg = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2})
    region = bootstrap.get("AWS_REGION") or os.environ.get("AWS_REGION") or "eu-west-1"
    endpoint = bootstrap.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
    session = boto3.session.Session(region_name=region)
    return (
        session.client("ssm", endpoint_url=endpoint, config=cfg),
        session.client("secretsmanager", endpoint_url=endpoint, config=cfg),
    )


def _ssm_values(ssm: Any, prefix: str, declared: dict[str, Any]) -> dict[str, str]:
    """The declared variables' SSM parameters under `prefix` (every page)."""
    values: dict[str, str] = {}
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"Path": prefix, "Recursive": False, "WithDecryption": True}
        if token:
            kw["NextToken"] = token
        page = ssm.get_parameters_by_path(**kw)
        for p in page.get("Parameters", []):
            name = p["Name"].rsplit("/", 1)[-1]
            if name in declared:
                values[name] = p["Value"]
        token = page.get("NextToken")
        if not token:
            return values


def resolve(root: Path, service: str) -> tuple[dict[str, str], set[str]]:
    """Resolved values of the declared variables, and the names that are sensitive."""
    bootstrap = read_env_file(root / "opt" / "deployment" / ".env")
    lab = read_env_file(root / "opt" / "deployment" / "lab.env")
    manifest = load_manifest(root, service)
    declared = {v["name"]: v for v in manifest}
    namespace = bootstrap["NAMESPACE"]
    ssm, sm = aws_clients(bootstrap)

    values: dict[str, str] = {k: bootstrap[k] for k in declared if k in bootstrap}

    values.update(_ssm_values(ssm, f"/{namespace}/{service}/", declared))

    env_file = lab.get("LAB_ENV_FILE", "")
    if env_file:
        f = root / env_file.lstrip("/")
        if f.exists():
            values.update(rolloutenv.source(f, declared))

    def merge(name: str) -> None:
        raw = sm.get_secret_value(SecretId=name).get("SecretString") or "{}"
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"secret {name}: not JSON ({exc.msg}); fix the secret") from None
        if isinstance(data, dict):
            for k, v in data.items():
                if k in declared:
                    values[k] = str(v)

    for shared in filter(None, lab.get("LAB_SHARED_SECRETS", "").split(",")):
        try:
            merge(shared)
        except sm.exceptions.ResourceNotFoundException:
            pass  # not pushed yet: as a missing service secret, the TLS values stay unset

    secret_prefix = f"{namespace}/{service}/"
    names: list[str] = []
    paginator = sm.get_paginator("list_secrets")
    for page in paginator.paginate(Filters=[{"Key": "name", "Values": [secret_prefix]}]):
        names += [s["Name"] for s in page.get("SecretList", []) if s["Name"].startswith(secret_prefix)]
    for name in sorted(names):
        merge(name)

    for name, spec in declared.items():
        if name not in values and "default" in spec and spec.get("source") != "local":
            values[name] = str(spec["default"])
        if spec.get("required") and not values.get(name) and spec.get("source") != "local":
            where = "SSM, " + (f"{env_file}, " if env_file else "") + "Secrets Manager or defaults"
            raise ValueError(f"{service}: required variable {name} is not set in {where}")
    sensitive = {n for n, s in declared.items() if s.get("sensitive")}
    return values, sensitive


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fetch-env.sh")
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--service", required=True)
    ap.add_argument("--format", choices=("exports", "file"), default="exports")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args(argv)
    try:
        values, _ = resolve(args.root, args.service)
    except Exception as exc:
        print(f"fetch-env.sh: {args.service}: {exc}", file=sys.stderr)
        return 1
    if args.format == "file":
        if not args.output:
            print("fetch-env.sh: --format file needs --output P", file=sys.stderr)
            return 2
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(f"{k}={shlex.quote(v)}\n" for k, v in sorted(values.items()))
        return 0
    sys.stdout.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(values.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
