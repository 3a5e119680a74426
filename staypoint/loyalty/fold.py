"""The one fold: what each event does to a member, and what the member sees.

A member's state is the wire record head office keeps and sends to every node (a plain
dict: number, tier, points, stored_value, qualifying figures, cards, fold marks, ...).
Every place that moves a member computes through this module and nowhere else:

- head office's ledger (``central/ledger.py``, on every store) folds each event it
  receives with ``apply``, which re-prices stays and rewards with the programme version
  the event names: head office is the authority;
- a node folds its own events that head office has not folded yet on top of head
  office's record with ``stated`` (the figures the node itself wrote), so what a kiosk
  shows is ``record + own unfolded events`` (``edge/sync_store.py``);
- the node service and the API describe activity with ``activity_line``.

The PIN lock-out lives on the record too (``pin_failures``, ``locked_until``): a wrong PIN
anywhere is a ``pin.failed`` event, folded here with ``after_pin`` by head office, by a
node's overlay and by the node and the API as they count, so a lock-out reaches the whole
fleet with the record, and a node offline still locks on its own tries (docs/programme.md).

``apply`` is pure: it reads stays, vouchers and holds through ``Refs`` and returns what
the caller must write (``Outcome``); it raises ``Quarantine`` when an event breaks a
bound, a rule or the sending node's rights, and then the caller writes nothing but the
quarantine record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from staypoint.loyalty import pins, tiers
from staypoint.loyalty.bounds import BoundError, Bounds, check_balance, money
from staypoint.loyalty.earning import qualifying_points, stay_points
from staypoint.loyalty.events import Event, is_office_stream, iso, parse_iso, points_delta
from staypoint.loyalty.expiry import expiring_soon
from staypoint.loyalty.program import Outlet, PinPolicy, Program, Window
from staypoint.loyalty.redemption import check_redemption
from staypoint.loyalty.referral_codes import MAX_CHAIN

MemberDoc = dict[str, Any]
_OUTLETS: dict[Any, Outlet] = {o.value: o for o in Outlet}


class Quarantine(ValueError):
    """An event head office will not book: ``reason`` is one line for the staff list."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class StayRef:
    """A stay head office booked: who, what it earned, and which node and property posted it."""

    member: str
    points: int
    nights: int
    node: str | None = None
    property: str | None = None


class Refs(Protocol):
    """What the fold may look up (head office's records), read-only."""

    def stay(self, event_id: str) -> StayRef | None: ...

    def voucher(self, code: str) -> Mapping[str, Any] | None: ...

    def node_property(self, node: str) -> str | None: ...

    def office(self, node: str) -> bool:
        """True for head office's own console stream, whose staff decide blocks and voids."""
        ...

    def member_record(self, number: str) -> Mapping[str, Any] | None:
        """Another member's record as head office holds it (a referrer and its chain)."""
        ...


@dataclass(slots=True)
class Outcome:
    """What one folded event asks its caller to write, besides the member record."""

    stay: tuple[int, int] | None = None  # (points, nights) booked for this stay event
    voucher: dict[str, Any] | None = None  # a voucher record to write and send downstream
    settle_hold: str | None = None
    alarms: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail)
    debts: list[tuple[str, str]] = field(default_factory=list)  # (kind, amount) written down
    deny: bool | None = None  # block (True) / lift (False) further spending fleet-wide
    review: tuple[str, str] | None = None  # (kind, detail): a request for head office staff to decide


@dataclass(frozen=True)
class Delta:
    """What an event says it does (the node's own figures), for the overlay on a node."""

    points: int = 0
    value: Decimal = Decimal(0)
    nights: int = 0
    qualifying: int = 0
    tier_after: str | None = None
    clamps: bool = False  # a void takes qualifying figures back, never below zero


