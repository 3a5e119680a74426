"""The online channel's rules: member-only rates, VIP offers, booking channels, partner transfers.

These are optional sections of the programme document, parsed with the rest of it by
``parse_program`` (which calls :func:`parse_online`) into ``Program.online``: a bad rate plan
is refused when the programme is loaded or published, not when a quote is asked. A programme
without them quotes the public rate, shows no VIP offers, earns on every channel and offers
no transfers::

    [rates_policy]                 # optional: how plans combine (default: the best one wins)
    stack = ["member", "vip", "last_minute"]   # the plan groups that stack, in this order
    combine = "multiply"           # "multiply": each group's best plan off what is left;
                                   # "best": the single best plan of all (the default)
    floor_percent = 50             # the member price is never below 50 % of the public rate

    [[rates]]                      # a member-only rate plan
    code = "MEMBER-RATE"
    name = "Member rate"
    group = "member"               # optional (default "member"); with a stack, one of its groups
    discount = "0.10"              # off the public rate, for every tier in ``tiers``
    by_tier = { GOLD = "0.15", PLATINUM = "0.20" }   # a bigger discount for some tiers
    tiers = ["MEMBER", "SILVER", "GOLD", "PLATINUM"] # optional: who may book it (default all)
    properties = ["SHA"]           # optional (default all)
    room_types = ["DLX"]           # optional (default all)
    stay_from = "2026-12-01"       # optional window for the arrival date
    stay_until = "2027-02-28"
    book_from = "2026-11-01"       # optional window for the day the quote is asked
    book_until = "2026-12-31"
    min_nights = 2                 # optional

    [[vip_offers]]
    code = "NYE-GALA"
    name = "New Year's Eve gala package"
    tiers = ["MEMBER", "SILVER", "GOLD", "PLATINUM"]   # who sees it from the public date
    public_from = "2026-12-01"
    ends = "2026-12-31"
    early_tiers = ["PLATINUM"]     # who sees it ``early_days`` before the public date
    early_days = 7

    [[last_minute]]                # rooms held back for VIPs, released close to the date
    code = "SHA-SUITE-LM"
    name = "Last-minute suite"
    property = "SHA"
    room_type = "STE"
    date = "2026-12-24"
    rooms = 2
    days_before = 3                # visible from 3 days before ``date``
    tiers = ["GOLD", "PLATINUM"]
    price = "180.00"

    [channels]
    direct = ["direct", "web", "app", "phone"]       # booked with us
    direct_bonus = 500             # bonus points on a stay booked direct
    no_points = ["ota", "wholesale"]                 # third-party channels earn nothing

    [[partners]]
    code = "SKYMILES"
    name = "SkyMiles"
    ratio = "2"                    # points per partner unit (2 points = 1 mile)
    min_points = 1000
    daily_cap = 20000              # points per member per UTC day
    account_pattern = "[0-9]{9}"   # optional: the member's number at the partner, matched whole
                                   # (default "[A-Z0-9]{4,32}"; docs/partners.md)

Pure: no I/O, time passed in. Money is Decimal; points are int.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from staypoint.loyalty.programdoc import ProgramError, brief, check_keys

if TYPE_CHECKING:
    from staypoint.loyalty.program import Program

CENT = Decimal("0.01")
DEFAULT_ACCOUNT_PATTERN = "[A-Z0-9]{4,32}"


@dataclass(frozen=True)
class RatePlan:
    code: str
    name: str
    discount: Decimal
    by_tier: Mapping[str, Decimal]
    tiers: frozenset[str] | None
    properties: frozenset[str] | None
    room_types: frozenset[str] | None
    stay_from: date | None
    stay_until: date | None
    book_from: date | None
    book_until: date | None
    min_nights: int
    group: str = "member"

    def discount_for(self, tier: str) -> Decimal:
        return self.by_tier.get(tier, self.discount)

    def applies(self, tier: str, prop: str, room_type: str, arrival: date, nights: int, today: date) -> bool:
        """True when a member of ``tier`` may book this plan for this request, asked on ``today``."""
        return (
            (self.tiers is None or tier in self.tiers)
            and (self.properties is None or prop in self.properties)
            and (self.room_types is None or room_type in self.room_types)
            and (self.stay_from is None or arrival >= self.stay_from)
            and (self.stay_until is None or arrival <= self.stay_until)
            and (self.book_from is None or today >= self.book_from)
            and (self.book_until is None or today <= self.book_until)
            and nights >= self.min_nights
        )


@dataclass(frozen=True)
class VipOffer:
    code: str
    name: str
    tiers: frozenset[str]
    public_from: date
    ends: date
    early_tiers: frozenset[str]
    early_days: int
    properties: frozenset[str] | None

    def opens_for(self, tier: str) -> date | None:
        """The first day ``tier`` sees this offer (None: never)."""
        if tier in self.early_tiers:
            return self.public_from - timedelta(days=self.early_days)
        if tier in self.tiers:
            return self.public_from
        return None

    def visible(self, tier: str, today: date) -> bool:
        opens = self.opens_for(tier)
        return opens is not None and opens <= today <= self.ends


@dataclass(frozen=True)
class LastMinute:
    code: str
    name: str
    property: str
    room_type: str
    day: date
    rooms: int
    days_before: int
    tiers: frozenset[str]
    price: Decimal

    def visible(self, tier: str, today: date) -> bool:
        return tier in self.tiers and self.day - timedelta(days=self.days_before) <= today <= self.day


@dataclass(frozen=True)
class Channels:
    direct: frozenset[str]
    direct_bonus: int
    no_points: frozenset[str]

    def earns(self, channel: str) -> bool:
        return channel not in self.no_points

    def bonus(self, channel: str) -> int:
        return self.direct_bonus if channel in self.direct else 0


@dataclass(frozen=True)
class Partner:
    code: str
    name: str
    ratio: Decimal
    min_points: int
    daily_cap: int
    # The member's account number at the partner, matched whole (docs/partners.md).
    account_pattern: str = DEFAULT_ACCOUNT_PATTERN

    def units(self, points: int) -> int:
        """Partner units ``points`` buy (rounded down: a member never gets more than paid for)."""
        return int((Decimal(points) / self.ratio).to_integral_value(ROUND_FLOOR))

    def valid_account(self, account: str) -> bool:
        """True when ``account`` is a number this partner issues (its ``account_pattern``)."""
        return len(account) <= 64 and re.fullmatch(self.account_pattern, account) is not None


class Combine(StrEnum):
    BEST = "best"  # the single best applicable plan
    MULTIPLY = "multiply"  # each stacked group's best plan, applied in turn to what is left


@dataclass(frozen=True)
class RatesPolicy:
    """``[rates_policy]``: which plan groups combine, in what order, and the floor."""

    stack: tuple[str, ...] = ()
    combine: Combine = Combine.BEST
    floor_percent: Decimal = Decimal(0)  # 0..100: the member price never below this share


@dataclass(frozen=True)
class OnlineRules:
    rates: tuple[RatePlan, ...]
    vip_offers: tuple[VipOffer, ...]
    last_minute: tuple[LastMinute, ...]
    channels: Channels
    partners: tuple[Partner, ...]
    policy: RatesPolicy = field(default_factory=RatesPolicy)

    def partner(self, code: str) -> Partner | None:
        return next((p for p in self.partners if p.code == code.upper()), None)


@dataclass(frozen=True)
class Applied:
    """One rate plan a quote applied, and what it took off one night."""

    code: str
    name: str
    group: str
    discount: Decimal  # the plan's share for this tier (0.10 = 10 %)
    amount: Decimal  # per night, in the programme's currency; the lines sum to the saving per night


@dataclass(frozen=True)
class Quote:
    public_rate: Decimal  # per night
    member_rate: Decimal  # per night, never above the public rate
    nights: int
    total: Decimal
    plan: str | None  # the first plan applied (kept for older clients)
    plan_name: str | None
    saving: Decimal
    currency: str = ""
    applied: tuple[Applied, ...] = ()
    floored: bool = False  # the floor cut the last plan's amount


# -- parsing ---------------------------------------------------------------------------


def _fail(source: str, path: str, problem: str) -> ProgramError:
    return ProgramError(source, path, problem)


def _dec(source: str, path: str, value: Any, *, upto_one: bool = False) -> Decimal:
    if isinstance(value, (float, bool)) or not isinstance(value, str | int):
        raise _fail(source, path, f'write decimals as strings ("0.10"), got {value!r}')
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise _fail(source, path, f"not a decimal number: {value!r}") from None
    if not d.is_finite() or d < 0 or (upto_one and d >= 1):
        raise _fail(
            source, path, f"must be {'from 0 to below 1' if upto_one else 'zero or more'}, got {value}"
        )
    return d


def _date(source: str, path: str, value: Any) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _fail(source, path, f"must be a date YYYY-MM-DD, got {value!r}") from None


def _int(source: str, path: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_WHOLE:
        raise _fail(
            source, path, f"must be a whole number from {minimum} to {MAX_WHOLE:,}, got {brief(repr(value))}"
        )
    return value


def _strs(source: str, path: str, value: Any, known: set[str] | None = None) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(source, path, "must be a list of strings")
    if known is not None:
        for v in value:
            if v not in known:
                raise _fail(source, path, f"unknown tier {v!r}")
    return frozenset(value)


def _tables(source: str, raw: Mapping[str, Any], key: str) -> list[tuple[str, Mapping[str, Any]]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _fail(source, key, "must be an array of tables ([[...]])")
    return [(f"{key}[{i}]", v) for i, v in enumerate(value)]


def _str(source: str, path: str, t: Mapping[str, Any], key: str) -> str:
    value = t.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, f"{path}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def _pattern(source: str, path: str, value: Any) -> str:
    """A partner's account-number pattern: a regular expression matched whole, at most 200 long."""
    if value is None:
        return DEFAULT_ACCOUNT_PATTERN
    if not isinstance(value, str) or not value or len(value) > 200:
        raise _fail(source, path, "must be a regular expression of 1..200 characters")
    try:
        re.compile(value)
    except re.error as exc:
        raise _fail(source, path, f"not a regular expression: {exc}") from None
    return value


