"""Pilot helpers shared by the kiosk tests."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Static

from staypoint.kiosk.app import KioskApp


async def settle(pilot: Pilot[None]) -> None:
    """Let screen changes land and every worker report back."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def keypad(pilot: Pilot[None], digits: str, *, ok: bool = True) -> None:
    """Type on the on-screen keypad by touch."""
    for d in digits:
        await pilot.click(f"#key-{d}")
    if ok:
        await pilot.click("#key-ok")
    await settle(pilot)


def text_of(app: KioskApp, selector: str) -> str:
    """The plain text a Static shows."""
    return str(app.screen.query_one(selector, Static).render())


def dom_text(app: KioskApp) -> str:
    """Everything every screen renders, as text (for privacy checks).

    Every screen on the stack, and the screens the app keeps off the stack to reuse (the PIN
    screen and the dashboard live on between guests, blanked).
    """
    screens: list[Screen[Any]] = list(app.screen_stack)
    for reused in (app.attract_screen, app.pin_screen, app.dashboard_screen):
        if reused not in screens:
            screens.append(reused)
    parts = []
    for screen in screens:
        for widget in screen.query("*"):
            try:
                parts.append(str(widget.render()))
            except Exception:
                continue
    return "\n".join(parts)