def stated(kind: str, data: Mapping[str, Any]) -> Delta:
    """The figures an event carries, as its author computed them (no re-pricing)."""
    points = points_delta(kind, data)
    if kind == "stay.posted":
        after = data.get("tier_after")
        return Delta(
            points,
            nights=int(data.get("nights", 0)),
            qualifying=int(data.get("qualifying_points", 0)),
            tier_after=after if isinstance(after, str) else None,
        )
    if kind == "stay.voided":
        return Delta(
            points, nights=-int(data.get("nights", 0)), qualifying=-int(data.get("points", 0)), clamps=True
        )
    if kind == "value.topped_up":
        return Delta(points, value=Decimal(str(data.get("amount", "0"))))
    if kind == "value.spent":
        return Delta(points, value=-Decimal(str(data.get("amount", "0"))))
    return Delta(points)


PIN_KINDS = frozenset({"pin.failed", "pin.verified", "member.unlocked"})
#: Events that are bookkeeping, not activity a member reads: the lock-out's counting, and a
#: report staff made about them (which a member must never see in their own history).
NOT_ACTIVITY = frozenset({"pin.failed", "pin.verified", "pin.set", "member.reported"})


def pin_state(doc: Mapping[str, Any]) -> pins.PinState:
    """The lock-out a member record carries (none in a record written before it had one)."""
    until = doc.get("locked_until")
    return pins.PinState(int(doc.get("pin_failures") or 0), parse_iso(until) if until else None)


def set_pin_state(doc: MemberDoc, state: pins.PinState) -> None:
    """Write ``state`` onto a member record, in the wire form."""
    doc["pin_failures"] = state.failures
    doc["locked_until"] = iso(state.locked_until) if state.locked_until else None


def after_pin(state: pins.PinState, kind: str, at: datetime, policy: PinPolicy | None) -> pins.PinState:
    """What a PIN event at ``at`` does to a member's fleet-wide lock-out.

    A wrong PIN counts (locking at the policy's limit); the right PIN after wrong ones
    starts the count again but never lifts a lock (only staff or the timeout do); an
    unlock lifts it. Events reach head office out of time order (two nodes, one offline),
    so a late failure never shortens a lock another one set. Only ``pin.failed`` reads
    ``policy`` (its programme's ``[pin]``); without one it counts nothing."""
    if kind == "member.unlocked":
        return pins.PinState(0, None)
    state = pins.current(state, at)
    if kind == "pin.verified":
        return state if state.locked(at) else pins.PinState(0, None)
    if kind != "pin.failed" or policy is None:
        return state
    after = pins.after_failure(state, policy, at)
    held = state.locked_until
    if held is not None and (after.locked_until is None or after.locked_until < held):
        return pins.PinState(after.failures, held)
    return after


def overlay(
    doc: MemberDoc,
    kind: str,
    data: Mapping[str, Any],
    tier_ranks: Mapping[str, int],
    at: str | None = None,
    pin: PinPolicy | None = None,
) -> None:
    """Fold one of the node's own unfolded events onto head office's record, as stated.

    A PIN event needs its time ``at`` and the ``pin`` policy of its programme: the node
    counts its own tries on top of head office's count, as it does its own points."""
    if kind in PIN_KINDS and at is not None:
        set_pin_state(doc, after_pin(pin_state(doc), kind, parse_iso(at), pin))
    d = stated(kind, data)
    doc["points"] += d.points
    if d.clamps:
        doc["qual_nights"] = max(0, doc["qual_nights"] + d.nights)
        doc["qual_points"] = max(0, doc["qual_points"] + d.qualifying)
    else:
        doc["qual_nights"] += d.nights
        doc["qual_points"] += d.qualifying
    if d.tier_after is not None and tier_ranks.get(d.tier_after, -1) > tier_ranks.get(doc["tier"], -1):
        doc["tier"] = d.tier_after
    if d.value:
        doc["stored_value"] = f"{Decimal(doc['stored_value']) + d.value:.2f}"


