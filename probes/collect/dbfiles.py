"""The database host's files: the decoded TLS files (do they equal the material in Secrets Manager? is the
key 0600 and owned by the platform's key owner?) and pg_hba.conf when the probe user may not query
pg_hba_file_rules (no superuser needed to read the file)."""

from __future__ import annotations

import hashlib

from inventory.model import DEFAULT_KEY_OWNER, Environment, Host
from probes.collect.hostfiles import HostFiles, Missing
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.pghba import hba_from_file
from probes.postgres import PostgresFacts
from probes.ssh.readonly import ReadOnlyHosts
from probes.ssh.results import SshError, SshErrorKind, ssh_why

TLS_DIR = "/etc/ssl/internal"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def hba(
    env: Environment, files: HostFiles, pg_f: PostgresFacts | None, db: Host
) -> tuple[bool | Unknown, list[CheckResult]]:
    """Is pg_hba.conf hostssl-only? From pg_hba_file_rules when the probe user may read it, else
    from the file on the database host (no superuser needed)."""
    if pg_f is not None and pg_f.hostssl_only is not None:
        return pg_f.hostssl_only, []
    path = env.database.pg_hba_path
    target = f"{db.name}:{path}"
    data = await files.read(db.name, env.host_path(db, path))
    if isinstance(data, Unknown):
        return data, [error_result("postgres.hba_file", target, data.why, f"pg_hba.conf unreadable: {data.detail}")]
    if isinstance(data, Missing):
        u = Unknown(Why.NOT_CHECKED, f"{target} does not exist (set database.pg_hba_path in the inventory)")
        return u, [error_result("postgres.hba_file", target, u.why, u.detail)]
    only, why = hba_from_file(data.decode("utf-8", "replace"))
    if only is None:
        return Unknown(Why.NOT_CHECKED, why), [error_result("postgres.hba_file", target, Why.NOT_CHECKED, why)]
    verdict = Verdict.OK if only else Verdict.WARN
    summary = f"pg_hba.conf (read from the file): {why}"
    return only, [CheckResult("postgres.hba_file", target, verdict, summary, {"hostssl_only": only})]


async def decoded_files(
    env: Environment,
    files: HostFiles,
    hosts: ReadOnlyHosts,
    db: Host,
    material: tuple[bytes | None, bytes | None, bytes | None],
    owner_cfg: str | None,
) -> list[CheckResult]:
    """On the DB host, the decoded files equal the secrets; the key is 0600 and owned by the
    platform's key owner (the inventory's, else TLS_KEY_OWNER as configured, else the runbook's)."""
    ca_pem, cert_pem, key_pem = material
    base = env.host_path(db, TLS_DIR)
    out = [
        await _decoded(files, db, base, fname, expected)
        for fname, expected in (("ca.crt", ca_pem), ("server.crt", cert_pem))
    ]
    out.append(await _key_file(env, hosts, db, base, key_pem, owner_cfg))
    return out


async def _decoded(files: HostFiles, db: Host, base: str, fname: str, expected: bytes | None) -> CheckResult:
    target = f"{db.name}:{TLS_DIR}/{fname}"
    data = await files.read(db.name, f"{base}/{fname}")
    if isinstance(data, Unknown):
        return error_result("files.decoded", target, data.why, f"could not read it: {data.detail}")
    if isinstance(data, Missing):
        return CheckResult(
            "files.decoded",
            target,
            Verdict.WARN,
            "not decoded yet (no file) — restart the database service after pushing the material",
        )
    if expected is None:
        return error_result("files.decoded", target, Why.NOT_CHECKED, "no value in Secrets Manager to compare")
    if _sha(data.strip()) == _sha(expected.strip()):
        return CheckResult("files.decoded", target, Verdict.OK, "matches Secrets Manager")
    return CheckResult(
        "files.decoded",
        target,
        Verdict.FAIL,
        "differs from Secrets Manager — the host has not decoded the new material (restart the database service)",
    )


async def _key_file(
    env: Environment, hosts: ReadOnlyHosts, db: Host, base: str, key_pem: bytes | None, owner_cfg: str | None
) -> CheckResult:
    owner = env.database.key_owner or owner_cfg or DEFAULT_KEY_OWNER
    key_path = f"{base}/server.key"
    target = f"{db.name}:{TLS_DIR}/server.key"
    st = await hosts.stat(db.name, key_path)
    if isinstance(st, SshError):
        if st.kind is SshErrorKind.NO_SUCH_FILE:
            return CheckResult("files.key", target, Verdict.WARN, "not decoded yet (no key file)")
        return error_result("files.key", target, ssh_why(st), f"could not stat it: {st.message}")
    problems = []
    if st.permissions & 0o077:
        problems.append(f"mode {st.permissions & 0o777:o} (want 600)")
    if f"{st.uid}:{st.gid}" != owner:
        problems.append(
            f"owner {st.uid}:{st.gid} (want {owner}"
            + (", from TLS_KEY_OWNER" if not env.database.key_owner and owner_cfg else "")
            + ")"
        )
    if problems:
        return CheckResult("files.key", target, Verdict.FAIL, "; ".join(problems))
    key_data = await hosts.read_file(db.name, key_path, 1 << 16)
    if isinstance(key_data, bytes) and key_pem is not None:
        same = _sha(key_data.strip()) == _sha(key_pem.strip())
        del key_data
        if same:
            return CheckResult("files.key", target, Verdict.OK, f"mode 600, owner {owner}, matches Secrets Manager")
        return CheckResult("files.key", target, Verdict.FAIL, "differs from Secrets Manager")
    return CheckResult("files.key", target, Verdict.OK, f"mode 600, owner {owner}")
