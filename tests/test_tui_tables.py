"""The keyed tables: cell reconciliation (text and colour) and focus that keeps rendered lines."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Static

from tui.widgets.style import Cell, styled
from tui.widgets.tables import PlanTable

CSS_PATH = "../tui/cockpit.tcss"


class TableApp(App[None]):
    CSS_PATH = CSS_PATH

    def compose(self) -> ComposeResult:
        yield PlanTable(id="plan")
        yield Static("other", id="other")


def rows(state_style: str) -> list[tuple[str, tuple[Cell, ...]]]:
    return [(f"pg-{i}", (styled(f"pg-{i}", ""), styled("database", ""), styled("verified", state_style),
                         styled("open", "green"))) for i in range(1, 8)]


async def test_a_colour_only_change_updates_the_cell() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(PlanTable)
        assert table.reconcile(rows("green")) == 7 * 4
        await pilot.pause()
        assert table.reconcile(rows("green")) == 0  # nothing changed: nothing touched
        changed = table.reconcile(rows("bold red"))  # same words, another colour
        assert changed == 7
        cell: Any = table.get_cell("pg-3", "state")
        assert (cell.text, cell.style) == ("verified", "bold red")


async def test_focus_keeps_the_rendered_lines() -> None:
    """A table looks the same focused or not: focus repaints the border, not every cell."""
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(PlanTable)
        table.reconcile(rows("green"))
        await pilot.pause()
        before = [table.render_line(y).text for y in range(1, 8)]
        rendered: list[int] = []
        original = table._render_line_in_row

        def counting(*args: Any, **kwargs: Any) -> Any:
            rendered.append(1)
            return original(*args, **kwargs)

        table._render_line_in_row = counting  # type: ignore[method-assign]
        table.focus()
        await pilot.pause()
        assert table.has_focus
        app.set_focus(None)
        await pilot.pause()
        assert not table.has_focus
        assert [table.render_line(y).text for y in range(1, 8)] == before
        assert rendered == [], f"focus and blur rendered {len(rendered)} table lines again"