def new_member(ev: Event, program: Program | None, day: date) -> MemberDoc:
    """The record a ``member.enrolled`` event starts."""
    data = ev.data
    window = program.window if program else Window.CALENDAR_YEAR
    card = data.get("card_hash")
    return {
        "number": ev.member,
        "name": str(data.get("display_name", ""))[:80],
        "tier": str(data.get("tier") or (program.base_tier.code if program else "MEMBER")),
        "points": 0,
        "stored_value": "0.00",
        "window_start": tiers.window_start(window, day).isoformat(),
        "qual_nights": 0,
        "qual_points": 0,
        "last_activity": day.isoformat(),
        "pin_hash": str(data.get("pin_hash", "")),
        "blocked": False,
        "overdrawn": False,
        "pin_failures": 0,
        "locked_until": None,
        "enrolled_at": ev.at,
        "home_property": str(data.get("home_property", "")),
        "cards": [card] if isinstance(card, str) else [],
        "folded": {},
    }


def apply(m: MemberDoc, ev: Event, program: Program | None, refs: Refs) -> Outcome:
    """Fold ``ev`` into ``m`` in place, as head office books it; raise Quarantine instead.

    On Quarantine ``m`` is unchanged: every check runs before the first write to it."""
    out = Outcome()
    bounds = program.bounds if program else Bounds()
    kind, data = ev.type, ev.data
    day = date.fromisoformat(ev.at[:10])
    new = dict(m)  # changes land on a copy, so a refusal half way leaves ``m`` whole
    try:
        if kind == "card.bound":
            card = data.get("card_hash")
            if not isinstance(card, str) or len(card) > 128:
                raise Quarantine("bad_event_data", "card.bound needs a card hash")
            if card not in new["cards"]:
                new["cards"] = [*new["cards"], card]
        elif kind == "stay.posted":
            _stay(ev, new, program, day, out)
        elif kind == "stay.voided":
            _void_stay(ev, new, refs, out)
        elif kind == "stay.void_requested":
            stay = _void_target(ev, new, refs)
            out.review = (
                "void_requested",
                f"void of stay {ev.data.get('folio', '')} ({stay.points:,} points, "
                f"{stay.nights} nights) asked by {ev.node}, the member has {m['points']:,}: "
                f"{str(ev.data.get('reason', ''))[:200]}",
            )
        elif kind == "member.reported":
            reason = str(data.get("reason", "")).strip()
            if not reason:
                raise Quarantine("bad_event_data", "member.reported needs a reason")
            out.review = ("reported", f"reported by {ev.node}: {reason[:300]}")
        elif kind in ("member.blocked", "member.unblocked"):
            if not refs.office(ev.node):
                raise Quarantine(
                    "not_permitted", f"node {ev.node} may not block or unblock a member: head office decides"
                )
            # Kept apart from an overdraft's block, so settling a debt never lifts staff's hold
            # and lifting the hold never forgives a debt still open.
            new["office_block"] = kind == "member.blocked"
            blocked = new["office_block"] or bool(new.get("overdrawn"))
            if blocked != bool(new.get("blocked")):
                new["blocked"] = blocked
                out.deny = blocked
        elif kind == "member.referred":
            _referred(ev, new, refs)
        elif kind == "points.redeemed":
            _redeemed(ev, new, program, day, out)
        elif kind == "points.adjusted":
            new["points"] += int(data["points"])
            new["last_activity"] = day.isoformat()
        elif kind == "points.expired":
            new["points"] -= int(data["points"])
        elif kind in ("voucher.used", "voucher.voided"):
            _voucher(ev, new, refs, out)
        elif kind == "pin.set":
            # A first PIN (an imported member's, set with head office's one-time code): only
            # head office's streams set one, and only the stored scrypt form travels.
            if not is_office_stream(ev.node):
                raise Quarantine("not_permitted", f"node {ev.node} may not set a PIN: head office does")
            pin_hash = data.get("pin_hash")
            if not isinstance(pin_hash, str) or not pin_hash.startswith("scrypt$") or len(pin_hash) > 200:
                raise Quarantine("bad_event_data", "pin.set needs a scrypt PIN hash")
            new["pin_hash"] = pin_hash
            set_pin_state(new, pins.PinState(0, None))
        elif kind in PIN_KINDS:
            if program is None and kind == "pin.failed":
                raise Quarantine("unknown_program", f"pin.failed names programme v{ev.program}, unknown here")
            policy = program.pin if program is not None else None
            set_pin_state(new, after_pin(pin_state(new), kind, parse_iso(ev.at), policy))
        elif kind in ("value.topped_up", "value.spent"):
            amount = money(data.get("amount"), "amount", bounds.money_per_event)
            balance = Decimal(new["stored_value"])
            if kind == "value.topped_up":
                balance += amount
            else:
                balance -= amount
                hold = data.get("hold")  # an online payment: head office's hold, settled by it
                out.settle_hold = hold if isinstance(hold, str) else None
                if balance < 0:
                    # Spent at two offline nodes: booked (the guest has had the goods) and
                    # written down as a debt, the member's spending paused until settled.
                    out.debts.append(("value_overdraft", f"{balance:.2f}"))
                    out.alarms.append(("value_overdraft", f"member {m['number']} stored value {balance:.2f}"))
            new["stored_value"] = f"{balance:.2f}"
        if new["stored_value"] != m["stored_value"]:
            check_balance(int(new["points"]), Decimal(new["stored_value"]), bounds)
        elif abs(new["points"]) > bounds.balance_points:
            check_balance(int(new["points"]), Decimal(0), bounds)
    except BoundError as exc:
        raise Quarantine("out_of_bounds", f"{kind}: {exc}") from None
    except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
        if isinstance(exc, Quarantine):
            raise
        raise Quarantine("bad_event_data", f"{kind}: {exc!r}"[:300]) from None
    if new["points"] < 0 and new["points"] < m["points"] and kind != "voucher.used":
        # Points spent twice while offline, or a stay voided after its points were spent:
        # booked as it happened, written down as a debt (never a silent negative).
        debt = "void_after_spend" if kind == "stay.voided" else "points_overdraft"
        out.debts.append((debt, str(new["points"])))
        out.alarms.append((debt, f"member {m['number']} at {new['points']:,} points after {kind}"))
    negative = new["points"] < 0 or str(new["stored_value"]).startswith("-")  # kept as "%.2f" text
    if out.debts and negative:
        if not new.get("overdrawn"):
            new["overdrawn"] = True
            new["blocked"] = True
            out.deny = True
    elif new.get("overdrawn") and not negative:
        # Settled (a stay, an adjustment, a top-up): spending is allowed again, unless head
        # office's staff hold the account.
        new["overdrawn"] = False
        if not new.get("office_block"):
            new["blocked"] = False
            out.deny = False
    m.update(new)  # no key is ever removed from a record, so this is the whole of ``new``
    return out


