"""Head office's ledger logic: ingest, authorisation with holds, overdrafts, tiers and jobs.

No MQTT and no SQL here: the transport is ``central/server.py`` and the data lives behind
``store.LedgerStore``. Every method that changes state runs one store transaction and
returns what must be published *after* it commits (ack, resend request, changes).

Points are re-checked with the very ``loyalty`` code the node ran, under the programme
version the event names, so node and head office agree by construction; a figure that
does not match is alarmed and head office's figure is the one booked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from staypoint.central.store import Change, EventRow, HoldRecord, LedgerStore
from staypoint.loyalty import bounds, fold, replicas, tiers
from staypoint.loyalty.events import (
    Event,
    EventFormatError,
    event_from_dict,
    is_console_stream,
    iso,
    parse_iso,
    uuid7,
)
from staypoint.loyalty.expiry import expiry_date
from staypoint.loyalty.program import Program, parse_program
from staypoint.loyalty.replicas import Hold as ReplicaHold

DEFAULT_HOLD_TTL = timedelta(minutes=10)
DELTA_LIMIT = 5000  # past this many changed keys a resync gets a snapshot instead


@dataclass
class IngestResult:
    """What one node batch did, and what to publish once it has committed."""

    node: str
    ack: tuple[int, int] | None = None  # (epoch, hw) for the retained cumulative ack
    applied: int = 0
    skipped: int = 0
    rejected: int = 0
    resend_from: tuple[int, int] | None = None  # (epoch, seq) the node must send again from
    quarantined: list[tuple[int, int]] = field(default_factory=list)  # (epoch, seq) refused and kept
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class AuthDecision:
    ok: bool
    hold: str | None = None
    expires: str | None = None
    reason: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"ok": self.ok, "hold": self.hold, "expires": self.expires, "reason": self.reason}


class _GroupState(threading.local):
    """Set only while ``ingest_many`` runs on this thread: member records read ahead for the
    group, and stays written at the end of the group (with the events) instead of one by one."""

    def __init__(self) -> None:
        self.prefetched: dict[str, dict[str, Any]] | None = None
        self.group_docs: Mapping[str, dict[str, Any]] = {}  # records touched by the group in _apply
        self.pending_stays: dict[str, tuple[str, str, int, int]] | None = None
        # Who posted each stay booked in this group (its event row is written at the end).
        self.stay_origin: dict[str, tuple[str, str | None]] = {}
        # Partial replicas: what the group's events make a scope hold, and cards bound in it.
        self.replica_holds: list[ReplicaHold] = []
        self.cards: list[tuple[str, str]] = []
        self.replicas_program: Program | None = None  # the latest programme, when it is partial


class Ledger:
    """The central ledger over one ``LedgerStore``."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        hold_ttl: timedelta = DEFAULT_HOLD_TTL,
        revoked: Container[str] = frozenset(),
    ) -> None:
        self.store = store
        self.hold_ttl = hold_ttl
        # Nodes whose certificate head office revoked (staypoint provision revoke): a batch
        # already queued in the broker, or sent on a connection still open, is refused here.
        self.revoked = revoked
        self._programs: dict[int, Program] = {}
        self._latest_seen: tuple[float, Program | None] = (float("-inf"), None)  # (monotonic, latest)
        # The running ingest group's working state, one per thread: groups of different nodes
        # overlap (``ingest_transaction``), on several threads of one process too (the API).
        self._g = _GroupState()

    # -- programmes, nodes, members ----------------------------------------------------------

    def program(self, version: int | None = None) -> Program | None:
        """The programme of ``version`` (latest when None), parsed once."""
        if version is None:
            version = self.store.latest_program_version()
            if version is None:
                return None
        if version not in self._programs:
            text = self.store.program(version)
            if text is None:
                return None
            self._programs[version] = parse_program(text, f"programme v{version}")
        return self._programs[version]

    def current_program(self, max_age: float = 1.0) -> Program | None:
        """The latest programme for a hot read path (every API request): its version is re-read at
        most every ``max_age`` seconds, so one published by another process is seen within that,
        one published through this ledger at once. Ingest keeps :meth:`program` (always current)."""
        at, program = self._latest_seen
        now = time.monotonic()
        if now - at >= max_age:
            program = self.program()
            self._latest_seen = (now, program)
        return program

    def publish_program(self, text: str, now: datetime) -> list[Change]:
        """Store a programme document and send it to the fleet (versioned).

        A programme with partial replicas gives every member their home hold in the same
        transaction (``assign_replicas``), so no node ever resyncs against holds half made."""
        self._latest_seen = (float("-inf"), None)
        program = parse_program(text, "programme")
        with self.store.transaction():
            if replicas.is_partial(program):
                self.store.backfill_replicas(self._home_scopes(program))
            self.store.put_program(program.version, text)
            v = self.store.append_change(
                "program",
                str(program.version),
                {"version": program.version, "document": text, "at": iso(now)},
            )
        self._latest_seen = (float("-inf"), None)
        return [Change(v, "program", str(program.version), {"version": program.version, "document": text})]

    def register_node(self, node: str, public_key_hex: str, property_: str | None = None) -> list[Change]:
        """A provisioned node's voucher-signing key, so every node can verify its vouchers, and
        its property, which bounds what it may void."""
        body = {"node": node, "public_key": public_key_hex}
        with self.store.transaction():
            self.store.put_node_key(node, public_key_hex)
            if property_:
                self.store.put_node_property(node, property_)
            v = self.store.append_change("node_key", node, body)
        return [Change(v, "node_key", node, body)]

    def revoke_node(self, node: str, at: datetime) -> list[Change]:
        """Tell the fleet that ``node`` was revoked at ``at`` (``staypoint provision revoke``).

        Every node then refuses the node's vouchers issued after ``at``, by code and by
        token; those issued before stay good until they expire, and each use of one is
        alarmed here so head office sees them (docs/programme.md, "Revoked nodes")."""
        body = {"node": node, "at": iso(at)}
        with self.store.transaction():
            v = self.store.append_change("revocation", node, body)
            self.store.add_alarm("node_revoked", node, f"node {node} revoked at {body['at']}", iso(at))
        return [Change(v, "revocation", node, body)]

    def import_members(self, docs: Sequence[dict[str, Any]]) -> None:
        """Bulk load member records (a migration from an older system, tests, benchmarks)."""
        with self.store.transaction():
            for doc in docs:
                doc.setdefault("folded", {})
                doc.setdefault("cards", [])
                doc.setdefault("blocked", False)
            # Each record and its change in bulk (a statement per table, not a round trip per
            # member: ten million members load in minutes on PostgreSQL too).
            self.store.put_members_logged(list(docs))

    def member(self, number: str) -> dict[str, Any] | None:
        return self.store.member(number)

    # -- ingest --------------------------------------------------------------------------------

    def ingest(
        self,
        node: str,
        raw_events: Sequence[Any],
        now: datetime,
        *,
        then: Callable[[IngestResult], None] | None = None,
    ) -> IngestResult:
        """Apply one batch from ``node`` in one transaction (docs/architecture.md, The event contract).

        Per ``(node, epoch)`` stream: ``seq <= high-water`` is skipped (a known key with
        another body is rejected and alarmed); the next seq is applied; a gap stops the
        batch and asks the node to send again from the high-water. The caller publishes
        the ack only after this returns, i.e. after the commit.

        ``then(result)``, when given, runs inside the transaction once the batch is applied,
        before the commit: what it writes in the ledger's database commits with the batch, in
        the same commit, or not at all (an exception from it rolls the batch back too).
        """
        hook = None if then is None else (lambda results: then(results[0]))
        return self.ingest_many([(node, raw_events)], now, then=hook)[0]

    def ingest_many(
        self,
        batches: Sequence[tuple[str, Sequence[Any]]],
        now: datetime,
        *,
        then: Callable[[list[IngestResult]], None] | None = None,
    ) -> list[IngestResult]:
        """Apply several batches (any nodes, in arrival order) in ONE transaction.

        The same rules as ``ingest`` batch by batch; one commit (one fsync) for all of them,
        and a member touched by several batches is written and sent downstream once, with
        every fold mark. Results are in the order given; publish them only after this returns.
        The transaction's changes (one contiguous run of versions) are all on the LAST result.
        ``then(results)`` as for ``ingest`` (the members' changes join the results after it, at
        the commit).
        """
        at = iso(now)
        parsed: list[tuple[IngestResult, list[Event], list[str]]] = []
        revoked_hits: list[tuple[str, int]] = []
        for node, raw_events in batches:
            result = IngestResult(node)
            events: list[Event] = []
            bad: list[str] = []
            if node in self.revoked:
                result.rejected = len(raw_events)
                revoked_hits.append((node, len(raw_events)))
                parsed.append((result, [], []))
                continue
            for raw in raw_events:
                try:
                    if not isinstance(raw, Mapping):
                        raise EventFormatError("event: not an object")
                    ev = event_from_dict(raw)
                    if ev.node != node:
                        raise EventFormatError(f"event: node {ev.node!r} published under {node!r}")
                    events.append(ev)
                except EventFormatError as exc:
                    result.rejected += 1
                    bad.append(str(exc)[:300])
            events.sort(key=lambda e: (e.epoch, e.seq))
            parsed.append((result, events, bad))
        dirty: dict[str, dict[str, Any]] = {}
        extra: list[tuple[str, str, dict[str, Any]]] = []
        hws: dict[tuple[str, int], int] = {}
        moved: set[tuple[str, int]] = set()
        # Every store takes a group's reads and writes in bulk: one statement each, not one per event.
        rows: list[EventRow] = []
        pending: dict[tuple[str, int, int], str] = {}  # bodies applied in this group, not yet written
        # What the group may touch that another group (another process) could touch too: its
        # nodes' streams and the numbers it enrols are locked by the store, and the members it
        # folds (and their referrers, for the loop check) are read locked (ingest_transaction).
        events_all = [ev for _, events, _ in parsed for ev in events]
        numbers = {ev.member for ev in events_all if ev.member}
        numbers |= {r for ev in events_all if isinstance(r := ev.data.get("referrer"), str)}
        enrolled = {ev.member for ev in events_all if ev.member and ev.type == "member.enrolled"}
        with (
            self.store.ingest_transaction([result.node for result, _, _ in parsed], enrolled),
            self._group_state(),
        ):
            # The duplicate-id check of the whole group, its members and its streams' high-waters
            # in one go (on PostgreSQL one round trip, inside the stream's turn); ids applied in
            # the group join the set as they go, so a repeat inside the group is caught as well.
            reads = self.store.group_reads(
                [ev.id for ev in events_all],
                sorted(numbers),
                {(result.node, ev.epoch) for result, events, _ in parsed for ev in events},
                with_program=True,  # in the same round trip: the latest programme, partial or not
            )
            latest = None if reads.program_version is None else self.program(reads.program_version)
            self._g.replicas_program = latest if latest is not None and replicas.is_partial(latest) else None
            taken = reads.taken
            self._g.prefetched = reads.members
            hws.update(reads.high_water)
            for node, count in revoked_hits:
                self.store.bump_counter("events_from_revoked_nodes", count)
                self.store.add_alarm("revoked_node", node, f"{count} events refused: node revoked", at)
            for result, events, bad in parsed:
                node = result.node
                for detail in bad:
                    self.store.bump_counter("events_malformed")
                    self.store.add_alarm("malformed_event", node, detail, at)
                for ev in events:
                    key = (node, ev.epoch)
                    hw = hws[key]  # every stream of the group was read with it (group_reads)
                    result.ack = (ev.epoch, hw)
                    if ev.seq <= hw:
                        known_body = pending.get((node, ev.epoch, ev.seq))
                        if known_body is None:
                            known = self.store.event_at(node, ev.epoch, ev.seq)
                            known_body = (
                                self.store.quarantined_at(node, ev.epoch, ev.seq)
                                if known is None
                                else known.body
                            )
                        if known_body is not None and known_body != ev.to_json():
                            result.rejected += 1
                            self.store.bump_counter("events_conflicting")
                            self.store.add_alarm(
                                "conflicting_body",
                                node,
                                f"({node}, {ev.epoch}, {ev.seq}) seen with another body",
                                at,
                            )
                        else:
                            result.skipped += 1
                        continue
                    if ev.seq != hw + 1:
                        result.resend_from = (ev.epoch, hw + 1)
                        break
                    body = ev.to_json()
                    if ev.id in taken:
                        # The idempotency key is used by another (node, epoch, seq): never apply
                        # it twice; move the stream on so one bad event does not stall it.
                        result.rejected += 1
                        self.store.bump_counter("events_duplicate_id")
                        self.store.add_alarm("duplicate_id", node, f"id {ev.id} at seq {ev.seq}", at)
                    elif not self._apply(ev, dirty, extra, at, now):
                        result.rejected += 1
                        result.quarantined.append((ev.epoch, ev.seq))
                    else:
                        rows.append((ev.id, node, ev.epoch, ev.seq, ev.type, ev.member, body, at))
                        pending[(node, ev.epoch, ev.seq)] = body
                        taken.add(ev.id)
                        result.applied += 1
                    hws[key] = ev.seq
                    moved.add(key)
                    result.ack = (ev.epoch, ev.seq)
            # Events in applied order (rowid order is the API's position); one high-water write
            # per stream, not one per event.
            self.store.put_applied(
                rows,
                list(self._g.pending_stays.values()) if self._g.pending_stays else [],
                [(node, epoch, hws[(node, epoch)]) for node, epoch in sorted(moved)],
            )
            changes = parsed[-1][0].changes if parsed else []
            for kind, name, body_ in extra:
                if kind in ("voucher", "quarantine"):
                    changes.append(Change(self.store.append_change(kind, name, body_), kind, name, body_))
            # One write and one change per member per group, each record serialised once; their
            # versions read after the commit (below), where they cost no round trip of their own.
            docs = list(dirty.values())
            logged, logged_at = self.store.put_members_logged_later(docs), len(changes)
            for kind, name, body_ in extra:
                if kind == "deny":
                    changes.append(Change(self.store.append_change(kind, name, body_), kind, name, body_))
            if self._g.cards:
                self.store.put_member_cards(self._g.cards)
            if self._g.replica_holds:
                self.store.put_replica_holds(self._g.replica_holds)
            results = [result for result, _, _ in parsed]
            if then is not None:
                then(results)
        changes[logged_at:logged_at] = [
            Change(version, "member", doc["number"], doc) for version, doc in zip(logged(), docs, strict=True)
        ]
        return results

    @contextmanager
    def _group_state(self) -> Iterator[None]:
        self._g.prefetched = None
        self._g.pending_stays = {}
        self._g.stay_origin = {}
        self._g.replica_holds = []
        self._g.cards = []
        self._g.replicas_program = None  # set from the group's reads (with_program)
        try:
            yield
        finally:
            self._g.prefetched = None
            self._g.pending_stays = None
            self._g.stay_origin = {}
            self._g.group_docs = {}
            self._g.replica_holds = []
            self._g.cards = []

    def _note_member(self, ev: Event, m: Mapping[str, Any]) -> None:
        """A card bound (at enrolment or after) joins the card index; under partial replicas a
        member enrolled is held in its home scope from then on."""
        card = ev.data.get("card_hash")
        if isinstance(card, str) and card:
            self._g.cards.append((card, str(m["number"])))
        program = self._g.replicas_program
        if program is not None and ev.type == "member.enrolled" and m.get("home_property"):
            self._g.replica_holds.append(
                replicas.home_hold(program, str(m["number"]), str(m["home_property"]))
            )

    def _member_doc(self, number: str) -> dict[str, Any] | None:
        if self._g.prefetched is not None:
            return self._g.prefetched.pop(number, None)
        return self.store.member(number)

    def _put_stay(self, event_id: str, member: str, points: int, nights: int) -> None:
        if self._g.pending_stays is not None:
            self._g.pending_stays[event_id] = (event_id, member, points, nights)  # put_stays' row
        else:
            self.store.put_stay(event_id, member, points, nights)

    def _stay_of(self, event_id: str) -> tuple[str, int, int] | None:
        if self._g.pending_stays is not None and event_id in self._g.pending_stays:
            _, member, points, nights = self._g.pending_stays[event_id]
            return member, points, nights
        return self.store.stay(event_id)

    def _alarm(self, kind: str, node: str, detail: str, at: str) -> None:
        self.store.bump_counter(kind)
        self.store.add_alarm(kind, node, detail[:300], at)

    # -- fold.Refs: what the one fold may look up ---------------------------------------------

    def stay(self, event_id: str) -> fold.StayRef | None:
        """A booked stay, with the node and property that posted it (for a void's rights)."""
        found = self._stay_of(event_id)
        if found is None:
            return None
        origin = self._g.stay_origin.get(event_id)
        if origin is None:
            posted = self.store.event_by_id(event_id)
            if posted is not None:
                prop = json.loads(posted.body).get("data", {}).get("property")
                origin = (posted.node, prop if isinstance(prop, str) else None)
        node, prop = origin or (None, None)
        return fold.StayRef(found[0], found[1], found[2], node, prop)

    def voucher(self, code: str) -> Mapping[str, Any] | None:
        return self.store.voucher(code)

    def node_property(self, node: str) -> str | None:
        return self.store.node_property(node)

    def office(self, node: str) -> bool:
        return is_console_stream(node)

    def member_record(self, number: str) -> Mapping[str, Any] | None:
        """A member for the fold's referral checks: this group's copy first, then the store's."""
        doc = self._g.group_docs.get(number)
        return doc if doc is not None else self.store.member(number)

    def _apply(
        self,
        ev: Event,
        dirty: dict[str, dict[str, Any]],
        extra: list[tuple[str, str, dict[str, Any]]],
        at: str,
        now: datetime,
    ) -> bool:
        """Fold one event into the member's record (``dirty`` collects the records touched).

        Returns False when the event is quarantined: kept with its reason, alarmed, sent to
        the fleet as a ``quarantine`` change, its fold mark moved so the node stops showing
        it, and nothing else written (docs/programme.md, quarantine)."""
        program = self.program(ev.program)
        m = dirty.get(ev.member) if ev.member else None
        if ev.member is not None and m is None:
            m = self._member_doc(ev.member)
        try:
            bounds.check_event(ev, program.bounds if program else bounds.Bounds(), now)
            if ev.type == "member.enrolled":
                if m is not None:
                    raise fold.Quarantine("duplicate_member", f"member {ev.member} enrolled twice")
                m = fold.new_member(ev, program, parse_iso(ev.at).date())
                self.store.set_personal(str(ev.member), str(ev.data.get("name", ""))[:200], at)
            elif ev.member is None:
                return True
            if m is None:
                raise fold.Quarantine("unknown_member", f"{ev.type} for unknown member {ev.member}")
            self._g.group_docs = dirty  # what member_record sees of this group (a referrer enrolled in it)
            outcome = fold.apply(m, ev, program, self)
        except (fold.Quarantine, bounds.BoundError) as exc:
            kind = exc.kind if isinstance(exc, fold.Quarantine) else "out_of_bounds"
            self._quarantine(ev, kind, str(exc), m, dirty, extra, at)
            return False
        for alarm, detail in outcome.alarms:
            self._alarm(alarm, ev.node, detail, at)
        if outcome.stay is not None:
            if ev.type == "stay.posted":
                self._put_stay(ev.id, m["number"], *outcome.stay)
                prop = ev.data.get("property")
                self._g.stay_origin[ev.id] = (ev.node, prop if isinstance(prop, str) else None)
            else:  # a void: the stay keeps nothing to take back a second time
                self._put_stay(str(ev.data["stay"]), m["number"], *outcome.stay)
        if ev.type in ("member.enrolled", "card.bound"):
            self._note_member(ev, m)
        elif ev.type == "stay.posted" and self._g.replicas_program is not None:
            prop = ev.data.get("property")
            prop = prop if isinstance(prop, str) and prop else self.store.node_property(ev.node)
            if prop:
                self._g.replica_holds.append(
                    replicas.stay_hold(self._g.replicas_program, m["number"], prop, now)
                )
        if outcome.voucher is not None:
            if ev.type == "voucher.used" and outcome.voucher.get("node") in self.revoked:
                # Honoured (issued before the revocation, or the node would have refused it),
                # and listed: head office may want a word with the member or the property.
                self._alarm(
                    "revoked_node_voucher",
                    ev.node,
                    f"voucher {outcome.voucher['code']} of revoked node {outcome.voucher['node']} used",
                    at,
                )
            self.store.put_voucher(outcome.voucher)
            extra.append(("voucher", outcome.voucher["code"], outcome.voucher))
        if outcome.settle_hold is not None:
            hold = self.store.hold(outcome.settle_hold)
            if hold is None:
                self._alarm(
                    "unknown_hold", ev.node, f"{ev.type} seq {ev.seq} names hold {outcome.settle_hold}", at
                )
            else:
                if hold.status != "settled":
                    self.store.set_hold_status(outcome.settle_hold, "settled")
                if hold.kind != ("value" if ev.type == "value.spent" else "points") or (
                    hold.kind == "value" and Decimal(hold.amount or "0") != Decimal(str(ev.data["amount"]))
                ):
                    # Booked as the event says (the fold's checks decide); listed for a look.
                    self._alarm(
                        "hold_mismatch",
                        ev.node,
                        f"{ev.type} seq {ev.seq} names {hold.kind} hold {hold.id}"
                        f" ({hold.amount or hold.points})",
                        at,
                    )
        for debt, amount in outcome.debts:
            balance = m["points"] if debt != "value_overdraft" else int(Decimal(amount) * 100)
            self.store.add_overdraft(m["number"], ev.node, ev.id, balance, at, debt)
            self.store.bump_counter("overdrafts")
        if outcome.review is not None:
            review_kind, detail = outcome.review
            self.store.add_review(
                {
                    "event_id": ev.id,
                    "kind": review_kind,
                    "member": m["number"],
                    "node": ev.node,
                    "detail": detail[:500],
                    "body": ev.to_json(),
                    "at": at,
                }
            )
            self._alarm(review_kind, ev.node, detail, at)
        if outcome.deny is not None:
            if outcome.deny is False:
                self.store.resolve_overdrafts(m["number"], at)
            extra.append(("deny", m["number"], {"member": m["number"], "blocked": outcome.deny}))
        m["folded"][f"{ev.node}:{ev.epoch}"] = ev.seq
        dirty[m["number"]] = m
        return True

    def _quarantine(
        self,
        ev: Event,
        kind: str,
        reason: str,
        m: dict[str, Any] | None,
        dirty: dict[str, dict[str, Any]],
        extra: list[tuple[str, str, dict[str, Any]]],
        at: str,
    ) -> None:
        reason = reason[:300]
        self.store.add_quarantine(
            {
                "event_id": ev.id,
                "node": ev.node,
                "epoch": ev.epoch,
                "seq": ev.seq,
                "member": ev.member,
                "type": ev.type,
                "kind": kind,
                "reason": reason,
                "body": ev.to_json(),
                "at": at,
            }
        )
        self._alarm("quarantined", ev.node, f"{ev.type} seq {ev.seq} ({kind}): {reason}", at)
        key = f"{ev.node}:{ev.epoch}:{ev.seq}"
        extra.append(
            (
                "quarantine",
                key,
                {"node": ev.node, "epoch": ev.epoch, "seq": ev.seq, "id": ev.id, "reason": reason},
            )
        )
        if m is not None:
            # Folded as nothing: the node's overlay stops replaying the refused event.
            m["folded"][f"{ev.node}:{ev.epoch}"] = ev.seq
            dirty[m["number"]] = m

    # -- online authorisation ---------------------------------------------------------------------

    def authorise(self, node: str, member: str, points: int, reward: str, now: datetime) -> AuthDecision:
        """Place a hold for an online redemption, or say why not (the guest reads ``reason``)."""
        with self.store.transaction():
            m = self.store.member(member)
            if m is None:
                return AuthDecision(False, reason="this account is not known to head office yet")
            if m.get("blocked"):
                return AuthDecision(
                    False, reason="redemptions are paused on this account: please see the front desk"
                )
            program = self.program()
            found = program.reward(reward) if program else None
            if found is not None and found.points != points:
                return AuthDecision(False, reason="the reward's price has changed: please try again")
            available = int(m["points"]) - self.store.held_points(member)
            if available < points:
                return AuthDecision(False, reason="not enough points")
            hold = HoldRecord(
                id=uuid7(now),
                member=member,
                node=node,
                reward=reward,
                points=points,
                created=iso(now),
                expires=iso(now + self.hold_ttl),
                status="held",
            )
            self.store.put_hold(hold)
            self.store.bump_counter("holds_placed")
        return AuthDecision(True, hold=hold.id, expires=hold.expires)

    def authorise_value(self, node: str, member: str, amount: str, now: datetime) -> AuthDecision:
        """Place a hold on stored value for an online payment, or say why not.

        ``amount`` is the contract's decimal string, bounded by the programme's
        ``money_per_event``; available is the balance less the member's open value holds, so
        two nodes asking at once for one wallet never both get more than it holds."""
        with self.store.transaction():
            program = self.program()
            try:
                value = bounds.money(
                    amount, "amount", (program.bounds if program else bounds.Bounds()).money_per_event
                )
            except bounds.BoundError as exc:
                return AuthDecision(False, reason=f"the amount is refused: {exc}")
            m = self.store.member(member)
            if m is None:
                return AuthDecision(False, reason="this account is not known to head office yet")
            if m.get("blocked"):
                return AuthDecision(
                    False, reason="payments are paused on this account: please see the front desk"
                )
            available = Decimal(str(m.get("stored_value", "0"))) - self.store.held_value(member)
            if available < value:
                return AuthDecision(False, reason="not enough stored value")
            hold = HoldRecord(
                id=uuid7(now),
                member=member,
                node=node,
                reward="",
                points=0,
                created=iso(now),
                expires=iso(now + self.hold_ttl),
                status="held",
                kind="value",
                amount=f"{value:.2f}",
            )
            self.store.put_hold(hold)
            self.store.bump_counter("value_holds_placed")
        return AuthDecision(True, hold=hold.id, expires=hold.expires)

    def expire_holds(self, now: datetime) -> int:
        """Release holds (points or stored value) whose event never arrived."""
        if not self.store.holds_expiring(iso(now)):
            # Nothing due (nearly every tick): no writer's lock, which would wait for every
            # ingest group of every process in flight and hold the next ones up meanwhile.
            return 0
        with self.store.transaction():
            expired = self.store.holds_expiring(iso(now))
            for hold in expired:
                self.store.set_hold_status(hold.id, "expired")
            if expired:
                self.store.bump_counter("holds_expired", len(expired))
        return len(expired)

    # -- jobs -----------------------------------------------------------------------------------

    def run_jobs(self, now: datetime) -> dict[str, int]:
        """Window-end downgrade (one tier at most) and points expiry, as of ``now``."""
        program = self.program()
        counts = {
            "downgraded": 0,
            "requalified": 0,
            "expired_members": 0,
            "expired_points": 0,
            "holds_expired": 0,
        }
        if program is None:
            return counts
        counts["holds_expired"] = self.expire_holds(now)
        today = now.date()
        start = tiers.window_start_of(program, today)
        with self.store.transaction():
            for number in self.store.member_numbers():
                m = self.store.member(number)
                if m is None:
                    continue
                changed = False
                if tiers.window_ended(program, m["window_start"], today):
                    new = tiers.at_window_end(program, m["tier"], m["qual_nights"], m["qual_points"])
                    counts["downgraded" if new.rank < program.tier(m["tier"]).rank else "requalified"] += 1
                    m.update(tier=new.code, qual_nights=0, qual_points=0, window_start=start)
                    changed = True
                last = m.get("last_activity")
                if (
                    last
                    and m["points"] > 0
                    and expiry_date(program.expiry, date.fromisoformat(last)) <= today
                ):
                    counts["expired_members"] += 1
                    counts["expired_points"] += int(m["points"])
                    m["points"] = 0
                    changed = True
                if changed:
                    self.store.put_member(m)
                    self.store.append_change("member", number, m)
        return counts

    # -- resync ---------------------------------------------------------------------------------

    def resync(
        self, from_version: int, scopes: frozenset[str] | None = None
    ) -> tuple[str, int, list[Change] | Iterator[Change]]:
        """("delta", to, changes) for a node a little behind, else ("snapshot", to, iterator).

        ``scopes``: a partial replica's (``node_scopes``): only the members it holds."""
        latest = self.store.latest_version()
        if from_version > 0:
            if from_version >= latest:
                return "delta", latest, []
            changes = self.store.changes_since(from_version, DELTA_LIMIT)
            if changes is not None:
                if scopes is not None:
                    changes = self.held(changes, {"": scopes})[""]
                return "delta", latest, changes
        version, rows = self.store.snapshot(scopes)
        return "snapshot", version, rows

    # -- partial replicas (loyalty/replicas.py): which members each node holds ------------------------

    def fleet_scopes(self) -> dict[str, frozenset[str]] | None:
        """Each registered node's scopes under partial replicas; None when every node holds
        every member (the programme's ``[replicas] mode`` is full, or there is no programme)."""
        program = self.program()
        if program is None or not replicas.is_partial(program):
            return None
        return {node: replicas.node_scopes(program, prop) for node, prop in self.store.node_properties()}

    def node_scopes(self, node: str) -> frozenset[str] | None:
        """One node's scopes under partial replicas (empty for a node of no property); None: full."""
        program = self.program()
        if program is None or not replicas.is_partial(program):
            return None
        prop = self.store.node_property(node)
        return replicas.node_scopes(program, prop) if prop else frozenset()

    def held(
        self, changes: Sequence[Change], scopes_by_node: Mapping[str, frozenset[str]]
    ) -> dict[str, list[Change]]:
        """Each node's share of ``changes`` (in their order): its members' and everything that
        is not a member's. One read of the holds for all the nodes."""
        members = sorted({c.key for c in changes if c.kind in replicas.MEMBER_KINDS})
        member_scopes = self.store.replica_scopes(members) if members else {}
        shares: dict[frozenset[str], list[Change]] = {}
        out: dict[str, list[Change]] = {}
        for node, scopes in scopes_by_node.items():
            share = shares.get(scopes)
            if share is None:
                share = shares[scopes] = [
                    c for c in changes if replicas.held_change(c.kind, c.key, scopes, member_scopes)
                ]
            out[node] = share
        return out

    def fetch_member(
        self, node: str, now: datetime, *, card_hash: str | None = None, number: str | None = None
    ) -> dict[str, Any] | None:
        """A member a partial node does not hold, asked for at its kiosk (by card or number):
        head office's record, now held at the node's property (cached for ``fetched_days``);
        None when head office has no such member.

        The hold is written in the writer's transaction, before the record is read: any change
        committed after it fans out to the node, any before it is in the record."""
        program = self.program()
        with self.store.transaction():
            if number is None and card_hash is not None:
                number = self.store.card_member(card_hash)
            if number is None:
                return None
            prop = self.store.node_property(node)
            if program is not None and replicas.is_partial(program) and prop:
                if self.store.member(number) is None:
                    return None
                self.store.put_replica_holds([replicas.fetched_hold(program, number, prop, now)])
            return self.store.member(number)

    def hold_arrivals(
        self, property_: str, arrivals: Sequence[tuple[str, date]], now: datetime
    ) -> list[Change]:
        """The property system's arrivals: each member is held at the property until
        ``arrival_days`` after the arrival, and their record goes out again (a new change) so
        the property's nodes have it before the guest reaches the lobby. Unknown members are
        skipped; an arrival out of bounds (``replicas.check_arrival``) refuses the whole batch
        with ValueError. Returns the changes written (to fan out)."""
        program = self.program()
        if program is None:
            return []
        for _, day in arrivals:
            replicas.check_arrival(program, day, now)
        if not replicas.is_partial(program):
            return []
        with self.store.transaction():
            docs = self.store.members_many(sorted({m for m, _ in arrivals}))
            holds = [replicas.arrival_hold(program, m, property_, day) for m, day in arrivals if m in docs]
            self.store.put_replica_holds(holds)
            records = [docs[h.member] for h in holds]
            versions = self.store.put_members_logged(records)
        return [Change(v, "member", d["number"], d) for v, d in zip(versions, records, strict=True)]

    def release_replicas(self, now: datetime, limit: int = 10_000) -> dict[str, list[str]]:
        """End the holds past their time; for each node, the members it no longer holds at all
        (a member still held there for another reason, say its region, is kept)."""
        fleet = self.fleet_scopes()
        if fleet is None:
            return {}
        with self.store.transaction():
            ended = self.store.expire_replica_holds(iso(now), limit)
            if not ended:
                return {}
            remaining = self.store.replica_scopes(sorted({m for _, m in ended}))
        out: dict[str, list[str]] = {}
        for node, scopes in fleet.items():
            gone = sorted(
                {
                    m
                    for scope, m in ended
                    if scope in scopes and not replicas.holds(scopes, remaining.get(m, set()))
                }
            )
            if gone:
                out[node] = gone
        return out

    def assign_replicas(self) -> tuple[int, int]:
        """Give every member its home hold and index every card (``central replicas assign``:
        publishing a partial programme does it already; this repairs, say after a property
        changed region); (holds added, cards indexed)."""
        program = self.program()
        if program is None:
            return 0, 0
        with self.store.transaction():
            return self.store.backfill_replicas(self._home_scopes(program))

    @staticmethod
    def _home_scopes(program: Program) -> dict[str, str]:
        return {p.code: replicas.home_scope(program, p.code) for p in program.properties}

    # -- quarantine and debts: what head office staff settle ----------------------------------------

    def quarantine(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        """Events head office would not book, oldest first, each with its reason."""
        return self.store.quarantined(open_only=open_only)

    def reviews(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        """What nodes asked head office to decide (voids of spent stays, members reported)."""
        return self.store.reviews(open_only=open_only)

    def close_review(self, event_id: str, outcome: str, by: str, now: datetime) -> bool:
        """Record staff's decision on a review (``outcome``: settled, blocked, dismissed); False
        when it was closed already (two clerks never both decide)."""
        with self.store.transaction():
            return self.store.close_review(event_id, outcome, by[:80], iso(now))

    def acknowledge_quarantine(self, event_id: str, by: str, now: datetime) -> bool:
        """A person has looked at a quarantined event (it stays kept, off the open list)."""
        with self.store.transaction():
            done = self.store.acknowledge_quarantine(event_id, iso(now))
            if done:
                self.store.add_alarm("quarantine_acknowledged", None, f"{event_id} by {by}"[:300], iso(now))
        return done

    def stats(self) -> dict[str, Any]:
        return {
            "quarantined": len(self.store.quarantined()),
            "events": self.store.event_count(),
            "version": self.store.latest_version(),
            "counters": self.store.counters(),
            "overdrafts": self.store.open_overdrafts(),
            "streams": self.store.streams(),
        }


def dumps(value: Any) -> bytes:
    """Compact JSON bytes for the wire (UTF-8, no spaces), by orjson: the same bytes as the
    standard library's ``separators=(",", ":"), ensure_ascii=False`` at a fraction of the
    cost (a bootstrap serialises every member it sends)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
