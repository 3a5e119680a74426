"""Pay from stored value at the staff menu (issue 14 item 6): the member's card and their PIN,
typed by the guest or on the PIN pad, then NodeService.spend; refusals in place, nothing paid."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from textual.widgets import Input

from staypoint.edge.service import NodeService
from staypoint.kiosk.app import Devices, KioskApp
from staypoint.kiosk.hardware.pinpad.sim import SimPinPad
from staypoint.kiosk.hardware.reader.sim import SimReader
from staypoint.kiosk.screens.spend import SpendForm
from tests.kiosk.conftest import ANNA, NOW, SMALL, card, number
from tests.kiosk.helpers import settle, text_of, wait_until
from tests.kiosk.test_staff import act, back, open_task, staff_sign_in

Build = Callable[..., KioskApp]


def wallet(service: NodeService) -> Decimal:
    return Decimal(service.summary(number(ANNA), NOW).stored_value)


async def test_pay_with_the_card_and_the_typed_pin(
    build: Build, devices: Devices, service: NodeService
) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await staff_sign_in(pilot, devices)
        await open_task(pilot, "topup", member=number(ANNA), amount="80.00")
        assert "Topped up" in await act(pilot)
        await back(pilot)
        start = wallet(service)
        await open_task(pilot, "spend", amount="25.50", pin="1234")
        assert isinstance(app.screen, SpendForm)
        assert isinstance(devices.reader, SimReader)
        devices.reader.tap(uid=card(ANNA))  # the member's card fills the member field
        await settle(pilot)
        assert app.screen.query_one("#f-member", Input).value == card(ANNA)
        result = await act(pilot)
        assert "Paid 25.50" in result and f"{start - Decimal('25.50')}" in result, result
        assert wallet(service) == start - Decimal("25.50")
        assert app.screen.query_one("#f-pin", Input).value == ""  # never left on screen
        # a wrong PIN: tries left, nothing paid
        app.screen.query_one("#f-pin", Input).value = "0000"
        assert "tries left" in await act(pilot)
        # more than the wallet holds: refused, nothing paid
        app.screen.query_one("#f-pin", Input).value = "1234"
        app.screen.query_one("#f-amount", Input).value = f"{start}"
        assert "not enough" in await act(pilot)
        assert wallet(service) == start - Decimal("25.50")
        # by number works too
        app.screen.query_one("#f-member", Input).value = number(ANNA)
        app.screen.query_one("#f-pin", Input).value = "1234"
        app.screen.query_one("#f-amount", Input).value = "0.50"
        assert "Paid 0.50" in await act(pilot)


async def test_pay_with_the_pin_on_the_pin_pad(build: Build, devices: Devices, service: NodeService) -> None:
    pad = SimPinPad("1234", delay_s=0.0)
    devices.pinpad = pad
    try:
        app = build()
        async with app.run_test(size=SMALL) as pilot:
            await staff_sign_in(pilot, devices)
            await open_task(pilot, "topup", member=number(ANNA), amount="40.00")
            await act(pilot)
            await back(pilot)
            start = wallet(service)
            await open_task(pilot, "spend", member=number(ANNA), amount="10.00")
            await pilot.click("#do-go")
            await wait_until(pilot, lambda: "Paid 10.00" in text_of(app, "#result"), "the payment")
            assert wallet(service) == start - Decimal("10.00")
    finally:
        pad.close()
