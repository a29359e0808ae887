"""Writes each lab host's files as the platform lays them out.

`/opt/deployment/.env` (bootstrap), `/opt/services/<service>/{vars.yaml,init.sh,update.sh,.ecr-tag}`,
`/opt/services/common/{fetch-env.sh,update.sh}`, `/etc/ssl/internal/`, all under the host's root.
Lab-only settings (which Python, which address) go to `/opt/deployment/lab.env`.
The `envfile` variant adds `/opt/deployment/rollout.env` on every host (written once: a later
`lab up` keeps what the cockpit or a person changed) and `/opt/deployment/probe.env` (0600) on
the database host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from lab import rolloutenv
from lab.manifests import manifest
from lab.topology import PROBE_ENV, ROLLOUT_ENV, LabHost, LabSpec

REPO = Path(__file__).resolve().parent.parent

FETCH_ENV_SH = r"""#!/usr/bin/env bash
# fetch-env.sh — resolve every variable /opt/services/<service>/vars.yaml declares:
# bootstrap .env -> SSM /${NAMESPACE}/<service>/<VAR> -> Secrets Manager ${NAMESPACE}/<service>/* -> default.
# Prints `export` lines for init.sh to evaluate. Nothing is written to disk
# (except with --format file --output P, which holds every secret of the service).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
set -a; . "$ROOT/opt/deployment/.env"; . "$ROOT/opt/deployment/lab.env"; set +a
export PYTHONPATH="$LAB_REPO"
exec "$LAB_PYTHON" -m lab.fetchenv --root "$ROOT" "$@"
"""

INIT_SH = r"""#!/usr/bin/env bash
# init.sh — source the bootstrap .env, resolve the environment, decode TLS material,
# recreate the service's containers, wait until healthy. Non-zero with the reason on stderr.
set -euo pipefail
SERVICE="__SERVICE__"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
for arg in "$@"; do
  case "$arg" in
    --restart-only|--skip-images|--skip-fetch) ;;  # no images or config bundle in the lab
    *) echo "init.sh: unknown flag $arg" >&2; exit 2 ;;
  esac
done
set -a; . "$ROOT/opt/deployment/.env"; . "$ROOT/opt/deployment/lab.env"; set +a
# a stray .env in a service dir is shredded: secrets never land on disk
[ -f "$HERE/.env" ] && shred -u "$HERE/.env" 2>/dev/null || rm -f "$HERE/.env"
exports="$("$ROOT/opt/services/common/fetch-env.sh" --service "$SERVICE")" || {
  echo "init.sh: $SERVICE: could not resolve the environment (see above); nothing was restarted" >&2; exit 1; }
eval "$exports"
export PYTHONPATH="$LAB_REPO"
exec "$LAB_PYTHON" -m lab.hostinit --root "$ROOT" --service "$SERVICE"
"""

UPDATE_SH = r"""#!/usr/bin/env bash
# update.sh — wraps init.sh with a backup, a confirmation and a dry run.
#   --restart-only   re-resolve the environment and restart the containers (implies --skip-images)
#   --dry-run        show what would be resolved (sensitive values masked) and restart nothing
#   --yes            do not ask for confirmation (for automation)
#   --ecr-tag T, --config-ref R, --skip-images, --skip-fetch   accepted as on the platform
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE="$(basename "$HERE")"
if [ "$SERVICE" = common ]; then
  echo "update.sh: run the copy in /opt/services/<service>/" >&2; exit 2
fi
ROOT="$(cd "$HERE/../../.." && pwd)"
dry=0; yes=0; init_flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --restart-only) init_flags+=(--restart-only --skip-images) ;;
    --skip-images|--skip-fetch) init_flags+=("$1") ;;
    --dry-run) dry=1 ;;
    --yes|-y) yes=1 ;;
    --ecr-tag|--config-ref) shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "update.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
set -a; . "$ROOT/opt/deployment/.env"; . "$ROOT/opt/deployment/lab.env"; set +a
if [ "$dry" = 1 ]; then
  export PYTHONPATH="$LAB_REPO"
  exec "$LAB_PYTHON" -m lab.dryrun --root "$ROOT" --service "$SERVICE"
fi
if [ "$yes" != 1 ]; then
  if [ ! -t 0 ]; then
    echo "update.sh: no terminal to confirm on; pass --yes to restart $SERVICE on ${HOSTNAME:-this host}" >&2; exit 3
  fi
  read -r -p "Restart $SERVICE on ${HOSTNAME:-this host}? [y/N] " answer
  case "$answer" in y|Y|yes) ;; *) echo "update.sh: not confirmed; nothing done" >&2; exit 3 ;; esac
