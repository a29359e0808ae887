"""`cockpit certs push|check`: runbook step 1, the certificate material in Secrets Manager.

push validates the CA, certificate and key locally, then, under the fleet lock, writes to each consuming
service's secret only what it needs and only what changes (journaled); check validates what is stored.
"""

from __future__ import annotations

import argparse
import sys

from cli.acting import ask, term_as_interrupt
from cli.compose import build_engine, load_env


async def certs_cmd(args: argparse.Namespace) -> int:
    from plans import certs as certs_mod
    from plans.engine import EngineError
    from plans.lock import LockError
    from probes.aws import Aws
    from probes.model import Verdict

    if args.certs_cmd != "push":
        env, _ = load_env(args)
        results = await certs_mod.check(env, Aws(env))
        for c in results:
            print(f"  [{c.verdict.value:>5}] {c.target}: {c.check}: {c.summary}")
        return 0 if all(c.verdict in (Verdict.OK, Verdict.WARN) for c in results) else 1
    try:
        ca, cert, key = args.ca.read_bytes(), args.cert.read_bytes(), args.key.read_bytes()
    except OSError as exc:
        print(f"cockpit: {exc}", file=sys.stderr)
        return 2
    term_as_interrupt()
    engine = build_engine(args, previous=False)
    locked = False
    try:
        if not args.dry_run:
            reason = args.reason or ask("reason (for the journal): ")
            if not reason.strip():
                print("cockpit: a reason is required (--reason)", file=sys.stderr)
                return 2
            try:
                await engine.acquire_lock("pg-1")
                locked = True
            except (LockError, EngineError) as exc:
                print(f"cockpit: {exc}", file=sys.stderr)
                return 1
        res = await certs_mod.push(engine.env, Aws(engine.env), ca, cert, key, dry_run=args.dry_run)
        for c in res.checks:
            print(f"  [{c.verdict.value:>5}] {c.check}: {c.summary}")
        if not args.dry_run:
            await engine.journal.write(
                "certs-push",
                ok=res.ok,
                reason=reason,
                written=list(res.written),
                unchanged=list(res.unchanged),
                result=res.reason,
            )
        print(("OK: " if res.ok else "REFUSED: ") + res.reason)
        return 0 if res.ok else 1
    finally:
        if locked:
            await engine.release_lock()
        await engine.collector.aclose()
