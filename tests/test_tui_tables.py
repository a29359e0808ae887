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
    return [
        (
            f"pg-{i}",
            (styled(f"pg-{i}", ""), styled("database", ""), styled("verified", state_style), styled("open", "green")),
        )
        for i in range(1, 8)
    ]


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


def test_columns_go_by_priority_never_the_first_or_a_problem_column() -> None:
    from tui.widgets.tables import InstanceTable

    every = tuple(range(len(InstanceTable.COLUMNS)))
    assert InstanceTable.fit_columns(200) == every
    keys = [c[0] for c in InstanceTable.COLUMNS]
    narrow = [keys[i] for i in InstanceTable.fit_columns(75)]
    assert narrow[0] == "host" and "v" in narrow and "drift" in narrow and "service" not in narrow
    assert narrow == [k for k in keys if k in narrow]  # shown in their usual order
    assert [keys[i] for i in InstanceTable.fit_columns(5)] == ["host"]


async def test_a_narrow_table_drops_columns_and_keeps_its_rows_and_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(PlanTable)
        table.reconcile(rows("green"))
        table.highlight("pg-4")
        await pilot.pause()
        assert table.visible_columns == ("step", "target", "state", "gates")
        table.refit(30)
        await pilot.pause()
        assert table.visible_columns == ("step", "state")  # the target (cosmetic) goes before the gates
        assert table.highlighted_key == "pg-4" and str(table.get_cell("pg-3", "state")) == "verified"
        assert table.reconcile(rows("bold red")) == 7  # updates touch the visible cells only


async def test_the_filter_keeps_matching_rows_through_updates() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(PlanTable)
        table.reconcile(rows("green"))
        table.set_filter("PG-3")
        await pilot.pause()
        assert [k.value for k in table.rows] == ["pg-3"]
        table.reconcile(rows("bold red"))
        assert [k.value for k in table.rows] == ["pg-3"]
        table.set_filter("")
        assert len(table.rows) == 7


class LogApp(App[None]):
    CSS_PATH = CSS_PATH

    def compose(self) -> ComposeResult:
        from tui.widgets.eventlog import EventLog

        yield EventLog(id="events")


async def test_an_early_line_rewrites_only_the_lines_after_it() -> None:
    from session.loglines import LogLine
    from tui.widgets.eventlog import EventLog

    app = LogApp()
    async with app.run_test(size=(80, 20)) as pilot:
        log = app.query_one(EventLog)
        await pilot.pause()
        log.append([LogLine(float(t), "note", f"line {t}") for t in range(0, 100, 10)])
        await pilot.pause()
        rewrites, rows = log.rewrites, len(log.lines)
        log.append([LogLine(100.0, "note", "line 100")])  # in order: appended, nothing rewritten
        assert log.rewrites == rewrites and len(log.lines) == rows + 1
        log.append([LogLine(85.0, "note", "line 85")])  # late: the lines after 85 are written again
        assert log.rewrites == rewrites + 1
        texts = [s.text.split(" ", 1)[1].strip() for s in log.lines]
        assert texts[-3:] == ["note     line 85", "note     line 90", "note     line 100"]
        assert len(log.lines) == rows + 2
