"""Set your PIN at the kiosk: an imported member (no PIN) with head office's one-time code.

Pilot journeys at 800×480 against a stand-in for head office on the node's channel (the real
one, through the agent's socket and Mosquitto, is ``tests/sync/test_first_pin_link.py``). The
stand-in answers as ``central/first_pin.py`` does; the "fan-out" is the test writing the PIN
hash head office was sent into the replica, as the member's record from head office would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pytest
from textual.pilot import Pilot
from textual.widgets import Button

from staypoint.edge.service import FirstPinAnswer, Hold, NodeService
from staypoint.kiosk.app import Devices, KioskApp
from staypoint.kiosk.hardware.pinpad.sim import SimPinPad
from staypoint.kiosk.hardware.reader.sim import SimReader
from staypoint.kiosk.screens import first_pin as screen_module
from staypoint.kiosk.screens.attract import AttractScreen
from staypoint.kiosk.screens.dashboard import DashboardScreen
from staypoint.kiosk.screens.first_pin import OFFLINE, FirstPinScreen
from staypoint.kiosk.screens.pin import PinScreen
from staypoint.loyalty import pins
from tests.kiosk.conftest import ANNA, SMALL, card, number
from tests.kiosk.helpers import dom_text, keypad, settle, text_of, wait_until

Build = Callable[..., KioskApp]

CODE = "K7QM-4TXP-W9ZR"  # as the welcome letter prints it
WRONG = "K7QM-4TXP-W9ZA"
NEW_PIN = "4321"


class Office:
    """Head office on the node's first-PIN channel: one code for one member, five tries."""

    def __init__(self, member: str, code: str = CODE, *, answering: bool = True) -> None:
        self.member = member
        self.code = code.replace("-", "")
        self.answering = answering
        self.failures = 0
        self.used = False
        self.asked: list[tuple[str, str, str]] = []
        self.pin_hash: str | None = None

    def authorise(self, member: str, points: int, reward: str, now: datetime) -> Hold | None:
        return None

    def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None:
        return None

    def ask_first_pin(self, member: str, code: str, pin_hash: str) -> FirstPinAnswer | None:
        self.asked.append((member, code, pin_hash))
        if not self.answering:
            return None
        if self.used:
            return FirstPinAnswer(
                False, "this code has been used already: sign in with your PIN", "code_used"
            )
        if self.failures >= 5:
            return FirstPinAnswer(False, "too many wrong codes: ask head office for a new one", "code_void")
        if member != self.member or code != self.code:
            self.failures += 1
            left = 5 - self.failures
            if left == 0:
                return FirstPinAnswer(
                    False, "too many wrong codes: ask head office for a new one", "code_void"
                )
            return FirstPinAnswer(False, f"this code is not right ({left} tries left)", "bad_code")
        self.used = True
        self.pin_hash = pin_hash
        return FirstPinAnswer(True)


def imported(service: NodeService, index: int = ANNA) -> str:
    """A seeded member made one imported without a PIN (as head office's record arrives)."""
    member = number(index)
    service.replica.update_member(member, pin_hash="", pin_failures=0, locked_until=None)
    return member


def fan_out(service: NodeService, member: str, pin_hash: str) -> None:
    """Head office's pin.set reaching the node: the member's record with the new hash."""
    service.replica.update_member(member, pin_hash=pin_hash)


def reader(devices: Devices) -> SimReader:
    assert isinstance(devices.reader, SimReader)
    return devices.reader


def message(app: KioskApp) -> str:
    return text_of(app, "#first-pin-message")


async def tap_code(pilot: Pilot[None], code: str, *, settled: bool = True) -> None:
    """Type a code on the code pad and press its OK."""
    for ch in code.replace("-", ""):
        await pilot.click(f"#code-key-{ch}")
    await pilot.click("#code-key-ok")
    if settled:
        await settle(pilot)
    else:
        await pilot.pause()


async def open_offer(pilot: Pilot[None], devices: Devices) -> FirstPinScreen:
    reader(devices).tap(uid=card(ANNA))
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, FirstPinScreen), type(screen)
    return screen


async def test_a_wrong_code_is_refused_the_right_one_sets_the_pin_and_the_member_signs_in_with_it(
    build: Build, devices: Devices, service: NodeService
) -> None:
    member = imported(service)
    office = Office(member)
    service.authoriser = office
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_offer(pilot, devices)
        assert "Anna A." in text_of(app, "#first-pin-hello")
        assert "no PIN yet" in text_of(app, "#first-pin-prompt")
        assert screen.query_one("#start", Button).display
        await pilot.click("#start")
        await settle(pilot)
        assert "welcome letter" in text_of(app, "#first-pin-prompt")

        # A code of the wrong shape is caught here: head office is not asked, no try spent.
        await tap_code(pilot, "K7QM")
        assert "12 letters and digits" in message(app) and office.asked == []

        await tap_code(pilot, WRONG)
        assert "Choose a PIN of 4 digits" in text_of(app, "#first-pin-prompt")
        await keypad(pilot, NEW_PIN)
        assert "again" in text_of(app, "#first-pin-prompt")
        await keypad(pilot, NEW_PIN)
        assert message(app) == "This code is not right (4 tries left)"
        assert screen.step == "code"  # asked again; the PIN chosen twice is kept

        # The right code: head office gets the number, the normalised code and a hash, never the PIN.
        await tap_code(pilot, CODE, settled=False)
        await wait_until(pilot, lambda: "reaches this kiosk" in message(app), "the PIN set", settled=False)
        asked_member, asked_code, sent_hash = office.asked[-1]
        assert (asked_member, asked_code) == (member, CODE.replace("-", ""))
        assert NEW_PIN not in sent_hash and pins.is_standard_hash(sent_hash)
        assert pins.verify_pin(NEW_PIN, sent_hash)
        assert isinstance(app.screen, FirstPinScreen)  # waiting for head office's record

        fan_out(service, member, sent_hash)
        await wait_until(pilot, lambda: isinstance(app.screen, PinScreen), "the PIN screen")
        await keypad(pilot, NEW_PIN)
        assert isinstance(app.screen, DashboardScreen)
        assert app.session is not None and app.session.member == member