def _stay(ev: Event, m: MemberDoc, program: Program | None, day: date, out: Outcome) -> None:
    data = ev.data
    nights = int(data.get("nights", 0))
    claimed = int(data.get("points", 0))
    if program is None:
        raise Quarantine("unknown_program", f"stay.posted names programme v{ev.program}, unknown here")
    revenue = {
        _OUTLETS.get(k) or Outlet(k): Decimal(v if type(v) is str else str(v))
        for k, v in dict(data.get("revenue", {})).items()
    }
    departure = date.fromisoformat(str(data["departure"]))
    # The tier the node earned at is trusted up to head office's own view of the member
    # (another node's stay may have upgraded it already, never the reverse).
    current = m["tier"]
    tier = data.get("tier", current)
    if tier != current:
        try:
            if program.tier(tier).rank > program.tier(current).rank:
                tier = current
        except (KeyError, TypeError):
            tier = current
    earned = stay_points(program, tier, revenue, departure)
    if earned.points != claimed:
        out.alarms.append(
            ("points_mismatch", f"stay seq {ev.seq}: node {claimed}, head office {earned.points}")
        )
    points, qualifying = earned.points, qualifying_points(program, earned)
    start = tiers.window_start_of(program, day)
    if tiers.ended_before(program, m["window_start"], start):
        m["qual_nights"], m["qual_points"] = 0, 0
    m["window_start"] = start
    m["points"] += points
    m["qual_nights"] += nights
    m["qual_points"] += qualifying
    # Upgrades take effect at once, as the stays arrive; downgrades wait for the job.
    m["tier"] = tiers.after_activity(program, current, m["qual_nights"], m["qual_points"]).code
    m["last_activity"] = day.isoformat()
    out.stay = (points, nights)


