"""A real node replica wired straight to a ledger, for the contract tests (no broker).

Its outbox goes to head office as the agent would send it (``pending``/``send``), head
office's changes come back as the agent applies them (``receive``), and ``forge`` writes
an event by hand into the outbox, as a tampered board would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from staypoint.central.ledger import Ledger
from staypoint.edge import sync_store
from staypoint.edge.service import NodeService
from staypoint.loyalty.events import Event, iso, uuid7
from staypoint.loyalty.program import default_program_text

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Node:
    """One board: its replica, what it has sent, and the change version it has seen."""

    def __init__(self, tmp_path: Path, node: str, prop: str, block: int, *, now: datetime = NOW) -> None:
        self.svc = NodeService.init_node(
            tmp_path / f"{node}.db", node, prop, default_program_text(), now, member_blocks=[block]
        )
        self.node = node
        self.sent = 0
        self.version = 0
        self.cache = sync_store.UnfoldedCache()

    def pending(self) -> list[dict[str, Any]]:
        """The outbox events not handed over yet, in seq order (and now handed over)."""
        rows = self.svc.replica.conn.execute(
            "SELECT body FROM outbox WHERE seq > ? ORDER BY seq", (self.sent,)
        )
        out = [json.loads(b) for (b,) in rows]
        self.sent += len(out)
        return out

    def send(self, ledger: Ledger, now: datetime = NOW) -> None:
        ledger.ingest(self.node, self.pending(), now)

    def receive(self, ledger: Ledger) -> None:
        """Everything head office changed since the last look (a snapshot the first time)."""
        _, to, changes = ledger.resync(self.version)
        with self.svc.replica.write():
            sync_store.apply_changes(self.svc.replica.conn, [c.to_wire() for c in changes], {}, self.cache)
        self.version = to

    def forge(
        self, kind: str, member: str | None, data: dict[str, Any], at: datetime = NOW
    ) -> dict[str, Any]:
        """The next event of this node's stream, written by hand into its outbox (a tampered board)."""
        with self.svc.replica.write():
            seq = self.svc.replica.bump_meta("last_seq")
            event = Event(self.node, 1, seq, uuid7(at), iso(at), kind, member, 1, data)
            self.svc.replica.append_outbox(event)
        self.sent = seq
        return event.to_dict()
