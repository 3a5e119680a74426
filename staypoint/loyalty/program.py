"""The programme document: a versioned TOML file, validated on load.

Every error names the file, the field and what is wrong, because the people who
edit a programme are head-office staff, not the engineers who wrote this parser.
:func:`parse_program` reads the document once and parses every section of it here: the
core, the online sections (``[[rates]]``, ``[[vip_offers]]``, ``[[last_minute]]``,
``[channels]``, ``[[partners]]``, by :func:`staypoint.loyalty.rates.parse_online`) and
``[referrals]``; a section or key it does not know is refused, naming it. So what loads
(and what head office publishes) is a programme every part of Staypoint can use.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from staypoint import localtime
from staypoint.loyalty.bounds import MAX_PROGRAM_VERSION, Bounds
from staypoint.loyalty.programdoc import ProgramError, brief, check_keys
from staypoint.loyalty.rates import ONLINE_SECTIONS, OnlineRules, RatePlan, parse_online

__all__ = [
    "SECTIONS",
    "Program",
    "ProgramError",
    "default_program",
    "default_program_text",
    "load_program",
    "parse_program",
]

# Every whole number in a programme is a count, a threshold or a duration; none is sane past
# what every JSON reader holds exactly. Durations get tighter bounds at their fields, so
# that "today + this" is still a date the calendar has.
MAX_WHOLE = 2**53 - 1
MAX_DECIMAL = Decimal(10) ** 15  # rates, multipliers, money: any more is a typo


class Outlet(StrEnum):
    ROOM = "room"
    FNB = "fnb"
    SPA = "spa"
    OTHER = "other"


class Window(StrEnum):
    CALENDAR_YEAR = "calendar_year"
    ROLLING_12_MONTHS = "rolling_12_months"


class QualifyOn(StrEnum):
    """What a stay's points count towards tier status (``[qualification] qualify_on``)."""

    ALL_POINTS = "all_points"  # every point the stay earned but fixed promotion bonuses
    BASE_POINTS = "base_points"  # revenue × earn rate only: no tier uplift, no promotion


class RewardCategory(StrEnum):
    UPGRADE = "upgrade"
    LATE_CHECKOUT = "late_checkout"
    MEAL = "meal"
    SPA = "spa"
    OTHER = "other"


@dataclass(frozen=True)
class Tier:
    code: str
    name: str
    rank: int
    nights: int
    points: int | None
    multiplier: Decimal
    benefits: tuple[str, ...]


@dataclass(frozen=True)
class Promotion:
    code: str
    name: str
    starts: date
    ends: date
    outlet: Outlet
    tiers: frozenset[str]
    multiplier: Decimal | None
    bonus: int | None

    def applies(self, day: date, outlet: Outlet, tier: str) -> bool:
        """True when this promotion covers a charge on ``day`` at ``outlet`` for ``tier``."""
        return self.starts <= day <= self.ends and outlet == self.outlet and tier in self.tiers


@dataclass(frozen=True)
class Reward:
    code: str
    name: str
    category: RewardCategory
    points: int
    min_tier: str | None
    stock: int | None
    voucher_days: int


@dataclass(frozen=True)
class StoredValueRules:
    max_balance: Decimal
    min_top_up: Decimal
    max_top_up: Decimal


@dataclass(frozen=True)
class ExpiryRules:
    months_without_activity: int
    warn_days: int


@dataclass(frozen=True)
class PinPolicy:
    length: int
    max_tries: int
    lockout_minutes: int


@dataclass(frozen=True)
class OfflineLimits:
    profile: str
    per_redemption_points: int
    per_member_points_since_contact: int
    consecutive_redemptions_per_member: int
    node_exposure_points: int
    max_staleness_hours: int
    per_spend_value: Decimal = Decimal("200.00")
    per_member_value_since_contact: Decimal = Decimal("300.00")


@dataclass(frozen=True)
class Offer:
    code: str
    name: str
    tiers: frozenset[str]


@dataclass(frozen=True)
class Property:
    """``[[properties]]``: a hotel of the chain and its time zone (IANA), the one record of it
    that head office's reports (a month is the property's month), enrolment (a new node's
    ``[node] timezone``) and the nodes share."""

    code: str
    name: str
    timezone: str
    # The region a partial replica's home rule groups it in (``[replicas]``); "" for none.
    region: str = ""


class ReplicaMode(StrEnum):
    FULL = "full"
    PARTIAL = "partial"


