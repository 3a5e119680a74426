"""The console's referral field (Members tab) under Pilot: a clerk records a friend's code for
a member who enrolled without one; a wrong code is one line under the form."""

from __future__ import annotations

from textual.widgets import Button, Input, Static

from staypoint.central.console.app import ConsoleApp, DeskScreen
from staypoint.central.console.desk import Desk
from staypoint.loyalty.referral_codes import referral_code
from tests.api.conftest import NOW, Api
from tests.console.helpers import sign_in
from tests.console.test_console import SIZE


async def _record(pilot: object, screen: DeskScreen, member: str, code: str) -> str:
    screen.query_one("#ref-member", Input).value = ""
    screen.query_one("#ref-code", Input).value = ""
    await pilot.click("#ref-member")  # type: ignore[attr-defined]
    await pilot.press(*member)  # type: ignore[attr-defined]
    screen.query_one("#ref-code", Input).focus()
    await pilot.press(*code)  # type: ignore[attr-defined]
    screen.query_one("#do-referral", Button).focus()
    await pilot.press("enter")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    return str(screen.query_one("#ref-msg", Static).render())


async def test_clerk_records_a_referral_from_the_member_form(desk_api: tuple[Desk, Api]) -> None:
    desk, api = desk_api
    ada = desk.search("ada@example.com")[0]["member"]
    bob = api.enrol("Bob Brown", email="bob@example.com")
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "clerk-1")
        screen = app.screen
        assert isinstance(screen, DeskScreen)
        msg = await _record(pilot, screen, bob, "ZZZZ-ZZZZ")
        assert "not a referral code" in msg
        assert "referred_by" not in api.ledger.member(bob)
        msg = await _record(pilot, screen, bob, referral_code(ada))
        assert msg == f"referral recorded: {bob} referred by {ada}"
        assert api.ledger.member(bob)["referred_by"] == ada
        events = [e for e in api.ledger.store.member_events(bob, 5) if '"member.referred"' in e]
        assert len(events) == 1 and '"staff":"clerk-1"' in events[0].replace(" ", "")
        msg = await _record(pilot, screen, ada, referral_code(bob))  # ada stayed already (F-1)
        assert "has stayed already" in msg
        assert "referred_by" not in api.ledger.member(ada)


async def test_marketing_sees_no_referral_form(desk_api: tuple[Desk, Api]) -> None:
    desk, _ = desk_api
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "mkt-1")
        assert isinstance(app.screen, DeskScreen)
        assert not app.screen.query("#ref-code")
