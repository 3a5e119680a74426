"""Pilot helpers shared by the console tests."""

from __future__ import annotations

from typing import Any

from textual.css.query import NoMatches
from textual.widgets import Button, Static

from tests.console.conftest import PASSWORD
from tests.waits import wait_until_async


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


async def tap(pilot: Any, wid: str, timeout: float = 60) -> None:
    """Click a button as a finger would: once it is laid out on the screen (a modal just pushed
    has no region yet, and a click there lands on nothing: a loaded run lost a Cancel so), and
    not again within its press effect (which ignores it). A modal's nested containers mount
    their children a step after the modal itself: its question may be there and its buttons not
    yet (a loaded run found no Cancel so), so the button is looked up in the wait too."""

    def ready() -> bool:
        try:
            button = pilot.app.screen.query_one(wid, Button)
        except NoMatches:
            return False
        return bool(button.region.area) and not button.has_class("-active") and not button.disabled

    await wait_until_async(ready, timeout, f"{wid} ready", between=pilot.pause)
    await pilot.click(wid)