#: The sections of the programme document this module parses.
ONLINE_SECTIONS = ("rates", "rates_policy", "vip_offers", "last_minute", "channels", "partners")
MAX_WHOLE = 2**53 - 1  # as every whole number of a programme: what every JSON reader holds


def parse_online_rules(program: Program, source: str = "programme") -> OnlineRules:
    """The online sections of ``program``, parsed and checked with the rest of its document."""
    return program.online


def parse_online(raw: Mapping[str, Any], tier_codes: frozenset[str], source: str) -> OnlineRules:
    """The online sections of a parsed programme document (``tier_codes``: its tiers); a bad
    value or an unknown key is a ProgramError naming the section and the key."""
    known = set(tier_codes)
    s = source

    def only(path: str, t: Mapping[str, Any], *keys: str) -> None:
        check_keys(s, path, t, keys)

    def opt_set(path: str, t: Mapping[str, Any], key: str, tiers: bool = False) -> frozenset[str] | None:
        return _strs(s, f"{path}.{key}", t[key], known if tiers else None) if key in t else None

    def opt_date(path: str, t: Mapping[str, Any], key: str) -> date | None:
        return _date(s, f"{path}.{key}", t[key]) if key in t else None

    rates = []
    for path, t in _tables(s, raw, "rates"):
        only(path, t, *(f.name for f in fields(RatePlan)))
        by_tier_raw = t.get("by_tier", {})
        if not isinstance(by_tier_raw, dict):
            raise _fail(s, f"{path}.by_tier", "must be a table of tier = discount")
        by_tier = {}
        for tier, d in by_tier_raw.items():
            if tier not in known:
                raise _fail(s, f"{path}.by_tier.{tier}", "unknown tier")
            by_tier[tier] = _dec(s, f"{path}.by_tier.{tier}", d, upto_one=True)
        plan = RatePlan(
            code=_str(s, path, t, "code"),
            name=_str(s, path, t, "name"),
            discount=_dec(s, f"{path}.discount", t.get("discount", "0"), upto_one=True),
            by_tier=by_tier,
            tiers=opt_set(path, t, "tiers", tiers=True),
            properties=opt_set(path, t, "properties"),
            room_types=opt_set(path, t, "room_types"),
            stay_from=opt_date(path, t, "stay_from"),
            stay_until=opt_date(path, t, "stay_until"),
            book_from=opt_date(path, t, "book_from"),
            book_until=opt_date(path, t, "book_until"),
            min_nights=_int(s, f"{path}.min_nights", t.get("min_nights", 1), 1),
            group=_group(s, f"{path}.group", t.get("group", "member")),
        )
        if plan.stay_from and plan.stay_until and plan.stay_until < plan.stay_from:
            raise _fail(s, f"{path}.stay_until", "ends before it starts")
        rates.append(plan)

    policy = _policy(s, raw.get("rates_policy", {}))
    if policy.stack:
        for i, plan in enumerate(rates):
            if plan.group not in policy.stack:
                stacked = list(policy.stack)
                raise _fail(s, f"rates[{i}].group", f"{plan.group!r} is not in rates_policy.stack {stacked}")

    offers = []
    for path, t in _tables(s, raw, "vip_offers"):
        only(path, t, *(f.name for f in fields(VipOffer)))
        offer = VipOffer(
            code=_str(s, path, t, "code"),
            name=_str(s, path, t, "name"),
            tiers=_strs(s, f"{path}.tiers", t.get("tiers", sorted(known)), known),
            public_from=_date(s, f"{path}.public_from", t.get("public_from")),
            ends=_date(s, f"{path}.ends", t.get("ends")),
            early_tiers=_strs(s, f"{path}.early_tiers", t.get("early_tiers", []), known),
            early_days=_int(s, f"{path}.early_days", t.get("early_days", 0)),
            properties=opt_set(path, t, "properties"),
        )
        if offer.ends < offer.public_from:
            raise _fail(s, f"{path}.ends", "ends before the public date")
        offers.append(offer)

    last = []
    for path, t in _tables(s, raw, "last_minute"):
        only(path, t, "date", *(f.name for f in fields(LastMinute) if f.name != "day"))
        last.append(
            LastMinute(
                code=_str(s, path, t, "code"),
                name=_str(s, path, t, "name"),
                property=_str(s, path, t, "property"),
                room_type=_str(s, path, t, "room_type"),
                day=_date(s, f"{path}.date", t.get("date")),
                rooms=_int(s, f"{path}.rooms", t.get("rooms"), 1),
                days_before=_int(s, f"{path}.days_before", t.get("days_before", 3)),
                tiers=_strs(s, f"{path}.tiers", t.get("tiers", []), known),
                price=_dec(s, f"{path}.price", t.get("price", "0")),
            )
        )

    ch = raw.get("channels", {})
    if not isinstance(ch, dict):
        raise _fail(s, "channels", "must be a table")
    only("channels", ch, *(f.name for f in fields(Channels)))
    channels = Channels(
        direct=_strs(s, "channels.direct", ch.get("direct", ["direct", "web", "app", "phone"])),
        direct_bonus=_int(s, "channels.direct_bonus", ch.get("direct_bonus", 0)),
        no_points=_strs(s, "channels.no_points", ch.get("no_points", [])),
    )
    partners = []
    for path, t in _tables(s, raw, "partners"):
        only(path, t, *(f.name for f in fields(Partner)))
        ratio = _dec(s, f"{path}.ratio", t.get("ratio"))
        if ratio == 0:
            raise _fail(s, f"{path}.ratio", "must be above 0")
        partners.append(
            Partner(
                code=_str(s, path, t, "code").upper(),
                name=_str(s, path, t, "name"),
                ratio=ratio,
                min_points=_int(s, f"{path}.min_points", t.get("min_points", 1), 1),
                daily_cap=_int(s, f"{path}.daily_cap", t.get("daily_cap"), 1),
                account_pattern=_pattern(s, f"{path}.account_pattern", t.get("account_pattern")),
            )
        )
    return OnlineRules(tuple(rates), tuple(offers), tuple(last), channels, tuple(partners), policy)


