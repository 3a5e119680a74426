"""Pilot helpers shared by the kiosk tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Static

from staypoint.kiosk.app import KioskApp
from tests.waits import wait_until_async


async def settle(pilot: Pilot[None]) -> None:
    """Let screen changes land and every worker report back."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def wait_until(
    pilot: Pilot[None],
    cond: Callable[[], bool],
    what: str = "condition",
    timeout: float = 10.0,
    *,
    settled: bool = True,
) -> None:
    """Let the app run (timers, workers) until ``cond()`` holds; fail after ``timeout`` s.

    ``tests.waits.wait_until_async`` with the pilot's settle between looks. ``settled=False``
    only yields to the event loop between looks, without waiting for the workers: for a
    condition a worker that is still blocked must make true.
    """
    between = (lambda: settle(pilot)) if settled else None
    await wait_until_async(cond, timeout, what, interval=0.02, between=between)


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
