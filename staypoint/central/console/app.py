"""``staypoint console``: head office's desk as a Textual app (also served with textual-serve).

Sign-in with a role (clerk, marketing, administrator) opens the desk; each role sees the
tabs it may use. The app only calls :class:`Desk` (attributes down); blocking work is
small (one ledger read or one event) so it runs inline. The Fleet tab is the fleet
dashboard's :class:`FleetView` over a :class:`FleetState` handed to the app (the CLI fills
it from a monitor of its own and stops that monitor when the app exits).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Static,
    TabbedContent,
    TabPane,
    TextArea,
)

from staypoint.central.console.desk import ALLOWED, Desk, Staff
from staypoint.central.console.feedback import FeedbackView
from staypoint.central.console.integrations import IntegrationsView
from staypoint.central.console.marketing import MarketingView
from staypoint.central.console.reports_view import ReportsView
from staypoint.central.errors import DomainError
from staypoint.central.fleet.alerts import AlertManager, MemorySink
from staypoint.central.fleet.dashboard import FleetView
from staypoint.central.fleet.state import FleetState
from staypoint.loyalty.events import parse_iso
from staypoint.loyalty.program import ProgramError

FLEET_OFF = (
    "Fleet view off: start the console with --fleet-config /etc/staypoint-central/fleet.toml "
    "to see every node here (or run `staypoint fleet`)."
)


class SignIn(Screen[None]):
    """Staff id + password."""

    def compose(self) -> ComposeResult:
        with Vertical(id="signin"):
            yield Label("Staypoint head office — sign in")
            yield Input(placeholder="staff id", id="staff-id")
            yield Input(placeholder="password", password=True, id="password")
            yield Button("Sign in", id="sign-in", variant="primary")
            yield Static("", id="signin-error", classes="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._try()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._try()

    def _try(self) -> None:
        app = self.app
        assert isinstance(app, ConsoleApp)
        staff_id = self.query_one("#staff-id", Input).value.strip()
        password = self.query_one("#password", Input).value
        try:
            staff = app.desk.sign_in(staff_id, password, app.clock())
        except DomainError as exc:
            self.query_one("#signin-error", Static).update(exc.message)
            return
        app.staff = staff
        app.switch_screen(DeskScreen(staff))


class DeskScreen(Screen[None]):
    """The tabs a role may use."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("ctrl+r", "refresh", "Refresh")
    ]

    def __init__(self, staff: Staff) -> None:
        super().__init__()
        self.staff = staff
        self.selected_claim: str | None = None
        self.selected_quarantine: str | None = None

    @property
    def desk(self) -> Desk:
        app = self.app
        assert isinstance(app, ConsoleApp)
        return app.desk

    def compose(self) -> ComposeResult:
        allowed = ALLOWED[self.staff.role]
        yield Header()
        yield Static(f"Signed in: {self.staff.name} ({self.staff.role})", id="who", classes="hint")
        with TabbedContent():
            if "members" in allowed:
                with TabPane("Members", id="members"):
                    with Horizontal(classes="row"):
                        yield Input(placeholder="number, name, e-mail, +phone or card hash", id="search")
                        yield Button("Search", id="do-search")
                    yield DataTable(id="results", cursor_type="row")
                    yield DataTable(id="history", cursor_type="row")
                    if "adjust" in allowed:  # a referral is booked like an adjustment: clerks and admins
                        with Horizontal(classes="row"):
                            yield Input(placeholder="member number", id="ref-member")
                            yield Input(placeholder="friend's referral code (ABCD-EFGH)", id="ref-code")
                            yield Button("Record referral", id="do-referral")
                        yield Static("", id="ref-msg")
            if "claims" in allowed:
                with TabPane("Claims", id="claims"):
                    with Horizontal(classes="row"):
                        yield Input(placeholder="points", id="claim-points")
                        yield Input(placeholder="reason (to reject)", id="claim-reason")
                        yield Button("Approve", id="approve", variant="success")
                        yield Button("Reject", id="reject", variant="error")
                    yield Static("", id="claim-msg")
                    yield DataTable(id="claims-table", cursor_type="row")
            if "adjust" in allowed:
                with TabPane("Adjust", id="adjust"):
                    yield Input(placeholder="member number", id="adj-member")
                    yield Input(placeholder="points (+/-)", id="adj-points")
                    yield Input(placeholder="reason", id="adj-reason")
                    yield Button("Post adjustment", id="do-adjust", variant="primary")
                    yield Static("", id="adj-msg")
            if "rewards" in allowed:
                with TabPane("Rewards", id="rewards"):
                    yield DataTable(id="rewards-table")
            if "quarantine" in allowed:
                with TabPane("Quarantine", id="quarantine"):
                    with Horizontal(classes="row"):
                        yield Static(
                            "Events head office would not book, and debts to settle", id="quarantine-hint"
                        )
                        yield Button("Acknowledge", id="acknowledge", variant="warning")
                    yield Static("", id="quarantine-msg")
                    yield DataTable(id="quarantine-table", cursor_type="row")
            if "programme" in allowed:
                with TabPane("Programme", id="programme"):
                    yield TextArea("", id="program-text", language=None)
                    with Horizontal(classes="row"):
                        yield Input(placeholder="effective (ISO, e.g. 2027-01-01T00:00:00Z)", id="effective")
                        yield Button("Validate", id="validate")
                        yield Button("Diff", id="diff")
                        yield Button("Publish", id="publish", variant="warning")
                        yield Button("Roll back", id="rollback", variant="error")
                    yield Static("", id="program-out")
            if "marketing" in allowed:
                with TabPane("Marketing", id="marketing"):
                    yield MarketingView(
                        self.desk, self.staff, self.desk_clock, self._campaigns(), id="marketing-view"
                    )
            if "reports" in allowed:
                with TabPane("Reports", id="reports"):
                    yield ReportsView(self.desk, id="reports-view")
            if "feedback" in allowed:
                with TabPane("Feedback", id="feedback"):
                    yield FeedbackView(self.desk, self.staff, self.desk_clock, id="feedback-view")
            if "integrations" in allowed:
                with TabPane("Integrations", id="integrations"):
                    yield IntegrationsView(self.desk.side, self.desk_clock, id="integrations-view")
            with TabPane("Fleet", id="fleet"):
                yield self._fleet_body()
        yield Footer()

    def _campaigns(self) -> Path | None:
        app = self.app
        assert isinstance(app, ConsoleApp)
        return app.campaigns

    def _fleet_body(self) -> FleetView | Static:
        app = self.app
        assert isinstance(app, ConsoleApp)
        if app.fleet is None:
            return Static(FLEET_OFF, id="fleet-off", classes="hint")
        return FleetView(
            app.fleet,
            app.fleet_alerts,
            app.fleet_memory,
            clock=app.clock,
            refresh_s=app.fleet_refresh_s,
            id="fleet-view",
        )

    def on_mount(self) -> None:
        for table_id, cols in (
            ("#results", ("Member", "Name", "Tier", "Points", "E-mail")),
            ("#history", ("At", "Type", "Source", "Points", "Detail")),
            ("#claims-table", ("Claim", "Member", "Source", "Folio", "Property", "Arrival", "Departure")),
            ("#rewards-table", ("Code", "Name", "Points", "Min tier", "Stock", "Issued", "Left")),
            ("#quarantine-table", ("At", "What", "Node", "Member", "Detail")),
        ):
            for table in self.query(table_id).results(DataTable):
                table.add_columns(*cols)
        self.action_refresh()

    def action_refresh(self) -> None:
        for table in self.query("#claims-table").results(DataTable):
            table.clear()
            self.desk.claims.pull(self.desk_clock())
            for c in self.desk.claims.search(status="pending"):
                table.add_row(
                    c["id"][-8:],
                    c["member"],
                    c["source"],
                    c["folio"],
                    c["property"],
                    c["arrival"],
                    c["departure"],
                    key=c["id"],
                )
        for table in self.query("#quarantine-table").results(DataTable):
            table.clear()
            for i, q in enumerate(self.desk.quarantine()):
                table.add_row(
                    q["at"][:19],
                    q["what"],
                    q["node"],
                    q["member"],
                    q["detail"][:60],
                    key=q["key"] or f"debt-{i}",
                )
        for table in self.query("#rewards-table").results(DataTable):
            table.clear()
            for r in self.desk.rewards():
                table.add_row(
                    r["code"],
                    r["name"],
                    str(r["points"]),
                    r["min_tier"],
                    "-" if r["stock"] is None else str(r["stock"]),
                    str(r["issued"]),
                    "-" if r["left"] is None else str(r["left"]),
                )

    def desk_clock(self) -> datetime:
        app = self.app
        assert isinstance(app, ConsoleApp)
        return app.clock()

    # -- events -----------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "search":
            self.search()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if event.data_table.id == "results" and key:
            self.show_history(str(key))
        elif event.data_table.id == "claims-table" and key:
            self.selected_claim = str(key)
            self.query_one("#claim-msg", Static).update(f"claim {key} selected")
        elif event.data_table.id == "quarantine-table" and key:
            self.selected_quarantine = None if str(key).startswith("debt-") else str(key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "claims-table" and event.row_key is not None:
            self.selected_claim = str(event.row_key.value)
        if event.data_table.id == "quarantine-table" and event.row_key is not None:
            key = str(event.row_key.value)
            self.selected_quarantine = None if key.startswith("debt-") else key

    def on_button_pressed(self, event: Button.Pressed) -> None:
        handlers: dict[str | None, Callable[[], None]] = {
            "do-search": self.search,
            "approve": self.approve,
            "reject": self.reject,
            "do-adjust": self.adjust,
            "do-referral": self.refer,
            "acknowledge": self.acknowledge,
            "validate": self.validate,
            "diff": self.diff,
            "publish": self.publish,
            "rollback": self.rollback,
        }
        handler = handlers.get(event.button.id)
        if handler is not None:
            handler()

    # -- journeys -------------------------------------------------------------------------------
    def search(self) -> None:
        table = self.query_one("#results", DataTable)
        table.clear()
        for r in self.desk.search(self.query_one("#search", Input).value):
            table.add_row(
                r["member"], r["name"], r["tier"], f"{r['points']:,}", r["email"] or "", key=r["member"]
            )
        if table.row_count == 1:
            first = table.coordinate_to_cell_key(Coordinate(0, 0)).row_key.value
            self.show_history(str(first))

    def show_history(self, member: str) -> None:
        table = self.query_one("#history", DataTable)
        table.clear()
        for h in self.desk.history(member):
            table.add_row(
                h["at"][:19],
                h["type"],
                h["source"],
                "" if h["points"] is None else str(h["points"]),
                str(h["detail"])[:40],
            )

    def _claim_msg(self, text: str) -> None:
        self.query_one("#claim-msg", Static).update(text)

    def approve(self) -> None:
        if not self.selected_claim:
            return self._claim_msg("select a claim first")
        try:
            points = int(self.query_one("#claim-points", Input).value)
            self.desk.claims.approve(self.selected_claim, self.staff.id, points, self.desk_clock())
        except ValueError:
            return self._claim_msg("points: a whole number")
        except DomainError as exc:
            return self._claim_msg(exc.message)
        self._claim_msg(f"approved: {points:,} points")
        self.action_refresh()

    def reject(self) -> None:
        if not self.selected_claim:
            return self._claim_msg("select a claim first")
        try:
            reason = self.query_one("#claim-reason", Input).value
            self.desk.claims.reject(self.selected_claim, self.staff.id, reason, self.desk_clock())
        except DomainError as exc:
            return self._claim_msg(exc.message)
        self._claim_msg("rejected")
        self.action_refresh()

    def acknowledge(self) -> None:
        msg = self.query_one("#quarantine-msg", Static)
        if not self.selected_quarantine:
            msg.update("select a quarantined event first (debts clear when the balance is settled)")
            return
        try:
            self.desk.acknowledge(self.selected_quarantine, self.staff, self.desk_clock())
        except DomainError as exc:
            msg.update(exc.message)
            return
        msg.update(f"acknowledged: {self.selected_quarantine}")
        self.selected_quarantine = None
        self.action_refresh()

    def adjust(self) -> None:
        msg = self.query_one("#adj-msg", Static)
        try:
            member = self.query_one("#adj-member", Input).value.strip()
            points = int(self.query_one("#adj-points", Input).value)
            reason = self.query_one("#adj-reason", Input).value
            balance = self.desk.services.adjust(member, points, reason, self.staff.id, self.desk_clock())
        except ValueError:
            msg.update("points: a whole number, e.g. 500 or -200")
            return
        except DomainError as exc:
            msg.update(exc.message)
            return
        msg.update(f"posted: balance now {balance:,}")

    def refer(self) -> None:
        """A friend's code for a member who enrolled without one (before their first stay)."""
        msg = self.query_one("#ref-msg", Static)
        member = self.query_one("#ref-member", Input).value.strip()
        code = self.query_one("#ref-code", Input).value.strip()
        if not member or not code:
            msg.update("member number and referral code, both")
            return
        try:
            out = self.desk.services.refer(
                member, code, self.desk_clock(), stream="console", staff=self.staff.id
            )
        except DomainError as exc:
            msg.update(exc.message)
            return
        word = "already recorded" if out["result"] == "unchanged" else "recorded"
        msg.update(f"referral {word}: {member} referred by {out['referred_by']}")

    def _text(self) -> str:
        return self.query_one("#program-text", TextArea).text

    def _out(self, text: str) -> None:
        self.query_one("#program-out", Static).update(text)

    def validate(self) -> None:
        try:
            program = self.desk.validate(self._text())
        except ProgramError as exc:
            return self._out(f"not valid: {exc}")
        self._out(f"valid: {program.name} v{program.version}")

    def diff(self) -> None:
        self._out(self.desk.diff(self._text()) or "no difference")

    def publish(self) -> None:
        try:
            raw = self.query_one("#effective", Input).value.strip()
            effective = parse_iso(raw) if raw else self.desk_clock()
            version = self.desk.publish(self._text(), effective, self.staff, self.desk_clock())
        except (ProgramError, DomainError, ValueError) as exc:
            return self._out(f"not published: {getattr(exc, 'message', exc)}")
        self._out(f"v{version} scheduled for {effective.isoformat()}")

    def rollback(self) -> None:
        try:
            version = self.desk.rollback(self.staff, self.desk_clock())
        except DomainError as exc:
            return self._out(exc.message)
        self._out(f"rolled back: the previous rules are in force as v{version}")


class ConsoleApp(App[None]):
    """Head office's desk."""

    CSS_PATH = ["console.tcss", "marketing.tcss", "feedback.tcss", "integrations.tcss"]  # noqa: RUF012
    TITLE = "Staypoint head office"
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        desk: Desk,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        fleet: FleetState | None = None,
        fleet_alerts: AlertManager | None = None,
        fleet_memory: MemorySink | None = None,
        fleet_refresh_s: float = 2.0,
        campaigns: Path | None = None,
    ) -> None:
        """``fleet`` (with its alerts and their memory) feeds the Fleet tab; without it the
        tab says how to turn it on. The app only reads them; whoever fills them stops them.
        ``campaigns``: the campaigns file the Marketing tab's *Send* takes its gateways from."""
        super().__init__()
        self.desk = desk
        self.clock = clock
        self.staff: Staff | None = None
        self.fleet = fleet
        self.fleet_alerts = fleet_alerts
        self.fleet_memory = fleet_memory
        self.fleet_refresh_s = fleet_refresh_s
        self.campaigns = campaigns

    def on_mount(self) -> None:
        self.push_screen(SignIn())


def make_console(desk: Desk, **kw: Any) -> ConsoleApp:
    """Factory the CLI, textual-serve and the tests share."""
    return ConsoleApp(desk, **kw)
