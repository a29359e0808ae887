"""The `envfile` variant's config store: the rollout variables in `/opt/deployment/rollout.env`,
a KEY=VALUE file on every host of the service, as platforms without SSM keep them.

The files start as ops left them on real hosts: explicit plaintext values, some with inline
comments (`DATABASE_SSL_MODE=disable  # pinned by ops`; bash strips the comment). `fetch-env.sh`
reads the file with bash itself, so whatever bash makes of a line is what the service gets.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from lab.topology import ROLLOUT_ENV, LabHost

HEADER = (
    "# /opt/deployment/rollout.env: this host's rollout settings (KEY=VALUE, sourced by fetch-env.sh).\n"
    "# Managed by ops; read the internal-encryption runbook before changing anything here.\n"
)
INITIAL: dict[str, str] = {
    "database": HEADER
    + (
        "POSTGRES_TLS_ENABLED=off  # pinned by ops\n"
        "PGBOUNCER_CLIENT_TLS_SSLMODE=disable  # pinned by ops\n"
        "\n"
        "REDIS_TLS_ENABLED=false  # plaintext until the Redis rollout\n"
    ),
    "app": HEADER
    + (
        "DATABASE_SSL_MODE=disable  # pinned by ops\n"
        "REDIS_TLS_ENABLED=false  # plaintext until the Redis rollout\n"
        'REDIS_TLS_CA_FILE=""\n'
    ),
}

# bash reads the file: `set -a; . FILE`, then prints each asked-for name that is set (NUL-separated)
_SOURCE = r"""
for n in "${@:2}"; do unset "$n"; done
set -a
. "$1" >/dev/null || exit 3
set +a
for n in "${@:2}"; do if [ -n "${!n+x}" ]; then printf '%s=%s\0' "$n" "${!n}"; fi; done
"""


def initial_text(service: str) -> str:
    return INITIAL["database" if service == "database" else "app"]


def path(host: LabHost, rel: str = ROLLOUT_ENV) -> Path:
    return Path(host.root) / rel.lstrip("/")


def render(service: str, values: Mapping[str, str]) -> str:
    """The initial file with `values` set: an existing `VAR=` line is replaced, others appended."""
    lines = initial_text(service).splitlines(keepends=True)
    todo = dict(values)
    for i, line in enumerate(lines):
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=", line)
        if m and m.group(1) in todo:
            lines[i] = f"{m.group(1)}={shlex.quote(todo.pop(m.group(1)))}\n"
    lines += [f"{k}={shlex.quote(v)}\n" for k, v in todo.items()]
    return "".join(lines)


def write(host: LabHost, text: str, rel: str = ROLLOUT_ENV) -> None:
    """Replace the host's file atomically (0644, as ops' tooling leaves it)."""
    p = path(host, rel)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, p)


def set_line(host: LabHost, var: str, value: str | None, *, comment: str = "") -> None:
    """Edit one variable's line in place (a person with an editor): set it, or delete it (None)."""
    p = path(host)
    lines = p.read_text().splitlines(keepends=True) if p.exists() else []
    new = None if value is None else f"{var}={shlex.quote(value)}" + (f"  # {comment}" if comment else "") + "\n"
    out: list[str] = []
    done = False
    for line in lines:
        if re.match(rf"(export\s+)?{re.escape(var)}=", line):
            if new is not None and not done:
                out.append(new)
            done = True
            continue
        out.append(line)
    if new is not None and not done:
        out.append(new)
    write(host, "".join(out))


def source(file: Path, names: Iterable[str]) -> dict[str, str]:
    """What bash makes of `file`: the values of `names` it sets (a clean environment, no login files)."""
    names = list(names)
    r = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", _SOURCE, "fetch-env", str(file), *names],
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    if r.returncode != 0:
        why = r.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"{file}: bash could not read it ({why[-1] if why else f'exit {r.returncode}'}); fix the file")
    out: dict[str, str] = {}
    for item in r.stdout.split(b"\0"):
        if item:
            k, _, v = item.decode(errors="replace").partition("=")
            out[k] = v
    return out
