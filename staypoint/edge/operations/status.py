"""The node's own state: contact with head office, idle-time housekeeping, the outbox and
the status document a technician (and the health message) reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from staypoint.edge.operations.core import NodeCore
from staypoint.loyalty.events import iso, parse_iso


class NodeStatus:
    """The node itself, as opposed to its members."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.replica = core.replica

    def record_contact(self, now: datetime) -> None:
        """Head office was reached: the offline counters start again (called by the sync agent)."""
        with self.replica.write():
            self.replica.set_meta("last_contact", iso(now))
            self.replica.set_meta("offline_exposure", 0)
            self.replica.clear_offline()

    def maintenance(self) -> None:
        """Idle-time housekeeping (the kiosk and the sync agent call it when nothing happens)."""
        self.replica.checkpoint()

    def outbox(self, *, pending_only: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
        """The outbox rows, oldest first (``staypoint outbox``)."""
        return self.replica.outbox(pending_only=pending_only, limit=limit)

    def status(self, now: datetime) -> dict[str, Any]:
        """The node's status document: stream position, outbox, contact, programme, rejections."""
        last = self.replica.meta("last_contact")
        pending = self.replica.outbox(pending_only=True, limit=1)
        return {
            "node": self.core.node_id,
            "property": self.core.property,
            "epoch": int(self.replica.meta("epoch") or 1),
            "last_seq": int(self.replica.meta("last_seq") or 0),
            "outbox_depth": self.replica.outbox_depth(),
            "oldest_pending": pending[0]["at"] if pending else None,
            "last_contact": last,
            "staleness_s": int((now - parse_iso(last)).total_seconds()) if last else None,
            "offline_exposure": int(self.replica.meta("offline_exposure") or 0),
            "program_version": self.core.program.version,
            "members": self.replica.member_count(),
            # Our events head office quarantined (newest first): a technician reads why.
            "rejected": self.replica.rejected_events(3),
            "rejected_total": self.replica.rejected_count(),
        }