def _void_stay(ev: Event, m: MemberDoc, refs: Refs, out: Outcome) -> None:
    stay = _void_target(ev, m, refs)
    m["points"] -= stay.points
    m["qual_nights"] = max(0, m["qual_nights"] - stay.nights)
    m["qual_points"] = max(0, m["qual_points"] - stay.points)
    out.stay = (0, 0)  # nothing left to void twice


def _void_target(ev: Event, m: MemberDoc, refs: Refs) -> StayRef:
    """The stay a void (or a request for one) names, if the sending stream may void it."""
    stay_id = str(ev.data.get("stay", ""))
    stay = refs.stay(stay_id)
    if stay is None or stay.member != m["number"]:
        raise Quarantine("bad_void", f"stay.voided names stay {stay_id[:40]}, not booked for this member")
    if stay.points == 0 and stay.nights == 0:
        # Voided already (two boards of the property, one offline): nothing comes back twice.
        raise Quarantine("bad_void", f"stay {stay_id[:40]} has nothing left to void (voided already?)")
    own = refs.node_property(ev.node)
    if stay.node != ev.node and (own is None or own != stay.property) and not refs.office(ev.node):
        raise Quarantine(
            "not_permitted",
            f"node {ev.node} may void only its own property's stays ({stay.property} posted it)",
        )
    return stay


def _referred(ev: Event, m: MemberDoc, refs: Refs) -> None:
    """A friend's referral code (docs/programme.md, referrals): the referrer must be known,
    not the member, not brought in by the member (no loop), and the member not referred yet
    nor stayed yet. Anything else is quarantined: the enrolment stands, the referral does not."""
    referrer = str(ev.data["referrer"])
    if referrer == m["number"]:
        raise Quarantine("bad_referral", "a member cannot use their own referral code")
    if m.get("referred_by"):
        if m["referred_by"] == referrer:
            return  # the same referral again (the desk and the web): nothing new
        raise Quarantine("bad_referral", f"member {m['number']} was already referred by {m['referred_by']}")
    if m["qual_nights"] > 0:
        raise Quarantine("bad_referral", f"member {m['number']} has stayed already: a referral comes first")
    doc = refs.member_record(referrer)
    if doc is None:
        raise Quarantine(
            "bad_referral", f"referral code {ev.data.get('code')} names {referrer}, unknown here"
        )
    up, steps = doc.get("referred_by"), 0
    while isinstance(up, str) and up:
        if up == m["number"]:
            raise Quarantine("bad_referral", f"referral by {referrer} would close a loop")
        steps += 1
        if steps > MAX_CHAIN:
            raise Quarantine(
                "bad_referral", f"the referral chain above {referrer} is longer than {MAX_CHAIN}"
            )
        above = refs.member_record(up)
        up = above.get("referred_by") if above is not None else None
    m["referred_by"] = referrer
    m["referred_at"] = ev.at