fi
backup="$ROOT/opt/services/.backup/$SERVICE-$(date +%Y%m%dT%H%M%S)"
mkdir -p "$backup" && cp -p "$HERE/vars.yaml" "$HERE/.ecr-tag" "$backup/" 2>/dev/null || true
exec "$HERE/init.sh" "${init_flags[@]}"
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _env_text(values: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


def _deployment_env(spec: LabSpec, host: LabHost) -> dict[str, str]:
    """/opt/deployment/.env as the platform writes it."""
    return {
        "ENVIRONMENT": spec.environment,
        "HOSTNAME": host.name,
        "SERVER_ROLE": host.service,
        "NAMESPACE": spec.namespace,
        "AWS_REGION": spec.region,
        "AWS_ENDPOINT_URL": spec.aws_endpoint,
        "CONFIG_BUCKET": f"{spec.project}-config-lab",
        "CONFIG_REF": "main",
        "ECR_REGISTRY": "lab.invalid",
        "ECR_TAG": "v0.9.11",
    }


def _lab_env(spec: LabSpec, host: LabHost, python: str | None) -> dict[str, str]:
    """/opt/deployment/lab.env: what the lab's stand-ins need to find each other."""
    return {
        "LAB_DIR": spec.dir,
        "LAB_PYTHON": python or sys.executable,
        "LAB_REPO": str(REPO),
        "LAB_HOSTNAME": host.name,
        "LAB_HOST_ADDRESS": host.address,
        "LAB_RESOLVE": f"{spec.db_dns_name}={spec.database.address}",
        "LAB_DB_UID": str(spec.db_uid),
        "LAB_POSTGRES_PORT": str(spec.postgres_port),
        "LAB_PGBOUNCER_PORT": str(spec.pgbouncer_port),
        "LAB_REDIS_PORT": str(spec.redis_port),
        "LAB_HEALTH_PORT": str(spec.health_port),
        # the instance profile's credentials (moto accepts any)
        "AWS_ACCESS_KEY_ID": "lab-instance-profile",
        "AWS_SECRET_ACCESS_KEY": "lab-instance-profile",
        # the envfile platform's fetch-env.sh: its host file and its shared secrets
        "LAB_ENV_FILE": ROLLOUT_ENV if spec.has("envfile") else "",
        "LAB_SHARED_SECRETS": spec.shared_tls_secret_name if spec.has("envfile") else "",
    }


def write_host(spec: LabSpec, host: LabHost, *, python: str | None = None) -> None:
    root = Path(host.root)
    for d in ("opt/deployment", "opt/services/common", "etc/ssl/internal", "run", "var/log", "var/lib/lab"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "etc" / "ssl" / "internal", 0o755)
    role = host.service
    _write(root / "opt/deployment/.env", _env_text(_deployment_env(spec, host)))
    _write(root / "opt/deployment/lab.env", _env_text(_lab_env(spec, host, python)))
    if host.role == "bastion":
        return
    common = root / "opt/services/common"
    fetch = FETCH_ENV_SH
    if spec.has("envfile"):
        fetch = fetch.replace(
            "-> SSM /${NAMESPACE}/<service>/<VAR> -> Secrets Manager ${NAMESPACE}/<service>/*",
            f"-> SSM -> {ROLLOUT_ENV} (sourced by bash)\n#   -> Secrets Manager "
            "${NAMESPACE}/shared/tls -> ${NAMESPACE}/<service>/*",
        )
    _write(common / "fetch-env.sh", fetch, 0o755)
    _write(common / "update.sh", UPDATE_SH, 0o755)
    sdir = root / "opt/services" / role
    _write(sdir / "vars.yaml", yaml.safe_dump(manifest(role, spec), sort_keys=False))
    _write(sdir / "init.sh", INIT_SH.replace("__SERVICE__", role), 0o755)
    _write(sdir / "update.sh", UPDATE_SH, 0o755)
    _write(sdir / ".ecr-tag", "v0.9.11\n")
    _write(sdir / "docker-compose.yaml", f"# lab stand-in: the containers of {role} run as processes\n")
    if role == "telpro":
        set_telpro_ssl(spec, host, True)
    if spec.has("envfile"):
        if not rolloutenv.path(host).exists():
            rolloutenv.write(host, rolloutenv.initial_text(role))
        if role == "database":
            write_probe_env(spec, host)


def write_probe_env(spec: LabSpec, host: LabHost) -> None:
    """The probe's credentials as a 0600 host file on the database host (`envfile` variant)."""
    from lab.aws import probe_credentials  # aws imports pki/cryptography: only when needed

    path = Path(host.root) / PROBE_ENV.lstrip("/")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in probe_credentials(spec).items())
    os.chmod(path, 0o600)


def set_telpro_ssl(spec: LabSpec, host: LabHost, has_ssl: bool) -> None:
    """Declare which Kamailio build this TelPro instance runs (with or without hiredis_ssl)."""
    mods = "ndb_redis hiredis hiredis_ssl\n" if has_ssl else "ndb_redis hiredis\n"
    _write(Path(host.root) / "opt/services/telpro/image-modules", mods)
    _write(Path(host.root) / "opt/services/telpro/.ecr-tag", "v0.9.11-ssl\n" if has_ssl else "v0.9.11\n")