_GROUP = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _group(source: str, path: str, value: Any) -> str:
    if not isinstance(value, str) or not _GROUP.fullmatch(value):
        got = brief(repr(value))
        raise _fail(source, path, f"a group name of 1-32 lower-case letters, digits or _, got {got}")
    return value


def _policy(source: str, t: Any) -> RatesPolicy:
    """``[rates_policy]``: ``stack`` (groups, in order, each once), ``combine``, ``floor_percent``."""
    if not isinstance(t, dict):
        raise _fail(source, "rates_policy", "must be a table")
    check_keys(source, "rates_policy", t, ("stack", "combine", "floor_percent"))
    stack_raw = t.get("stack", [])
    if not isinstance(stack_raw, list):
        raise _fail(source, "rates_policy.stack", "must be a list of plan groups")
    stack = tuple(_group(source, f"rates_policy.stack[{i}]", g) for i, g in enumerate(stack_raw))
    if len(set(stack)) != len(stack):
        raise _fail(source, "rates_policy.stack", "names a group twice")
    raw_combine = t.get("combine", "best")
    try:
        combine = Combine(raw_combine)
    except ValueError:
        raise _fail(
            source, "rates_policy.combine", f"one of: best, multiply, got {brief(repr(raw_combine))}"
        ) from None
    if combine is Combine.MULTIPLY and not stack:
        raise _fail(source, "rates_policy.stack", 'combine = "multiply" needs the groups to stack')
    floor_raw = t.get("floor_percent", 0)
    if isinstance(floor_raw, bool) or not isinstance(floor_raw, int | str):
        raise _fail(source, "rates_policy.floor_percent", f"a percentage from 0 to 100, got {floor_raw!r}")
    floor = _dec(source, "rates_policy.floor_percent", floor_raw)
    if floor > 100:
        raise _fail(source, "rates_policy.floor_percent", f"a percentage from 0 to 100, got {floor_raw}")
    return RatesPolicy(stack=stack, combine=combine, floor_percent=floor)


