"""Members: enrolment, cards, the PIN and its lock-out, reports, adjustments, feedback and
the dashboard's summary."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from staypoint.edge.operations.core import OFFLINE_UNKNOWN, NodeCore, require_role, require_utc, utc_today
from staypoint.edge.operations.errors import BadInput, NotAllowed, PinLocked, UnknownCard, WrongPin
from staypoint.edge.operations.views import Activity, MemberSummary, PinProof, StaffProof
from staypoint.edge.replica import MemberRow
from staypoint.loyalty import fold, member_numbers, pins, referral_codes, tiers
from staypoint.loyalty.events import Event, EventType, iso, parse_iso
from staypoint.loyalty.roles import Task

FEEDBACK_TAGS = (
    "clean room",
    "friendly staff",
    "quick check-in",
    "breakfast",
    "quiet",
    "spa",
    "value",
    "noisy",
    "slow service",
    "room not ready",
)


def _display_name(full: str) -> str:
    """First name and initial: all a lobby screen (and the replica) needs."""
    parts = full.split()
    if len(parts) == 1:
        return parts[0][:40]
    return f"{parts[0][:40]} {parts[-1][0].upper()}."


def _pin_state(row: MemberRow) -> pins.PinState:
    return pins.PinState(row.pin_failures, parse_iso(row.locked_until) if row.locked_until else None)


class Members:
    """What a node does for and about its members."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.replica = core.replica

    def member_by_card(self, uid_hex: str) -> MemberRow:
        """The member whose card has this UID."""
        try:
            h = self.core.keys.card_hash(uid_hex)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        number = self.replica.member_by_card(h)
        if number is None:
            found = self.core.fetch(card_hash=h)  # a partial replica: head office may hold them
            number = self.replica.member_by_card(h) if found else None
            if number is None and found is None and self.core.partial:
                raise UnknownCard(OFFLINE_UNKNOWN)
        if number is None:
            raise UnknownCard("this card is not registered: please see the front desk")
        row = self.replica.member(number)
        if row is None:
            raise UnknownCard("this card's member is not on this node yet")
        return row

    def enrol(
        self,
        name: str,
        pin: str,
        now: datetime,
        *,
        card_uid: str | None = None,
        staff: StaffProof | None = None,
        referred_by: str | None = None,
    ) -> MemberRow:
        """Enrol a new member with a PIN (and optionally a card, and a friend's referral code,
        sent as ``member.referred`` for head office to check); returns the new member."""
        require_role(staff, Task.ENROL)
        require_utc(now)
        referrer = None
        if referred_by is not None and referred_by.strip():
            try:  # the check character catches a typo here, offline
                referrer = referral_codes.member_for_code(referred_by.strip())
            except referral_codes.ReferralCodeError as exc:
                raise BadInput(str(exc)) from None
        name = " ".join(name.split())
        if not name or len(name) > 80 or any(not (c.isprintable()) for c in name):
            raise BadInput("name must be 1-80 printable characters")
        try:
            pins.check_format(pin, self.core.program.pin)
        except pins.PinFormatError as exc:
            raise BadInput(str(exc)) from None
        card_hash = None
        if card_uid is not None:
            try:
                card_hash = self.core.keys.card_hash(card_uid)
            except ValueError as exc:
                raise BadInput(str(exc)) from None
        pin_hash = pins.hash_pin(pin, os.urandom(16))  # slow: outside the write lock
        program = self.core.program
        today = utc_today(now)
        with self.replica.write():
            if card_hash is not None and self.replica.member_by_card(card_hash) is not None:
                raise BadInput("this card already belongs to a member")
            if referrer is not None and self.replica.member(referrer) is None:
                raise BadInput(f"referral code {referred_by}: no such member on this node")
            allocated = self.replica.bump_meta("members_allocated") - 1
            blocks = json.loads(self.replica.meta("member_blocks") or "[]")
            try:
                number = member_numbers.next_number(blocks, allocated)
            except member_numbers.MemberNumberError as exc:
                raise NotAllowed(str(exc)) from None
            row = MemberRow(
                number=number,
                name=_display_name(name),
                tier=program.base_tier.code,
                points=0,
                stored_value="0.00",
                window_start=tiers.window_start(program.window, today).isoformat(),
                qual_nights=0,
                qual_points=0,
                last_activity=today.isoformat(),
                pin_hash=pin_hash,
                pin_failures=0,
                locked_until=None,
                blocked=False,
                enrolled_at=iso(now),
                home_property=self.core.property,
            )
            self.replica.insert_member(row)
            data: dict[str, Any] = {
                "name": name,
                "display_name": row.name,
                "tier": row.tier,
                "pin_hash": pin_hash,
                "home_property": self.core.property,
            }
            if card_hash is not None:
                self.replica.bind_card(card_hash, number, iso(now))
                data["card_hash"] = card_hash
            if staff is not None:
                data["staff"] = staff.staff_id
            event = self.core.emit(EventType.MEMBER_ENROLLED, number, data, now)
            self.core.activity(event, number, 0)
            if referrer is not None:
                code = referral_codes.referral_code(referrer)
                ref: dict[str, Any] = {"referrer": referrer, "code": code}
                if staff is not None:
                    ref["staff"] = staff.staff_id
                self.core.emit(EventType.MEMBER_REFERRED, number, ref, now)
        return row

    def bind_card(self, member: str, card_uid: str, now: datetime, staff: StaffProof) -> None:
        """Bind a (new or replacement) card to a member."""
        require_role(staff, Task.BIND_CARD)
        row = self.core.resolve_member(member)
        try:
            h = self.core.keys.card_hash(card_uid)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        with self.replica.write():
            if self.replica.member_by_card(h) is not None:
                raise BadInput("this card already belongs to a member")
            self.replica.bind_card(h, row.number, iso(now))
            self.core.emit(EventType.CARD_BOUND, row.number, {"card_hash": h, "staff": staff.staff_id}, now)

    def verify_pin(self, member: str, pin: str, now: datetime) -> PinProof:
        """Check a member's PIN; count failures and lock out at the policy's limit.

        The count is the fleet's (head office's record, which holds tries made at other
        nodes and the API) plus this node's own tries not yet folded into it: each try that
        moves it is an event, folded by the same ``fold.after_pin`` everywhere."""
        require_utc(now)
        row = self.core.resolve_member(member)
        policy = self.core.program.pin
        state = pins.current(_pin_state(row), now)
        if state.locked_until is not None:
            raise PinLocked(state.locked_until)
        ok = pins.verify_pin(pin, row.pin_hash)  # slow (scrypt): outside the write lock
        with self.replica.write():
            current = self.replica.member(row.number)
            assert current is not None
            state = pins.current(_pin_state(current), now)
            if state.locked_until is not None:
                # Locked meanwhile (another kiosk, or head office's record): nothing to write.
                raise PinLocked(state.locked_until)
            if ok and not state.failures:
                return PinProof(row.number, now)
            event = self.core.emit(
                EventType.PIN_VERIFIED if ok else EventType.PIN_FAILED, row.number, {}, now
            )
            state = fold.after_pin(state, event.type, parse_iso(event.at), policy)
            self.replica.update_member(
                row.number,
                pin_failures=state.failures,
                locked_until=iso(state.locked_until) if state.locked_until else None,
            )
        if ok:
            return PinProof(row.number, now)
        raise WrongPin(pins.tries_left(state, policy))

    def unlock(self, member: str, now: datetime, staff: StaffProof) -> None:
        """Staff lift a PIN lock-out."""
        require_role(staff, Task.UNLOCK)
        row = self.core.resolve_member(member)
        with self.replica.write():
            self.replica.update_member(row.number, pin_failures=0, locked_until=None)
            self.core.emit(EventType.MEMBER_UNLOCKED, row.number, {"staff": staff.staff_id}, now)

    def report_member(self, member: str, reason: str, now: datetime, staff: StaffProof) -> Event:
        """Report a member staff suspect of abuse: head office decides (a node blocks no one)."""
        require_role(staff, Task.REPORT_MEMBER)
        require_utc(now)
        if not reason.strip():
            raise BadInput("a report needs a reason")
        row = self.core.resolve_member(member)
        with self.replica.write():
            return self.core.emit(
                EventType.MEMBER_REPORTED,
                row.number,
                {"reason": reason.strip(), "staff": staff.staff_id},
                now,
                row=row,
            )

    def summary(self, member: str | MemberRow, now: datetime) -> MemberSummary:
        """Everything a dashboard shows for a member, in one consistent read (``fold.view``)."""
        require_utc(now)
        program = self.core.program
        with self.replica.read():
            row = member if isinstance(member, MemberRow) else self.core.resolve_member(member)
            stock = {r.code: self.replica.stock(r.code) for r in program.rewards if r.stock is not None}
            seen = fold.view(dataclasses.asdict(row), program, utc_today(now), stock=stock)
            recent = tuple(Activity(*a) for a in self.replica.recent_activity(row.number, 8))
            vouchers_ = tuple(self.replica.member_vouchers(row.number, 5))
        locked_until = parse_iso(row.locked_until) if row.locked_until else None
        return MemberSummary.of(
            seen,
            locked=locked_until is not None and now < locked_until,
            recent=recent,
            vouchers=vouchers_,
            referral_code=referral_codes.referral_code(row.number),
        )

    def adjust(self, member: str, points: int, reason: str, now: datetime, staff: StaffProof) -> int:
        """A staff adjustment with a reason; returns the new balance."""
        if isinstance(points, bool) or not isinstance(points, int) or points == 0:
            raise BadInput("an adjustment is a non-zero whole number of points")
        if not reason.strip():
            raise BadInput("an adjustment needs a reason")
        require_role(staff, Task.ADJUST, points)
        row0 = self.core.resolve_member(member)
        with self.replica.write():
            row = self.replica.member(row0.number)
            assert row is not None
            balance = row.points + points
            if balance < 0:
                raise NotAllowed(f"the member has only {row.points:,} points")
            event = self.core.emit(
                EventType.POINTS_ADJUSTED,
                row.number,
                {"points": points, "reason": reason.strip(), "staff": staff.staff_id},
                now,
            )
            self.replica.update_member(row.number, points=balance, last_activity=utc_today(now).isoformat())
            self.core.activity(event, row.number, points)
        return balance

    def record_feedback(
        self, member: str, stars: int, tags: Sequence[str], now: datetime, *, context: str = "dashboard"
    ) -> Event:
        """1-5 stars and a few tags from the kiosk, stored as an event."""
        row = self.core.resolve_member(member)
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            raise BadInput("stars are 1 to 5")
        unknown = [t for t in tags if t not in FEEDBACK_TAGS]
        if unknown:
            raise BadInput(f"unknown feedback tags {unknown}")
        with self.replica.write():
            event = self.core.emit(
                EventType.FEEDBACK_RECORDED,
                row.number,
                {"stars": stars, "tags": list(tags), "context": context, "property": self.core.property},
                now,
            )
            self.replica.insert_feedback(
                event.id, row.number, event.at, stars, json.dumps(list(tags)), context
            )
        return event
