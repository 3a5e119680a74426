"""The console's Fleet tab: the fleet dashboard's view over a state filled by hand, its
filters and node detail inside the desk; the hint without a fleet; the CLI's monitor is
stopped when the console exits."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

import pytest
from textual.widgets import DataTable, Static, TabbedContent

from staypoint.central.console import cli as console_cli
from staypoint.central.console.app import FLEET_OFF, ConsoleApp, DeskScreen
from staypoint.central.console.desk import Desk
from staypoint.central.fleet.alerts import AlertManager, MemorySink
from staypoint.central.fleet.dashboard import FleetView, NodeDetail
from staypoint.central.fleet.state import FleetConfig, FleetState
from tests.api.conftest import NOW, Api
from tests.console.helpers import sign_in
from tests.console.test_console import SIZE
from tests.fleet.sim import SimNode


def small_fleet() -> tuple[FleetState, AlertManager, MemorySink]:
    """Five nodes at two properties; one printer out of paper, one node silent for minutes."""
    state = FleetState(FleetConfig(period_s=30))
    memory = MemorySink()
    alerts = AlertManager(state, [memory])

    def beat(node: SimNode, seconds_ago: float) -> None:
        at = NOW - timedelta(seconds=seconds_ago)
        state.ingest(f"sp/v1/node/{node.node}/health", json.dumps(node.doc(at)).encode(), at)

    beat(SimNode("sha-lobby-01", "SHA"), 10)
    beat(SimNode("sha-lobby-02", "SHA", paper="paper_out"), 8)
    beat(SimNode("lon-lobby-01", "LON"), 12)
    beat(SimNode("lon-lobby-02", "LON"), 400)
    beat(SimNode("lon-lobby-03", "LON"), 5)
    alerts.evaluate(NOW)
    return state, alerts, memory


async def _open_fleet_tab(pilot: Any) -> DeskScreen:
    await sign_in(pilot, "clerk-1")
    screen = pilot.app.screen
    assert isinstance(screen, DeskScreen)
    screen.query_one(TabbedContent).active = "fleet"
    await pilot.pause()
    return screen


async def test_fleet_tab_lists_filters_and_opens_a_node(desk_api: tuple[Desk, Api]) -> None:
    desk, _ = desk_api
    state, alerts, memory = small_fleet()
    app = ConsoleApp(desk, clock=lambda: NOW, fleet=state, fleet_alerts=alerts, fleet_memory=memory)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_fleet_tab(pilot)
        view = screen.query_one(FleetView)
        table = view.query_one("#nodes", DataTable)
        everyone = ["lon-lobby-01", "lon-lobby-02", "lon-lobby-03", "sha-lobby-01", "sha-lobby-02"]
        assert view.shown == everyone and table.row_count == 5
        summary = str(view.query_one("#summary", Static).render())
        assert "5 nodes: 4 online, 1 stale" in summary
        # Filter by property: type in the box.
        await pilot.click("#property")
        await pilot.press(*"sha")
        await pilot.pause()
        assert view.shown == ["sha-lobby-01", "sha-lobby-02"] and table.row_count == 2
        assert "showing 2" in str(view.query_one("#summary", Static).render())
        # Trouble only, from the table's key binding, inside the console.
        table.focus()
        await pilot.press("t")
        await pilot.pause()
        assert view.shown == ["sha-lobby-02"]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NodeDetail) and app.screen.view.node == "sha-lobby-02"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        # Clearing the filters shows the whole fleet again.
        await pilot.press("t")
        view.query_one("#property").value = ""  # type: ignore[attr-defined]
        await pilot.pause()
        assert view.shown == everyone


async def test_fleet_tab_without_a_fleet_says_how_to_enable_it(desk_api: tuple[Desk, Api]) -> None:
    desk, _ = desk_api
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_fleet_tab(pilot)
        assert not screen.query(FleetView)
        text = str(screen.query_one("#fleet-off", Static).render())
        assert text == FLEET_OFF and "--fleet-config" in text


class _FakeMonitor:
    def __init__(self) -> None:
        self.state, self.alerts, self.memory = small_fleet()
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1


@pytest.mark.parametrize("crash", [False, True])
def test_cli_stops_the_fleet_monitor_when_the_console_exits(
    monkeypatch: pytest.MonkeyPatch, desk_api: tuple[Desk, Api], crash: bool
) -> None:
    desk, _ = desk_api
    monitor = _FakeMonitor()
    started: list[tuple[str, str]] = []
    ran: list[ConsoleApp] = []

    def fake_start(path: str, *, client_suffix: str) -> _FakeMonitor:
        started.append((path, client_suffix))
        return monitor

    def fake_run(self: ConsoleApp) -> None:
        assert monitor.stopped == 0  # running while the console runs
        ran.append(self)
        if crash:
            raise RuntimeError("console crashed")

    monkeypatch.setattr("staypoint.central.fleet.cli.start_monitor", fake_start)
    monkeypatch.setattr(console_cli, "build_desk", lambda args: desk)
    monkeypatch.setattr(ConsoleApp, "run", fake_run)
    parser = argparse.ArgumentParser()
    console_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--store", "x", "--side", "y", "--profiles", "z", "--fleet-config", "/etc/fleet.toml"]
    )
    if crash:
        with pytest.raises(RuntimeError):
            args.fn(args)
    else:
        args.fn(args)
    assert monitor.stopped == 1
    assert started and started[0][0] == "/etc/fleet.toml" and started[0][1].startswith("console-")
    assert ran[0].fleet is monitor.state and ran[0].fleet_alerts is monitor.alerts