# -- quoting -----------------------------------------------------------------------------


def quote(
    rules: OnlineRules,
    *,
    tier: str,
    prop: str,
    room_type: str,
    arrival: date,
    nights: int,
    public_rate: Decimal,
    today: date,
    currency: str = "",
) -> Quote:
    """The member's nightly price under ``rules.policy``, never above the public rate and
    never below its floor; every plan applied is named with what it took off a night.

    ``best``: the single applicable plan with the lowest price. ``multiply``: for each group
    of ``stack`` in order, that group's best applicable plan takes its discount off the price
    left by the groups before it (each step rounded to the cent, half even, so the amounts sum
    exactly to the saving). The floor (``floor_percent`` of the public rate, rounded up to the
    cent) cuts the plan that would cross it; plans after it take nothing and are not named.
    """
    if nights < 1:
        raise ValueError("a stay is at least one night")
    if public_rate < 0:
        raise ValueError("the public rate cannot be negative")
    policy = rules.policy
    usable = [p for p in rules.rates if p.applies(tier, prop, room_type, arrival, nights, today)]

    def price_after(price: Decimal, plan: RatePlan) -> Decimal:
        return (price * (1 - plan.discount_for(tier))).quantize(CENT, ROUND_HALF_EVEN)

    def best_of(plans: list[RatePlan], price: Decimal) -> RatePlan | None:
        best: RatePlan | None = None
        best_price = price
        for plan in plans:  # the first of equal prices wins: the programme's order
            p = price_after(price, plan)
            if p < best_price:
                best, best_price = plan, p
        return best

    if policy.combine is Combine.MULTIPLY:
        chosen = [best_of([p for p in usable if p.group == g], public_rate) for g in policy.stack]
        order = [p for p in chosen if p is not None]
    else:
        one = best_of(usable, public_rate)
        order = [one] if one is not None else []
    floor = (public_rate * policy.floor_percent / 100).quantize(CENT, ROUND_CEILING)
    floor = min(floor, public_rate)
    price = public_rate
    applied: list[Applied] = []
    floored = False
    for plan in order:
        after = price_after(price, plan)
        if after < floor:
            after, floored = floor, True
        if after < price:
            applied.append(Applied(plan.code, plan.name, plan.group, plan.discount_for(tier), price - after))
        price = after
        if floored:
            break
    member_rate = min(price, public_rate)  # the promise, stated once more
    total = member_rate * nights
    return Quote(
        public_rate=public_rate,
        member_rate=member_rate,
        nights=nights,
        total=total,
        plan=applied[0].code if applied else None,
        plan_name=applied[0].name if applied else None,
        saving=public_rate * nights - total,
        currency=currency,
        applied=tuple(applied),
        floored=floored,
    )
