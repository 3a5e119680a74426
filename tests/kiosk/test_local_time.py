"""Property-local time: the kiosk keeps UTC and shows the property's zone ([node] timezone)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from staypoint.edge.service import NodeService
from staypoint.kiosk.app import Devices, KioskApp
from staypoint.kiosk.hardware.printer.escpos_printer import render_voucher
from staypoint.kiosk.hardware.printer.sim import SimPrinter
from staypoint.kiosk.hardware.reader.sim import SimReader
from staypoint.kiosk.screens.dashboard import DashboardScreen
from staypoint.kiosk.screens.pin import PinScreen
from staypoint.kiosk.screens.staff_status import StaffStatusScreen
from staypoint.kiosk.screens.voucher import VoucherScreen
from tests.kiosk.conftest import ANNA, SMALL, TECH_CARD, Clock, card
from tests.kiosk.helpers import keypad, settle, text_of

Build = Callable[..., KioskApp]
#: 23:30 UTC on the 23rd is 07:30 on the 24th in Shanghai (UTC+8, no summer time).
LATE = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)


async def test_a_slip_printed_at_2330_utc_shows_the_next_local_day_in_shanghai(
    build: Build, devices: Devices, clock: Clock, service: NodeService
) -> None:
    clock.now = LATE
    app = build(timezone="Asia/Shanghai")
    async with app.run_test(size=SMALL) as pilot:
        assert isinstance(devices.reader, SimReader)
        devices.reader.tap(uid=card(ANNA))
        await settle(pilot)
        assert isinstance(app.screen, PinScreen)
        await keypad(pilot, "1234")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.click("#rewards")
        await settle(pilot)
        await pilot.click("#reward-LATE-CO")
        await settle(pilot)
        await pilot.click("#yes")
        await settle(pilot)
        assert isinstance(app.screen, VoucherScreen)
    assert isinstance(devices.printer, SimPrinter)
    slip = devices.printer.slips[-1]
    assert slip.issued_at == "24 Nov 2026 07:30 CST"
    # What the paper gets, byte for byte as EscposPrinter sends it.
    job = render_voucher(slip)
    assert b"Issued: 24 Nov 2026 07:30 CST\n" in job and b"23 Nov" not in job
    # Kept in UTC: only the display converted.
    last = service.last_voucher()
    assert last is not None and str(last["issued_at"]).startswith("2026-11-23T23:30")


async def test_the_same_slip_in_utc_by_default(build: Build, devices: Devices, clock: Clock) -> None:
    clock.now = LATE
    app = build()
    assert isinstance(devices.printer, SimPrinter)
    async with app.run_test(size=SMALL):
        red = app.service.redeem(
            app.service.verify_pin(app.service.member_by_card(card(ANNA)).number, "1234", LATE),
            "LATE-CO",
            LATE,
        )
        app.print_redemption(red, "Anna", LATE)
    assert devices.printer.slips[-1].issued_at == "23 Nov 2026 23:30 UTC"


async def test_staff_status_shows_the_propertys_local_time(build: Build, devices: Devices) -> None:
    # The demo replica was last confirmed current at 10:00 UTC: 18:00 in Shanghai.
    app = build(timezone="Asia/Shanghai")
    async with app.run_test(size=SMALL) as pilot:
        assert isinstance(devices.reader, SimReader)
        devices.reader.tap(uid=TECH_CARD)
        await settle(pilot)
        await keypad(pilot, "1357")
        await pilot.click("#task-status")
        await settle(pilot)
        assert isinstance(app.screen, StaffStatusScreen)
        status = text_of(app, "#node-status")
        assert "last contact 23 Nov 2026 18:00 CST" in status, status
        assert "10:00" not in status