@dataclass(frozen=True)
class ReplicaRules:
    """``[replicas]`` (optional): which members each node's replica holds.

    ``full`` (the default): every node holds every member. ``partial``: a node holds the
    members whose home property is its own or in its region, members who stayed at its
    property in the last ``stay_days``, members fetched online there in the last
    ``fetched_days``, and members with an arrival in the property system's feed within
    ``arrival_days``; head office fans out only those (``staypoint.loyalty.replicas``).
    """

    mode: ReplicaMode = ReplicaMode.FULL
    stay_days: int = 365
    fetched_days: int = 90
    arrival_days: int = 14


@dataclass(frozen=True)
class ReferralRules:
    """``[referrals]`` (optional): the bonus each side of a referral earns after the first stay."""

    referrer_points: int = 1000
    referred_points: int = 1000


@dataclass(frozen=True)
class Program:
    name: str
    version: int
    currency: str
    point_value: Decimal
    window: Window
    tiers: tuple[Tier, ...]
    earn: Mapping[Outlet, Decimal]
    promotions: tuple[Promotion, ...]
    rewards: tuple[Reward, ...]
    stored_value: StoredValueRules
    expiry: ExpiryRules
    pin: PinPolicy
    offline: OfflineLimits
    offers: tuple[Offer, ...] = ()
    bounds: Bounds = field(default_factory=Bounds)
    # The online channel's sections ([[rates]], [[vip_offers]], [[last_minute]], [channels],
    # [[partners]]) and [referrals], parsed and checked with the rest.
    online: OnlineRules = field(default_factory=lambda: parse_online({}, frozenset(), "(none)"))
    referrals: ReferralRules = field(default_factory=ReferralRules)
    # [qualification] qualify_on: which of a stay's points count towards status.
    qualify_on: QualifyOn = QualifyOn.ALL_POINTS
    properties: tuple[Property, ...] = ()
    replicas: ReplicaRules = field(default_factory=ReplicaRules)
    source_text: str = field(default="", compare=False, repr=False)

    @property
    def rates(self) -> tuple[RatePlan, ...]:
        """The member-only rate plans (``[[rates]]``), checked when the programme was parsed."""
        return self.online.rates

    @cached_property
    def _tiers_by_code(self) -> dict[str, Tier]:
        # Looked up several times per stay at head office: a dict, built once per programme.
        return {t.code: t for t in self.tiers}

    @cached_property
    def earn_terms(self) -> dict[tuple[str, Outlet, date], Any]:
        """earning.stay_points' memo of what one (tier, outlet, day) earns: a programme never
        changes, so an entry never goes stale. Head office prices every stay it books, and
        the same few days, tiers and outlets recur (a memo of days seen: a few thousand)."""
        return {}

    def timezone_of(self, property_code: str | None) -> str | None:
        """The IANA zone of a property of ``[[properties]]``; None for one the programme does not list."""
        for prop in self.properties:
            if prop.code == property_code:
                return prop.timezone
        return None

    def tier(self, code: str) -> Tier:
        """The tier with ``code``; KeyError if the programme has none."""
        return self._tiers_by_code[code]

    def reward(self, code: str) -> Reward | None:
        """The reward with ``code`` (case-insensitive), or None."""
        wanted = code.upper()
        for r in self.rewards:
            if r.code == wanted:
                return r
        return None

    @property
    def base_tier(self) -> Tier:
        return self.tiers[0]


# -- parsing ---------------------------------------------------------------------------


