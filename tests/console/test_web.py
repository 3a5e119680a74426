"""``staypoint console --web`` as docs/console.md gives it: the installed ``staypoint`` command
(a subprocess, textual-serve in front of the console), opened in a real headless Chromium
(Debian's; no browser is downloaded). A clerk signs in and finds a member.

The terminal draws on a canvas, so the page's text is read where the browser gets it: the
bytes textual-serve sends down the websocket, played through a terminal emulator (pyte) of
the size the page asked for. Fields are clicked where their text is on that screen, and
every step waits for text to appear, never for a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from staypoint.central.claims import ClaimsQueue
from staypoint.central.console.desk import Desk
from tests.api.conftest import Clock, build_api
from tests.waits import wait_until, while_running

CHROMIUM = "/usr/bin/chromium"
STAYPOINT = Path(sys.executable).with_name("staypoint")  # the installed console script (.venv/bin)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not STAYPOINT.exists(), reason="the staypoint command is not installed in the venv"),
]


class Screen:
    """The console's screen as the browser's terminal has it: every byte textual-serve sends
    down the websocket, played through a VT emulator (pyte) of the size the page asked for."""

    def __init__(self) -> None:
        import pyte

        self._lock = threading.Lock()
        self.screen = pyte.Screen(80, 24)
        self.stream = pyte.ByteStream(self.screen)

    def received(self, payload: Any) -> None:
        if isinstance(payload, bytes):
            with self._lock:
                self.stream.feed(payload)

    def sent(self, payload: Any) -> None:
        if isinstance(payload, str) and payload.startswith('["resize"'):
            size = json.loads(payload)[1]
            with self._lock:
                self.screen.resize(int(size["height"]), int(size["width"]))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.screen.display)

    def find(self, text: str) -> tuple[int, int] | None:
        """(row, column) where ``text`` is on the screen now."""
        with self._lock:
            for row, line in enumerate(self.screen.display):
                col = line.find(text)
                if col >= 0:
                    return row, col
        return None

    @property
    def size(self) -> tuple[int, int]:
        with self._lock:
            return self.screen.lines, self.screen.columns


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sign_in_and_find(
    port: int, staff_id: str, password: str, signed_in: str, member: str, name: str, shots: Path
) -> None:
    """In a fresh headless Chromium on the console at ``port``: sign ``staff_id`` in (the desk
    then shows ``signed_in``) and find ``member`` by number: ``name`` and its history on screen.

    Shared with tests/integration/test_installed_fleet.py (the console its unit started)."""
    from playwright.sync_api import sync_playwright

    screen = Screen()
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        # A fresh profile folder: Playwright passes it as --user-data-dir.
        browser = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1200, "height": 800},
        )
        page = browser.new_page()
        page.on(
            "websocket",
            lambda ws: (ws.on("framereceived", screen.received), ws.on("framesent", screen.sent)),
        )
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")

        def see(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
            """Wait for ``cond`` on the screen; Playwright delivers websocket events only while
            it is called, so the wait pumps it (50 ms) between looks instead of sleeping."""
            wait_until(
                cond,
                timeout,
                lambda: f"{what}; the screen:\n{screen.text()}",
                interval=0,
                between=lambda: page.wait_for_timeout(50),
            )

        def shows(text: str) -> Callable[[], bool]:
            return lambda: screen.find(text) is not None

        def click(text: str) -> None:
            """Click the middle of ``text`` where the terminal shows it, as a person would."""
            see(shows(text), repr(text))
            where = screen.find(text)
            assert where is not None
            box = page.locator(".xterm-screen").bounding_box()
            assert box is not None
            rows, cols = screen.size
            w, h = box["width"] / cols, box["height"] / rows
            page.mouse.click(box["x"] + (where[1] + len(text) / 2) * w, box["y"] + (where[0] + 0.5) * h)

        # The console itself, not textual-serve's splash: its sign-in screen is drawn.
        see(shows("sign in"), "the sign-in screen in the browser", 60)
        click("staff id")
        page.keyboard.type(staff_id)
        see(shows(staff_id), "the staff id typed")
        click("password")
        page.keyboard.type(password)
        see(shows("•" * len(password)), "the password's dots")
        page.keyboard.press("Enter")
        see(shows(signed_in), "the desk after sign-in")
        click("number, name, e-mail")  # the member search box
        page.keyboard.type(member)
        page.keyboard.press("Enter")
        see(shows(name), "the member found by number")
        see(shows("member.enrolled"), "the member's history")
        page.screenshot(path=str(shots / "console.png"))
        browser.close()


def test_console_web_signs_in_and_finds_a_member(tmp_path: Path) -> None:
    api = build_api(f"sqlite://{tmp_path / 'ledger.db'}", tmp_path, Clock())
    Desk(api.services, ClaimsQueue(api.services)).add_staff("clerk-1", "Clara Clerk", "clerk", PASSWORD)
    member = api.enrol("Ada Lovelace", email="ada@example.com")
    api.client.close()
    api.services.side.close()
    api.services.profiles.close()
    api.ledger.store.close()

    port = _free_port()
    # Exactly the command of docs/console.md, from another working folder (paths absolute).
    command = [
        str(STAYPOINT),
        "console",
        "--store",
        f"sqlite://{tmp_path / 'ledger.db'}",
        "--side",
        f"sqlite://{tmp_path / 'side.db'}",
        "--profiles",
        str(tmp_path / "profiles.db"),
        "--web",
        "--port",
        str(port),
    ]
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tempfile.gettempdir()
        )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(while_running(proc, listening, "console --web", log), 30, "textual-serve to listen")
        sign_in_and_find(
            port, "clerk-1", PASSWORD, "Signed in: Clara Clerk (clerk)", member, "Ada Lovelace", tmp_path
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
