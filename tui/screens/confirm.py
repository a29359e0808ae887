"""The confirmation screen: where and how much first, then what could stop it, then every detail.

Top to bottom: the title with the environment (and the protected banner), one summary line (how many
instances of which service, what restarts on each, one at a time, how long), the gates with their ids,
the blockers and warnings, what the cockpit does not do (override) — that head never scrolls away —
then, scrollable, the config changes, notes and the per-host restart list. The reason field has the
focus; Enter in a field moves on and never confirms; the confirm button is reached with Tab, and the
hint under the fields says how many presses from where the focus is.

The cockpit offers no override: a preview with a closed gate or a blocking hazard cannot be confirmed
here. The dialog names each closed id and the command line that would open exactly those
(`cockpit … --override ID --reason …`), so the decision to override stays a deliberate, separately
journaled act outside the change window's main screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import DescendantFocus, Resize
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from session.contract import PreviewLike
from tui.widgets.header import SizeNotice
from tui.widgets.style import GATE_MARK, GATE_STYLE, modal_title


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    """What the operator confirmed: the reason goes to the journal and the recording."""

    reason: str


def verb(direction: str) -> str:
    return {"rollback": "Roll back", "restart": "Restart"}.get(direction, "Advance")


def target_text(step: str, service: str | None) -> str:
    return f"{step} for {service}" if service else step


def action_text(p: PreviewLike) -> str:
    """ "Advance pg-5 for api", "Roll back pg-2 for database", "Restart api (2 instances)"."""
    if p.direction == "restart":
        n = len(p.restarts)
        return f"Restart {p.service} ({n} instance{'s' if n != 1 else ''})"
    return f"{verb(p.direction)} {target_text(p.step, p.service)}"


def action_title(p: PreviewLike) -> str:
    """The action for a title, its verb in capitals: "ADVANCE pg-5 for api — <the step's title>"."""
    text = action_text(p)
    verb_, _, rest = text.partition(" ")
    if p.direction == "rollback":
        verb_, _, rest = "ROLL BACK", "", rest.removeprefix("back ")
    return f"{verb_.upper()} {rest} — {p.title}"


def summary_text(p: PreviewLike) -> str:
    """The engine's one-line summary, plus what it leaves out when the time is not known."""
    line = p.summary()
    if p.restarts and p.estimate_s is None:
        line += " (time unknown: no earlier restart of this service is journaled)"
    return line


def head_text(p: PreviewLike, override_hint: str = "") -> Text:
    """What always shows: the summary, the gates (with ids), the blockers and warnings, the no-override note."""
    t = Text()
    t.append(summary_text(p) + "\n", style="bold")
    if p.gates:
        t.append("Gates\n", style="bold underline")
    for g in p.gates:
        t.append(f"  {GATE_MARK.get(g.status, '?')} {g.status:<7} ", style=GATE_STYLE.get(g.status, ""))
        t.append(f"{g.gate}", style="bold")
        t.append(f": {g.reason}")
        if g.overridden:
            t.append(f" (overridden: {g.overridden})", style="yellow")
        t.append("\n")
    blocks = [b for b in p.blockers if b.blocks]
    warns = [b for b in p.blockers if not b.blocks]
    if blocks:
        t.append("Blockers\n", style="bold underline red")
        for b in blocks:
            t.append(f"  ✘ [{b.id}] ", style="bold red")
            t.append(f"{b.text}\n")
    if warns:
        t.append("Warnings\n", style="bold underline yellow")
        for b in warns:
            t.append(f"  ⚠ [{b.id}] ", style="yellow")
            t.append(f"{b.text}\n")
    closed = [i for i, _ in p.closed]
    if closed:
        t.append(f"Not open: {', '.join(closed)}. ", style="bold")
        t.append(
            "The cockpit offers no override"
            + (
                f"; from a shell: {override_hint}"
                if override_hint
                else " (the command line's --override ID --reason does)"
            )
            + "\n"
        )
    t.rstrip()
    return t


