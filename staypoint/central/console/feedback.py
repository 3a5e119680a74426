"""The console's Feedback tab: members' comments and tags by property and tier, lowest
scores and highest tiers first, each followed up (open / contacted / closed, who, when).

Rows come from :class:`~staypoint.central.feedback.FeedbackDesk` (the ``feedback`` side
table, pulled from the ledger on every refresh); a low score from the top tier is flagged
``ALERT`` and stays on top until it is closed (docs/console.md, Feedback).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Static

from staypoint.central.console.desk import Desk, Staff
from staypoint.central.feedback import FeedbackDesk, FeedbackError

COLUMNS = ("", "Stars", "Tier", "Property", "Member", "Tags", "Comment", "Status", "By", "At")


class FeedbackView(Vertical):
    """Filter by property and tier; select a row; mark it contacted, closed or open again."""

    def __init__(
        self, desk: Desk, staff: Staff, clock: Callable[[], datetime], *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.feedback = FeedbackDesk(desk.ledger, desk.side)
        self.staff = staff
        self.clock = clock
        self.selected: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="fb-alerts", classes="fb-alerts")
        with Horizontal(classes="row"):
            yield Input(placeholder="property", id="fb-property")
            yield Input(placeholder="tier", id="fb-tier")
            yield Button("Filter", id="fb-filter")
        with Horizontal(classes="row"):
            yield Input(placeholder="note (what was done)", id="fb-note")
            yield Button("Contacted", id="fb-contacted", variant="primary")
            yield Button("Closed", id="fb-closed", variant="success")
            yield Button("Reopen", id="fb-open")
        yield Static("", id="fb-msg")
        yield DataTable(id="fb-table", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#fb-table", DataTable).add_columns(*COLUMNS)
        self.reload()

    def reload(self) -> None:
        self.feedback.pull(self.clock())
        table = self.query_one("#fb-table", DataTable)
        table.clear()
        rows = self.feedback.search(
            property_=self.query_one("#fb-property", Input).value.strip() or None,
            tier=self.query_one("#fb-tier", Input).value.strip() or None,
        )
        for r in rows:
            alert = bool(r["alerted"]) and r["status"] != "closed"
            table.add_row(
                "ALERT" if alert else "",
                "★" * int(r["stars"]),
                r["tier"],
                r["property"],
                r["member"] or "-",
                ", ".join(r["tags"]) or "-",
                (r["comment"] or "-")[:60],
                r["status"],
                r["status_by"] or "",
                (r["status_at"] or r["at"])[:16],
                key=r["id"],
            )
        alerts = self.feedback.open_alerts()
        self.query_one("#fb-alerts", Static).update(
            f"{alerts} low score(s) from top-tier members to follow up" if alerts else "no open alerts"
        )
        self.set_class(alerts > 0, "has-alerts")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self.selected = str(event.row_key.value)
        event.stop()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.selected = str(event.row_key.value)
        event.stop()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("fb-property", "fb-tier"):
            self.reload()
        event.stop()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or ""
        event.stop()
        if bid == "fb-filter":
            self.reload()
            return
        status = {"fb-contacted": "contacted", "fb-closed": "closed", "fb-open": "open"}.get(bid)
        if status is None:
            return
        msg = self.query_one("#fb-msg", Static)
        if self.selected is None:
            msg.update("select a feedback row first")
            return
        note = self.query_one("#fb-note", Input).value.strip()
        try:
            self.feedback.follow_up(self.selected, status, self.staff.id, self.clock(), note)
        except FeedbackError as exc:
            msg.update(str(exc))
            return
        msg.update(f"{self.selected[-8:]}: {status} by {self.staff.id}")
        self.reload()
