"""The fleet dashboard: Pilot-driven filters and detail, and a snapshot of a mixed fleet.

Fixed clock, state filled by hand (no broker): the picture depends on nothing else.
Refresh the snapshot only on the pinned Textual version, after looking at the SVG.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from staypoint.central.fleet.alerts import AlertManager, MemorySink
from staypoint.central.fleet.dashboard import FleetDashboard, NodeDetail
from staypoint.central.fleet.state import FleetConfig, FleetState
from tests.fleet.sim import SimNode

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = FleetConfig(period_s=30)
SIZE = (150, 30)


def mixed_fleet() -> FleetDashboard:
    """Twelve nodes at three properties: healthy, stale, offline, paper out, backlog, disk."""
    state = FleetState(CONFIG)
    memory = MemorySink()
    alerts = AlertManager(state, [memory])

    def beat(node: SimNode, seconds_ago: float) -> None:
        at = NOW - timedelta(seconds=seconds_ago)
        state.ingest(f"sp/v1/node/{node.node}/health", json.dumps(node.doc(at)).encode(), at)

    for i in range(1, 5):
        beat(SimNode(f"sha-lobby-{i:02d}", "SHA"), 10 + i)
    beat(SimNode("sha-lobby-05", "SHA", paper="paper_out"), 8)
    beat(SimNode("lon-lobby-01", "LON", outbox_depth=240, oldest_pending_s=1500), 12)
    beat(SimNode("lon-lobby-02", "LON"), 400)  # silent: stale for minutes
    beat(SimNode("lon-lobby-03", "LON", disk_free_pct=6.0), 5)
    for i in range(1, 4):
        beat(SimNode(f"nyc-lobby-{i:02d}", "NYC"), 20 + i)
    beat(SimNode("nyc-lobby-04", "NYC"), 900)
    state.ingest(
        "sp/v1/node/nyc-lobby-04/status", b'{"state":"offline","session":1}', NOW - timedelta(seconds=890)
    )
    # Alerts as they stood five minutes ago and now: history for the detail view.
    alerts.evaluate(NOW)
    return FleetDashboard(state, alerts, memory, clock=lambda: NOW, refresh_s=0)


def rows(app: FleetDashboard) -> list[str]:
    return list(app.fleet_view.shown)


async def test_filters_and_detail() -> None:
    messages: list[Any] = []
    app = mixed_fleet()
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        assert len(rows(app)) == 12
        await pilot.press("t")  # trouble only
        await pilot.pause()
        assert rows(app) == ["lon-lobby-01", "lon-lobby-02", "lon-lobby-03", "nyc-lobby-04", "sha-lobby-05"]
        await pilot.press("slash")
        for ch in "sha":
            await pilot.press(ch)
        await pilot.pause()
        assert rows(app) == ["sha-lobby-05"]
        app.query_one("#nodes", DataTable).focus()  # keys go to the table, not the filter box
        await pilot.press("t")
        await pilot.pause()
        assert rows(app) == [f"sha-lobby-{i:02d}" for i in range(1, 6)]
        # Open a node's detail from the table.
        table = app.query_one("#nodes", DataTable)
        table.focus()
        table.move_cursor(row=4)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NodeDetail)
        assert app.screen.view.node == "sha-lobby-05"
        text = str(app.screen.query_one("#alerts").render())
        assert "paper" in text and "out of paper" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, NodeDetail)
    assert any(type(m).__name__ == "RowSelected" for m in messages)


def test_snapshot_mixed_fleet(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.pause()

    assert snap_compare(mixed_fleet(), terminal_size=SIZE, run_before=run_before)


async def test_pages_and_state_filter() -> None:
    """450 nodes, 200 a page: ``]`` and ``[`` move through three pages (every node once),
    ``s`` shows one state at a time, and typing a property starts again at page 1."""
    state = FleetState(CONFIG)
    for i in range(450):
        node = SimNode(f"big-{i:03d}", ("AAA", "BBB")[i % 2])
        at = NOW - timedelta(seconds=400 if i % 9 == 0 else 10)
        state.ingest(f"sp/v1/node/{node.node}/health", json.dumps(node.doc(at)).encode(), at)
    app = FleetDashboard(state, AlertManager(state), clock=lambda: NOW, refresh_s=0)
    async with app.run_test(size=SIZE) as pilot:
        view = app.fleet_view
        pages = [rows(app)]
        for _ in range(3):  # the third press stays on the last page
            await pilot.press("right_square_bracket")
            await pilot.pause()
            pages.append(rows(app))
        assert [len(p) for p in pages] == [200, 200, 50, 50]
        assert len(set(pages[0] + pages[1] + pages[2])) == 450
        assert pages[0] == sorted(pages[0], key=lambda n: (int(n[4:]) % 2, n))
        assert "page 3/3" in str(view.query_one("#summary", Static).render())
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert rows(app) == pages[1]

        await pilot.press("s")  # online
        await pilot.pause()
        assert view.page == 0 and view.total == 400
        await pilot.press("s")  # stale
        await pilot.pause()
        assert view.total == 50 and all(state.nodes[n].state(NOW, CONFIG) == "stale" for n in rows(app))
        for _ in range(3):  # offline, unknown, then all again
            await pilot.press("s")
        await pilot.pause()
        assert view.state_filter is None and view.total == 450

        await pilot.press("right_square_bracket")
        await pilot.press("slash")
        await pilot.press("B", "B")
        await pilot.pause()
        assert view.page == 0 and view.total == 225 and len(rows(app)) == 200
        assert all(n.endswith(("1", "3", "5", "7", "9")) for n in rows(app))
