"""Head office's decisions on what nodes ask of it: voids of spent points, members reported.

A node never takes points a member has already spent, and never blocks a member: it asks
(``stay.void_requested``, ``member.reported``) and head office's staff decide here. Each
decision is an event on head office's console stream, applied through the ledger like any
other (``application/sources.py``), so it reaches every node as the member's record:

- settling a void books the ``stay.voided`` the node asked for; when the member has spent
  the points, the balance goes below zero and the fold writes the debt down and holds the
  account until it is paid back (docs/programme.md, Offline debts);
- blocking (from a report, or on its own) books ``member.blocked``; unblocking lifts only
  staff's hold, never a debt's;
- dismissing closes the review with nothing booked.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from staypoint.central.application.sources import Draft, EventSources, OutOfBounds
from staypoint.central.errors import Invalid
from staypoint.central.ledger import Ledger

CONSOLE = "console"


class ReviewError(Invalid, ValueError):
    """A decision that cannot be taken (no such review, closed already, wrong kind): one line."""


class ReviewDesk:
    """The review list and the decisions on it, for the CLI and the console."""

    def __init__(self, ledger: Ledger, sources: EventSources | None = None) -> None:
        self.ledger = ledger
        self.sources = sources or EventSources(ledger)

    def open(self) -> list[dict[str, Any]]:
        """The reviews no one has decided yet, oldest first."""
        return self.ledger.reviews(open_only=True)

    def _review(self, event_id: str) -> dict[str, Any]:
        for review in self.ledger.reviews(open_only=True):
            if review["event_id"] == event_id:
                return review
        raise ReviewError(f"no open review {event_id}")

    def settle(self, event_id: str, by: str, now: datetime) -> dict[str, Any]:
        """Book the void a node asked for; returns the member's record after it."""
        review = self._review(event_id)
        if review["kind"] != "void_requested":
            raise ReviewError(f"review {event_id} is a {review['kind']}, not a void to settle")
        asked = self.ledger.store.event_by_id(event_id)
        if asked is None:  # pragma: no cover - the review row is written with its event
            raise ReviewError(f"the request {event_id} is not in the ledger")
        data = dict(json.loads(asked.body)["data"])
        data["staff"] = by[:80]
        data["reason"] = f"settled at head office: {str(data.get('reason', ''))[:200]}"
        self._book("stay.voided", review["member"], data, now, key=event_id)
        self._close(event_id, "settled", by, now)
        return self._member(review["member"])

    def block(self, member: str, reason: str, by: str, now: datetime, *, review: str | None = None) -> None:
        """Hold a member's spending fleet-wide (from a review, or on staff's own account)."""
        if review is not None:
            self._review(review)
        self._member(member)
        if not reason.strip():
            raise ReviewError("a block needs a reason")
        self._book(
            "member.blocked", member, {"reason": reason.strip()[:300], "staff": by[:80]}, now, key=review
        )
        if review is not None:
            self._close(review, "blocked", by, now)

    def unblock(self, member: str, reason: str, by: str, now: datetime) -> None:
        """Lift staff's hold (a debt's block stays until the debt is paid)."""
        if not self._member(member).get("office_block"):
            raise ReviewError(f"member {member} is not held by head office")
        self._book("member.unblocked", member, {"reason": reason.strip()[:300], "staff": by[:80]}, now)

    def dismiss(self, event_id: str, by: str, now: datetime) -> None:
        """Close a review with nothing booked."""
        self._review(event_id)
        self._close(event_id, "dismissed", by, now)

    def _member(self, number: str) -> dict[str, Any]:
        m = self.ledger.member(number)
        if m is None:
            raise ReviewError(f"no member {number}")
        return m

    def _book(
        self, kind: str, member: str, data: dict[str, Any], now: datetime, *, key: str | None = None
    ) -> None:
        # A decision on a review has an id of its own derived from the review, so two clerks
        # (or a retry after a crash) book it once: the second emit finds it and does nothing.
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"staypoint:review:{key}:{kind}")) if key else None
        try:
            self.sources.emit(CONSOLE, [Draft(kind, member, data, id=event_id)], now)
        except OutOfBounds as exc:
            raise ReviewError(str(exc)) from None

    def _close(self, event_id: str, outcome: str, by: str, now: datetime) -> None:
        if not self.ledger.close_review(event_id, outcome, by, now):
            raise ReviewError(f"review {event_id} was decided meanwhile")
