"""Pilot helpers shared by the console tests."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static

from tests.console.conftest import PASSWORD


async def sign_in(pilot: Any, staff_id: str) -> None:
    """Sign ``staff_id`` in on the console's sign-in screen, as a clerk types it."""
    await pilot.click("#staff-id")
    await pilot.press(*staff_id)
    await pilot.click("#password")
    await pilot.press(*PASSWORD, "enter")
    await pilot.pause()


def text_of(screen: Any, selector: str) -> str:
    """The plain text a Static shows."""
    return str(screen.query_one(selector, Static).render())
