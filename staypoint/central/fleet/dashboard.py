"""``staypoint fleet``: head office's Textual dashboard of the fleet.

Every node with its property, state colour, last heartbeat, outbox, versions and device
states; filter by property (type in the box) and by trouble (``t``); ``enter`` opens a
node's detail: its recent heartbeats and alerts. The app only reads a :class:`FleetState`
and an :class:`AlertManager` (attributes down); the MQTT monitor that fills them runs
beside it, so the dashboard is tested with a state filled by hand and a fixed clock.

The body is :class:`FleetView`, a widget with its own CSS, bindings and refresh timer:
:class:`FleetDashboard` is a thin app around it (``staypoint fleet``) and head office's
console shows the same widget in its Fleet tab.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input, Label, Static, Switch

from staypoint.central.fleet.alerts import AlertManager, MemorySink
from staypoint.central.fleet.state import STATES, FleetConfig, FleetState, NodeView, in_trouble, utcnow

__all__ = ["FleetDashboard", "FleetView", "NodeDetail"]

STATE_STYLE = {"online": "bold green", "stale": "bold yellow", "offline": "bold red", "unknown": "dim"}
DEVICE_STYLE = {"ok": "green", "paper_out": "bold red", "missing": "red", "offline": "red"}
COLUMNS = (
    "Node",
    "Property",
    "State",
    "Heartbeat",
    "Outbox",
    "Oldest",
    "Version",
    "Prog",
    "Reader",
    "PIN pad",
    "Printer",
    "Disk",
    "Alerts",
)


def age(then: datetime | None, now: datetime) -> str:
    """``12 s ago`` / ``4 min ago`` / ``3 h ago`` / ``never``."""
    if then is None:
        return "never"
    s = max(0.0, (now - then).total_seconds())
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.0f} h ago"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


class NodeDetail(Screen[None]):
    """One node: its recent heartbeats and its alerts."""

    DEFAULT_CSS = """
    NodeDetail {
        padding: 0 1;
    }
    NodeDetail #detail-head {
        height: auto;
        padding: 1 0;
    }
    NodeDetail #history {
        height: 1fr;
    }
    NodeDetail #alerts {
        height: auto;
        max-height: 12;
        padding: 1 0;
    }
    """
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "app.pop_screen", "Back")
    ]

    def __init__(
        self,
        view: NodeView,
        alerts: AlertManager | None,
        memory: MemorySink | None,
        now: datetime,
        config: FleetConfig | None = None,
    ):
        super().__init__()
        self.view = view
        self.alerts = alerts
        self.memory = memory
        self.now = now
        self.config = config

    def compose(self) -> ComposeResult:
        v, now = self.view, self.now
        state = v.state(now, self.config) if self.config is not None else v.status
        head = Text.assemble(
            (v.node, "bold"),
            f"  {v.property}  ",
            (state, STATE_STYLE.get(state, "")),
            f"  last heartbeat {age(v.last_seen, now)}  session {v.session}  heartbeats {v.heartbeats}",
        )
        yield Static(head, id="detail-head")
        yield DataTable(id="history", zebra_stripes=True)
        lines = []
        for alert in self.alerts.active_for(v.node) if self.alerts else []:
            lines.append(Text.assemble(("ACTIVE  ", "bold red"), f"{alert.rule}: {alert.message}"))
        for event in reversed(self.memory.recent(v.node) if self.memory else []):
            style = "red" if event.kind == "fired" else "green"
            lines.append(
                Text.assemble(
                    (f"{event.kind:8}", style),
                    f"{age(event.at, now):>12}  {event.alert.rule}: {event.alert.message}",
                )
            )
        yield Static(Text("\n").join(lines) if lines else Text("no alerts", style="dim"), id="alerts")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#history", DataTable)
        table.add_columns(
            "Received", "Outbox", "Oldest", "Replica age", "Backup lag", "Disk", "Printer", "Skew"
        )
        for s in reversed(self.view.history):
            printer = s.devices.get("printer", {}).get("state", "-")
            table.add_row(
                age(s.received, self.now),
                "-" if s.outbox_depth is None else str(s.outbox_depth),
                _secs(s.oldest_pending_s),
                _secs(s.staleness_s),
                _secs(s.litestream_lag_s),
                "-" if s.disk_free_pct is None else f"{s.disk_free_pct:.0f} %",
                Text(printer, style=DEVICE_STYLE.get(printer, "")),
                "-" if s.skew_s is None else f"{s.skew_s:+.0f} s",
            )


class FleetView(Widget):
    """The fleet at a glance: filters, summary line and one row per node.

    Reusable: mount it in any screen (the console's Fleet tab) or app (:class:`FleetDashboard`).
    Its bindings (``t``, ``/``, ``r``) apply while the focus is inside it; ``enter`` on a row
    pushes :class:`NodeDetail` on the app.
    """

    DEFAULT_CSS = """
    FleetView {
        height: 1fr;
        layout: vertical;
    }
    FleetView #filters {
        height: 3;
        padding: 0 1;
    }
    FleetView #filters Input {
        width: 30;
    }
    FleetView #filters Label {
        padding: 1 1 0 2;
    }
    FleetView #summary {
        height: 1;
        padding: 0 1;
        color: $text-muted;
    }
    FleetView #nodes {
        height: 1fr;
    }
    """
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("t", "toggle_trouble", "Trouble only"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("r", "refresh", "Refresh"),
        Binding("right_square_bracket", "page(1)", "Next page", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page", show=False),
        Binding("s", "cycle_state", "State filter", show=False),
    ]

    def __init__(
        self,
        state: FleetState,
        alerts: AlertManager | None = None,
        memory: MemorySink | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        refresh_s: float = 2.0,
        page_size: int = 200,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.page_size = page_size
        self.page = 0  # from 0; ``]`` and ``[`` move it
        self.pages = 1
        self.total = 0
        self.state_filter: str | None = None  # ``s`` cycles online / stale / offline / unknown / all
        self.state = state
        self.alerts = alerts
        self.memory = memory
        self.clock = clock
        self.refresh_s = refresh_s
        self.property_filter = ""
        self.trouble_only = False
        self.shown: list[str] = []
        self._alerting: Counter[str] = Counter()

    def compose(self) -> ComposeResult:
        with Horizontal(id="filters"):
            yield Input(placeholder="property (e.g. SHA)", id="property")
            yield Label("trouble only")
            yield Switch(value=False, id="trouble")
        yield Static(id="summary")
        yield DataTable(id="nodes", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#nodes", DataTable).add_columns(*COLUMNS)
        self.refresh_table()
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self.refresh_table)

    def focus_table(self) -> None:
        """Put the keyboard on the node table."""
        self.query_one("#nodes", DataTable).focus()

    # -- what is shown --------------------------------------------------------------------------
    def in_trouble(self, view: NodeView, now: datetime) -> bool:
        """Not online, a device not ok, or an active alert."""
        alerting = self.alerts.by_node() if self.alerts else {}
        return in_trouble(view, now, self.state, alerting)

    def matching_nodes(self, now: datetime) -> list[NodeView]:
        """Every node passing the filters, by property then node (live views: read only)."""
        alerting = self.alerts.by_node() if self.alerts else {}
        where = (lambda v: in_trouble(v, now, self.state, alerting)) if self.trouble_only else None
        return self.state.select(
            now, state=self.state_filter, property_contains=self.property_filter.strip() or None, where=where
        )

    def visible_nodes(self, now: datetime) -> list[NodeView]:
        """The current page of :meth:`matching_nodes` (``page_size`` rows: a table of
        100,000 rows would take seconds to draw every refresh)."""
        views = self.matching_nodes(now)
        self.total = len(views)
        self.pages = max(1, (self.total + self.page_size - 1) // self.page_size)
        self.page = min(self.page, self.pages - 1)
        return views[self.page * self.page_size : (self.page + 1) * self.page_size]

    def _row(self, v: NodeView, now: datetime) -> list[str | Text]:
        state = v.state(now, self.state.config)
        last = v.last
        devices = last.devices if last else {}

        def dev(kind: str) -> Text:
            st = devices.get(kind, {}).get("state", "-")
            return Text(st, style=DEVICE_STYLE.get(st, "dim"))

        n_alerts = self._alerting.get(v.node, 0)
        return [
            v.node,
            v.property,
            Text(state, style=STATE_STYLE.get(state, "")),
            age(v.last_seen, now),
            "-" if last is None or last.outbox_depth is None else str(last.outbox_depth),
            _secs(last.oldest_pending_s) if last and last.outbox_depth else "-",
            last.version if last else "-",
            "-" if last is None or last.program_version is None else str(last.program_version),
            dev("reader"),
            dev("pinpad"),
            dev("printer"),
            "-" if last is None or last.disk_free_pct is None else f"{last.disk_free_pct:.0f} %",
            Text(str(n_alerts), style="bold red") if n_alerts else Text("0", style="dim"),
        ]

    def refresh_table(self) -> None:
        """Redraw the table from the state (keeps the cursor on the same node)."""
        now = self.clock()
        table = self.query_one("#nodes", DataTable)
        current = (
            self.shown[table.cursor_row] if self.shown and 0 <= table.cursor_row < len(self.shown) else None
        )
        self._alerting = self.alerts.by_node() if self.alerts else Counter()
        views = self.visible_nodes(now)
        table.clear()
        for v in views:
            table.add_row(*self._row(v, now), key=v.node)
        self.shown = [v.node for v in views]
        if current in self.shown:
            table.move_cursor(row=self.shown.index(current))
        counts = self.state.counts(now)
        n_alerts = sum(self._alerting.values())
        paging = ""
        if self.state_filter is not None:
            paging += f" {self.state_filter}"
        if self.pages > 1:
            first = self.page * self.page_size + 1
            paging += (
                f" ({first}-{first + len(views) - 1} of {self.total}, page {self.page + 1}/{self.pages}: [ ])"
            )
        self.query_one("#summary", Static).update(
            f"{sum(counts.values())} nodes: {counts['online']} online, {counts['stale']} stale, "
            f"{counts['offline']} offline, {counts['unknown']} unknown; "
            f"{n_alerts} alerts; showing {len(views)}{paging}"
        )

    # -- interaction ------------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "property":
            event.stop()
            self.property_filter = event.value
            self.page = 0
            self.refresh_table()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "trouble":
            event.stop()
            self.trouble_only = event.value
            self.page = 0
            self.refresh_table()

    def action_toggle_trouble(self) -> None:
        switch = self.query_one("#trouble", Switch)
        switch.value = not switch.value

    def action_focus_filter(self) -> None:
        self.query_one("#property", Input).focus()

    def action_refresh(self) -> None:
        self.refresh_table()

    def action_page(self, step: int) -> None:
        self.page = max(0, min(self.pages - 1, self.page + step))
        self.refresh_table()

    def action_cycle_state(self) -> None:
        order: list[str | None] = [*STATES, None]
        self.state_filter = order[(order.index(self.state_filter) + 1) % len(order)]
        self.page = 0
        self.refresh_table()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "nodes":
            return
        event.stop()  # the row is ours: a host screen's own table handlers never see it
        if event.row_key.value is None:
            return
        view = self.state.get(str(event.row_key.value))
        if view is not None:
            detail = NodeDetail(view, self.alerts, self.memory, self.clock(), self.state.config)
            self.app.push_screen(detail)


class FleetDashboard(App[None]):
    """``staypoint fleet``: the :class:`FleetView` full screen, with a footer and ``q``."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "Staypoint fleet"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        state: FleetState,
        alerts: AlertManager | None = None,
        memory: MemorySink | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        refresh_s: float = 2.0,
        page_size: int = 200,
    ) -> None:
        super().__init__()
        self.fleet_view = FleetView(
            state, alerts, memory, clock=clock, refresh_s=refresh_s, page_size=page_size, id="fleet"
        )

    def compose(self) -> ComposeResult:
        yield self.fleet_view
        yield Footer()

    def on_mount(self) -> None:
        self.fleet_view.focus_table()