def _redeemed(ev: Event, m: MemberDoc, program: Program | None, day: date, out: Outcome) -> None:
    data = ev.data
    points = int(data["points"])
    reward = program.reward(str(data["reward"])) if program else None
    if reward is not None and reward.points != points:
        out.alarms.append(("points_mismatch", f"redemption seq {ev.seq}: {points} vs {reward.points}"))
        points = reward.points
    m["points"] -= points
    m["last_activity"] = day.isoformat()
    hold = data.get("hold")
    out.settle_hold = hold if isinstance(hold, str) else None
    out.voucher = {
        "code": str(data["voucher"])[:40],
        "token": str(data.get("token", ""))[:1000],
        "reward": str(data["reward"])[:40],
        "member": m["number"],
        "node": ev.node,
        "serial": int(data.get("serial", 0)),
        "points": points,
        "issued_at": ev.at,
        "expires": str(data.get("expires", ""))[:10],
        "status": "issued",
        "changed_at": None,
    }


def _voucher(ev: Event, m: MemberDoc, refs: Refs, out: Outcome) -> None:
    code = str(ev.data["voucher"])
    voucher = refs.voucher(code)
    if voucher is None or voucher.get("member") != m["number"]:
        raise Quarantine("bad_voucher", f"{ev.type} names voucher {code[:40]}, not issued to this member")
    status = voucher.get("status")
    if ev.type == "voucher.voided":
        if status != "issued":
            # Used (perhaps at another node while this one was offline): never points back.
            raise Quarantine("not_permitted", f"voucher {code} is {status}: a void gives no points back")
        m["points"] += int(voucher["points"])
    elif status == "used":
        # Used at two offline nodes: the guest had the reward twice, so the second one is
        # paid for like a redemption, written down and alarmed (docs/programme.md).
        points = int(voucher.get("points", 0))
        m["points"] -= points
        out.debts.append(("voucher_reused", str(points)))
        out.alarms.append(("voucher_reused", f"voucher {code} used twice (again at {ev.node})"))
        return
    elif status != "issued":
        raise Quarantine("not_permitted", f"voucher {code} is {status}: it cannot be used")
    out.voucher = {
        **voucher,
        "status": "used" if ev.type == "voucher.used" else "voided",
        "changed_at": ev.at,
    }


# -- what members read ------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardLine:
    code: str
    name: str
    category: str
    points: int
    available: bool
    reason: str | None
    stock: int | None


@dataclass(frozen=True)
class MemberView:
    """What a member sees of their state, the same at a kiosk, at the desk and in the API.

    ``points`` is the balance; ``held`` the points set aside by online authorisations not yet
    settled (head office knows them, a node has none of its own), and rewards are offered
    against ``available`` = points − held."""

    member: str
    name: str
    tier: str
    tier_name: str
    points: int
    held: int
    available: int
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
    blocked: bool
    benefits: tuple[str, ...]
    rewards: tuple[RewardLine, ...]
    offers: tuple[str, ...]


def view(
    m: Mapping[str, Any],
    program: Program,
    today: date,
    *,
    held: int = 0,
    stock: Mapping[str, int | None] | None = None,
) -> MemberView:
    """The member's view of record ``m`` on ``today`` (the one copy the node and the API use)."""
    nights, qpoints = tiers.qualifying_now(
        program, str(m["window_start"]), int(m["qual_nights"]), int(m["qual_points"]), today
    )
    prog = tiers.progress(program, str(m["tier"]), nights, qpoints)
    last = date.fromisoformat(str(m["last_activity"])) if m.get("last_activity") else None
    points = int(m["points"])
    exp_points, exp_on = expiring_soon(program.expiry, last, points, today)
    available = points - held
    blocked = bool(m.get("blocked"))
    lines = []
    for reward in program.rewards:
        left = (stock or {}).get(reward.code) if reward.stock is not None else None
        check = check_redemption(
            program, reward.code, tier=str(m["tier"]), points=available, stock_left=left, blocked=blocked
        )
        lines.append(
            RewardLine(
                reward.code,
                reward.name,
                reward.category.value,
                reward.points,
                check.ok,
                None if check.ok else check.detail,
                left,
            )
        )
    tier = program.tier(str(m["tier"]))
    return MemberView(
        member=str(m["number"]),
        name=str(m["name"]),
        tier=tier.code,
        tier_name=tier.name,
        points=points,
        held=held,
        available=available,
        stored_value=Decimal(str(m["stored_value"])),
        currency=program.currency,
        qualifying_nights=nights,
        qualifying_points=qpoints,
        next_tier=prog.next_tier.name if prog.next_tier else None,
        next_tier_message=prog.message(),
        progress=prog.fraction,
        nights_needed=prog.nights_needed,
        expiring_points=exp_points,
        expiring_on=exp_on if exp_points else None,
        blocked=blocked,
        benefits=tier.benefits,
        rewards=tuple(lines),
        offers=tuple(o.name for o in program.offers if tier.code in o.tiers),
    )


