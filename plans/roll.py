"""The roll: one instance at a time, restart it (`update.sh --restart-only`, after its pre-restart command),
wait until it runs as configured (or fails for good: not running, unhealthy for 15 s, or past its limit),
say the service's own error when it does not (its log tail, its health answer); then verify the step
until its deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from inventory.model import Environment
from plans.capabilities import FleetReader, HostCommands
from plans.gates import GATES, evaluate
from plans.model import Plan, Step
from plans.outcome import Emit, InstanceOutcome
from plans.position import Position, derive_position
from plans.preview import Preview, RestartTarget
from plans.previewing import LIVE_STATES, fleet_target
from probes.model import Verdict
from probes.snapshot import FleetSnapshot

__all__ = ["INSTANCE_WAIT_CAP", "Observed", "Roll"]

INSTANCE_WAIT_CAP = 120.0  # seconds an instance may take to run as configured after its restart
UNHEALTHY_FOR = 15.0  # seconds unhealthy in a row after a restart: it will not come good


class Observed:
    """The engine's view of the fleet: the last snapshot it took (None: take a new one), a new one on demand."""

    def __init__(self, reader: FleetReader) -> None:
        self.reader = reader
        self.last: FleetSnapshot | None = None

    async def fresh(self) -> FleetSnapshot:
        self.last = await self.reader.snapshot()
        return self.last

    def invalidate(self) -> None:
        """What was written or restarted is measured anew: no reused reading."""
        self.reader.invalidate()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class Roll:
    """Restarts, waits and verifies for one environment and plan; `poll_interval`: seconds between polls."""

    def __init__(
        self,
        env: Environment,
        plan: Plan,
        services_in_order: Sequence[str],
        hosts: HostCommands,
        observed: Observed,
        *,
        poll_interval: float,
    ) -> None:
        self.env = env
        self.plan = plan
        self.services_in_order = list(services_in_order)
        self.hosts = hosts
        self.observed = observed
        self.poll_interval = poll_interval

    def position(self, snap: FleetSnapshot) -> Position:
        return derive_position(self.plan, snap, self.services_in_order)

    async def diagnostics(self, host: str, service: str) -> str:
        """The service's own error: its log tail (the inventory's `logs` command) and its health answer."""
        parts: list[str] = []
        h = self.env.host(host)
        if self.env.service(service).logs:
            r = await self.hosts.run(host, self.env.logs_command(h), timeout=15)
            text = _tail(r.stdout + ("\n" + r.stderr if r.stderr else ""), 15)
            parts.append(f"log tail:\n{text}" if text else f"log: {r.error or 'empty'}")
        snap = self.observed.last
        inst = next((i for i in snap.instances if i.host == host), None) if snap is not None else None
        if inst is not None:
            parts += [
                c.summary
                for c in inst.checks
                if c.check in ("instance.health", "instance.running") and c.verdict is not Verdict.OK
            ]
        return "\n".join(parts)

    async def restart_one(self, step: Step | None, preview: Preview, r: RestartTarget, emit: Emit) -> InstanceOutcome:
        """Restart one instance (its pre-restart command first), then wait until it runs as configured."""
        pool = self.hosts
        svc = preview.service or ""
        if r.pre_restart:
            emit("restart", r.host, f"pre-restart: {r.pre_restart}")
            pre = await pool.run(r.host, r.pre_restart)
            if not pre.ok:
                return InstanceOutcome(
                    r.host,
                    False,
                    None,
                    _tail(pre.stdout + pre.stderr),
                    0.0,
                    0.0,
                    f"pre-restart command failed: {pre.error or pre.stderr.strip()[-300:]}",
                )
        emit("restart", r.host, r.command)
        t0 = time.monotonic()
        res = await pool.run(r.host, r.command, timeout=self.env.ssh.command_timeout)
        update_ms = (time.monotonic() - t0) * 1000
        self.observed.invalidate()  # what restarted is measured anew: no reused handshake or listener
        output = _tail(res.stdout + ("\n" + res.stderr if res.stderr else ""))
        if output:
            emit("output", r.host, output)
        if res.error is not None:
            return InstanceOutcome(r.host, False, None, output, update_ms, 0.0, f"could not run update.sh: {res.error}")
        if res.exit_status != 0:
            diag = await self.diagnostics(r.host, svc)
            if diag:
                emit("diagnostics", r.host, diag)
            return InstanceOutcome(
                r.host,
                False,
                res.exit_status,
                output,
                update_ms,
                0.0,
                f"update.sh exited {res.exit_status}: {res.stderr.strip()[-300:]}",
                diag,
            )
        t1 = time.monotonic()
        ok, why = await self.wait_instance(step, preview, r.host)
        verify_ms = (time.monotonic() - t1) * 1000
        diag = ""
        if not ok:
            diag = await self.diagnostics(r.host, svc)
            if diag:
                emit("diagnostics", r.host, diag)
        emit("instance-done", r.host, why)
        return InstanceOutcome(r.host, ok, res.exit_status, output, update_ms, verify_ms, "" if ok else why, diag)

    def instance_state(
        self, step: Step | None, preview: Preview, host: str, snap: FleetSnapshot
    ) -> tuple[bool | None, str]:
        """(True: done, False: failed for good, None: not yet) for one restarted instance."""
        inst = next((i for i in snap.instances if i.host == host), None)
        if step is None or not step.per_service:
            if inst is not None and inst.running is False:
                return False, f"{host} is not running after its restart"
            if step is None:
                if inst is None:  # the database host: its reach is enough here, the gates check the rest
                    return (True, f"{host} restarted") if snap.database is not None else (None, "not observed yet")
                return (
                    (True, f"{host} runs")
                    if inst.running is True or inst.healthy is True
                    else (None, f"{host}: waiting until it runs")
                )
        pos = self.position(snap)
        if step.per_service:
            t = pos.target(step.id, preview.service)
            ip = t.instance(host)
            state, detail = (ip.state, ip.detail) if ip else (t.state, t.detail)
            if inst is not None and inst.running is False:
                return False, f"{host} is not running after its restart"
        else:
            ft = fleet_target(pos, step.id)
            state, detail = ft.state, ft.detail
        if preview.direction == "rollback":
            return (True if state == "pending" else None), f"{host}: {state}: {detail}"
        if state in LIVE_STATES:
            return True, f"{host}: {state}: {detail}"
        return None, f"{host}: {state}: {detail}"

    async def wait_instance(self, step: Step | None, preview: Preview, host: str) -> tuple[bool, str]:
        """(ok, why) once the restarted instance runs as configured, has failed for good, or its time is up:
        the step's deadline, at most INSTANCE_WAIT_CAP."""
        limit = min(step.deadline if step else INSTANCE_WAIT_CAP, INSTANCE_WAIT_CAP)
        deadline = time.monotonic() + limit
        unhealthy_since: float | None = None
        while True:
            snap = await self.observed.fresh()
            ok, why = self.instance_state(step, preview, host, snap)
            if ok is not None:
                return ok, why
            inst = next((i for i in snap.instances if i.host == host), None)
            if inst is not None and inst.healthy is False:  # unhealthy for a while: it will not come good
                unhealthy_since = unhealthy_since or time.monotonic()
                if time.monotonic() - unhealthy_since > UNHEALTHY_FOR:
                    return False, f"{host} has been unhealthy for {UNHEALTHY_FOR:.0f} s since its restart ({why})"
            else:
                unhealthy_since = None
            if time.monotonic() > deadline:
                return False, f"not running as configured within {limit:.0f}s: {why}"
            await asyncio.sleep(self.poll_interval)

    async def verify(self, step: Step, preview: Preview, emit: Emit) -> tuple[bool, str]:
        """Poll until the step is verified (advance: its `verify` gate opens; back: the target is pending),
        or its deadline passes."""
        deadline = time.monotonic() + step.deadline
        svc = preview.service if step.per_service else None
        while True:
            snap = self.observed.last if self.observed.last is not None else await self.observed.fresh()
            if preview.direction == "advance":
                g = evaluate(
                    step.verify,
                    snap,
                    service=svc if GATES[step.verify].per_service else None,
                    now=time.time(),
                    plan=self.plan,
                    step=step,
                )
                ok, why = g.open, g.reason
            else:
                pos = self.position(snap)
                t = pos.target(step.id, svc) if step.per_service else fleet_target(pos, step.id)
                ok, why = t.state == "pending", f"{t.state}: {t.detail}"
            emit("verify", None, ("verified: " if ok else "not yet: ") + why)
            if ok:
                return True, why
            if time.monotonic() > deadline:
                return False, f"not verified within {step.deadline:.0f}s: {why}"
            await asyncio.sleep(self.poll_interval)
            self.observed.last = None
