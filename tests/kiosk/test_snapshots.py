"""Snapshots of the main screens at 800×480 (100×30 cells): fixed clock, fixed members, still offers.

Refresh only on the pinned Textual version, and look at the SVGs before keeping them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from staypoint.kiosk.app import Devices, KioskApp
from staypoint.kiosk.hardware.reader.sim import SimReader
from tests.kiosk.conftest import FARID, SMALL, STAFF_CARD, card
from tests.kiosk.helpers import keypad, settle

Build = Callable[..., KioskApp]


async def _sign_in(pilot: Pilot[None], uid: str, pin: str) -> None:
    app: Any = pilot.app
    reader = app.devices.reader
    assert isinstance(reader, SimReader)
    reader.tap(uid=uid)
    await settle(pilot)
    await keypad(pilot, pin)


def test_attract(build: Build, snap_compare: Any) -> None:
    assert snap_compare(build(), terminal_size=SMALL)


def test_dashboard(build: Build, devices: Devices, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _sign_in(pilot, card(FARID), "1234")

    assert snap_compare(build(), terminal_size=SMALL, run_before=run_before)


def test_rewards(build: Build, devices: Devices, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _sign_in(pilot, card(1), "1234")
        await pilot.click("#rewards")
        await settle(pilot)

    assert snap_compare(build(), terminal_size=SMALL, run_before=run_before)


def test_staff_status(build: Build, devices: Devices, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _sign_in(pilot, STAFF_CARD, "2468")
        await pilot.click("#task-status")
        await settle(pilot)

    assert snap_compare(build(), terminal_size=SMALL, run_before=run_before)
