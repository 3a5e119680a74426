"""Claims: auto-approved on a matching folio, approved by a clerk, rejected with a reason; one
e-mail each through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from staypoint.central.claims import ClaimsQueue, Mailer
from staypoint.edge.service import NodeService
from staypoint.loyalty.program import default_program_text
from tests.api.conftest import NOW, Api

pytest_plugins = ["tests.pg_fixtures"]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    # Controller(port=0) does not work (it probes its own port): take a free port first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _claim(
    api: Api, token: str, folio: str, arrival: str = "2026-11-20", departure: str = "2026-11-22"
) -> None:
    body = {"folio": folio, "property": "SHA", "arrival": arrival, "departure": departure}
    r = api.client.post("/v1/me/claims", json=body, headers=api.h(token=token))
    assert r.status_code == 202, r.text


def test_claims_auto_clerk_reject_each_told_once(api: Api, smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp
    queue = ClaimsQueue(api.services, Mailer("127.0.0.1", port))
    ada = api.enrol("Ada Lovelace", email="ada@example.com")
    bob = api.enrol("Bob Brown", email="bob@example.com")
    api.stay(None, "F-ANON", room="400")  # the PMS posted a folio without a member number
    ta, tb = api.login(ada), api.login(bob)
    _claim(api, ta, "F-ANON")  # matches: auto
    _claim(api, tb, "F-LOST")  # no such folio: a clerk
    _claim(api, tb, "F-BAD")  # a clerk rejects
    # A kiosk's claim joins the same queue through the node's event stream.
    node = NodeService.init_node(tmp_path / "n.db", "sha-lobby-01", "SHA", default_program_text(), NOW)
    kiosk_member = node.enrol("Cy Kiosk", "2580", NOW).number
    node.record_claim(kiosk_member, "F-K1", date(2026, 11, 1), date(2026, 11, 3), NOW)
    bodies = [json.loads(b) for (b,) in node.replica.conn.execute("SELECT body FROM outbox ORDER BY seq")]
    api.ledger.ingest("sha-lobby-01", bodies, NOW)

    counts = queue.pull(NOW)
    assert counts == {"new": 4, "approved": 1, "rejected": 0}
    auto = queue.search(member=ada)[0]
    assert (auto["status"], auto["clerk"], auto["points"]) == ("approved", "auto", 4000)
    assert api.ledger.member(ada)["points"] == 4000
    assert [c["source"] for c in queue.search(status="pending")] == ["web", "web", "sha-lobby-01"]
    assert queue.search(day=date(2026, 11, 2), outlet="SHA")[0]["member"] == kiosk_member

    lost = queue.search(folio="F-LOST")[0]
    queue.approve(lost["id"], "clerk-7", 1200, NOW)
    assert api.ledger.member(bob)["points"] == 1200
    events = api.ledger.store.member_events(bob, 1)
    assert json.loads(events[0])["data"]["staff"] == "clerk-7"
    bad = queue.search(folio="F-BAD")[0]
    queue.reject(bad["id"], "clerk-7", "no stay found under this folio", NOW)
    assert api.ledger.member(bob)["points"] == 1200

    queue.pull(NOW)  # nothing new, nobody told twice
    queue.notify_pending()
    to = sorted(rcpt[0] for rcpt, _ in inbox.messages)
    assert to == ["ada@example.com", "bob@example.com", "bob@example.com"]
    rejected = next(text for rcpt, text in inbox.messages if "could not" in text)
    assert "no stay found under this folio" in rejected
    assert queue.get(bad["id"])["notify"] == "sent"
