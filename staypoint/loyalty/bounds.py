"""Bounds: the largest and smallest value every number and date of an event may take.

They are part of the event contract (docs/programme.md, Bounds): the node refuses an operation
whose event would break one (a one-line refusal, nothing written) and head office
quarantines an event that breaks one (kept with its reason, the stream goes on). Both run
``check_event`` below, so the two ends can never disagree about what is in bounds.

The defaults are far above any real hotel's figures and far below what a store or a
64-bit integer can hold: the largest balance times the longest history still fits.
A programme may tighten them in its ``[bounds]`` table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

from staypoint.loyalty import member_numbers, referral_codes
from staypoint.loyalty.events import Event, parse_iso

# Not tunable: these keep every column of every store (SQLite INTEGER, PostgreSQL BIGINT
# and INTEGER) and every JSON reader (2**53) safe whatever a programme says.
MAX_SEQ = 2**53 - 1
MAX_EPOCH = 2**53 - 1
MAX_PROGRAM_VERSION = 2**31 - 1
MAX_TEXT = 500  # any free text an event carries (reasons, notes, folios are shorter)
_MONEY_TEXT = re.compile(r"\d{1,15}(\.\d{1,2})?")


@dataclass(frozen=True)
class Bounds:
    """The programme's stated bounds (``[bounds]``), with defaults for a hotel chain."""

    points_per_event: int = 1_000_000
    nights_per_stay: int = 365
    money_per_event: Decimal = Decimal("1000000.00")
    balance_points: int = 1_000_000_000_000  # |balance| never passes this (2**63 is 9.2e18)
    balance_money: Decimal = Decimal("100000000.00")
    earliest: date = date(2000, 1, 1)  # the programme's life: nothing happened before it
    clock_skew: timedelta = timedelta(hours=24)  # a board's clock may run this far ahead

    @cached_property
    def money_digits(self) -> int:
        """Digits of the money bound's whole part: an amount with fewer is within it."""
        return len(str(int(self.money_per_event)))


class BoundError(ValueError):
    """A value outside its bound: one line naming the field, the value and the bound."""


def _int(data: Mapping[str, Any], key: str, low: int, high: int, *, required: bool = True) -> int | None:
    if key not in data:
        if required:
            raise BoundError(f"{key} is missing")
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BoundError(f"{key} must be a whole number")
    if not low <= value <= high:
        raise BoundError(f"{key} {value} is outside {low:,}..{high:,}")
    return value


def money(raw: Any, key: str, bound: Decimal, *, allow_zero: bool = False) -> Decimal:
    """An amount as the contract spells it (a decimal string, two places at most), bounded."""
    if not isinstance(raw, str | int) or isinstance(raw, bool) or not _MONEY_TEXT.fullmatch(str(raw)):
        raise BoundError(f'{key} must be an amount such as "120.50"')
    try:
        value = Decimal(str(raw))
    except InvalidOperation:  # pragma: no cover - the pattern above admits only numbers
        raise BoundError(f"{key} must be an amount") from None
    if value > bound:
        raise BoundError(f"{key} {value} is above the bound of {bound}")
    if value == 0 and not allow_zero:
        raise BoundError(f"{key} must be positive")
    return value


def _fromiso(raw: Any) -> date:
    if type(raw) is not str or len(raw) != 10:
        raise ValueError(raw)
    return date.fromisoformat(raw)


def _day(data: Mapping[str, Any], key: str, low: date, high: date) -> date:
    raw = data.get(key)
    try:
        day = date.fromisoformat(raw) if type(raw) is str and len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise BoundError(f"{key} must be a date YYYY-MM-DD")
    if not low <= day <= high:
        raise BoundError(f"{key} {day} is outside {low}..{high}")
    return day


_TEXT_KEYS = frozenset({"reason", "note", "folio", "staff", "reward", "voucher", "property"})
# The canonical spelling every node writes (events.iso): such times compare as text, so the
# common case needs no parse (head office checks every event it receives).
_CANONICAL_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@dataclass(frozen=True)
class _Window:
    earliest: str
    latest: datetime
    latest_text: str


_last_window: tuple[Bounds, datetime, _Window] | None = None


def _window(bounds: Bounds, now: datetime) -> _Window:
    """The time window of ``now``: computed once per ingest group, not once per event."""
    global _last_window
    last = _last_window  # one read: another thread may replace it, never half of it
    if last is not None and last[0] is bounds and last[1] == now:
        return last[2]
    latest = (now + bounds.clock_skew).astimezone(UTC)
    text = latest.strftime("%Y-%m-%dT%H:%M:%S.") + f"{latest.microsecond // 1000:03d}Z"
    window = _Window(bounds.earliest.isoformat(), latest, text)
    _last_window = (bounds, now, window)
    return window


