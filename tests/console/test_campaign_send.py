"""The Marketing tab's Send under Pilot: a one-off campaign over a saved segment, counted and
confirmed, run by the campaign engine in a worker over the real stores (SQLite and PostgreSQL)
and mailed to a real SMTP server (aiosmtpd), the progress and the outcome on screen; a second
Send mails only the member who joined the segment since, never anyone twice. Without the
campaigns file, with a code of that file or a broken template, Send says so in a line and sends
nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from textual.widgets import Input, ProgressBar, TabbedContent

from staypoint.central.console.app import ConsoleApp, DeskScreen
from staypoint.central.console.confirm import Confirm
from staypoint.central.console.desk import Desk
from tests.api.conftest import NOW, Api
from tests.campaigns.conftest import Mailbox, _Handler, free_port
from tests.console.helpers import sign_in, tap, text_of
from tests.waits import wait_until_async

pytest_plugins = ["tests.pg_fixtures"]

SIZE = (140, 60)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    ctl = Controller(_Handler(box), hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    ctl.start()
    yield box, port
    ctl.stop()


def _campaigns_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "campaigns.toml"
    path.write_text(
        f'[settings]\nsecret = "s3cret"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
        'sender = "rewards@staypoint.example"\ntimeout = 10\n'
        '[[campaign]]\ncode = "BDAY"\ntrigger = "birthday"\nchannels = ["email"]\n',
        encoding="utf-8",
    )
    return path


async def _until(pilot: Any, what: str, pred: Any) -> Any:
    # 60 s: a send on PostgreSQL under a loaded run took more than the default 15 s.
    return await wait_until_async(
        pred, 60, message=lambda: f"{what} (on screen: {_shown(pilot)})", between=pilot.pause
    )


async def _open_marketing(pilot: Any, app: ConsoleApp) -> DeskScreen:
    await sign_in(pilot, "mkt-1")
    screen = app.screen
    assert isinstance(screen, DeskScreen)
    screen.query_one(TabbedContent).active = "marketing"
    await _until(pilot, "the tab laid out", lambda: screen.query_one("#cmp-send").region.area)
    return screen


async def _save_segment(pilot: Any, screen: DeskScreen) -> None:
    """Every member: a segment with no criteria."""
    screen.query_one("#seg-code", Input).value = "everyone"
    await tap(pilot, "#seg-save")
    await _until(pilot, "saved", lambda: "saved everyone version 1" in text_of(screen, "#seg-msg"))


async def _send(pilot: Any, app: ConsoleApp, screen: DeskScreen) -> str:
    """Press Send and wait for the confirm; its question."""
    await tap(pilot, "#cmp-send")
    confirm = await _until(pilot, "the confirm", lambda: isinstance(app.screen, Confirm) and app.screen)
    return text_of(confirm, "#confirm-question")


async def test_send_confirms_the_reach_mails_once_and_shows_the_outcome(
    any_desk: tuple[Desk, Api], mailbox: tuple[Mailbox, int], tmp_path: Path
) -> None:
    desk, api = any_desk  # Ada (no marketing consent) is enrolled already
    box, port = mailbox
    for name in ("Bob Builder", "Cy Young"):
        api.enrol(name, email=f"{name.split()[0].lower()}@example.com", marketing_email=True)
    app = ConsoleApp(desk, clock=lambda: NOW, campaigns=_campaigns_file(tmp_path, port))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_marketing(pilot, app)
        await _save_segment(pilot, screen)
        screen.query_one("#cmp-code", Input).value = "WINTER"
        screen.query_one("#cmp-subject", Input).value = "Winter at {{ programme }}, {{ first_name }}"

        # The confirm says whom it reaches, by the engine's own count; Cancel sends nothing.
        question = await _send(pilot, app, screen)
        assert question.startswith("Send WINTER now to 2 members (2 by e-mail, 0 by SMS)?")
        assert "Not sent to: without consent 1." in question
        await tap(pilot, "#confirm-no")
        await _until(pilot, "cancelled", lambda: "not sent: WINTER" in text_of(screen, "#send-msg"))
        assert box.count() == 0 and not screen.query_one("#cmp-send").disabled

        await _send(pilot, app, screen)
        await tap(pilot, "#confirm-yes")
        await _until(pilot, "the outcome", lambda: text_of(screen, "#send-result"))
        outcome = text_of(screen, "#send-result")
        assert outcome == "WINTER: sent 2 · skipped 1 · failed 0\nskipped: no consent 1"
        bar = screen.query_one("#send-progress", ProgressBar)
        assert bar.display and bar.total == bar.progress == 3  # Ada's row decided too: no consent
        assert "done: WINTER" in text_of(screen, "#send-msg")
        assert box.count() == 2 and not box.to("ada@example.com")
        (bob,) = box.to("bob@example.com")
        assert str(bob["Subject"]).startswith("Winter at ") and str(bob["Subject"]).endswith(", Bob")
        assert len(box.to("cy@example.com")) == 1

        # Dee joins the segment; a second Send mails her alone: the send log has the others.
        api.enrol("Dee Dee", email="dee@example.com", marketing_email=True)
        question = await _send(pilot, app, screen)
        assert question.startswith("Send WINTER now to 1 member (1 by e-mail, 0 by SMS)?")
        assert "Not sent to: already done by an earlier send 3." in question  # Ada's no-consent too
        await tap(pilot, "#confirm-yes")
        await _until(pilot, "the second outcome", lambda: "sent 1 ·" in text_of(screen, "#send-result"))
        assert text_of(screen, "#send-result") == (
            "WINTER: sent 1 · skipped 3 · failed 0\nskipped: already done 3"
        )
        assert box.count() == 3 and len(box.to("dee@example.com")) == 1
        assert len(box.to("bob@example.com")) == 1 and len(box.to("cy@example.com")) == 1

        # And a third: nobody new, nothing mailed.
        question = await _send(pilot, app, screen)
        assert question.startswith("Send WINTER now to 0 members")
        await tap(pilot, "#confirm-yes")
        await _until(pilot, "the third outcome", lambda: "sent 0 ·" in text_of(screen, "#send-result"))
        assert "skipped: already done 4" in text_of(screen, "#send-result")
        assert box.count() == 3


async def test_send_refuses_in_one_line(
    desk_api: tuple[Desk, Api], mailbox: tuple[Mailbox, int], tmp_path: Path
) -> None:
    desk, api = desk_api
    box, port = mailbox
    api.enrol("Bob Builder", email="bob@example.com", marketing_email=True)
    app = ConsoleApp(desk, clock=lambda: NOW)  # no campaigns file
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_marketing(pilot, app)
        await tap(pilot, "#cmp-send")
        await _until(pilot, "no file", lambda: "--campaigns FILE" in text_of(screen, "#send-msg"))

    app = ConsoleApp(desk, clock=lambda: NOW, campaigns=_campaigns_file(tmp_path, port))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_marketing(pilot, app)
        screen.query_one("#cmp-code", Input).value = "WINTER"
        await tap(pilot, "#cmp-send")
        await _until(pilot, "no segment", lambda: "saved segment's code" in text_of(screen, "#send-msg"))
        screen.query_one("#seg-code", Input).value = "everyone"
        await tap(pilot, "#cmp-send")
        await _until(
            pilot, "not saved", lambda: "save segment 'everyone' first" in text_of(screen, "#send-msg")
        )
        await _save_segment(pilot, screen)
        screen.query_one("#cmp-code", Input).value = "BDAY"
        await tap(pilot, "#cmp-send")
        await _until(
            pilot,
            "the file's code",
            lambda: "BDAY is a campaign of campaigns.toml" in text_of(screen, "#send-msg"),
        )
        screen.query_one("#cmp-code", Input).value = "WINTER"
        screen.query_one("#cmp-subject", Input).value = "{{ nonsense }}"
        await tap(pilot, "#cmp-send")
        await _until(pilot, "the template error", lambda: "nonsense" in text_of(screen, "#send-msg"))
        msg = text_of(screen, "#send-msg")
        assert msg.startswith("not sent:") and "\n" not in msg and "Traceback" not in msg
        assert not isinstance(app.screen, Confirm) and not screen.query_one("#cmp-send").disabled
    assert box.count() == 0


def _shown(pilot: Any) -> str:
    """What the Send lines say (for a wait that timed out)."""
    screen = pilot.app.screen
    return " | ".join(text_of(screen, w) for w in ("#send-msg", "#send-result") if screen.query(w))
