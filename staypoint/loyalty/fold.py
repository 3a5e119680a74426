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

``apply`` is pure: it reads stays, vouchers and holds through ``Refs`` and returns what
the caller must write (``Outcome``); it raises ``Quarantine`` when an event breaks a
bound, a rule or the sending node's rights, and then the caller writes nothing but the
quarantine record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from staypoint.loyalty import tiers
from staypoint.loyalty.bounds import BoundError, Bounds, check_balance, money
from staypoint.loyalty.earning import stay_points
from staypoint.loyalty.events import Event, points_delta
from staypoint.loyalty.program import Outlet, Program, Window

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


@dataclass
class Outcome:
    """What one folded event asks its caller to write, besides the member record."""

    stay: tuple[int, int] | None = None  # (points, nights) booked for this stay event
    voucher: dict[str, Any] | None = None  # a voucher record to write and send downstream
    settle_hold: str | None = None
    alarms: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail)
    debts: list[tuple[str, str]] = field(default_factory=list)  # (kind, amount) written down
    deny: bool | None = None  # block (True) / lift (False) further spending fleet-wide


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


def overlay(doc: MemberDoc, kind: str, data: Mapping[str, Any], tier_ranks: Mapping[str, int]) -> None:
    """Fold one of the node's own unfolded events onto head office's record, as stated."""
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
        elif kind == "points.redeemed":
            _redeemed(ev, new, program, day, out)
        elif kind == "points.adjusted":
            new["points"] += int(data["points"])
            new["last_activity"] = day.isoformat()
        elif kind == "points.expired":
            new["points"] -= int(data["points"])
        elif kind in ("voucher.used", "voucher.voided"):
            _voucher(ev, new, refs, out)
        elif kind in ("value.topped_up", "value.spent"):
            amount = money(data.get("amount"), "amount", bounds.money_per_event)
            balance = Decimal(new["stored_value"])
            if kind == "value.topped_up":
                balance += amount
            else:
                balance -= amount
                if balance < 0:
                    # Spent at two offline nodes: booked (the guest has had the goods) and
                    # written down as a debt, the member's spending paused until settled.
                    out.debts.append(("value_overdraft", f"{balance:.2f}"))
                    out.alarms.append(("value_overdraft", f"member {m['number']} stored value {balance:.2f}"))
            new["stored_value"] = f"{balance:.2f}"
        check_balance(int(new["points"]), Decimal(new["stored_value"]), bounds)
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
    negative = new["points"] < 0 or Decimal(new["stored_value"]) < 0
    if out.debts and negative:
        if not new.get("overdrawn"):
            new["overdrawn"] = True
            new["blocked"] = True
            out.deny = True
    elif new.get("overdrawn") and not negative:
        # Settled (a stay, an adjustment, a top-up): spending is allowed again.
        new["overdrawn"] = False
        new["blocked"] = False
        out.deny = False
    m.clear()
    m.update(new)
    return out


def _stay(ev: Event, m: MemberDoc, program: Program | None, day: date, out: Outcome) -> None:
    data = ev.data
    nights = int(data.get("nights", 0))
    claimed = int(data.get("points", 0))
    points, qualifying = claimed, int(data.get("qualifying_points", claimed))
    if program is None:
        raise Quarantine("unknown_program", f"stay.posted names programme v{ev.program}, unknown here")
    revenue = {
        _OUTLETS.get(k) or Outlet(k): Decimal(str(v)) for k, v in dict(data.get("revenue", {})).items()
    }
    departure = date.fromisoformat(str(data["departure"]))
    # The tier the node earned at is trusted up to head office's own view of the member
    # (another node's stay may have upgraded it already, never the reverse).
    tier = str(data.get("tier", m["tier"]))
    try:
        if program.tier(tier).rank > program.tier(m["tier"]).rank:
            tier = m["tier"]
    except KeyError:
        tier = m["tier"]
    earned = stay_points(program, tier, revenue, departure)
    if earned.points != claimed:
        out.alarms.append(
            ("points_mismatch", f"stay seq {ev.seq}: node {claimed}, head office {earned.points}")
        )
    points, qualifying = earned.points, earned.points - earned.bonus
    if tiers.window_ended(program, m["window_start"], day):
        m["qual_nights"], m["qual_points"] = 0, 0
    m["window_start"] = tiers.window_start_of(program, day)
    m["points"] += points
    m["qual_nights"] += nights
    m["qual_points"] += qualifying
    # Upgrades take effect at once, as the stays arrive; downgrades wait for the job.
    m["tier"] = tiers.after_activity(program, m["tier"], m["qual_nights"], m["qual_points"]).code
    m["last_activity"] = day.isoformat()
    out.stay = (points, nights)


def _void_stay(ev: Event, m: MemberDoc, refs: Refs, out: Outcome) -> None:
    stay_id = str(ev.data.get("stay", ""))
    stay = refs.stay(stay_id)
    if stay is None or stay.member != m["number"]:
        raise Quarantine("bad_void", f"stay.voided names stay {stay_id[:40]}, not booked for this member")
    own = refs.node_property(ev.node)
    if stay.node != ev.node and (own is None or own != stay.property):
        raise Quarantine(
            "not_permitted",
            f"node {ev.node} may void only its own property's stays ({stay.property} posted it)",
        )
    m["points"] -= stay.points
    m["qual_nights"] = max(0, m["qual_nights"] - stay.nights)
    m["qual_points"] = max(0, m["qual_points"] - stay.points)
    out.stay = (0, 0)  # nothing left to void twice


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

_LINES: dict[str, dict[str, str]] = {
    "en": {
        "stay.posted": "Stay {folio}: {nights} nights",
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
    },
}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def activity_line(kind: str, data: Mapping[str, Any], lang: str = "en") -> str:
    """One line of a member's activity, in the member's language (English when unknown)."""
    lines = _LINES.get(lang.split("-")[0].lower(), _LINES["en"])
    template = lines.get(kind) or _LINES["en"].get(kind)
    if template is None:
        return kind
    values = _Blank({k: v for k, v in data.items() if isinstance(v, str | int) and not isinstance(v, bool)})
    return template.format_map(values)
