"""Head office's own event sources: the website, the property systems, the console.

docs/api.md, "Everything is an event": the API and the console change the ledger only
by events, like a node does. Each source is a stream of its own — ``web``, ``pms-<property>``,
``console`` — with ``(node, epoch, seq)`` allocated here and applied through
``Ledger.ingest``, the very path node batches take, so the change reaches every node
through the change log and a member's balance is one figure everywhere.

Several API processes must not share a stream (two writers would race for one ``seq``):
each process gets a ``suffix`` (``web-2``, ``pms-SHA-2``), see docs/scale.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from staypoint.central.ledger import IngestResult, Ledger
from staypoint.central.store import Change
from staypoint.loyalty import bounds
from staypoint.loyalty.events import Event, iso, uuid7

EPOCH = 1  # head office's streams are never restored from a node backup: one epoch


class EmitError(RuntimeError):
    """The ledger did not apply an event head office itself made (a bug or a race)."""


@dataclass(frozen=True)
class Draft:
    """An event before its stream position is known."""

    type: str
    member: str | None
    data: Mapping[str, Any]
    id: str | None = None  # a caller-chosen idempotency key; else a fresh UUIDv7
    auth: str | None = None


class OutOfBounds(ValueError):
    """An event of head office's own streams that breaks the contract's bounds or rules."""


class EventSources:
    """Allocates seqs for head office's streams and applies events through ``Ledger.ingest``."""

    def __init__(self, ledger: Ledger, *, suffix: str = "") -> None:
        self.ledger = ledger
        self.suffix = suffix
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def stream(self, base: str) -> str:
        return f"{base}-{self.suffix}" if self.suffix else base

    def _lock(self, node: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(node, threading.Lock())

    def emit(
        self,
        base: str,
        drafts: Sequence[Draft],
        now: datetime,
        *,
        then: Callable[[], None] | None = None,
    ) -> tuple[list[Event], list[Change]]:
        """Apply ``drafts`` as the next events of stream ``base``, in one ledger transaction.

        ``then()``, when given, is the caller's own record of it (a stay's folio row): it runs in
        that transaction once every event is applied, so what it writes in the ledger's
        database commits with them, in one commit (``SideStore.joined``); when all of them were
        applied already (see below) it runs alone; when the ledger refuses one it does not run.
        """
        node = self.stream(base)
        # The programme the API runs on (Ledger.current_program: re-read at most once a second).
        running = self.ledger.current_program()
        program = running.version if running is not None else 1
        # Drafts with a deterministic id that the ledger already holds were applied by an
        # earlier call that died before its caller recorded it (e.g. a folio row): applying
        # them again would be refused as a duplicate, so they are done, not an error.
        drafts = [d for d in drafts if d.id is None or self.ledger.store.event_by_id(d.id) is None]
        if not drafts:
            if then is not None:
                then()
            return [], []
        with self._lock(node):
            hw = self.ledger.store.high_water(node, EPOCH)
            events = [
                Event(
                    node=node,
                    epoch=EPOCH,
                    seq=hw + i + 1,
                    id=d.id or uuid7(now),
                    at=iso(now),
                    type=d.type,
                    member=d.member,
                    program=program,
                    data=dict(d.data),
                    auth=d.auth,
                )
                for i, d in enumerate(drafts)
            ]
            current = self.ledger.program(program)
            limits = current.bounds if current is not None else bounds.Bounds()
            for ev in events:
                try:
                    bounds.check_event(ev, limits, now)
                except bounds.BoundError as exc:
                    # The same bounds a node's events meet: refused before anything is written.
                    raise OutOfBounds(f"{ev.type}: {exc}") from None

            def applied(result: IngestResult) -> None:
                if then is not None and not result.quarantined and result.applied == len(events):
                    then()

            result = self.ledger.ingest(
                node, [e.to_dict() for e in events], now, then=None if then is None else applied
            )
        if result.quarantined:
            raise OutOfBounds(f"{node}: head office's rules refused this (see the quarantine list)")
        if result.applied != len(events):
            raise EmitError(
                f"{node}: {len(events)} events, {result.applied} applied, {result.rejected} rejected, "
                f"{result.skipped} skipped"
            )
        return events, result.changes