def check_event(ev: Event, bounds: Bounds, now: datetime) -> None:
    """Raise BoundError when any number or date of ``ev`` is outside its bound.

    ``now`` is the checker's clock (the node's when it writes, head office's when it
    receives): an event may not come from further in the future than the clock skew."""
    if not 1 <= ev.seq <= MAX_SEQ or not 1 <= ev.epoch <= MAX_EPOCH:
        raise BoundError(f"seq and epoch are 1..{MAX_SEQ:,}")
    if not 1 <= ev.program <= MAX_PROGRAM_VERSION:
        raise BoundError(f"programme version {ev.program} is outside 1..{MAX_PROGRAM_VERSION:,}")
    window = _window(bounds, now)
    latest = window.latest
    if _CANONICAL_AT.fullmatch(ev.at):
        outside = ev.at[:10] < window.earliest or ev.at > window.latest_text
    else:
        at = parse_iso(ev.at)
        outside = at.date() < bounds.earliest or at > latest
    if outside:
        raise BoundError(f"event time {ev.at} is outside {bounds.earliest}..{latest:%Y-%m-%d %H:%M}Z")
    data, kind, pts = ev.data, ev.type, bounds.points_per_event
    for key in _TEXT_KEYS.intersection(data):
        value = data[key]
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise BoundError(f"{key} must be text of at most {MAX_TEXT} characters")
    if kind == "stay.posted":
        nights, points = data.get("nights"), data.get("points")
        if type(nights) is not int or not 0 <= nights <= bounds.nights_per_stay:
            nights = _int(data, "nights", 0, bounds.nights_per_stay)  # names what is wrong
        if type(points) is not int or not 0 <= points <= pts:
            points = _int(data, "points", 0, pts)
        qualifying = data.get("qualifying_points", 0)
        if type(qualifying) is not int or not 0 <= qualifying <= (points or 0):
            _int(data, "qualifying_points", 0, points or 0)
        try:  # the common case inline (head office checks every stay it receives)
            departure = _fromiso(data["departure"])
            arrival = _fromiso(data["arrival"])
            dates_ok = bounds.earliest <= arrival <= departure <= latest.date()
        except (KeyError, TypeError, ValueError):
            dates_ok = False
        if not dates_ok:  # the full checks name what is wrong
            departure = _day(data, "departure", bounds.earliest, latest.date())
            arrival = _day(data, "arrival", bounds.earliest, departure)
        if nights is not None and (departure - arrival).days != nights:
            raise BoundError(f"a stay of {nights} nights cannot run from {arrival} to {departure}")
        revenue = data.get("revenue", {})
        if (type(revenue) is not dict and not isinstance(revenue, Mapping)) or len(revenue) > 8:
            raise BoundError("revenue must be an object of outlet amounts")
        for outlet, amount in revenue.items():
            if (
                type(amount) is not str
                or not _MONEY_TEXT.fullmatch(amount)
                or len(amount.partition(".")[0]) >= bounds.money_digits
            ):
                # Not an amount shorter than the bound on its face: the full check decides.
                money(amount, f"revenue.{outlet}", bounds.money_per_event, allow_zero=True)
    elif kind in ("stay.voided", "stay.void_requested"):
        _int(data, "points", 0, pts)
        _int(data, "nights", 0, bounds.nights_per_stay, required=False)
    elif kind in ("points.redeemed",):
        _int(data, "points", 1, pts)
    elif kind == "points.adjusted":
        value = _int(data, "points", -pts, pts)
        if value == 0:
            raise BoundError("an adjustment is not zero")
    elif kind in ("points.expired", "voucher.voided"):
        _int(data, "points", 0, pts, required=kind == "points.expired")
    elif kind in ("value.topped_up", "value.spent"):
        money(data.get("amount"), "amount", bounds.money_per_event)
    elif kind == "feedback.recorded":
        _int(data, "stars", 1, 5)
    elif kind == "claim.recorded":
        departure = _day(data, "departure", bounds.earliest, latest.date())
        _day(data, "arrival", bounds.earliest, departure)
    elif kind == "member.referred":
        _referral(ev)
    elif kind in ("pin.failed", "pin.verified") and data:
        # Nothing a PIN pad produced may ride along (a typed PIN in a log is a leaked PIN).
        raise BoundError(f"{kind} carries no data")


def _referral(ev: Event) -> None:
    """A referral names the referrer's member number and the code typed, which must agree."""
    referrer, code = ev.data.get("referrer"), ev.data.get("code")
    if not isinstance(referrer, str) or not isinstance(code, str) or len(code) > 20:
        raise BoundError("a referral names the referrer and the code")
    try:
        if referral_codes.member_for_code(code) != member_numbers.normalise(referrer):
            raise BoundError(f"referral code {code} is not member {referrer[:20]}'s")
    except (referral_codes.ReferralCodeError, member_numbers.MemberNumberError) as exc:
        raise BoundError(str(exc)) from None
    if referrer == ev.member:
        raise BoundError("a member cannot use their own referral code")
    if set(ev.data) - {"referrer", "code", "staff"}:
        raise BoundError("a referral carries the referrer, the code and the staff only")


def check_balance(points: int, stored_value: Decimal, bounds: Bounds) -> None:
    """Raise BoundError when a member's balances after an event would leave their bounds."""
    if abs(points) > bounds.balance_points:
        raise BoundError(f"a balance of {points:,} points is past the bound of {bounds.balance_points:,}")
    if abs(stored_value) > bounds.balance_money:
        raise BoundError(f"a stored value of {stored_value} is past the bound of {bounds.balance_money}")