async def test_the_code_cannot_be_used_twice(build: Build, devices: Devices, service: NodeService) -> None:
    member = imported(service)
    office = Office(member)
    office.used = True  # set once already, the record not yet here
    service.authoriser = office
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await open_offer(pilot, devices)
        await pilot.click("#start")
        await settle(pilot)
        await tap_code(pilot, CODE)
        await keypad(pilot, NEW_PIN)
        await keypad(pilot, NEW_PIN)
        assert message(app) == "This code has been used already: sign in with your PIN."
        assert app.screen.query_one("#done", Button).display
        await pilot.click("#done")
        await settle(pilot)
        assert isinstance(app.screen, AttractScreen)
        assert service.resolve_member(member).pin_hash == ""  # nothing was written here


async def test_five_wrong_codes_void_it(build: Build, devices: Devices, service: NodeService) -> None:
    member = imported(service)
    office = Office(member)
    service.authoriser = office
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await open_offer(pilot, devices)
        await pilot.click("#start")
        await settle(pilot)
        await tap_code(pilot, WRONG)
        await keypad(pilot, NEW_PIN)
        await keypad(pilot, NEW_PIN)
        for left in (3, 2, 1):
            await tap_code(pilot, WRONG)
            assert message(app) == f"This code is not right ({left} tries left)"
        await tap_code(pilot, WRONG)
        assert message(app).startswith("Too many wrong codes")
        assert office.failures == 5 and len(office.asked) == 5


async def test_two_different_pins_are_asked_again(
    build: Build, devices: Devices, service: NodeService
) -> None:
    service.authoriser = Office(imported(service))
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await open_offer(pilot, devices)
        await pilot.click("#start")
        await settle(pilot)
        await tap_code(pilot, CODE)
        await keypad(pilot, "4321")
        await keypad(pilot, "4322")
        assert "not the same" in message(app)
        assert "Choose a PIN" in text_of(app, "#first-pin-prompt")
        await keypad(pilot, "12")  # too short: said at once
        assert "4 digits" in message(app)


async def test_offline_says_it_needs_head_office_before_anything_is_typed(
    build: Build, devices: Devices, service: NodeService
) -> None:
    imported(service)  # the kiosk's authoriser: offline only (no channel to head office)
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_offer(pilot, devices)
        assert message(app) == OFFLINE
        assert not screen.query_one("#start", Button).display
        await pilot.click("#done")
        await settle(pilot)
        assert isinstance(app.screen, AttractScreen)


async def test_no_answer_from_head_office_is_the_offline_message(
    build: Build, devices: Devices, service: NodeService
) -> None:
    office = Office(imported(service), answering=False)
    service.authoriser = office
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await open_offer(pilot, devices)
        await pilot.click("#start")
        await settle(pilot)
        await tap_code(pilot, CODE)
        await keypad(pilot, NEW_PIN)
        await keypad(pilot, NEW_PIN)
        assert len(office.asked) == 1
        assert message(app) == OFFLINE


async def test_set_but_not_yet_arrived_says_so_and_the_visit_leaves_nothing_behind(
    build: Build, devices: Devices, service: NodeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(screen_module, "ARRIVAL_WAIT_S", 0.3)
    service.authoriser = Office(imported(service))
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await open_offer(pilot, devices)
        await pilot.click("#start")
        await settle(pilot)
        await tap_code(pilot, CODE)
        await keypad(pilot, NEW_PIN)
        await keypad(pilot, NEW_PIN)
        await wait_until(pilot, lambda: "within a few minutes" in message(app), "the PIN not yet here")
        await pilot.click("#done")
        await settle(pilot)
        assert isinstance(app.screen, AttractScreen)
        text = dom_text(app)
        assert "Anna" not in text and "K7QM" not in text and "W9ZR" not in text


async def test_with_a_pin_pad_the_new_pin_is_typed_on_it(
    build: Build, devices: Devices, service: NodeService
) -> None:
    member = imported(service)
    office = Office(member)
    service.authoriser = office
    pad = SimPinPad("1234", delay_s=0.0)  # it types 1234 at every prompt
    devices.pinpad = pad
    try:
        app = build()
        async with app.run_test(size=SMALL) as pilot:
            screen = await open_offer(pilot, devices)
            await pilot.click("#start")
            await settle(pilot)
            await tap_code(pilot, CODE, settled=False)
            await wait_until(pilot, lambda: office.pin_hash is not None, "head office asked", settled=False)
            assert not screen.query_one("#new-pin-pad").display  # never on the screen
            assert office.pin_hash is not None and pins.verify_pin("1234", office.pin_hash)
            fan_out(service, member, office.pin_hash)
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), "signed in on the pad")
            assert app.session is not None and app.session.member == member
    finally:
        pad.close()