_LINES: dict[str, dict[str, str]] = {
    "en": {
        "stay.posted": "Stay {folio}: {nights} night(s)",
        "stay.voided": "Stay {folio} voided",
        "points.redeemed": "Redeemed {reward}",
        "points.adjusted": "Adjustment: {reason}",
        "points.expired": "Points expired",
        "member.enrolled": "Welcome to the programme",
        "claim.recorded": "Missing-stay claim for folio {folio}",
        "value.topped_up": "Stored value topped up {amount}",
        "value.spent": "Stored value spent {amount}",
        "voucher.voided": "Voucher {voucher} voided: points returned",
        "voucher.used": "Voucher {voucher} used",
        "card.bound": "Card added",
        "member.unlocked": "PIN unlocked",
        "feedback.recorded": "Thank you for your feedback",
        "stay.void_requested": "Stay {folio}: correction sent to head office",
        "member.blocked": "Account on hold: please see the front desk",
        "member.unblocked": "Account hold lifted",
        "member.referred": "Joined with a friend's referral code",
        "upgrade": " — welcome to {tier}!",
    },
    "zh": {
        "stay.posted": "入住 {folio}：{nights} 晚",
        "stay.voided": "入住 {folio} 已撤销",
        "points.redeemed": "已兑换 {reward}",
        "points.adjusted": "积分调整：{reason}",
        "points.expired": "积分已过期",
        "member.enrolled": "欢迎加入会员计划",
        "claim.recorded": "补登入住申请：{folio}",
        "value.topped_up": "储值充值 {amount}",
        "value.spent": "储值消费 {amount}",
        "voucher.voided": "礼券 {voucher} 已作废：积分已退回",
        "voucher.used": "礼券 {voucher} 已使用",
        "card.bound": "已添加会员卡",
        "member.unlocked": "PIN 已解锁",
        "feedback.recorded": "感谢您的反馈",
        "stay.void_requested": "入住 {folio}：更正已提交总部",
        "member.blocked": "账户已暂停：请联系前台",
        "member.unblocked": "账户暂停已解除",
        "member.referred": "已使用好友推荐码加入",
        "upgrade": "——欢迎升级为{tier}！",
    },
}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def activity_line(
    kind: str, data: Mapping[str, Any], lang: str = "en", program: Program | None = None
) -> str:
    """One line of a member's activity, in the member's language (English when unknown).

    With the programme, rewards and tiers are named as the member knows them."""
    lines = _LINES.get(lang.split("-")[0].lower(), _LINES["en"])
    template = lines.get(kind) or _LINES["en"].get(kind)
    if template is None:
        return kind
    values = _Blank({k: v for k, v in data.items() if isinstance(v, str | int) and not isinstance(v, bool)})
    if program is not None and isinstance(data.get("reward"), str):
        reward = program.reward(str(data["reward"]))
        values["reward"] = reward.name if reward else data["reward"]
    line = template.format_map(values)
    after = data.get("tier_after")
    if kind == "stay.posted" and isinstance(after, str) and after != data.get("tier"):
        known = {t.code: t.name for t in program.tiers} if program is not None else {}
        name = known.get(after, after)
        line += (lines.get("upgrade") or _LINES["en"]["upgrade"]).format(tier=name)
    return line
