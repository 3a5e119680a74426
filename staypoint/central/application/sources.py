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
from dataclasses import dataclass, field
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


@dataclass
class _Emit:
    """One ``emit`` call's drafts, and once applied, its events or its refusal."""

    drafts: list[Draft]
    now: datetime
    program: int
    then: Callable[[], None] | None
    events: list[Event] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False
    signal: threading.Event = field(default_factory=threading.Event)  # done, or the turn is ours

    def outcome(self) -> tuple[list[Event], list[Change]]:
        if self.error is not None:
            raise self.error
        return self.events, self.changes


class EventSources:
    """Allocates seqs for head office's streams and applies events through ``Ledger.ingest``."""

    def __init__(self, ledger: Ledger, *, suffix: str = "") -> None:
        self.ledger = ledger
        self.suffix = suffix
        self._locks: dict[str, threading.Lock] = {}
        # Each stream's high-water after this process's last apply that took every event: only
        # this process writes its streams, so the next turn need not read it back (one round trip
        # fewer inside the turn). Anything else (a refusal, an error) drops it, and it is read.
        self._high_water: dict[str, int] = {}
        self._waiting: dict[str, list[_Emit]] = {}  # ``together`` calls queued per stream
        self._leading: set[str] = set()  # streams whose turn a ``together`` call has or is handed
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
        together: bool = False,
        recorded: bool = False,
    ) -> tuple[list[Event], list[Change]]:
        """Apply ``drafts`` as the next events of stream ``base``, in one ledger transaction.

        ``then()``, when given, is the caller's own record of it (a stay's folio row): it runs in
        that transaction once every event is applied, so what it writes in the ledger's
        database commits with them, in one commit (``SideStore.joined``); when all of them were
        applied already (see below) it runs alone; when the ledger refuses one it does not run.

        ``together``: calls made at the same moment on one stream share a ledger transaction
        (group commit): whoever takes the stream's turn applies every call waiting for it, each
        as a batch of its own, in one commit, and each caller gets its own events or refusal
        once that commit is done. Every call's ``then`` runs on the thread that took the turn,
        in that transaction, so it must write through the ledger's connection (``SideStore.
        joined`` with the side tables in the ledger's PostgreSQL database). A group that fails
        as a whole is applied again call by call, so one call's failure stays its own. The
        changes returned are then the whole group's.

        ``recorded``: ``then`` writes the caller's own record of these drafts in the ledger's
        commit (``together``, joined), and the caller read that record under its own lock before
        drafting: it already says none of them is applied, so the ledger's ids are not read
        first. Should one be applied all the same (a record from before the two were joined),
        the ledger refuses it as a duplicate and the call is made again with the ids read.
        """
        if recorded:
            try:
                return self._emit(base, drafts, now, then, together, check=False)
            except EmitError:
                pass
        return self._emit(base, drafts, now, then, together, check=True)

    def _emit(
        self,
        base: str,
        drafts: Sequence[Draft],
        now: datetime,
        then: Callable[[], None] | None,
        together: bool,
        *,
        check: bool,
    ) -> tuple[list[Event], list[Change]]:
        node = self.stream(base)
        # The programme the API runs on (Ledger.current_program: re-read at most once a second).
        running = self.ledger.current_program()
        program = running.version if running is not None else 1
        # Drafts with a deterministic id that the ledger already holds were applied by an
        # earlier call that died before its caller recorded it (e.g. a folio row): applying
        # them again would be refused as a duplicate, so they are done, not an error.
        ids = [d.id for d in drafts if d.id is not None] if check else []
        taken = self.ledger.store.group_reads(ids, [], ()).taken if ids else set()
        drafts = [d for d in drafts if d.id is None or d.id not in taken]
        if not drafts:
            if then is not None:
                then()
            return [], []
        call = _Emit(drafts, now, program, then)
        if not together:
            with self._lock(node):
                self._apply(node, [call])
            return call.outcome()
        with self._guard:
            self._waiting.setdefault(node, []).append(call)
            lead = node not in self._leading
            self._leading.add(node)
        if not lead:
            call.signal.wait()  # done by the thread that has the turn, or handed the turn
            if call.done:
                return call.outcome()
        group: list[_Emit] = []
        try:
            with self._lock(node):  # the stream's turn (a call not together waits for it too)
                with self._guard:
                    group = self._waiting.pop(node, [])
                self._apply_together(node, group)
        finally:
            with self._guard:
                queued = self._waiting.get(node)
                if queued:
                    queued[0].signal.set()  # arrived meanwhile: the first takes the next turn
                else:
                    self._leading.discard(node)
            for other in group:
                other.signal.set()
        return call.outcome()

    def _apply_together(self, node: str, group: list[_Emit]) -> None:
        try:
            self._apply(node, group)
        except Exception as exc:
            if len(group) == 1 or _may_have_committed(exc):
                # Alone it would have failed so too; and a commit whose answer was lost may have
                # happened: each caller gets the error, as a call alone would have.
                for call in group:
                    call.error, call.done = exc, True
                return
            for call in group:  # rolled back: again one by one, so whichever failed fails alone
                call.error, call.done, call.events = None, False, []
                try:
                    self._apply(node, [call])
                except Exception as alone:
                    call.error, call.done = alone, True
        except BaseException as exc:
            for call in group:
                if not call.done:
                    call.error, call.done = exc, True
            raise

    def _apply(self, node: str, calls: list[_Emit]) -> None:
        """Under the stream's lock: ``calls`` as consecutive batches of one ledger transaction."""
        known = self._high_water.pop(node, None)
        hw = self.ledger.store.high_water(node, EPOCH) if known is None else known
        staged: list[tuple[_Emit, list[Event]]] = []
        for call in calls:
            events = [
                Event(
                    node=node,
                    epoch=EPOCH,
                    seq=hw + i + 1,
                    id=d.id or uuid7(call.now),
                    at=iso(call.now),
                    type=d.type,
                    member=d.member,
                    program=call.program,
                    data=dict(d.data),
                    auth=d.auth,
                )
                for i, d in enumerate(call.drafts)
            ]
            current = self.ledger.program(call.program)
            limits = current.bounds if current is not None else bounds.Bounds()
            try:
                for ev in events:
                    try:
                        bounds.check_event(ev, limits, call.now)
                    except bounds.BoundError as exc:
                        # The same bounds a node's events meet: refused before anything is written.
                        raise OutOfBounds(f"{ev.type}: {exc}") from None
            except OutOfBounds as exc:
                call.error, call.done = exc, True
                continue
            hw += len(events)
            staged.append((call, events))
        if not staged:
            return

        def applied(results: list[IngestResult]) -> None:
            for (call, events), result in zip(staged, results, strict=True):
                if call.then is not None and not result.quarantined and result.applied == len(events):
                    call.then()

        results = self.ledger.ingest_many(
            [(node, [e.to_dict() for e in events]) for _, events in staged],
            max(call.now for call, _ in staged),
            then=applied if any(call.then is not None for call, _ in staged) else None,
        )
        done = zip(staged, results, strict=True)
        if all(not r.quarantined and r.applied == len(ev) for (_, ev), r in done):
            self._high_water[node] = hw
        for (call, events), result in zip(staged, results, strict=True):
            if result.quarantined:
                call.error = OutOfBounds(
                    f"{node}: head office's rules refused this (see the quarantine list)"
                )
            elif result.applied != len(events):
                call.error = EmitError(
                    f"{node}: {len(events)} events, {result.applied} applied, {result.rejected} rejected, "
                    f"{result.skipped} skipped"
                )
            else:
                call.events, call.changes = events, results[-1].changes
            call.done = True


def _may_have_committed(exc: BaseException) -> bool:
    """A failure of the connection, not of the work: a COMMIT sent may have happened."""
    from staypoint.central.store import StoreUnavailable
    from staypoint.central.store_pg import TRANSIENT

    return isinstance(exc, (*TRANSIENT, StoreUnavailable))
