"""Root causes: one sentence for what makes many facts unknown at once (no AWS credentials, the bastion
or the whole fleet unreachable, no probe credentials), so the screen says it once instead of showing a
wall of red — or, worse, a field of green."""

from __future__ import annotations

from collections.abc import Sequence

from inventory.model import Environment
from probes.aws import AwsError
from probes.collect.fleetconfig import ProbeCredentials
from probes.model import CheckResult, Unknown, Verdict, Why
from probes.snapshot import Cause, DatabaseState


def root_causes(
    env: Environment,
    reach: Sequence[CheckResult],
    aws_error: AwsError | None,
    creds: ProbeCredentials | None,
    database: DatabaseState | Unknown,
) -> tuple[Cause, ...]:
    out: list[Cause] = []
    if aws_error is not None:
        out.append(
            Cause(
                aws_error.why,
                f"AWS: {aws_error} — the config store, the cert material and the probe credentials could not be read",
            )
        )
    down = [r for r in reach if r.verdict is not Verdict.OK]
    if reach and len(down) == len(reach):
        out.append(Cause(Why.UNREACHABLE, f"no host of {env.name} could be reached over SSH ({down[0].summary})"))
    elif env.bastion is not None:
        jumped = {h.name for h in env.hosts if h.jump}
        behind = [r for r in down if r.target in jumped and r.evidence.get("error_kind") == "bastion"]
        if jumped and len(behind) == len(jumped):
            out.append(
                Cause(
                    Why.UNREACHABLE,
                    f"the bastion {env.bastion.address} is unreachable: no host behind it could be observed",
                )
            )
    if not out:
        db = env.database_host
        if any(r.target == db.name for r in down):
            out.append(
                Cause(
                    Why.UNREACHABLE,
                    f"the database host {db.name} is unreachable: every Postgres, PgBouncer and Redis fact is unknown",
                )
            )
        elif creds is None and aws_error is None:
            out.append(
                Cause(
                    Why.NO_CREDENTIALS,
                    "the probe credentials could not be read: Postgres, PgBouncer and Redis were not sampled",
                )
            )
        elif isinstance(database, Unknown) and database.why is Why.TIMEOUT:
            out.append(Cause(Why.TIMEOUT, f"the database host {db.name} did not answer in time: {database.detail}"))
    return tuple(out)