class _Reader:
    """Typed access to a TOML table that reports errors with the full field path."""

    def __init__(self, source: str, data: Mapping[str, Any], path: str) -> None:
        self.source = source
        self.data = data
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> ProgramError:
        return ProgramError(self.source, self._name(key), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def only(self, *keys: str) -> _Reader:
        """Refuse any key but ``keys`` (naming it and the nearest known one)."""
        check_keys(self.source, self.path, self.data, keys)
        return self

    def table(self, key: str) -> _Reader:
        value = self.data.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, "missing table" if value is None else "must be a table")
        return _Reader(self.source, value, self._name(key))

    def tables(self, key: str, *, required: bool = True) -> list[_Reader]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "missing: at least one entry is required")
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, "must be an array of tables ([[...]])")
        return [_Reader(self.source, v, f"{self._name(key)}[{i}]") for i, v in enumerate(value)]

    def str_(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "missing")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def int_(
        self, key: str, default: int | None = None, *, minimum: int = 0, maximum: int = MAX_WHOLE
    ) -> int:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {_brief(value)}")
        if value > maximum:
            raise self.fail(key, f"must be at most {maximum:,}, got {_brief(value)}")
        return value

    def opt_int(self, key: str, *, minimum: int = 0) -> int | None:
        return self.int_(key, minimum=minimum) if key in self.data else None

    def decimal(self, key: str, default: str | None = None, *, positive: bool = False) -> Decimal:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "missing")
        if isinstance(value, float):
            # A TOML float has already lost precision; money and rates must be exact.
            raise self.fail(key, f'write decimals as strings ("{value}"), not floats')
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(key, f"must be a decimal string, got {value!r}")
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(key, f"not a decimal number: {value!r}") from None
        if not d.is_finite() or d < 0 or (positive and d == 0):
            raise self.fail(key, f"must be {'positive' if positive else 'zero or more'}, got {value}")
        if d >= MAX_DECIMAL:
            raise self.fail(key, f"must be below {MAX_DECIMAL:,.0f}, got {_brief(value)}")
        return d

    def date_(self, key: str) -> date:
        value = self.data.get(key)
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(key, f"must be a date YYYY-MM-DD, got {value!r}")

    def str_list(self, key: str, default: Sequence[str] | None = None) -> tuple[str, ...]:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "missing")
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        return tuple(value)

    def enum(self, key: str, kind: type[StrEnum], default: str | None = None) -> Any:
        raw = self.str_(key, default)
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise self.fail(key, f"unknown value {raw!r}; one of: {allowed}") from None


_brief = brief


def _code(r: _Reader, key: str = "code") -> str:
    code = r.str_(key)
    if code != code.upper() or not all(c.isalnum() or c in "-_" for c in code):
        raise r.fail(key, f"codes are upper-case letters, digits, '-' or '_', got {code!r}")
    return code


#: The core sections (the online ones are ``rates.ONLINE_SECTIONS``; then ``[referrals]``).
CORE_SECTIONS = (
    "program",
    "qualification",
    "tiers",
    "earn",
    "promotions",
    "rewards",
    "stored_value",
    "expiry",
    "pin",
    "offline_limits",
    "offers",
    "bounds",
    "properties",
    "replicas",
)
#: Every section a programme document may have, in the one list ``parse_program`` admits
#: (the core, the online ones, then ``[referrals]``): what a tool or test enumerates.
SECTIONS = (*CORE_SECTIONS, *ONLINE_SECTIONS, "referrals")


