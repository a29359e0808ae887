"""The confirmation screen: the exact change, the restarts in order, the gates, a reason; typed name for a
protected environment. Focus starts on Cancel and Enter in a field never confirms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from tui.feed import PreviewLike
from tui.widgets.style import GATE_MARK, GATE_STYLE


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    """What the operator confirmed: the reason goes to the journal and the recording."""

    reason: str


def verb(direction: str) -> str:
    return "Roll back" if direction == "rollback" else "Advance"


def target_text(step: str, service: str | None) -> str:
    return f"{step} for {service}" if service else step


def preview_text(p: PreviewLike) -> Text:
    t = Text()
    t.append("Changes to the config store\n", style="bold underline")
    for line in p.change_lines or ("(none)",):
        t.append(f"  {line}\n")
    t.append("\nRestarts, in this order\n", style="bold underline")
    if not p.restarts:
        t.append("  (none)\n", style="dim")
    for n, r in enumerate(p.restarts, start=1):
        t.append(f"  {n:>2}. {r.host}\n", style="bold")
        if r.pre_restart:
            t.append(f"      before: {r.pre_restart}\n", style="dim")
        t.append(f"      $ {r.command}\n", style="dim")
    t.append("\nGates\n", style="bold underline")
    if not p.gates:
        t.append("  (none)\n", style="dim")
    for g in p.gates:
        t.append(f"  {GATE_MARK.get(g.status, '?')} {g.status:<7} ", style=GATE_STYLE.get(g.status, ""))
        t.append(f"{g.gate}", style="bold")
        t.append(f": {g.reason}\n")
    if p.blockers:
        t.append("\nBlockers\n", style="bold underline red")
        for b in p.blockers:
            t.append(f"  ✘ {b}\n", style="bold red")
    return t


class ConfirmScreen(ModalScreen[ConfirmResult | None]):
    """Returns a `ConfirmResult`, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="cancel-confirm")]
    # Cancel has the focus whenever the screen becomes active (also when pushed as another screen is
    # dismissed): Enter never confirms by default
    AUTO_FOCUS = "#cancel"

    def __init__(self, preview: PreviewLike, *, env_name: str, protected: bool) -> None:
        super().__init__(classes="-protected" if protected else "")
        self.preview = preview
        self.env_name = env_name
        self.protected = protected

    def compose(self) -> ComposeResult:
        p = self.preview
        with Vertical(id="confirm-box"):
            yield Static(f"{verb(p.direction).upper()} {target_text(p.step, p.service)} — {p.title}  "
                         f"[{self.env_name}]", id="confirm-title")
            if self.protected:
                yield Static(f"▲ PROTECTED ENVIRONMENT {self.env_name.upper()} ▲", id="protected-banner")
            with VerticalScroll(id="confirm-body"):
                yield Static(preview_text(p), id="confirm-preview")
            yield Input(placeholder="reason (required: it goes to the journal)", id="reason", max_length=500)
            if self.protected:
                yield Input(placeholder=f"type {self.env_name} to confirm", id="typed-name")
            yield Static("", id="why-disabled")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(f"{verb(p.direction)} {target_text(p.step, p.service)}", id="confirm",
                             variant="error", disabled=True)

    def on_mount(self) -> None:
        self._update()
        self.query_one("#cancel", Button).focus()

    def why_not(self) -> list[str]:
        """Why Confirm is disabled ([]: it is enabled)."""
        p = self.preview
        out = [f"gate {g.gate} is {g.status}: {g.reason}" for g in p.gates if g.status != "open"]
        out += [f"blocked: {b}" for b in p.blockers]
        if not self.query_one("#reason", Input).value.strip():
            out.append("enter a reason")
        if self.protected:
            typed = self.query_one("#typed-name", Input).value.strip()
            if typed != self.env_name:
                out.append(f"type the environment name ({self.env_name}) to confirm")
        return out

    def _update(self) -> None:
        why = self.why_not()
        self.query_one("#confirm", Button).disabled = bool(why)
        self.query_one("#why-disabled", Static).update(Text("; ".join(why), style="bold") if why else
                                                       Text("ready: Tab to the button, then Enter", style="dim"))

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._update()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        """Enter in a field moves on; it never confirms."""
        event.stop()
        event.prevent_default()
        self.focus_next()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if self.why_not():
            self._update()
            return
        self.dismiss(ConfirmResult(self.query_one("#reason", Input).value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)
