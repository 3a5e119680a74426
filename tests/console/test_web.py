"""``staypoint console --web``: textual-serve in front of the console, opened once in a real
headless Chromium (Debian's; no browser is downloaded)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from staypoint.central.api.service import Services
from staypoint.central.api.state import SideStore
from staypoint.central.claims import ClaimsQueue
from staypoint.central.console.desk import Desk
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.store_sqlite import SqliteLedgerStore
from tests.api.conftest import NOW, program_text

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_console_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"))
    ledger.publish_program(program_text(), NOW)
    side = SideStore(f"sqlite://{tmp_path / 'side.db'}")
    services = Services(ledger, ProfileStore(tmp_path / "profiles.db"), side, token_key=b"")
    Desk(services, ClaimsQueue(services)).add_staff("clerk-1", "Clara Clerk", "clerk", "correct horse")
    side.close()
    ledger.store.close()
    port = _free_port()
    args = [
        "--store",
        f"sqlite://{tmp_path / 'ledger.db'}",
        "--side",
        f"sqlite://{tmp_path / 'side.db'}",
        "--profiles",
        str(tmp_path / "profiles.db"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "staypoint.central.console.cli", *args, "--web", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            # The terminal draws on a canvas, so the proof is what the app did: a sign-in
            # typed in the browser reaches the console, which records the wrong password.
            page.wait_for_selector(".textual-terminal", timeout=30_000)
            time.sleep(2.0)  # the app process starts behind the websocket
            page.mouse.click(300, 123)  # the staff-id box (sign-in form at the top left, 1200x800)
            page.keyboard.type("clerk-1")
            page.mouse.click(300, 199)  # the password box
            page.keyboard.type("wrong-password")
            page.keyboard.press("Enter")
            check = SideStore(f"sqlite://{tmp_path / 'side.db'}")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not check.one(
                "SELECT failures FROM staff WHERE id = 'clerk-1'"
            ):
                time.sleep(0.2)
            assert check.one("SELECT failures FROM staff WHERE id = 'clerk-1'") == 1
            check.close()
            page.screenshot(path=str(tmp_path / "console.png"))
            assert (tmp_path / "console.png").stat().st_size > 5_000
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
