"""Guest journeys on the kiosk, driven by touch through Pilot at 800×480 (100×30 cells)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from textual.widgets import Button

from staypoint.edge.service import NodeService, PinLocked
from staypoint.kiosk.app import Devices, KioskApp
from staypoint.kiosk.hardware.printer.sim import SimPrinter
from staypoint.kiosk.hardware.reader.sim import SimReader
from staypoint.kiosk.screens.attract import AttractScreen
from staypoint.kiosk.screens.dashboard import DashboardScreen
from staypoint.kiosk.screens.identify import IdentifyScreen
from staypoint.kiosk.screens.pin import PinScreen
from staypoint.kiosk.screens.rewards import RewardsScreen
from staypoint.kiosk.screens.voucher import VoucherScreen
from tests.kiosk.conftest import ANNA, BEN, FARID, LARGE, NOW, SMALL, Clock, card, number
from tests.kiosk.helpers import dom_text, keypad, settle, text_of, wait_until

Build = Callable[..., KioskApp]


def reader(devices: Devices) -> SimReader:
    assert isinstance(devices.reader, SimReader)
    return devices.reader


def printer(devices: Devices) -> SimPrinter:
    assert isinstance(devices.printer, SimPrinter)
    return devices.printer


async def sign_in(pilot, devices: Devices, index: int) -> None:  # type: ignore[no-untyped-def]
    reader(devices).tap(uid=card(index))
    await settle(pilot)
    assert isinstance(pilot.app.screen, PinScreen)
    await keypad(pilot, "1234")
    assert isinstance(pilot.app.screen, DashboardScreen)


async def test_identify_by_card(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await sign_in(pilot, devices, ANNA)
        assert "Anna A." in text_of(app, "#member-name")
        assert text_of(app, "#points") == "25,875"
        assert "expire" in text_of(app, "#expiring")
        assert app.session is not None and app.session.member == number(ANNA)


async def test_identify_by_number(build: Build) -> None:
    app = build()
    async with app.run_test(size=LARGE) as pilot:
        await pilot.click("#type-number")
        await settle(pilot)
        assert isinstance(app.screen, IdentifyScreen)
        await keypad(pilot, number(BEN))
        assert isinstance(app.screen, PinScreen)
        await keypad(pilot, "1234")
        assert "Ben A." in text_of(app, "#member-name")


async def test_bad_check_digit_caught_before_lookup(build: Build) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.click("#type-number")
        await settle(pilot)
        good = number(BEN)
        bad = good[:-1] + str((int(good[-1]) + 1) % 10)
        # No OK: the tenth digit alone brings the warning.
        await keypad(pilot, bad, ok=False)
        assert "check digit" in text_of(app, "#identify-help")
        await pilot.click("#key-ok")
        await settle(pilot)
        assert isinstance(app.screen, IdentifyScreen)
        assert "check digit" in text_of(app, "#identify-help")


async def test_unknown_card_says_so_on_attract(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        reader(devices).tap(uid="04DEADBEEF0001")
        await settle(pilot)
        assert isinstance(app.screen, AttractScreen)
        assert "not registered" in text_of(app, "#attract-message")


async def test_wrong_pin_to_lock_out(build: Build, devices: Devices, service: NodeService) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        reader(devices).tap(uid=card(BEN))
        await settle(pilot)
        for left in (4, 3, 2, 1):
            await keypad(pilot, "9999")
            assert f"{left} {'try' if left == 1 else 'tries'} left" in text_of(app, "#pin-prompt")
        await keypad(pilot, "9999")
        assert "locked" in text_of(app, "#pin-prompt")
        assert app.screen.query_one("#locked-ok", Button).display
        await pilot.click("#locked-ok")
        await settle(pilot)
        assert isinstance(app.screen, AttractScreen)
        # Locked even with the right PIN now; a new visit says so at once.
        with pytest.raises(PinLocked):
            service.verify_pin(number(BEN), "1234", NOW)
        reader(devices).tap(uid=card(BEN))
        await settle(pilot)
        await keypad(pilot, "1234")
        assert "locked" in text_of(app, "#pin-prompt")


async def open_rewards(pilot, devices: Devices, index: int) -> RewardsScreen:  # type: ignore[no-untyped-def]
    await sign_in(pilot, devices, index)
    await pilot.click("#rewards")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, RewardsScreen)
    return screen


async def redeem(pilot, code: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.click(f"#reward-{code}")
    await settle(pilot)
    await pilot.click("#yes")
    await settle(pilot)


async def test_redeem_with_enough_points(build: Build, devices: Devices, service: NodeService) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await open_rewards(pilot, devices, ANNA)
        await redeem(pilot, "LATE-CO")
        assert isinstance(app.screen, VoucherScreen)
        slip = printer(devices).slips[-1]
        assert slip.member_name == "Anna A." and slip.reward_name.startswith("Late check-out")
        assert slip.code in text_of(app, "#voucher-code")
        assert "Printed" in text_of(app, "#print-state")
        assert service.summary(number(ANNA), NOW).points == 25_875 - 2_500
        await pilot.click("#back")
        await settle(pilot)
        # Back on the dashboard, the balance is re-read.
        assert text_of(app, "#points") == "23,375"


async def test_confirm_can_be_declined(build: Build, devices: Devices, service: NodeService) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await open_rewards(pilot, devices, ANNA)
        await pilot.click("#reward-LATE-CO")
        await settle(pilot)
        await pilot.click("#no")
        await settle(pilot)
        assert isinstance(app.screen, RewardsScreen)
        assert service.summary(number(ANNA), NOW).points == 25_875


async def test_too_few_points_is_greyed_with_reason(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_rewards(pilot, devices, BEN)
        assert screen.query_one("#reward-SPA-60", Button).disabled
        assert "points" in text_of(app, "#reason-SPA-60").lower()
        assert not screen.query_one("#reward-BREAKFAST", Button).disabled


async def test_tier_too_low_is_greyed_with_reason(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_rewards(pilot, devices, ANNA)
        assert screen.query_one("#reward-UPGRADE", Button).disabled
        assert "gold" in text_of(app, "#reason-UPGRADE").lower()
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_rewards(pilot, devices, FARID)
        assert not screen.query_one("#reward-UPGRADE", Button).disabled
        await redeem(pilot, "UPGRADE")
        assert isinstance(app.screen, VoucherScreen)


async def test_printer_out_of_paper_then_reprint(build: Build, devices: Devices) -> None:
    app = build()
    printer(devices).paper_out = True
    async with app.run_test(size=SMALL) as pilot:
        await open_rewards(pilot, devices, ANNA)
        await redeem(pilot, "BREAKFAST")
        assert isinstance(app.screen, VoucherScreen)
        assert printer(devices).slips == []
        state = text_of(app, "#print-state")
        assert "out of paper" in state and "safe" in state
        code = app.screen.outcome.slip.code
        assert code in text_of(app, "#voucher-code")  # the voucher is on screen regardless
        assert "Printer out of paper" in text_of(app, "#status-bar")
        printer(devices).paper_out = False
        await pilot.click("#reprint")
        await settle(pilot)
        assert [s.code for s in printer(devices).slips] == [code]
        assert "Printed" in text_of(app, "#print-state")
        assert "paper" not in text_of(app, "#status-bar")


async def test_offline_redemption_inside_limits(
    build: Build, devices: Devices, clock: Clock, service: NodeService
) -> None:
    clock.now = NOW + timedelta(hours=1)  # head office unheard for an hour: offline
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        assert "Offline" in text_of(app, "#status-bar")
        screen = await open_rewards(pilot, devices, ANNA)
        assert "up to 10,000 points" in text_of(app, "#offline-note")
        assert not screen.query_one("#reward-SPA-60", Button).disabled
        await redeem(pilot, "SPA-60")
        assert isinstance(app.screen, VoucherScreen)
        assert app.screen.auth == "offline"
        # 15,000 per member since contact: 7,000 left, so the spa (8,000) now needs head office.
        await pilot.click("#back")
        await settle(pilot)
        await pilot.click("#rewards")
        await settle(pilot)
        assert "up to 7,000 points" in text_of(app, "#offline-note")
        assert app.screen.query_one("#reward-SPA-60", Button).disabled
        assert "head office" in text_of(app, "#reason-SPA-60")
        assert not app.screen.query_one("#reward-LATE-CO", Button).disabled


async def test_offline_redemption_outside_limits(build: Build, devices: Devices, clock: Clock) -> None:
    clock.now = NOW + timedelta(hours=73)  # past the 72 h maximum staleness: no offline redemptions
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_rewards(pilot, devices, ANNA)
        note = text_of(app, "#offline-note")
        assert "used up" in note and "points are safe" in note
        assert all(b.disabled for b in screen.query(".reward").results(Button))


async def test_session_timeout_clears_member_data(build: Build, devices: Devices, clock: Clock) -> None:
    # The idle timer reads the injected clock: frozen, no loaded machine can time the journey
    # out between two taps; moved on, the guest has walked away.
    app = build(idle_timeout=30)
    async with app.run_test(size=SMALL) as pilot:
        await sign_in(pilot, devices, FARID)
        await pilot.click("#rewards")
        await settle(pilot)
        await pilot.click("#reward-LATE-CO")  # even a confirmation left open goes
        await settle(pilot)
        assert "Farid" in dom_text(app)
        clock.now = NOW + timedelta(seconds=29)
        app._check_idle()  # one second short of the timeout: the guest stays
        assert app.session is not None and "Farid" in dom_text(app)
        clock.now = NOW + timedelta(seconds=31)
        # The app's own idle check (every second) ends the session.
        await wait_until(pilot, lambda: isinstance(app.screen, AttractScreen), "the idle timeout")
        assert app.session is None
        assert len(app.screen_stack) == 2  # Textual's default screen and attract
        text = dom_text(app)
        assert "Farid" not in text and number(FARID) not in text and "38,374" not in text


async def test_a_touch_restarts_the_idle_countdown_and_a_clock_step_back_ends_it(
    build: Build, devices: Devices, clock: Clock
) -> None:
    app = build(idle_timeout=30)
    async with app.run_test(size=SMALL) as pilot:
        await sign_in(pilot, devices, ANNA)
        clock.now = NOW + timedelta(seconds=20)
        await pilot.click("#rewards")  # a touch at +20 s
        await settle(pilot)
        clock.now = NOW + timedelta(seconds=45)  # 45 s since sign-in, 25 s since the touch
        app._check_idle()
        assert app.session is not None
        # NTP steps the clock back an hour: counted as idle, the guest's data goes at once.
        clock.now = NOW - timedelta(hours=1)
        app._check_idle()
        await settle(pilot)
        assert app.session is None and isinstance(app.screen, AttractScreen)
        assert "Anna" not in dom_text(app)


async def test_feedback_is_stored(build: Build, devices: Devices, service: NodeService) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await sign_in(pilot, devices, ANNA)
        await pilot.click("#feedback")
        await settle(pilot)
        assert app.screen.query_one("#send", Button).disabled  # no stars yet
        await pilot.click("#star-4")
        await pilot.click("#tag-0")
        await pilot.click("#tag-1")
        await pilot.click("#send")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
    events = [e for e in service.outbox() if e["type"] == "feedback.recorded"]
    assert len(events) == 1
    body = events[0]
    data = body.get("data", body)
    assert data["stars"] == 4 and data["tags"] == ["clean room", "friendly staff"]


async def test_offers_for_the_tier(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await sign_in(pilot, devices, FARID)
        await pilot.click("#offers")
        await settle(pilot)
        text = dom_text(app)
        assert "Gold weekend" in text and "chef" not in text


async def test_no_quit_binding_for_guests(build: Build) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("ctrl+q")
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert app.is_running and isinstance(app.screen, AttractScreen)


async def test_pin_on_the_pin_pad(service: NodeService, clock: Clock) -> None:
    from staypoint.kiosk.app import make_app
    from staypoint.kiosk.hardware.pinpad.sim import SimPinPad

    pad = SimPinPad("1234", delay_s=0.05)
    devices = Devices(reader=SimReader(), pinpad=pad, printer=SimPrinter())
    app = make_app(service, devices, clock, offers_rotate_s=0, health_interval_s=0)
    async with app.run_test(size=SMALL) as pilot:
        reader(devices).tap(uid=card(ANNA))
        await settle(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), "the pad's PIN to sign in")


# -- the PIN screen and the dashboard are built once and reused: nothing may carry over ------


async def test_next_guest_sees_only_their_own_data(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await sign_in(pilot, devices, ANNA)
        pin_screen, dashboard = app.pin_screen, app.dashboard_screen
        await pilot.click("#done")
        await settle(pilot)
        text = dom_text(app)
        assert "Anna" not in text and "25,875" not in text and number(ANNA) not in text
        await sign_in(pilot, devices, BEN)
        assert app.screen is dashboard and app.pin_screen is pin_screen  # the same screens, reused
        assert "Ben A." in text_of(app, "#member-name")
        assert "Anna" not in dom_text(app)


async def test_cancel_on_pin_forgets_the_member(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        reader(devices).tap(uid=card(FARID))
        await settle(pilot)
        assert "Farid" in text_of(app, "#pin-hello")
        await pilot.click("#cancel")
        await settle(pilot)
        assert isinstance(app.screen, AttractScreen)
        assert "Farid" not in dom_text(app) and app.pin_screen.member is None


async def test_lock_out_state_does_not_carry_over(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        reader(devices).tap(uid=card(BEN))
        await settle(pilot)
        for _ in range(5):
            await keypad(pilot, "9999")
        assert "locked" in text_of(app, "#pin-prompt")
        await pilot.click("#locked-ok")
        await settle(pilot)
        reader(devices).tap(uid=card(ANNA))
        await settle(pilot)
        assert isinstance(app.screen, PinScreen)
        assert "Anna" in text_of(app, "#pin-hello") and "locked" not in text_of(app, "#pin-prompt")
        assert app.screen.query_one("#cancel", Button).display
        await keypad(pilot, "1234")
        assert isinstance(app.screen, DashboardScreen)


async def test_answer_arriving_after_the_guest_left_is_dropped(
    build: Build, devices: Devices, service: NodeService
) -> None:
    import threading

    app = build()
    verify = service.verify_pin
    asked, release, answered = threading.Event(), threading.Event(), threading.Event()

    def slow_verify(*args, **kwargs):  # type: ignore[no-untyped-def]
        asked.set()
        assert release.wait(10), "the test never let the PIN check answer"
        try:
            return verify(*args, **kwargs)
        finally:
            answered.set()

    service.verify_pin = slow_verify  # type: ignore[method-assign]
    async with app.run_test(size=SMALL) as pilot:
        reader(devices).tap(uid=card(ANNA))
        await settle(pilot)
        await keypad(pilot, "1234", ok=False)
        await pilot.click("#key-ok")  # the PIN check is on its way…
        await wait_until(pilot, asked.is_set, "the PIN check to start", settled=False)
        app.end_session()  # …when the kiosk times out
        release.set()  # only now does the (correct) answer come back
        await wait_until(pilot, answered.is_set, "the late answer", settled=False)
        await settle(pilot)
        assert isinstance(app.screen, AttractScreen)
        assert app.session is None
        assert "Anna" not in dom_text(app) and "25,875" not in dom_text(app)


async def test_idle_maintenance_runs_off_the_ui_thread(
    build: Build, devices: Devices, service: NodeService
) -> None:
    import threading

    app = build()
    threads: list[str] = []
    checkpoint = service.maintenance

    def maintenance() -> None:
        threads.append(threading.current_thread().name)
        checkpoint()

    service.maintenance = maintenance  # type: ignore[method-assign]
    async with app.run_test(size=SMALL) as pilot:
        await sign_in(pilot, devices, ANNA)
        assert threads == []  # never during a guest's visit
        await pilot.click("#done")
        await settle(pilot)
        assert len(threads) == 1 and threads[0] != threading.main_thread().name
