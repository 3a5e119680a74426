"""The console's Reports tab: any report, filtered by dates, property and tier, as a table.

The figures are the CLI's and the API's (``reports.cli.report_figures`` over the ledger's
store URL); columns show their readable labels (``render.label``), headline figures above.
Styles: ``marketing.tcss`` (the marketing role's two tabs share it).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Select, Static

from staypoint.central.console.desk import Desk
from staypoint.central.reports import figures as fig
from staypoint.central.reports.render import label


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, Decimal):
        return f"{v:,}"
    return str(v)


class ReportsView(Vertical):
    """Pick a report, filter it, read it."""

    def __init__(self, desk: Desk, *, cache: Path | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.desk = desk
        self.cache = cache

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Select(
                [(label(n), n) for n in fig.REPORTS], value="growth", allow_blank=False, id="rpt-name"
            )
            yield Input(placeholder="from YYYY-MM-DD", id="rpt-from")
            yield Input(placeholder="to (day after) YYYY-MM-DD", id="rpt-to")
            yield Input(placeholder="property", id="rpt-property")
            yield Input(placeholder="tier", id="rpt-tier")
            yield Button("Show", id="rpt-show", variant="primary")
        yield Static("", id="rpt-headline")
        yield DataTable(id="rpt-table", cursor_type="row")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "rpt-show":
            event.stop()
            self.show()

    def _day(self, wid: str) -> date | None:
        text = self.query_one(f"#{wid}", Input).value.strip()
        return date.fromisoformat(text) if text else None

    def show(self) -> None:
        from staypoint.central.api.reports import ledger_url
        from staypoint.central.reports.cli import report_figures

        head = self.query_one("#rpt-headline", Static)
        name = str(self.query_one("#rpt-name", Select).value)
        try:
            start, end = self._day("rpt-from"), self._day("rpt-to")
        except ValueError:
            head.update("from and to are days: YYYY-MM-DD")
            return
        prop = self.query_one("#rpt-property", Input).value.strip() or None
        tier = self.query_one("#rpt-tier", Input).value.strip() or None
        r = report_figures(
            ledger_url(self.desk.services),
            [name],
            start=start,
            end=end,
            property=prop,
            tier=tier,
            cache=self.cache,
        )[name]
        table = self.query_one("#rpt-table", DataTable)
        table.clear(columns=True)
        table.add_columns(*(label(c) for c in r.columns))
        for row in r.rows:
            table.add_row(*(_cell(v) for v in row))
        heads = [f"{label(k)}: {_cell(v)}" for k, v in r.headline.items() if not isinstance(v, list)]
        head.update(f"{r.title}\n" + " · ".join(heads))
