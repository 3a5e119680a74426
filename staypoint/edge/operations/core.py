"""The core every part of the node service shares: the replica, the keys, the authoriser,
the programme in force, and the one writer of outbox events (``emit``).

Each part (``members``, ``stays``, ``redemptions``...) receives the same ``NodeCore``, so
there is one programme cache, one seq allocator and one place where the contract's bounds
are checked, whichever part writes the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from staypoint.edge.keys import NodeKeys
from staypoint.edge.operations.errors import BadInput, NotAllowed, UnknownMember
from staypoint.edge.operations.views import Hold, StaffProof
from staypoint.edge.replica import MemberRow, Replica
from staypoint.loyalty import bounds, fold, member_numbers, replicas
from staypoint.loyalty.events import Event, EventType, iso, parse_iso, uuid7
from staypoint.loyalty.program import Program, parse_program
from staypoint.loyalty.redemption import OfflineState
from staypoint.loyalty.roles import RoleRefusal, Task
from staypoint.loyalty.roles import check as check_role

#: What a partial replica says of a member it does not hold when head office cannot be asked.
OFFLINE_UNKNOWN = (
    "This member is not on this kiosk and head office cannot be reached just now: "
    "you can join here, or the front desk can help"
)


class Authoriser(Protocol):
    """Asks head office to authorise a redemption (points) or a stored-value payment (money).
    Returns None when it cannot be reached; raises AuthorisationDenied when it says no."""

    def authorise(self, member: str, points: int, reward: str, now: datetime) -> Hold | None: ...

    def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None: ...

    def fetch_member(self, card_hash: str | None, number: str | None) -> bool | None:
        """A partial replica's member fetched into the replica (by card hash or number).
        True: it is there now; False: head office has no such member; None: no answer."""
        ...


class OfflineOnly:
    """No head office: every redemption and payment is judged by the offline limits."""

    def authorise(self, member: str, points: int, reward: str, now: datetime) -> Hold | None:
        return None

    def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None:
        return None

    def fetch_member(self, card_hash: str | None, number: str | None) -> bool | None:
        return None


def utc_today(now: datetime) -> date:
    """``now``'s date in UTC."""
    return now.astimezone(UTC).date()


def require_utc(now: datetime) -> None:
    """Refuse a naive time: every operation is handed timezone-aware UTC."""
    if now.tzinfo is None:
        raise ValueError("time must be timezone-aware UTC")


def require_role(staff: StaffProof | None, task: Task, amount: int | None = None) -> None:
    """Refuse what the staff member's role may not do, before anything is read or written.

    ``None`` is an unattended caller (seeding, a property system's feed), not a clerk: only
    operations that may run without a clerk take an optional ``staff``.
    """
    if staff is None:
        return
    try:
        check_role(staff.role, task, amount)
    except RoleRefusal as exc:
        raise NotAllowed(str(exc)) from None


class NodeCore:
    """The replica, keys and authoriser of one node, and what every operation does with them."""

    def __init__(self, replica: Replica, keys: NodeKeys, authoriser: Authoriser | None = None) -> None:
        self.replica = replica
        self.keys = keys
        self.authoriser: Authoriser = authoriser or OfflineOnly()
        node = replica.meta("node_id")
        if node is None:
            raise BadInput(f"{replica.path}: not an initialised node (run `staypoint node init`)")
        self.node_id = node
        self.property = replica.meta("property") or ""
        self._program: Program | None = None
        self._program_version = -1

    @property
    def program(self) -> Program:
        version = int(self.replica.meta("program_version") or 0)
        if self._program is None or version != self._program_version:
            text = self.replica.program_document(version)
            if text is None:
                raise BadInput("the replica holds no programme")
            self._program = parse_program(text, f"programme v{version}")
            self._program_version = version
        return self._program

    def emit(
        self,
        kind: EventType,
        member: str | None,
        data: Mapping[str, Any],
        now: datetime,
        auth: str | None = None,
        *,
        row: MemberRow | None = None,
    ) -> Event:
        """Allocate the next gapless seq, check the event against the contract's bounds and
        append it (inside a write(), so a refusal rolls the seq back: nothing written).

        ``row`` is the member as the caller read it in this transaction (saves a read)."""
        program = self.program  # one look at the replica's programme version per event
        event = Event(
            node=self.node_id,
            epoch=int(self.replica.meta("epoch") or 1),
            seq=self.replica.bump_meta("last_seq"),
            id=uuid7(now),
            at=iso(now),
            type=kind.value,
            member=member,
            program=program.version,
            data=dict(data),
            auth=auth,
        )
        limits = program.bounds
        try:
            bounds.check_event(event, limits, now)
            if row is None and member is not None:
                row = self.replica.member(member)
            if row is not None:
                delta = fold.stated(event.type, event.data)
                value = Decimal(row.stored_value) + delta.value
                bounds.check_balance(row.points + delta.points, value, limits)
        except bounds.BoundError as exc:
            raise BadInput(f"refused: {exc}") from None
        self.replica.append_outbox(event)
        return event

    def activity(self, event: Event, member: str, points: int, amount: str | None = None) -> None:
        """The member's activity line for ``event``, worded once (``fold.activity_line``)."""
        # The programme emit just read for this event (the same transaction): no second look.
        program = self._program if self._program is not None else self.program
        line = fold.activity_line(event.type, event.data, program=program)
        self.replica.add_ledger(event.id, member, event.at, event.type, points, line, amount)

    def resolve_member(self, raw: str) -> MemberRow:
        """A member by number; the check digit is checked before any lookup."""
        try:
            number = member_numbers.normalise(raw)
        except member_numbers.MemberNumberError as exc:
            raise BadInput(str(exc)) from None
        row = self.replica.member(number)
        if row is None:
            found = self.fetch(number=number)
            row = self.replica.member(number) if found else None
            if row is None:
                raise UnknownMember(
                    OFFLINE_UNKNOWN if found is None and self.partial else f"no member {number} on this node"
                )
        return row

    @property
    def partial(self) -> bool:
        """Whether this replica holds a subset of the members (``[replicas] mode = "partial"``)."""
        return replicas.is_partial(self.program)

    def fetch(self, *, card_hash: str | None = None, number: str | None = None) -> bool | None:
        """A member this partial replica does not hold, fetched from head office into it (one
        round trip through the agent). True: read the replica again; False: head office has no
        such member; None: it could not be asked (offline), or this replica holds everyone."""
        if not self.partial:
            return False
        return self.authoriser.fetch_member(card_hash, number)

    def offline_state(self, member: MemberRow) -> OfflineState:
        """What the offline limits weigh for this member now: counters since the last contact."""
        pts, consecutive = self.replica.offline_counters(member.number)
        last = self.replica.meta("last_contact")
        return OfflineState(
            member_points_since_contact=pts,
            member_consecutive_offline=consecutive,
            node_exposure_points=int(self.replica.meta("offline_exposure") or 0),
            last_contact=parse_iso(last) if last else None,
            deny_listed=member.blocked,
        )
