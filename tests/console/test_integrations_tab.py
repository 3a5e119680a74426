"""The administrator's Integrations tab under Pilot, on the real side tables (SQLite): API keys
created (the raw key shown once, copyable, and it works), refused with the CLI's own lines,
revoked after a confirm (401 from then on); webhooks added and refused the same way, their
state, last delivery and failures as a real delivery worker leaves them (a real HTTP receiver),
and removed after a confirm; a delivery dead against a failing receiver listed among the dead
letters, retried from the tab (one, then all) and arriving signed. Both side-table stores
(SQLite, PostgreSQL). Clerks and marketers do not see the tab."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from textual.widgets import Button, DataTable, Input, TabbedContent

from staypoint.central.console import integrations
from staypoint.central.console.app import ConsoleApp, DeskScreen
from staypoint.central.console.confirm import Confirm
from staypoint.central.console.desk import Desk
from staypoint.central.webhooks import Webhooks, Worker, verify
from tests.api.conftest import NOW, Api
from tests.console.helpers import sign_in, tap, text_of
from tests.waits import wait_until_async

pytest_plugins = ["tests.pg_fixtures"]

SIZE = (150, 60)


def _cell(table: DataTable[Any], key: str, column: int) -> str:
    return str(table.get_row(key)[column])


async def _until(pilot: Any, what: str, pred: Any) -> Any:
    return await wait_until_async(pred, message=what, between=pilot.pause)


async def _open_tab(pilot: Any, screen: DeskScreen) -> None:
    screen.query_one(TabbedContent).active = "integrations"
    await _until(pilot, "the tab laid out", lambda: screen.query_one("#wh-remove").region.area)


class Receiver:
    """A booking engine's webhook endpoint: answers ``status`` to every POST; ``got`` keeps the
    (headers, body) of those it answered 2xx."""

    def __init__(self) -> None:
        self.status = 500
        self.posts = 0
        self.got: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts += 1
                if 200 <= receiver.status < 300:
                    receiver.got.append((dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def test_only_administrators_see_the_integrations_tab(desk_api: tuple[Desk, Api]) -> None:
    desk, _api = desk_api
    for staff_id in ("clerk-1", "mkt-1"):
        app = ConsoleApp(desk, clock=lambda: NOW)
        async with app.run_test(size=SIZE) as pilot:
            await sign_in(pilot, staff_id)
            assert isinstance(app.screen, DeskScreen) and not app.screen.query("#integrations")


async def test_admin_creates_copies_and_revokes_an_api_key(any_desk: tuple[Desk, Api]) -> None:
    desk, api = any_desk
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "admin-1")
        screen = app.screen
        assert isinstance(screen, DeskScreen)
        await _open_tab(pilot, screen)
        table = screen.query_one("#keys-table", DataTable)
        # The three keys the API fixture made: the website's, SHA's PMS, a rates-only one.
        await _until(pilot, "the keys listed", lambda: table.row_count == 3)
        assert {str(table.get_row_at(i)[1]) for i in range(3)} == {"website", "SHA PMS", "meta"}
        assert not screen.query_one("#key-secret-row").display  # nothing to show yet

        # Refused by keys.create_key itself: its line, in the tab.
        for scopes, props, line in (
            ("member,teleport", "*", "unknown scopes ['teleport']"),
            ("member,rates", "SH A", "bad properties ['SH A']"),
            ("", "*", "unknown scopes"),
        ):
            screen.query_one("#key-name", Input).value = "Booking engine"
            screen.query_one("#key-scopes", Input).value = scopes
            screen.query_one("#key-props", Input).value = props
            await tap(pilot, "#key-create")
            await _until(pilot, line, lambda line=line: line in text_of(screen, "#key-msg"))
            assert "Traceback" not in text_of(screen, "#key-msg") and table.row_count == 3

        screen.query_one("#key-scopes", Input).value = "member, rates"
        screen.query_one("#key-props", Input).value = "*"
        await tap(pilot, "#key-create")
        await _until(pilot, "the new key", lambda: "created key" in text_of(screen, "#key-msg"))
        assert "not shown again" in text_of(screen, "#key-msg")
        assert screen.query_one("#key-secret-row").display
        raw = screen.query_one("#key-secret", Input).value
        assert (
            raw.startswith("sp_")
            and api.client.get("/v1/ping", headers={"X-API-Key": raw}).status_code == 200
        )
        key_id = raw.split("_", 2)[1]
        await _until(pilot, "four keys", lambda: table.row_count == 4)
        assert _cell(table, key_id, 1) == "Booking engine" and _cell(table, key_id, 2) == "member,rates"
        assert _cell(table, key_id, 3) == "*" and _cell(table, key_id, 5) == "active"
        # The side tables keep its hash only.
        assert raw not in str(desk.side.all("SELECT * FROM api_keys"))

        # The field only shows it: typing puts it back; Copy puts it on the clipboard.
        await pilot.click("#key-secret")
        await pilot.press("x", "backspace", "backspace")
        assert screen.query_one("#key-secret", Input).value == raw
        await tap(pilot, "#key-copy")
        assert app.clipboard == raw and "copied" in text_of(screen, "#key-msg")

        # Revoke: the cursor is on the new key; a confirm first, where enter is Cancel.
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == key_id
        await tap(pilot, "#key-revoke")
        confirm = await _until(pilot, "the confirm", lambda: isinstance(app.screen, Confirm) and app.screen)
        question = text_of(confirm, "#confirm-question")
        assert key_id in question and "401" in question
        await pilot.press("enter")
        await _until(pilot, "the desk again", lambda: app.screen is screen)
        assert f"not revoked: {key_id}" in text_of(screen, "#key-msg")
        assert api.client.get("/v1/ping", headers={"X-API-Key": raw}).status_code == 200

        await tap(pilot, "#key-revoke")
        await _until(pilot, "the confirm", lambda: isinstance(app.screen, Confirm))
        await tap(pilot, "#confirm-yes")
        await _until(
            pilot, "revoked", lambda: f"revoked {key_id} (Booking engine)" in text_of(screen, "#key-msg")
        )
        await _until(pilot, "the row revoked", lambda: _cell(table, key_id, 5) != "active")
        assert _cell(table, key_id, 5).startswith("2026-11-23")
        r = api.client.get("/v1/ping", headers={"X-API-Key": raw})
        assert r.status_code == 401 and "revoked" in r.text

        # Hide: the raw key is gone from the screen.
        await tap(pilot, "#key-hide")
        assert not screen.query_one("#key-secret-row").display
        assert screen.query_one("#key-secret", Input).value == ""

        # A revoked key again: keys.revoke_key's refusal, with no question asked.
        await tap(pilot, "#key-revoke")
        await _until(pilot, "already", lambda: "was revoked already" in text_of(screen, "#key-msg"))
        assert app.screen is screen


async def test_admin_adds_watches_and_removes_a_webhook(
    any_desk: tuple[Desk, Api], receiver: Receiver
) -> None:
    desk, api = any_desk
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "admin-1")
        screen = app.screen
        assert isinstance(screen, DeskScreen)
        await _open_tab(pilot, screen)
        keys_table = screen.query_one("#keys-table", DataTable)
        hooks = screen.query_one("#wh-table", DataTable)
        await _until(pilot, "the keys listed", lambda: keys_table.row_count == 3)
        sha = next(k for k in desk.side.all("SELECT id, name FROM api_keys") if k[1] == "SHA PMS")[0]

        # Selecting a key (a tap, or enter) fills in the webhook's client.
        keys_table.move_cursor(row=keys_table.get_row_index(sha))
        keys_table.focus()
        await pilot.press("enter")
        await _until(pilot, "the client filled", lambda: screen.query_one("#wh-client", Input).value == sha)

        for url, events, line in (
            ("ftp://booking.example/x", "", "is not an http(s) URL"),
            (receiver.url, "member.deleted", "unknown event kinds ['member.deleted']"),
        ):
            screen.query_one("#wh-url", Input).value = url
            screen.query_one("#wh-events", Input).value = events
            await tap(pilot, "#wh-add")
            await _until(pilot, line, lambda line=line: line in text_of(screen, "#wh-msg"))
        screen.query_one("#wh-client", Input).value = "nosuchkey"
        screen.query_one("#wh-events", Input).value = ""
        await tap(pilot, "#wh-add")
        await _until(pilot, "no such key", lambda: "no API key 'nosuchkey'" in text_of(screen, "#wh-msg"))
        assert hooks.row_count == 0

        screen.query_one("#wh-client", Input).value = sha
        screen.query_one("#wh-events", Input).value = "member.points_changed"
        await tap(pilot, "#wh-add")
        await _until(pilot, "added", lambda: "added wh_" in text_of(screen, "#wh-msg"))
        secret = screen.query_one("#wh-secret", Input).value
        assert secret.startswith("whsec_") and screen.query_one("#wh-secret-row").display
        sub_id = text_of(screen, "#wh-msg").split()[1].rstrip(":")
        await _until(pilot, "the subscription listed", lambda: hooks.row_count == 1)
        assert [str(c) for c in hooks.get_row(sub_id)] == [
            sub_id,
            sha,
            receiver.url,
            "member.points_changed",
            "active",
            "never",
            "",
        ]

        # The delivery worker (as 'central webhooks run'), the receiver refusing at first.
        worker = Worker(api.ledger.store, desk.side, base=0.001, cap=0.001)
        try:
            worker.pull()  # the first run starts at the log's end
            ada = desk.search("ada@example.com")[0]["member"]
            api.stay(ada, "F-WH", room="400")
            assert worker.pull() == 1 and worker.deliver_due() == 1 and receiver.posts == 1
            await tap(pilot, "#int-refresh")
            await _until(pilot, "retrying", lambda: _cell(hooks, sub_id, 4) == "retrying")
            assert _cell(hooks, sub_id, 6) == "1 retrying: HTTP 500" and _cell(hooks, sub_id, 5) == "never"

            receiver.status = 204
            await wait_until_async(lambda: worker.deliver_due() == 1, message="the retry sent")
        finally:
            worker.close()
        await tap(pilot, "#int-refresh")
        await _until(pilot, "delivered", lambda: _cell(hooks, sub_id, 4) == "active")
        assert _cell(hooks, sub_id, 5).startswith("20") and _cell(hooks, sub_id, 6) == ""

        # Revoking the client's key pauses its webhooks (the worker queues nothing for them).
        keys_table.move_cursor(row=keys_table.get_row_index(sha))
        await pilot.pause()
        await tap(pilot, "#key-revoke")
        await _until(pilot, "the confirm", lambda: isinstance(app.screen, Confirm))
        await tap(pilot, "#confirm-yes")
        await _until(pilot, "paused", lambda: _cell(hooks, sub_id, 4) == "paused: key revoked")

        # Remove: a confirm naming the URL, then gone.
        hooks.move_cursor(row=hooks.get_row_index(sub_id))
        await pilot.pause()
        await tap(pilot, "#wh-remove")
        confirm = await _until(pilot, "the confirm", lambda: isinstance(app.screen, Confirm) and app.screen)
        assert receiver.url in text_of(confirm, "#confirm-question")
        await pilot.press("escape")
        await _until(pilot, "kept", lambda: f"not removed: {sub_id}" in text_of(screen, "#wh-msg"))
        assert hooks.row_count == 1
        screen.query_one("#wh-remove", Button).press()
        await _until(pilot, "the confirm", lambda: isinstance(app.screen, Confirm))
        await tap(pilot, "#confirm-yes")
        await _until(pilot, "removed", lambda: f"removed {sub_id}" in text_of(screen, "#wh-msg"))
        await _until(pilot, "the list empty", lambda: hooks.row_count == 0)
        assert desk.side.all("SELECT id FROM webhook_subscriptions") == []


async def test_admin_retries_dead_letters(
    any_desk: tuple[Desk, Api], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk, api = any_desk
    monkeypatch.setattr(integrations, "DEAD_LIMIT", 1)  # two dead letters: one listed, "there are more"
    book = Webhooks(desk.side)
    sha = next(k for k in desk.side.all("SELECT id, name FROM api_keys") if k[1] == "SHA PMS")[0]
    sub_id, secret = book.add(sha, receiver.url, ["member.points_changed"], NOW)
    # The delivery worker (as 'central webhooks run'), two tries each, against a receiver answering 500.
    worker = Worker(api.ledger.store, desk.side, base=0.001, cap=0.001, max_attempts=2)
    app = ConsoleApp(desk, clock=lambda: NOW)
    try:
        worker.pull()  # the first run starts at the log's end
        ada = desk.search("ada@example.com")[0]["member"]
        for folio in ("F-DL-1", "F-DL-2"):
            api.stay(ada, folio, room="400")
            assert worker.pull() == 1
        await wait_until_async(
            lambda: worker.deliver_due() == 0 and len(book.dead()) == 2, message="both deliveries dead"
        )
        assert receiver.posts == 4 and receiver.got == []

        async with app.run_test(size=SIZE) as pilot:
            await sign_in(pilot, "admin-1")
            screen = app.screen
            assert isinstance(screen, DeskScreen)
            await _open_tab(pilot, screen)
            hooks = screen.query_one("#wh-table", DataTable)
            dead = screen.query_one("#dl-table", DataTable)
            await _until(pilot, "the dead letter listed", lambda: dead.row_count == 1)
            assert "there are more" in text_of(screen, "#dl-count")
            assert _cell(hooks, sub_id, 6) == "2 dead: HTTP 500"
            first = str(dead.get_row_at(0)[0])
            assert [str(c) for c in dead.get_row(first)][1:] == [
                receiver.url,
                "member.points_changed",
                str(book.dead()[0]["created"])[:19],
                "2",
                "HTTP 500",
            ]

            # Retry: a confirm naming the delivery and the URL; Cancel keeps it dead.
            await tap(pilot, "#dl-retry")
            confirm = await _until(pilot, "a confirm", lambda: isinstance(app.screen, Confirm) and app.screen)
            question = text_of(confirm, "#confirm-question")
            assert first in question and receiver.url in question
            await pilot.press("escape")
            await _until(pilot, "kept", lambda: f"not retried: {first}" in text_of(screen, "#dl-msg"))
            assert len(book.dead()) == 2

            # The receiver fixed; Retry: the row leaves the list, the other dead letter shows,
            # the subscription's counts follow.
            receiver.status = 204
            await tap(pilot, "#dl-retry")
            await _until(pilot, "the confirm", lambda: isinstance(app.screen, Confirm))
            await tap(pilot, "#confirm-yes")
            await _until(pilot, "queued", lambda: f"queued {first} again" in text_of(screen, "#dl-msg"))
            await _until(pilot, "the counts", lambda: _cell(hooks, sub_id, 6) == "1 dead: HTTP 500")
            assert dead.row_count == 1 and str(dead.get_row_at(0)[0]) != first
            assert text_of(screen, "#dl-count") == "1 dead delivery, newest first"
            second = str(dead.get_row_at(0)[0])

            # The worker sends it: signed as every delivery is, with its delivery id.
            assert worker.deliver_due() == 1 and len(receiver.got) == 1
            headers, body = receiver.got[0]
            assert headers["Staypoint-Delivery"] == first
            assert verify(secret, headers["Staypoint-Signature"], body, time.time())

            # Retry all: a confirm with the count, then CLI's line; the list empties.
            await tap(pilot, "#dl-retry-all")
            confirm = await _until(pilot, "a confirm", lambda: isinstance(app.screen, Confirm) and app.screen)
            assert "all 1 dead deliveries" in text_of(confirm, "#confirm-question")
            await tap(pilot, "#confirm-yes")
            await _until(pilot, "queued", lambda: "1 deliveries queued again" in text_of(screen, "#dl-msg"))
            await _until(pilot, "the list empty", lambda: dead.row_count == 0)
            assert text_of(screen, "#dl-count") == "no dead deliveries" and _cell(hooks, sub_id, 6) == ""
            assert worker.deliver_due() == 1 and [h["Staypoint-Delivery"] for h, _ in receiver.got] == [
                first,
                second,
            ]
            assert all(verify(secret, h["Staypoint-Signature"], b, time.time()) for h, b in receiver.got)
            assert book.dead() == [] and not book.deliveries("pending")

            # Nothing dead: Retry and Retry all say so, with no question asked.
            await tap(pilot, "#dl-retry")
            await _until(pilot, "none", lambda: "no dead delivery selected" in text_of(screen, "#dl-msg"))
            await tap(pilot, "#dl-retry-all")
            await _until(pilot, "none", lambda: "no dead deliveries to retry" in text_of(screen, "#dl-msg"))
            assert app.screen is screen
    finally:
        worker.close()
