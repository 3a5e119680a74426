"""Pilot tests of the console's journeys, snapshots of its main screens."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, Static, TabbedContent

from staypoint.central.console.app import ConsoleApp, DeskScreen
from staypoint.central.console.desk import Desk
from tests.api.conftest import NOW, Api, program_text
from tests.console.conftest import PASSWORD
from tests.console.helpers import sign_in

SIZE = (120, 36)


async def test_wrong_password_then_clerk_finds_member_adjusts_and_settles_claim(
    desk_api: tuple[Desk, Api],
) -> None:
    desk, api = desk_api
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#staff-id")
        await pilot.press(*"clerk-1")
        await pilot.click("#password")
        await pilot.press(*"nope", "enter")
        await pilot.pause()
        assert "not right" in str(app.screen.query_one("#signin-error", Static).render())
        app.screen.query_one("#password").value = ""  # type: ignore[attr-defined]
        await pilot.click("#password")
        await pilot.press(*PASSWORD, "enter")
        await pilot.pause()
        assert isinstance(app.screen, DeskScreen) and app.staff and app.staff.role == "clerk"
        assert not app.screen.query("#programme")  # a clerk does not administer the programme
        await pilot.click("#search")
        await pilot.press(*"ada@example.com", "enter")
        await pilot.pause()
        assert app.screen.query_one("#results", DataTable).row_count == 1
        history = app.screen.query_one("#history", DataTable)
        assert history.row_count >= 3  # enrolled, stay, bonus, claim
        member = desk.search("ada@example.com")[0]["member"]
        screen = app.screen
        assert isinstance(screen, DeskScreen)
        screen.query_one("#adj-member").value = member  # type: ignore[attr-defined]
        screen.query_one("#adj-points").value = "250"  # type: ignore[attr-defined]
        screen.query_one("#adj-reason").value = "goodwill: noisy room"  # type: ignore[attr-defined]
        screen.adjust()
        await pilot.pause()
        assert api.ledger.member(member)["points"] == 3750
        claims = screen.query_one("#claims-table", DataTable)
        assert claims.row_count == 1
        screen.selected_claim = desk.claims.search(status="pending")[0]["id"]
        screen.query_one("#claim-points").value = "1000"  # type: ignore[attr-defined]
        screen.approve()
        await pilot.pause()
        assert api.ledger.member(member)["points"] == 4750
        assert claims.row_count == 0


async def test_admin_validates_diffs_publishes_and_rolls_back(desk_api: tuple[Desk, Api]) -> None:
    desk, api = desk_api
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "admin-1")
        screen = app.screen
        assert isinstance(screen, DeskScreen)
        new = program_text().replace("version = 1", "version = 2").replace('"2500"', '"2400"')
        new = new.replace("points = 2500", "points = 2400")
        screen.query_one("#program-text").text = "[program]\nname = 'x'"  # type: ignore[attr-defined]
        screen.validate()
        assert "not valid" in str(screen.query_one("#program-out", Static).render())
        screen.query_one("#program-text").text = new  # type: ignore[attr-defined]
        screen.validate()
        assert "valid: Staypoint Rewards v2" in str(screen.query_one("#program-out", Static).render())
        screen.diff()
        assert "+points = 2400" in str(screen.query_one("#program-out", Static).render())
        screen.query_one("#effective").value = "2027-01-01T00:00:00Z"  # type: ignore[attr-defined]
        screen.publish()
        assert api.ledger.program().version == 1  # scheduled, not yet in force
        assert desk.run_due(NOW.replace(year=2027, month=1, day=1)) == [2]
        assert api.ledger.program().reward("LATE-CO").points == 2400
        screen.rollback()
        program = api.ledger.program()
        assert program.version == 3 and program.reward("LATE-CO").points == 2500


def test_snapshot_sign_in(snap_compare: Any, desk_api: tuple[Desk, Api]) -> None:
    desk, _ = desk_api
    assert snap_compare(ConsoleApp(desk, clock=lambda: NOW), terminal_size=SIZE)


def test_snapshot_members_and_claims(snap_compare: Any, desk_api: tuple[Desk, Api]) -> None:
    desk, _ = desk_api

    async def run_before(pilot: Any) -> None:
        await sign_in(pilot, "clerk-1")
        await pilot.click("#search")
        await pilot.press(*"Ada", "enter")
        await pilot.pause()

    assert snap_compare(ConsoleApp(desk, clock=lambda: NOW), terminal_size=SIZE, run_before=run_before)


def test_snapshot_rewards_for_marketing(snap_compare: Any, desk_api: tuple[Desk, Api]) -> None:
    desk, _ = desk_api

    async def run_before(pilot: Any) -> None:
        await sign_in(pilot, "mkt-1")
        pilot.app.screen.query_one("TabbedContent").active = "rewards"
        await pilot.pause()

    assert snap_compare(ConsoleApp(desk, clock=lambda: NOW), terminal_size=SIZE, run_before=run_before)


async def test_clerk_sees_a_quarantined_event_with_member_and_node_and_acknowledges_it(
    desk_api: tuple[Desk, Api],
) -> None:
    from staypoint.loyalty.events import Event, iso, uuid7

    desk, api = desk_api
    member = desk.search("ada@example.com")[0]["member"]
    data = {"points": 2**62}
    forged = Event("sha-lobby-09", 1, 1, uuid7(NOW), iso(NOW), "points.adjusted", member, 1, data)
    assert api.ledger.ingest("sha-lobby-09", [forged.to_dict()], NOW).rejected == 1
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "clerk-1")
        screen = app.screen
        assert isinstance(screen, DeskScreen)
        table = screen.query_one("#quarantine-table", DataTable)
        assert table.row_count == 1
        row = table.get_row_at(0)
        assert row[1:4] == ["quarantined", "sha-lobby-09", member] and "outside" in row[4]
        screen.query_one(TabbedContent).active = "quarantine"
        await pilot.pause()
        screen.query_one("#quarantine-table", DataTable).move_cursor(row=0)  # highlights: selects it
        await pilot.pause()
        assert screen.selected_quarantine == forged.id
        await pilot.click("#acknowledge")
        await pilot.pause()
        assert table.row_count == 0 and api.ledger.quarantine() == []
        assert [q["acknowledged_at"] for q in api.ledger.quarantine(open_only=False)] == [iso(NOW)]
