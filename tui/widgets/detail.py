"""Details: the highlighted step's gates and reasons (side panel), and per-host detail on demand (modal):
configured values, drift, certificate, and the raw evidence of every check."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from probes.model import CheckResult
from probes.snapshot import FleetSnapshot, InstanceState
from tui.redact import Redactor
from tui.view import STATE_WORD, VERDICT_WORD, TargetDetail
from tui.widgets.style import GATE_MARK, GATE_STYLE, STATE_STYLE, VERDICT_STYLE

_REDACT = Redactor()


def step_text(d: TargetDetail | None, *, action_hint: str = "") -> Text:
    """The side panel: what the step does, where it stands, its gates with reasons."""
    if d is None:
        return Text("Move to a step in the plan to see its gates and reasons.", style="dim")
    t = Text()
    t.append(d.step, style="bold")
    if d.target != "fleet":
        t.append(" · ")
        t.append(d.target, style="bold")
    if d.optional:
        t.append(" (optional)", style="dim")
    t.append(f"\n{d.title}\n", style="")
    t.append(f"sets {d.summary}\n" if "=" in d.summary else "", style="dim")
    t.append("state ", style="dim")
    t.append(STATE_WORD.get(d.state, d.state), style=STATE_STYLE.get(d.state, ""))
    t.append(f": {d.detail}\n")
    if d.gates:
        t.append("gates\n", style="dim")
        for g in d.gates:
            t.append(f" {GATE_MARK.get(g.status, '?')} {g.status:<7}", style=GATE_STYLE.get(g.status, ""))
            t.append(f" {g.gate}", style="bold")
            t.append(f": {g.reason}\n")
    else:
        t.append("gates: none\n", style="dim")
    if d.instances:
        t.append("instances\n", style="dim")
        for i in d.instances:
            t.append(f" {i.host} ", style="bold")
            t.append(STATE_WORD.get(i.state, i.state), style=STATE_STYLE.get(i.state, ""))
            t.append(f": {i.detail}\n")
    for msg in d.dangers:
        t.append(f"⚠ {msg}\n", style="bold yellow")
    if action_hint:
        t.append(action_hint, style="bold")
    return t


def _evidence(c: CheckResult) -> str:
    if not c.evidence:
        return ""
    return json.dumps(_REDACT.value(dict(c.evidence)), indent=1, sort_keys=True, default=str)


def checks_text(checks: Iterable[CheckResult], title: str) -> Text:
    t = Text()
    t.append(f"\n{title}\n", style="bold underline")
    any_ = False
    for c in checks:
        any_ = True
        t.append(f" {VERDICT_WORD[c.verdict]:<4} ", style=VERDICT_STYLE[c.verdict])
        t.append(f"{c.check} ", style="bold")
        t.append(f"{c.target}", style="dim")
        t.append(f" ({c.duration_ms:.1f} ms)\n" if c.duration_ms else "\n", style="dim")
        t.append(f"      {_REDACT.text(c.summary)}\n")
        ev = _evidence(c)
        if ev:
            for line in ev.splitlines():
                t.append(f"      {line}\n", style="dim")
    if not any_:
        t.append(" (none)\n", style="dim")
    return t


def instance_text(s: FleetSnapshot, i: InstanceState) -> Text:
    t = Text()
    t.append(f"{i.host}", style="bold")
    t.append(f"  service {i.service}  address {i.address}\n")

    def tri(v: bool | None, yes: str = "yes", no: str = "NO") -> str:
        return "?" if v is None else (yes if v else no)

    t.append(f"reachable {tri(i.reachable)}  healthy {tri(i.healthy, 'yes', 'NO') if i.healthy is not None else '-'}"
             f"  CA file {tri(i.ca_file_ok, 'ok', 'BAD')}  Postgres TLS {tri(i.db_tls, 'TLS', 'plain')}"
             f"  Redis TLS {tri(i.redis_tls, 'TLS', 'plain')}")
    if i.telpro_ssl is not None:
        t.append(f"  TelPro SSL build {tri(i.telpro_ssl)}")
    t.append("\n")
    t.append("\nconfigured (this host / the service)\n", style="bold underline")
    configured = dict(s.configured.get(i.service, {}))
    configured.update(i.configured)
    for var, cv in sorted(configured.items()):
        value = _REDACT.value(cv.value, var) if cv.value is not None else "(unset)"
        t.append(f" {var:<24} {value}", style="")
        t.append(f"  [{cv.source}{'' if cv.version is None else f' v{cv.version}'}]\n", style="dim")
    if i.drift:
        t.append("\ndrift (configured ≠ observed)\n", style="bold underline")
        for d in i.drift:
            t.append(f" ⚠ {d}\n", style="yellow")
    conns = [c for c in (s.database.connections if s.database else ()) if c.instance == i.host]
    if conns:
        t.append("\nobserved connections\n", style="bold underline")
        for c in conns:
            t.append(f" {c.leg:<8} {c.addr:<22} {'TLS' if c.tls else 'plaintext':<9} {c.detail}\n")
    t.append_text(checks_text(i.checks, "checks"))
    t.append_text(checks_text([c for c in s.certs if c.target in (i.service, "all services")],
                              f"certificate material ({i.service})"))
    return t


def database_text(s: FleetSnapshot) -> Text:
    db = s.database
    t = Text()
    if db is None:
        t.append("The database host could not be observed (unreachable, or managed).\n", style="bold red")
        t.append_text(checks_text([c for c in s.checks if c.check.startswith(("db.", "ssh."))], "checks"))
        return t
    t.append(f"{db.host}", style="bold")
    t.append("  Postgres, PgBouncer, Redis\n")
    fields = [
        ("reachable", db.reachable), ("postgres ssl", db.postgres_ssl), ("pg_hba hostssl only", db.pg_hba_hostssl_only),
        ("pgbouncer client_tls_sslmode", db.pgbouncer_client_tls_sslmode),
        ("pgbouncer server_tls_sslmode", db.pgbouncer_server_tls_sslmode), ("redis port", db.redis_port),
        ("redis tls-port", db.redis_tls_port), ("postgres TLS verified", db.postgres_tls_verified),
        ("pgbouncer TLS verified", db.pgbouncer_tls_verified), ("redis TLS verified", db.redis_tls_verified),
        ("end-to-end query", db.end_to_end_ok), ("otel collector → redis", db.otel_redis_endpoint),
    ]
    for name, value in fields:
        t.append(f" {name:<30} ", style="dim")
        t.append(f"{'?' if value is None else value}\n")
    t.append("\nconnections\n", style="bold underline")
    for c in db.connections:
        t.append(f" {c.leg:<8} {c.service:<14} {c.instance or '?':<20} {c.addr:<22} "
                 f"{'TLS' if c.tls else 'plaintext':<9} {c.detail}\n")
    if not db.connections:
        t.append(" (none seen)\n", style="dim")
    t.append_text(checks_text(db.checks, "checks (listeners, handshakes, certificate served)"))
    t.append_text(checks_text(s.certs, "certificate material (Secrets Manager)"))
    return t


class DetailScreen(ModalScreen[None]):
    """A scrollable page of detail; Escape closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss_detail", "Close", id="close-detail"),
    ]

    def __init__(self, title: str, body: Text) -> None:
        super().__init__()
        self._title = title
        self._body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box"):
            yield Static(self._title, id="detail-title")
            with VerticalScroll(id="detail-scroll"):
                yield Static(self._body, id="detail-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-scroll").focus()

    def action_dismiss_detail(self) -> None:
        self.dismiss(None)