def body_text(p: PreviewLike) -> Text:
    """The details, scrollable: changes to the config store, notes, the restarts in order."""
    t = Text()
    if p.direction != "restart":
        t.append("Changes to the config store\n", style="bold underline")
        for line in p.change_lines or ("(none: already configured)",):
            t.append(f"  {line}\n")
    for note in p.notes:
        t.append(f"  note: {note}\n", style="yellow")
    n = len(p.restarts)
    t.append(f"Restarts, one at a time, in this order ({n})\n", style="bold underline")
    if not p.restarts:
        t.append("  (none)\n", style="dim")
    for i, r in enumerate(p.restarts, start=1):
        t.append(f"  {i:>2}. {r.host}\n", style="bold")
        if r.pre_restart:
            t.append(f"      before: {r.pre_restart}\n", style="dim")
        t.append(f"      $ {r.command}\n", style="dim")
    t.rstrip()
    return t


def preview_text(p: PreviewLike, override_hint: str = "") -> Text:
    """The whole preview as one text (head, then body): the recording's report and the tests read it."""
    t = head_text(p, override_hint)
    t.append("\n")
    t.append_text(body_text(p))
    return t


class ConfirmScreen(ModalScreen[ConfirmResult | None]):
    """Returns a `ConfirmResult`, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="cancel-confirm")]
    # the reason field has the focus whenever the screen becomes active; Enter there moves on
    AUTO_FOCUS = "#reason"

    def __init__(self, preview: PreviewLike, *, env_name: str, protected: bool, override_hint: str = "") -> None:
        super().__init__(classes="-protected" if protected else "")
        self.preview = preview
        self.env_name = env_name
        self.protected = protected
        self.override_hint = override_hint

    def compose(self) -> ComposeResult:
        p = self.preview
        with Vertical(id="confirm-box"):
            # a protected environment has its banner right below: the title need not say it twice
            yield Static(modal_title(self.env_name, action_title(p)), id="confirm-title")
            if self.protected:
                yield Static(Text(f"▲ PROTECTED ENVIRONMENT {self.env_name.upper()} ▲"), id="protected-banner")
            yield SizeNotice("", classes="size-notice")
            with VerticalScroll(id="confirm-head"):
                yield Static(head_text(p, self.override_hint), id="confirm-summary")
            with VerticalScroll(id="confirm-body"):
                yield Static(body_text(p), id="confirm-preview")
            yield Input(placeholder="reason (required: it goes to the journal)", id="reason", max_length=500)
            if self.protected:
                yield Input(placeholder=f"type {self.env_name} to confirm", id="typed-name")
            yield Static("", id="why-disabled")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(action_text(p), id="confirm", variant="error", disabled=True)

    def on_mount(self) -> None:
        self._update()

    def on_resize(self, event: Resize) -> None:
        self.query_one(SizeNotice).check(event.size.width, event.size.height)

    def why_not(self) -> list[str]:
        """Why Confirm is disabled ([]: it is enabled)."""
        p = self.preview
        out = [f"gate {g.gate} is {g.status}" for g in p.gates if not g.open]  # the reasons are above
        out += [f"blocked [{b.id}]" for b in p.blockers if b.blocks]
        if not self.query_one("#reason", Input).value.strip():
            out.append("enter a reason")
        if self.protected:
            typed = self.query_one("#typed-name", Input).value.strip()
            if typed != self.env_name:
                out.append(f"type the environment name ({self.env_name}) to confirm")
        return out

    def tabs_to_confirm(self) -> int | None:
        """How many Tab presses take the focus from where it is to the confirm button (None: not reachable)."""
        chain = self.focus_chain
        confirm = self.query_one("#confirm", Button)
        if confirm not in chain:
            return None
        at = chain.index(self.focused) if self.focused in chain else -1
        return (chain.index(confirm) - at) % len(chain)

    def hint(self) -> Text:
        why = self.why_not()
        if why:
            return Text("; ".join(why), style="bold")
        name = action_text(self.preview)
        n = self.tabs_to_confirm()
        if n == 0:
            return Text(f"Enter confirms «{name}» in {self.env_name} · Esc cancels", style="bold")
        presses = "Tab once" if n == 1 else f"Tab {n} times"
        return Text(f"ready: press {presses} to reach «{name}», then Enter · Esc cancels", style="dim")

    def _update(self) -> None:
        self.query_one("#confirm", Button).disabled = bool(self.why_not())
        self.query_one("#why-disabled", Static).update(self.hint())

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._update()

    @on(DescendantFocus)
    def _focus_moved(self, event: DescendantFocus) -> None:
        self.call_after_refresh(self._update)  # the hint counts the Tab presses from the new focus

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
