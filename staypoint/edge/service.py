"""The node's operations: the programme's rules applied to the replica, one transaction each.

This is the service API the kiosk and the staff commands use; neither ever writes SQL.
Every operation that changes something appends its outbox event in the same transaction
as its effect. Time is always passed in (``now``, timezone-aware UTC).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from staypoint.edge.keys import NodeKeys, create_keys, load_keys, public_key_from_hex
from staypoint.edge.replica import MemberRow, Replica
from staypoint.loyalty import bounds, fold, member_numbers, pins, referral_codes, tiers, vouchers
from staypoint.loyalty.earning import qualifying_points, stay_points
from staypoint.loyalty.events import Event, EventType, iso, parse_iso, uuid7
from staypoint.loyalty.money import MoneyError, parse_amount
from staypoint.loyalty.program import Outlet, Program, parse_program
from staypoint.loyalty.redemption import (
    OfflineState,
    Refusal,
    check_offline,
    check_offline_spend,
    check_redemption,
    is_redeemable_now,
    offline_headroom,
)
from staypoint.loyalty.roles import STAFF_ROLES, RoleRefusal, Task
from staypoint.loyalty.roles import check as check_role

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


# -- errors: each is one line a guest or a clerk can act on -------------------------------


class NodeError(Exception):
    """Base of every refusal the node gives; ``code`` is stable for --json and the kiosk."""

    code = "error"


class BadInput(NodeError):
    code = "bad_input"


class UnknownMember(NodeError):
    code = "unknown_member"


class UnknownCard(NodeError):
    code = "unknown_card"


class WrongPin(NodeError):
    code = "wrong_pin"

    def __init__(self, tries_left: int) -> None:
        msg = (
            f"wrong PIN: {tries_left} {'try' if tries_left == 1 else 'tries'} left"
            if tries_left
            else "wrong PIN: the account is now locked for redemptions"
        )
        super().__init__(msg)
        self.tries_left = tries_left


class PinLocked(NodeError):
    code = "locked"

    def __init__(self, until: datetime) -> None:
        super().__init__(f"too many wrong PINs: locked until {until:%H:%M} UTC (staff can unlock it)")
        self.until = until


class RedemptionRefused(NodeError):
    code = "refused"

    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal


class OfflineLimitReached(NodeError):
    code = "offline_limit"


class AuthorisationDenied(NodeError):
    """Head office answered and said no (its balance is the authority)."""

    code = "denied"


class VoucherRejected(NodeError):
    code = "voucher_rejected"


class NotAllowed(NodeError):
    code = "not_allowed"


# -- what callers get back --------------------------------------------------------------


@dataclass(frozen=True)
class PinProof:
    """Evidence that a member typed the right PIN, held by the kiosk session."""

    member: str
    verified_at: datetime


@dataclass(frozen=True)
class StaffProof:
    staff_id: str
    name: str
    role: str


@dataclass(frozen=True)
class Hold:
    """An authorisation placed by head office for an online redemption or payment."""

    id: str


class Authoriser(Protocol):
    """Asks head office to authorise a redemption (points) or a stored-value payment (money).
    Returns None when it cannot be reached; raises AuthorisationDenied when it says no."""

    def authorise(self, member: str, points: int, reward: str, now: datetime) -> Hold | None: ...

    def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None: ...


class OfflineOnly:
    """No head office: every redemption and payment is judged by the offline limits."""

    def authorise(self, member: str, points: int, reward: str, now: datetime) -> Hold | None:
        return None

    def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None:
        return None


RewardView = fold.RewardLine  # one shape for a reward line, on the kiosk and in the API


@dataclass(frozen=True)
class Activity:
    at: str
    type: str
    points: int
    amount: str | None
    description: str


@dataclass(frozen=True)
class MemberSummary:
    member: str
    name: str
    tier: str
    tier_name: str
    points: int
    stored_value: Decimal
    currency: str
    qualifying_nights: int
    qualifying_points: int
    next_tier: str | None
    next_tier_message: str
    progress: float
    nights_needed: int
    expiring_points: int
    expiring_on: date | None
    locked: bool
    blocked: bool
    benefits: tuple[str, ...]
    recent: tuple[Activity, ...]
    rewards: tuple[RewardView, ...]
    offers: tuple[str, ...]
    vouchers: tuple[dict[str, Any], ...] = field(default=())
    referral_code: str = ""

    @property
    def redeemable(self) -> list[str]:
        return [r.code for r in self.rewards if r.available]

    def to_json(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "name": self.name,
            "tier": self.tier,
            "tier_name": self.tier_name,
            "points": self.points,
            "stored_value": str(self.stored_value),
            "currency": self.currency,
            "qualifying_nights": self.qualifying_nights,
            "qualifying_points": self.qualifying_points,
            "next_tier": self.next_tier,
            "next_tier_message": self.next_tier_message,
            "nights_needed": self.nights_needed,
            "expiring_points": self.expiring_points,
            "expiring_on": self.expiring_on.isoformat() if self.expiring_on else None,
            "locked": self.locked,
            "blocked": self.blocked,
            "benefits": list(self.benefits),
            "recent": [a.__dict__ for a in self.recent],
            "rewards": [r.__dict__ for r in self.rewards],
            "redeemable": self.redeemable,
            "offers": list(self.offers),
            "referral_code": self.referral_code,
            "vouchers": [
                {k: v for k, v in vo.items() if k in ("code", "reward", "status", "expires")}
                for vo in self.vouchers
            ],
        }


@dataclass(frozen=True)
class StayResult:
    member: str
    folio: str
    points: int
    nights: int
    tier_before: str
    tier_after: str
    balance: int
    event: Event


@dataclass(frozen=True)
class Redemption:
    member: str
    reward: str
    reward_name: str
    points: int
    balance: int
    voucher: str
    token: str
    expires: date
    auth: str
    limits_profile: str | None
    event: Event


@dataclass(frozen=True)
class VoucherInfo:
    code: str
    reward: str
    reward_name: str
    member: str
    node: str
    expires: date
    status: str  # issued / used / voided / expired / unknown-here
    valid: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["expires"] = self.expires.isoformat()
        return d


def _today(now: datetime) -> date:
    return now.astimezone(UTC).date()


def _display_name(full: str) -> str:
    """First name and initial: all a lobby screen (and the replica) needs."""
    parts = full.split()
    if len(parts) == 1:
        return parts[0][:40]
    return f"{parts[0][:40]} {parts[-1][0].upper()}."


def _pin_state(row: MemberRow) -> pins.PinState:
    return pins.PinState(row.pin_failures, parse_iso(row.locked_until) if row.locked_until else None)


def _require_utc(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("time must be timezone-aware UTC")


def _allowed(staff: StaffProof | None, task: Task, amount: int | None = None) -> None:
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


class NodeService:
    """The node's operations over one replica file."""

    def __init__(
        self,
        replica: Replica,
        keys: NodeKeys,
        authoriser: Authoriser | None = None,
    ) -> None:
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

    # -- opening ------------------------------------------------------------------------

    @staticmethod
    def keys_dir_for(db: Path) -> Path:
        return db.with_name(db.name + ".keys")

    @classmethod
    def init_node(
        cls,
        db: Path,
        node_id: str,
        property_: str,
        program_text: str,
        now: datetime,
        *,
        member_blocks: Sequence[int] = (),
        keys_dir: Path | None = None,
        card_key: bytes | None = None,
    ) -> NodeService:
        """Create (or finish creating) a node replica; refuses to re-initialise another node."""
        _require_utc(now)
        if not node_id or not all(c.isalnum() or c in "-_" for c in node_id):
            raise BadInput(f"node id {node_id!r}: letters, digits, '-' and '_' only")
        if not property_.strip():
            raise BadInput("property must not be empty")
        program = parse_program(program_text, "programme")
        kdir = keys_dir or cls.keys_dir_for(db)
        replica = Replica(db)
        have = replica.meta("node_id")
        if have is not None and have != node_id:
            replica.close()
            raise BadInput(f"{db} already belongs to node {have!r}")
        keys = load_keys(kdir) if (kdir / "voucher_ed25519.pem").exists() else create_keys(kdir, card_key)
        blocks = list(member_blocks) or [_default_block(node_id)]
        with replica.write():
            if have is None:
                replica.set_meta("node_id", node_id)
                replica.set_meta("property", property_)
                replica.set_meta("epoch", 1)
                replica.set_meta("last_seq", 0)
                replica.set_meta("voucher_serial", 0)
                replica.set_meta("members_allocated", 0)
                replica.set_meta("member_blocks", json.dumps(blocks))
                replica.set_meta("offline_exposure", 0)
                # A replica created now is as fresh as its programme: the staleness clock
                # starts here until the sync agent reports real contact.
                replica.set_meta("last_contact", iso(now))
                replica.store_program(program.version, program_text, iso(now))
                replica.set_meta("program_version", program.version)
                for reward in program.rewards:
                    if reward.stock is not None:
                        replica.set_stock(reward.code, reward.stock)
            replica.set_node_key(node_id, keys.public_hex())
        return cls(replica, keys)

    @classmethod
    def open(
        cls, db: Path, *, keys_dir: Path | None = None, authoriser: Authoriser | None = None
    ) -> NodeService:
        """Open an initialised node replica and its keys."""
        if not db.exists():
            raise BadInput(f"{db}: no such replica (run `staypoint node init`)")
        replica = Replica(db)
        try:
            keys = load_keys(keys_dir or cls.keys_dir_for(db))
            return cls(replica, keys, authoriser)
        except BaseException:
            replica.close()
            raise

    def close(self) -> None:
        self.replica.close()

    # -- programme ----------------------------------------------------------------------

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

    # -- events -------------------------------------------------------------------------

    def _emit(
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

    def _ledger(self, event: Event, member: str, points: int, amount: str | None = None) -> None:
        """The member's activity line for ``event``, worded once (``fold.activity_line``)."""
        # The programme _emit just read for this event (the same transaction): no second look.
        program = self._program if self._program is not None else self.program
        line = fold.activity_line(event.type, event.data, program=program)
        self.replica.add_ledger(event.id, member, event.at, event.type, points, line, amount)

    # -- members ------------------------------------------------------------------------

    def resolve_member(self, raw: str) -> MemberRow:
        """A member by number; the check digit is checked before any lookup."""
        try:
            number = member_numbers.normalise(raw)
        except member_numbers.MemberNumberError as exc:
            raise BadInput(str(exc)) from None
        row = self.replica.member(number)
        if row is None:
            raise UnknownMember(f"no member {number} on this node")
        return row

    def member_by_card(self, uid_hex: str) -> MemberRow:
        """The member whose card has this UID."""
        try:
            h = self.keys.card_hash(uid_hex)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        number = self.replica.member_by_card(h)
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
        _allowed(staff, Task.ENROL)
        _require_utc(now)
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
            pins.check_format(pin, self.program.pin)
        except pins.PinFormatError as exc:
            raise BadInput(str(exc)) from None
        card_hash = None
        if card_uid is not None:
            try:
                card_hash = self.keys.card_hash(card_uid)
            except ValueError as exc:
                raise BadInput(str(exc)) from None
        pin_hash = pins.hash_pin(pin, os.urandom(16))  # slow: outside the write lock
        program = self.program
        today = _today(now)
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
                home_property=self.property,
            )
            self.replica.insert_member(row)
            data: dict[str, Any] = {
                "name": name,
                "display_name": row.name,
                "tier": row.tier,
                "pin_hash": pin_hash,
                "home_property": self.property,
            }
            if card_hash is not None:
                self.replica.bind_card(card_hash, number, iso(now))
                data["card_hash"] = card_hash
            if staff is not None:
                data["staff"] = staff.staff_id
            event = self._emit(EventType.MEMBER_ENROLLED, number, data, now)
            self._ledger(event, number, 0)
            if referrer is not None:
                code = referral_codes.referral_code(referrer)
                ref: dict[str, Any] = {"referrer": referrer, "code": code}
                if staff is not None:
                    ref["staff"] = staff.staff_id
                self._emit(EventType.MEMBER_REFERRED, number, ref, now)
        return row

    def bind_card(self, member: str, card_uid: str, now: datetime, staff: StaffProof) -> None:
        """Bind a (new or replacement) card to a member."""
        _allowed(staff, Task.BIND_CARD)
        row = self.resolve_member(member)
        try:
            h = self.keys.card_hash(card_uid)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        with self.replica.write():
            if self.replica.member_by_card(h) is not None:
                raise BadInput("this card already belongs to a member")
            self.replica.bind_card(h, row.number, iso(now))
            self._emit(EventType.CARD_BOUND, row.number, {"card_hash": h, "staff": staff.staff_id}, now)

    # -- PIN ----------------------------------------------------------------------------

    def verify_pin(self, member: str, pin: str, now: datetime) -> PinProof:
        """Check a member's PIN; count failures and lock out at the policy's limit.

        The count is the fleet's (head office's record, which holds tries made at other
        nodes and the API) plus this node's own tries not yet folded into it: each try that
        moves it is an event, folded by the same ``fold.after_pin`` everywhere."""
        _require_utc(now)
        row = self.resolve_member(member)
        policy = self.program.pin
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
            event = self._emit(EventType.PIN_VERIFIED if ok else EventType.PIN_FAILED, row.number, {}, now)
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
        _allowed(staff, Task.UNLOCK)
        row = self.resolve_member(member)
        with self.replica.write():
            self.replica.update_member(row.number, pin_failures=0, locked_until=None)
            self._emit(EventType.MEMBER_UNLOCKED, row.number, {"staff": staff.staff_id}, now)

    def report_member(self, member: str, reason: str, now: datetime, staff: StaffProof) -> Event:
        """Report a member staff suspect of abuse: head office decides (a node blocks no one)."""
        _allowed(staff, Task.REPORT_MEMBER)
        _require_utc(now)
        if not reason.strip():
            raise BadInput("a report needs a reason")
        row = self.resolve_member(member)
        with self.replica.write():
            return self._emit(
                EventType.MEMBER_REPORTED,
                row.number,
                {"reason": reason.strip(), "staff": staff.staff_id},
                now,
                row=row,
            )

    # -- summary --------------------------------------------------------------------------

    def _qualifying(self, row: MemberRow, today: date) -> tuple[int, int]:
        return tiers.qualifying_now(self.program, row.window_start, row.qual_nights, row.qual_points, today)

    def summary(self, member: str | MemberRow, now: datetime) -> MemberSummary:
        """Everything a dashboard shows for a member, in one consistent read (``fold.view``)."""
        _require_utc(now)
        program = self.program
        with self.replica.read():
            row = member if isinstance(member, MemberRow) else self.resolve_member(member)
            stock = {r.code: self.replica.stock(r.code) for r in program.rewards if r.stock is not None}
            seen = fold.view(dataclasses.asdict(row), program, _today(now), stock=stock)
            recent = tuple(Activity(*a) for a in self.replica.recent_activity(row.number, 8))
            vouchers_ = tuple(self.replica.member_vouchers(row.number, 5))
        locked_until = parse_iso(row.locked_until) if row.locked_until else None
        return MemberSummary(
            member=seen.member,
            name=seen.name,
            tier=seen.tier,
            tier_name=seen.tier_name,
            points=seen.points,
            stored_value=seen.stored_value,
            currency=seen.currency,
            qualifying_nights=seen.qualifying_nights,
            qualifying_points=seen.qualifying_points,
            next_tier=seen.next_tier,
            next_tier_message=seen.next_tier_message,
            progress=seen.progress,
            nights_needed=seen.nights_needed,
            expiring_points=seen.expiring_points,
            expiring_on=seen.expiring_on,
            locked=locked_until is not None and now < locked_until,
            blocked=seen.blocked,
            benefits=seen.benefits,
            recent=recent,
            rewards=seen.rewards,
            offers=seen.offers,
            vouchers=vouchers_,
            referral_code=referral_codes.referral_code(row.number),
        )

    # -- stays ----------------------------------------------------------------------------

    def post_stay(
        self,
        member: str,
        folio: str,
        now: datetime,
        *,
        nights: int,
        revenue: Mapping[Outlet, Decimal | str],
        arrival: date | None = None,
        staff: StaffProof | None = None,
    ) -> StayResult:
        """Post a stay: points by the programme's earn rules, qualifying nights, upgrade at once."""
        _allowed(staff, Task.POST_STAY)
        _require_utc(now)
        folio = folio.strip()
        if not folio or len(folio) > 40:
            raise BadInput("folio must be 1-40 characters")
        if isinstance(nights, bool) or not isinstance(nights, int) or not 0 <= nights <= 365:
            raise BadInput("nights must be a whole number from 0 to 365")
        try:
            amounts = {Outlet(o): parse_amount(a) for o, a in revenue.items()}
        except (MoneyError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        if amounts.get(Outlet.ROOM, Decimal(0)) > 0 and nights == 0:
            raise BadInput("room revenue needs at least one night")
        today = _today(now)
        departure = today if arrival is None else arrival + timedelta(days=nights)
        arrival = arrival or today - timedelta(days=nights)
        if departure > today + timedelta(days=1):
            raise BadInput("a stay is posted after it happens: departure is in the future")
        program = self.program
        row0 = self.resolve_member(member)
        with self.replica.write():
            row = self.replica.member(row0.number)
            assert row is not None
            if self.replica.live_stay(self.property, folio) is not None:
                raise BadInput(f"folio {folio} is already posted at {self.property}")
            earned = stay_points(program, row.tier, amounts, departure)
            qualifying = qualifying_points(program, earned)
            qnights, qpoints = self._qualifying(row, today)
            qnights += nights
            qpoints += qualifying
            new_tier = tiers.after_activity(program, row.tier, qnights, qpoints)
            revenue_json = {o.value: str(a) for o, a in amounts.items() if a}
            data = {
                "folio": folio,
                "property": self.property,
                "arrival": arrival.isoformat(),
                "departure": departure.isoformat(),
                "nights": nights,
                "revenue": revenue_json,
                "points": earned.points,
                "qualifying_points": qualifying,
                "tier": row.tier,
                "tier_after": new_tier.code,
                "promotions": sorted({c for ln in earned.lines for c in ln.promotions}),
            }
            if staff is not None:
                data["staff"] = staff.staff_id
            event = self._emit(EventType.STAY_POSTED, row.number, data, now, row=row)
            self.replica.insert_stay(
                event.id,
                row.number,
                self.property,
                folio,
                arrival.isoformat(),
                departure.isoformat(),
                nights,
                json.dumps(revenue_json),
                earned.points,
                event.at,
            )
            balance = row.points + earned.points
            self.replica.update_member(
                row.number,
                points=balance,
                qual_nights=qnights,
                qual_points=qpoints,
                window_start=tiers.window_start(program.window, today).isoformat(),
                tier=new_tier.code,
                last_activity=today.isoformat(),
            )
            self._ledger(event, row.number, earned.points)
        return StayResult(row.number, folio, earned.points, nights, row.tier, new_tier.code, balance, event)

    def void_stay(self, folio: str, now: datetime, staff: StaffProof, reason: str) -> Event:
        """Void a posted stay by a compensating event: its points and nights are taken back.

        When the member has already spent some of the stay's points the node does not take
        them (the balance would go negative at a desk): it sends head office a
        ``stay.void_requested`` to settle, and returns that event instead."""
        _allowed(staff, Task.VOID_STAY)
        _require_utc(now)
        if not reason.strip():
            raise BadInput("a void needs a reason")
        with self.replica.write():
            found = self.replica.live_stay(self.property, folio.strip())
            if found is None:
                raise BadInput(f"no live stay with folio {folio} at {self.property}")
            stay_id, number, points, nights = found
            row = self.replica.member(number)
            assert row is not None
            data = {
                "folio": folio,
                "stay": stay_id,
                "points": points,
                "nights": nights,
                "reason": reason,
                "staff": staff.staff_id,
            }
            if row.points < points:
                if self.replica.void_requested(stay_id):
                    raise NotAllowed(f"the void of {folio} is already with head office to settle")
                return self._emit(EventType.STAY_VOID_REQUESTED, number, data, now, row=row)
            event = self._emit(EventType.STAY_VOIDED, number, data, now)
            self.replica.void_stay(stay_id, event.at)
            qn, qp = self._qualifying(row, _today(now))
            self.replica.update_member(
                number,
                points=row.points - points,
                qual_nights=max(0, qn - nights),
                qual_points=max(0, qp - points),
            )
            self._ledger(event, number, -points)
        return event

    # -- redemption -------------------------------------------------------------------------

    def offline_state(self, member: MemberRow) -> OfflineState:
        pts, consecutive = self.replica.offline_counters(member.number)
        last = self.replica.meta("last_contact")
        return OfflineState(
            member_points_since_contact=pts,
            member_consecutive_offline=consecutive,
            node_exposure_points=int(self.replica.meta("offline_exposure") or 0),
            last_contact=parse_iso(last) if last else None,
            deny_listed=member.blocked,
        )

    def offline_headroom(self, member: str, now: datetime) -> int:
        """The most points one offline redemption could cost this member right now."""
        row = self.resolve_member(member)
        return offline_headroom(self.program.offline, self.offline_state(row), now)

    def redeem(self, proof: PinProof, reward_code: str, now: datetime, *, online: bool = True) -> Redemption:
        """Redeem a reward: rules checked, head office asked first, else the offline limits."""
        _require_utc(now)
        if now - proof.verified_at > timedelta(minutes=5) or proof.verified_at > now:
            raise NotAllowed("the PIN was entered too long ago: please enter it again")
        program = self.program
        row = self.resolve_member(proof.member)
        self._check_rules(row, reward_code)
        reward = program.reward(reward_code)
        assert reward is not None
        # Ask head office before taking the write lock: a network wait must never block
        # the other writers on this node.
        hold = self.authoriser.authorise(row.number, reward.points, reward.code, now) if online else None
        with self.replica.write():
            current = self.replica.member(row.number)
            assert current is not None
            self._check_rules(current, reward_code, now)
            profile = None
            if hold is None:
                decision = check_offline(program.offline, reward.points, self.offline_state(current), now)
                if not decision.allowed:
                    raise OfflineLimitReached(decision.message)
                profile = decision.profile
            serial = self.replica.bump_meta("voucher_serial")
            code = vouchers.make_code(os.urandom(8))
            expires = _today(now) + timedelta(days=reward.voucher_days)
            claims = vouchers.VoucherClaims(code, reward.code, row.number, self.node_id, serial, expires)
            token = vouchers.sign_token(claims, self.keys.voucher)
            auth = "online" if hold else "offline"
            event = self._emit(
                EventType.POINTS_REDEEMED,
                row.number,
                {
                    "reward": reward.code,
                    "points": reward.points,
                    "hold": hold.id if hold else None,
                    "voucher": code,
                    "serial": serial,
                    "expires": expires.isoformat(),
                    "token": token,
                    "limits": profile,
                },
                now,
                auth=auth,
                row=current,
            )
            self.replica.insert_voucher(
                code,
                token,
                reward.code,
                row.number,
                self.node_id,
                serial,
                reward.points,
                event.at,
                expires.isoformat(),
            )
            balance = current.points - reward.points
            self.replica.update_member(row.number, points=balance, last_activity=_today(now).isoformat())
            if reward.stock is not None:
                self.replica.add_stock(reward.code, -1)
            if hold is None:
                self.replica.add_offline(row.number, reward.points)
                self.replica.bump_meta("offline_exposure", reward.points)
            self._ledger(event, row.number, -reward.points)
        return Redemption(
            row.number,
            reward.code,
            reward.name,
            reward.points,
            balance,
            code,
            token,
            expires,
            auth,
            profile,
            event,
        )

    def _check_rules(self, row: MemberRow, reward_code: str, now: datetime | None = None) -> None:
        if now is not None and row.locked_until and now < parse_iso(row.locked_until):
            raise RedemptionRefused(Refusal.LOCKED, Refusal.LOCKED.value)
        program = self.program
        reward = program.reward(reward_code)
        stock = self.replica.stock(reward.code) if reward and reward.stock is not None else None
        check = check_redemption(
            program,
            reward_code,
            tier=row.tier,
            points=row.points,
            stock_left=stock,
            blocked=row.blocked,
        )
        if not check.ok:
            assert check.refusal is not None
            raise RedemptionRefused(check.refusal, check.detail)

    def check_redeemable(self, member: str, reward_code: str) -> None:
        """Raise RedemptionRefused when the rules alone refuse (before asking for a PIN)."""
        self._check_rules(self.resolve_member(member), reward_code)

    def can_redeem(self, member: MemberRow, reward_code: str) -> bool:
        """Tier and points allow the reward (for greying out on screens)."""
        reward = self.program.reward(reward_code)
        return reward is not None and is_redeemable_now(self.program, reward, member.tier, member.points)

    # -- vouchers -----------------------------------------------------------------------------

    def _public_keys(self) -> dict[str, Any]:
        return {n: public_key_from_hex(k) for n, k in self.replica.node_public_keys().items()}

    def verify_voucher(self, code_or_token: str, now: datetime) -> VoucherInfo:
        """Check a typed code or a scanned token; VoucherRejected when it is not genuine."""
        _require_utc(now)
        raw = code_or_token.strip()
        try:
            if raw.startswith(vouchers.TOKEN_PREFIX + "."):
                claims = vouchers.verify_token(raw, self._public_keys())
                code = claims.code
            else:
                code = vouchers.normalise_code(raw)
                claims = None
        except vouchers.VoucherError as exc:
            raise VoucherRejected(str(exc)) from None
        rec = self.replica.voucher(code)
        if rec is None:
            if claims is None:
                raise VoucherRejected(f"voucher {vouchers.format_code(code)} is not known on this node")
            status, valid = "unknown-here", claims.expires >= _today(now)
        else:
            # The stored token is checked too: a row edited in the file must not pass.
            try:
                stored = vouchers.verify_token(str(rec["token"]), self._public_keys())
            except vouchers.VoucherError as exc:
                raise VoucherRejected(f"voucher record is damaged: {exc}") from None
            if claims is not None and stored != claims:
                raise VoucherRejected("voucher does not match the issued record")
            claims = stored
            status = str(rec["status"])
            if status == "issued" and claims.expires < _today(now):
                status = "expired"
            valid = status == "issued"
        self._refuse_if_revoked(claims, rec)
        reward = self.program.reward(claims.reward)
        messages = {
            "issued": "valid",
            "unknown-here": "genuine, issued elsewhere: not yet synced to this node",
            "used": "already used",
            "voided": "voided",
            "expired": f"expired on {claims.expires.isoformat()}",
        }
        return VoucherInfo(
            code=vouchers.format_code(claims.code),
            reward=claims.reward,
            reward_name=reward.name if reward else claims.reward,
            member=claims.member,
            node=claims.node,
            expires=claims.expires,
            status=status,
            valid=valid,
            message=messages[status],
        )

    def _refuse_if_revoked(self, claims: vouchers.VoucherClaims, rec: Mapping[str, Any] | None) -> None:
        """VoucherRejected for a voucher of a revoked node issued after its revocation.

        Head office books nothing a revoked node sends, so such a voucher was never paid for
        in points; one it never booked (known here only by its token) counts as issued after.
        Vouchers booked before the revocation stay good until they expire (docs/programme.md)."""
        revoked = self.replica.node_revoked_at(claims.node)
        if revoked is None:
            return
        code = vouchers.format_code(claims.code)
        if rec is None:
            raise VoucherRejected(
                f"voucher {code} refused: node {claims.node} was revoked at {revoked} "
                "and head office never booked this voucher"
            )
        if parse_iso(str(rec["issued_at"])) >= parse_iso(revoked):
            raise VoucherRejected(
                f"voucher {code} refused: issued by node {claims.node} after its revocation at {revoked}"
            )

    def use_voucher(self, code_or_token: str, now: datetime, staff: StaffProof) -> VoucherInfo:
        """Mark a voucher used (the guest got the reward)."""
        _allowed(staff, Task.USE_VOUCHER)
        info = self.verify_voucher(code_or_token, now)
        code = vouchers.normalise_code(info.code)
        with self.replica.write():
            rec = self.replica.voucher(code)
            if rec is None:
                raise VoucherRejected("this voucher has not reached this node yet: ask head office")
            if rec["status"] != "issued" or info.status == "expired":
                raise VoucherRejected(f"voucher cannot be used: {info.message}")
            event = self._emit(
                EventType.VOUCHER_USED,
                str(rec["member"]),
                {"voucher": code, "reward": rec["reward"], "staff": staff.staff_id},
                now,
            )
            self.replica.set_voucher_status(code, "used", event.at)
        return self.verify_voucher(code, now)

    def void_voucher(self, code_or_token: str, now: datetime, staff: StaffProof, reason: str) -> VoucherInfo:
        """Void an unused voucher: its points go back to the member and its stock back on the shelf."""
        _allowed(staff, Task.VOID_VOUCHER)
        if not reason.strip():
            raise BadInput("a void needs a reason")
        info = self.verify_voucher(code_or_token, now)
        code = vouchers.normalise_code(info.code)
        with self.replica.write():
            rec = self.replica.voucher(code)
            if rec is None or rec["status"] != "issued":
                raise VoucherRejected(f"voucher cannot be voided: {info.message}")
            member = str(rec["member"])
            points = int(rec["points"])
            event = self._emit(
                EventType.VOUCHER_VOIDED,
                member,
                {
                    "voucher": code,
                    "reward": rec["reward"],
                    "points": points,
                    "reason": reason,
                    "staff": staff.staff_id,
                },
                now,
            )
            self.replica.set_voucher_status(code, "voided", event.at)
            row = self.replica.member(member)
            assert row is not None
            self.replica.update_member(member, points=row.points + points)
            reward = self.program.reward(str(rec["reward"]))
            if reward is not None and reward.stock is not None:
                self.replica.add_stock(reward.code, 1)
            self._ledger(event, member, points)
        return self.verify_voucher(code, now)

    def last_voucher(self, member: str | None = None) -> dict[str, Any] | None:
        """The most recent voucher (of a member, or of the node) for a reprint."""
        return self.replica.last_voucher(member)

    # -- stored value ----------------------------------------------------------------------------

    def top_up(self, member: str, amount: str | Decimal, now: datetime, staff: StaffProof) -> Decimal:
        """Add money to a member's stored-value balance; returns the new balance."""
        _allowed(staff, Task.TOP_UP)
        rules = self.program.stored_value
        try:
            value = parse_amount(amount, allow_zero=False)
        except MoneyError as exc:
            raise BadInput(str(exc)) from None
        if not rules.min_top_up <= value <= rules.max_top_up:
            raise BadInput(f"a top-up is between {rules.min_top_up} and {rules.max_top_up}")
        row0 = self.resolve_member(member)
        with self.replica.write():
            row = self.replica.member(row0.number)
            assert row is not None
            balance = Decimal(row.stored_value) + value
            if balance > rules.max_balance:
                raise NotAllowed(f"the stored-value balance cannot exceed {rules.max_balance}")
            event = self._emit(
                EventType.VALUE_TOPPED_UP,
                row.number,
                {"amount": str(value), "currency": self.program.currency, "staff": staff.staff_id},
                now,
            )
            self.replica.update_member(row.number, stored_value=str(balance))
            self._ledger(event, row.number, 0, str(value))
        return balance

    def spend(self, proof: PinProof, amount: str | Decimal, now: datetime, *, online: bool = True) -> Decimal:
        """Pay from stored value (PIN proven): head office asked first for a hold on the
        wallet, else the offline limits; returns the new balance."""
        try:
            value = parse_amount(amount, allow_zero=False)
            bounds.money(str(value), "amount", self.program.bounds.money_per_event)
        except (MoneyError, bounds.BoundError) as exc:
            raise BadInput(str(exc)) from None
        row0 = self.replica.member(proof.member)
        if row0 is None:
            raise UnknownMember(f"no member {proof.member}")
        if value > Decimal(row0.stored_value):
            raise NotAllowed(f"stored value is {row0.stored_value} {self.program.currency}: not enough")
        # Ask head office before taking the write lock (a network wait must never block the
        # other writers): it holds the amount against the wallet, so two nodes online can never
        # both spend it. No answer: the offline floor limits bound what two offline nodes can
        # overdraw.
        hold = self.authoriser.authorise_value(row0.number, value, now) if online else None
        with self.replica.write():
            row = self.replica.member(proof.member)
            assert row is not None
            balance = Decimal(row.stored_value)
            if value > balance:
                raise NotAllowed(f"stored value is {balance} {self.program.currency}: not enough")
            profile = None
            if hold is None:
                state = self.offline_state(row)
                since = self.replica.meta("last_contact")
                decision = check_offline_spend(
                    self.program.offline, value, self.replica.value_spent_since(row.number, since), state, now
                )
                if not decision.allowed:
                    raise OfflineLimitReached(decision.message)
                profile = decision.profile
            event = self._emit(
                EventType.VALUE_SPENT,
                row.number,
                {
                    "amount": str(value),
                    "currency": self.program.currency,
                    "hold": hold.id if hold else None,
                    "limits": profile,
                },
                now,
                auth="online" if hold else "offline",
                row=row,
            )
            self.replica.update_member(row.number, stored_value=str(balance - value))
            self._ledger(event, row.number, 0, str(-value))
        return balance - value

    # -- claims, adjustments, feedback -------------------------------------------------------------

    def record_claim(
        self,
        member: str,
        folio: str,
        arrival: date,
        departure: date,
        now: datetime,
        *,
        property_: str | None = None,
        note: str = "",
    ) -> Event:
        """A member says a stay is missing: recorded here, settled at head office."""
        row = self.resolve_member(member)
        if not folio.strip():
            raise BadInput("a claim needs the folio number from the bill")
        if departure < arrival or departure > _today(now):
            raise BadInput("the stay's dates are not possible")
        prop = property_ or self.property
        with self.replica.write():
            event = self._emit(
                EventType.CLAIM_RECORDED,
                row.number,
                {
                    "folio": folio.strip(),
                    "property": prop,
                    "arrival": arrival.isoformat(),
                    "departure": departure.isoformat(),
                    "note": note[:500],
                },
                now,
            )
            self.replica.insert_claim(
                event.id,
                row.number,
                prop,
                folio.strip(),
                arrival.isoformat(),
                departure.isoformat(),
                note[:500],
                event.at,
            )
            self._ledger(event, row.number, 0)
        return event

    def adjust(self, member: str, points: int, reason: str, now: datetime, staff: StaffProof) -> int:
        """A staff adjustment with a reason; returns the new balance."""
        if isinstance(points, bool) or not isinstance(points, int) or points == 0:
            raise BadInput("an adjustment is a non-zero whole number of points")
        if not reason.strip():
            raise BadInput("an adjustment needs a reason")
        _allowed(staff, Task.ADJUST, points)
        row0 = self.resolve_member(member)
        with self.replica.write():
            row = self.replica.member(row0.number)
            assert row is not None
            balance = row.points + points
            if balance < 0:
                raise NotAllowed(f"the member has only {row.points:,} points")
            event = self._emit(
                EventType.POINTS_ADJUSTED,
                row.number,
                {"points": points, "reason": reason.strip(), "staff": staff.staff_id},
                now,
            )
            self.replica.update_member(row.number, points=balance, last_activity=_today(now).isoformat())
            self._ledger(event, row.number, points)
        return balance

    def record_feedback(
        self, member: str, stars: int, tags: Sequence[str], now: datetime, *, context: str = "dashboard"
    ) -> Event:
        """1-5 stars and a few tags from the kiosk, stored as an event."""
        row = self.resolve_member(member)
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            raise BadInput("stars are 1 to 5")
        unknown = [t for t in tags if t not in FEEDBACK_TAGS]
        if unknown:
            raise BadInput(f"unknown feedback tags {unknown}")
        with self.replica.write():
            event = self._emit(
                EventType.FEEDBACK_RECORDED,
                row.number,
                {"stars": stars, "tags": list(tags), "context": context, "property": self.property},
                now,
            )
            self.replica.insert_feedback(
                event.id, row.number, event.at, stars, json.dumps(list(tags)), context
            )
        return event

    # -- staff --------------------------------------------------------------------------------

    def add_staff(
        self,
        staff_id: str,
        name: str,
        role: str,
        pin: str,
        card_uid: str | None = None,
        *,
        by: StaffProof | None = None,
    ) -> None:
        """Register a staff member on this node (a technician task; ``by=None`` is node set-up)."""
        _allowed(by, Task.ADD_STAFF)
        if role not in STAFF_ROLES:
            raise BadInput(f"role is one of {', '.join(STAFF_ROLES)}")
        if len(pin) < 4 or not pin.isdigit():
            raise BadInput("a staff PIN is at least 4 digits")
        card_hash = self.keys.card_hash(card_uid) if card_uid else None
        pin_hash = pins.hash_pin(pin, os.urandom(16))
        with self.replica.write():
            if self.replica.staff(staff_id=staff_id) is not None:
                raise BadInput(f"staff {staff_id} already exists")
            # The replica would refuse it too, but as an IntegrityError: say which rule it is.
            if card_hash is not None and self.replica.staff(card_hash=card_hash) is not None:
                raise BadInput("that card is already another staff member's")
            self.replica.insert_staff(staff_id, name, role, card_hash, pin_hash)

    def staff_login(
        self, pin: str, now: datetime, *, staff_id: str | None = None, card_uid: str | None = None
    ) -> StaffProof:
        """Staff card (or id) + PIN; staff lock out like members do."""
        rec = (
            self.replica.staff(card_hash=self.keys.card_hash(card_uid))
            if card_uid
            else self.replica.staff(staff_id=staff_id)
        )
        if rec is None:
            who = f"no staff member {staff_id!r} on this node"
            raise UnknownCard("not a staff card" if card_uid else who)
        until = parse_iso(rec["locked_until"]) if rec["locked_until"] else None
        if until is not None and now < until:
            raise PinLocked(until)
        policy = self.program.pin
        if pins.verify_pin(pin, str(rec["pin_hash"])):
            with self.replica.write():
                self.replica.update_staff_pin_state(str(rec["staff_id"]), 0, None)
            return StaffProof(str(rec["staff_id"]), str(rec["name"]), str(rec["role"]))
        failures = 0 if (until is not None and now >= until) else int(rec["pin_failures"])
        state = pins.after_failure(pins.PinState(failures, None), policy, now)
        with self.replica.write():
            self.replica.update_staff_pin_state(
                str(rec["staff_id"]),
                state.failures,
                iso(state.locked_until) if state.locked_until else None,
            )
        raise WrongPin(pins.tries_left(state, policy))

    def is_staff_card(self, card_uid: str) -> bool:
        try:
            return self.replica.staff(card_hash=self.keys.card_hash(card_uid)) is not None
        except ValueError:
            return False

    # -- node status ----------------------------------------------------------------------------

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
        return self.replica.outbox(pending_only=pending_only, limit=limit)

    def status(self, now: datetime) -> dict[str, Any]:
        last = self.replica.meta("last_contact")
        pending = self.replica.outbox(pending_only=True, limit=1)
        return {
            "node": self.node_id,
            "property": self.property,
            "epoch": int(self.replica.meta("epoch") or 1),
            "last_seq": int(self.replica.meta("last_seq") or 0),
            "outbox_depth": self.replica.outbox_depth(),
            "oldest_pending": pending[0]["at"] if pending else None,
            "last_contact": last,
            "staleness_s": int((now - parse_iso(last)).total_seconds()) if last else None,
            "offline_exposure": int(self.replica.meta("offline_exposure") or 0),
            "program_version": self.program.version,
            "members": self.replica.member_count(),
            # Our events head office quarantined (newest first): a technician reads why.
            "rejected": self.replica.rejected_events(3),
            "rejected_total": self.replica.rejected_count(),
        }


def _default_block(node_id: str) -> int:
    """A development block from the node id, for nodes initialised without head office.

    Provisioned nodes get their blocks from head office; this keeps two dev nodes with
    different ids apart (1000-8999) without pretending to be a real allocation.
    """
    return 1000 + int(hashlib.sha256(node_id.encode()).hexdigest(), 16) % 8000