def parse_program(text: str, source: str = "<programme>") -> Program:
    """Parse and validate a programme document; raise ProgramError naming the bad field."""
    try:
        raw = tomllib.loads(text)
    # Not only TOMLDecodeError: an integer past 4300 digits is a ValueError and arrays
    # nested thousands deep a RecursionError.
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ProgramError(source, "(document)", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ProgramError(source, "(document)", "not valid TOML: nested too deeply") from None
    root = _Reader(source, raw, "").only(*SECTIONS)
    head = root.table("program").only("name", "version", "currency", "point_value")
    qual = root.table("qualification").only("window", "qualify_on") if root.has("qualification") else None
    window = qual.enum("window", Window, "calendar_year") if qual else Window.CALENDAR_YEAR
    qualify_on = qual.enum("qualify_on", QualifyOn, "all_points") if qual else QualifyOn.ALL_POINTS

    tiers: list[Tier] = []
    for rank, t in enumerate(root.tables("tiers")):
        t.only("code", "name", "nights", "points", "multiplier", "benefits")
        code = _code(t)
        if any(x.code == code for x in tiers):
            raise t.fail("code", f"duplicate tier {code!r}")
        nights = t.int_("nights")
        points = t.opt_int("points")
        if tiers and nights <= tiers[-1].nights:
            raise t.fail("nights", "tiers must be in rank order with rising night thresholds")
        tiers.append(
            Tier(
                code=code,
                name=t.str_("name"),
                rank=rank,
                nights=nights,
                points=points,
                multiplier=t.decimal("multiplier", "1", positive=True),
                benefits=t.str_list("benefits", ()),
            )
        )
    if tiers[0].nights != 0:
        raise ProgramError(source, "tiers[0].nights", "the first tier is where members start: 0")
    tier_codes = {t.code for t in tiers}

    def tier_set(r: _Reader, key: str) -> frozenset[str]:
        codes = r.str_list(key, sorted(tier_codes))
        for c in codes:
            if c not in tier_codes:
                raise r.fail(key, f"unknown tier {c!r}")
        return frozenset(codes)

    earn_r = root.table("earn")
    earn = {o: earn_r.decimal(o.value, "0") for o in Outlet}
    for key in earn_r.data:
        if key not in {o.value for o in Outlet}:
            raise earn_r.fail(key, f"unknown outlet; one of: {', '.join(o.value for o in Outlet)}")

    promotions: list[Promotion] = []
    for p in root.tables("promotions", required=False):
        p.only("code", "name", "starts", "ends", "outlet", "tiers", "multiplier", "bonus")
        has_mult, has_bonus = p.has("multiplier"), p.has("bonus")
        if has_mult == has_bonus:
            raise p.fail("multiplier", "give exactly one of 'multiplier' or 'bonus'")
        starts, ends = p.date_("starts"), p.date_("ends")
        if ends < starts:
            raise p.fail("ends", "ends before it starts")
        promotions.append(
            Promotion(
                code=_code(p),
                name=p.str_("name"),
                starts=starts,
                ends=ends,
                outlet=p.enum("outlet", Outlet),
                tiers=tier_set(p, "tiers"),
                multiplier=p.decimal("multiplier", positive=True) if has_mult else None,
                bonus=p.int_("bonus", minimum=1) if has_bonus else None,
            )
        )

    rewards: list[Reward] = []
    for rw in root.tables("rewards"):
        rw.only("code", "name", "category", "points", "min_tier", "stock", "voucher_days")
        code = _code(rw)
        if any(x.code == code for x in rewards):
            raise rw.fail("code", f"duplicate reward {code!r}")
        min_tier = rw.str_("min_tier") if rw.has("min_tier") else None
        if min_tier is not None and min_tier not in tier_codes:
            raise rw.fail("min_tier", f"unknown tier {min_tier!r}")
        rewards.append(
            Reward(
                code=code,
                name=rw.str_("name"),
                category=rw.enum("category", RewardCategory),
                points=rw.int_("points", minimum=1),
                min_tier=min_tier,
                stock=rw.opt_int("stock"),
                voucher_days=rw.int_("voucher_days", minimum=1, maximum=3660),
            )
        )

    sv = root.table("stored_value").only("max_balance", "min_top_up", "max_top_up")
    stored = StoredValueRules(
        max_balance=sv.decimal("max_balance", positive=True),
        min_top_up=sv.decimal("min_top_up", positive=True),
        max_top_up=sv.decimal("max_top_up", positive=True),
    )
    if stored.min_top_up > stored.max_top_up:
        raise sv.fail("min_top_up", "is above max_top_up")

    ex = root.table("expiry").only("months_without_activity", "warn_days")
    pin_r = root.table("pin").only("length", "max_tries", "lockout_minutes")
    pin = PinPolicy(
        length=pin_r.int_("length", minimum=4),
        max_tries=pin_r.int_("max_tries", minimum=1),
        lockout_minutes=pin_r.int_("lockout_minutes", minimum=1, maximum=366 * 24 * 60),
    )
    if pin.length > 12:
        raise pin_r.fail("length", "PIN pads take at most 12 digits")
    ol = root.table("offline_limits").only(*(f.name for f in fields(OfflineLimits)))
    offline = OfflineLimits(
        profile=ol.str_("profile"),
        per_redemption_points=ol.int_("per_redemption_points"),
        per_member_points_since_contact=ol.int_("per_member_points_since_contact"),
        consecutive_redemptions_per_member=ol.int_("consecutive_redemptions_per_member"),
        node_exposure_points=ol.int_("node_exposure_points"),
        max_staleness_hours=ol.int_("max_staleness_hours", maximum=366 * 24),
        per_spend_value=ol.decimal("per_spend_value", str(OfflineLimits.per_spend_value), positive=True),
        per_member_value_since_contact=ol.decimal(
            "per_member_value_since_contact", str(OfflineLimits.per_member_value_since_contact), positive=True
        ),
    )
    offers = tuple(
        Offer(code=_code(o), name=o.str_("name"), tiers=tier_set(o.only("code", "name", "tiers"), "tiers"))
        for o in root.tables("offers", required=False)
    )
    bounds = _bounds(root.table("bounds")) if root.has("bounds") else Bounds()
    if bounds.nights_per_stay < 1 or bounds.points_per_event < max((r.points for r in rewards), default=1):
        raise ProgramError(source, "bounds", "points_per_event must cover the dearest reward")
    referrals = ReferralRules()
    if root.has("referrals"):
        ref = root.table("referrals").only("referrer_points", "referred_points")
        # Each bonus is one points.adjusted event: within what one event may carry.
        referrals = ReferralRules(
            referrer_points=ref.int_("referrer_points", 1000, maximum=bounds.points_per_event),
            referred_points=ref.int_("referred_points", 1000, maximum=bounds.points_per_event),
        )
    properties: list[Property] = []
    for pr in root.tables("properties", required=False):
        pr.only("code", "name", "timezone", "region")
        code = _code(pr)
        if len(code) > 32:
            raise pr.fail("code", f"at most 32 characters, got {len(code)}")
        if any(x.code == code for x in properties):
            raise pr.fail("code", f"duplicate property {code!r}")
        tz = pr.str_("timezone")
        try:
            localtime.zone(tz)
        except localtime.ZoneError as exc:
            raise pr.fail("timezone", str(exc)) from None
        region = pr.str_("region") if pr.has("region") else ""
        if len(region) > 32:
            raise pr.fail("region", f"at most 32 characters, got {len(region)}")
        properties.append(Property(code=code, name=pr.str_("name")[:200], timezone=tz, region=region))
    replicas = ReplicaRules()
    if root.has("replicas"):
        rp = root.table("replicas").only("mode", "stay_days", "fetched_days", "arrival_days")
        replicas = ReplicaRules(
            mode=rp.enum("mode", ReplicaMode, "full"),
            stay_days=rp.int_("stay_days", 365, minimum=1, maximum=3660),
            fetched_days=rp.int_("fetched_days", 90, minimum=1, maximum=3660),
            arrival_days=rp.int_("arrival_days", 14, minimum=1, maximum=366),
        )
    online = parse_online(raw, frozenset(tier_codes), source)
    currency = head.str_("currency")
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise head.fail("currency", f"an ISO 4217 code such as EUR, got {currency!r}")
    return Program(
        name=head.str_("name"),
        version=head.int_("version", minimum=1, maximum=MAX_PROGRAM_VERSION),
        currency=currency,
        point_value=head.decimal("point_value"),
        window=window,
        tiers=tuple(tiers),
        earn=earn,
        promotions=tuple(promotions),
        rewards=tuple(rewards),
        stored_value=stored,
        expiry=ExpiryRules(
            months_without_activity=ex.int_("months_without_activity", minimum=1, maximum=1200),
            warn_days=ex.int_("warn_days", 90, minimum=1, maximum=3660),
        ),
        pin=pin,
        offline=offline,
        offers=offers,
        bounds=bounds,
        online=online,
        referrals=referrals,
        qualify_on=qualify_on,
        properties=tuple(properties),
        replicas=replicas,
        source_text=text,
    )


def _bounds(b: _Reader) -> Bounds:
    """The ``[bounds]`` table: each key optional, each tighter than the hard limits."""
    known = {
        "points_per_event",
        "nights_per_stay",
        "money_per_event",
        "balance_points",
        "balance_money",
        "earliest",
        "clock_skew_hours",
    }
    for key in b.data:
        if key not in known:
            raise b.fail(key, f"unknown key; one of: {', '.join(sorted(known))}")
    d = Bounds()

    def capped(key: str, default: int, cap: int) -> int:
        value = b.int_(key, default, minimum=1)
        if value > cap:
            raise b.fail(key, f"must be at most {cap:,}, got {value:,}")
        return value

    def capped_money(key: str, default: Decimal, cap: Decimal) -> Decimal:
        value = b.decimal(key, str(default), positive=True)
        if value > cap:
            raise b.fail(key, f"must be at most {cap}, got {value}")
        return value

    return Bounds(
        points_per_event=capped("points_per_event", d.points_per_event, 10**9),
        nights_per_stay=capped("nights_per_stay", d.nights_per_stay, 366),
        money_per_event=capped_money("money_per_event", d.money_per_event, Decimal(10**12)),
        balance_points=capped("balance_points", d.balance_points, 10**15),
        balance_money=capped_money("balance_money", d.balance_money, Decimal(10**13)),
        earliest=b.date_("earliest") if b.has("earliest") else d.earliest,
        clock_skew=timedelta(
            hours=capped("clock_skew_hours", int(d.clock_skew.total_seconds() // 3600), 24 * 7)
        ),
    )


def load_program(path: Path) -> Program:
    """Read and validate a programme file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProgramError(str(path), "(file)", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ProgramError(str(path), "(file)", "not UTF-8 text") from None
    return parse_program(text, str(path))


def default_program_text() -> str:
    """The text of the shipped default programme, Staypoint Rewards."""
    pkg = resources.files("staypoint.loyalty") / "programs" / "staypoint-rewards.toml"
    return pkg.read_text(encoding="utf-8")


def default_program() -> Program:
    """The shipped default programme, Staypoint Rewards."""
    return parse_program(default_program_text(), "staypoint-rewards.toml")
