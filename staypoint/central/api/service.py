"""What the online channel does, without HTTP: the FastAPI layer (``app.py``) and the console
call these methods; every change they make is an event through ``EventSources``.

Errors are head office's domain errors (``central/errors.py``), each with one clear line a
booking engine can show or log and a stable code; only the API's adapter turns them into HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from staypoint.central.api.sources import Draft, EventSources
from staypoint.central.api.state import SideStore
from staypoint.central.errors import (
    Conflict,
    Forbidden,
    Invalid,
    Locked,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileError, Profiles, check_contact
from staypoint.loyalty import fold, member_numbers, pins, referral_codes, vouchers
from staypoint.loyalty.earning import qualifying_points, stay_points
from staypoint.loyalty.events import Event, iso, points_delta, uuid7
from staypoint.loyalty.money import MoneyError, parse_amount
from staypoint.loyalty.program import Outlet, Program
from staypoint.loyalty.rates import OnlineRules, parse_online_rules, quote
from staypoint.loyalty.redemption import check_redemption

HEAD_OFFICE_BLOCKS = range(0, 100)  # member-number blocks 0000-0099 are head office's own
SCOPES = ("member", "enrol", "stays", "rates", "claims", "reports")
TOKEN_TTL = timedelta(minutes=15)
STAYS_NAMESPACE = uuid.UUID("6f1d3c52-6b1e-4d0a-9a53-5d2f0c7e1a01")


def display_name(name: str) -> str:
    """What a node shows of a member's name: the first name and the last name's initial."""
    parts = name.split()
    return parts[0][:40] if len(parts) == 1 else f"{parts[0][:40]} {parts[-1][0].upper()}."


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[str]
    properties: frozenset[str]  # "*" = every property

    def require(self, scope: str, prop: str | None = None) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key does not have the {scope!r} scope", "scope")
        if prop is not None and "*" not in self.properties and prop not in self.properties:
            raise Forbidden(f"this API key is not for property {prop!r}", "property")


@dataclass
class Services:
    """The online channel over one ledger, one profile store and head office's side tables."""

    ledger: Ledger
    profiles: Profiles
    side: SideStore
    token_key: bytes
    voucher_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    suffix: str = ""
    token_ttl: timedelta = TOKEN_TTL

    def __post_init__(self) -> None:
        self.sources = EventSources(self.ledger, suffix=self.suffix)
        self._stock_cache: tuple[float, dict[str, int]] = (0.0, {})
        self._lock = threading.Lock()

    # -- startup ----------------------------------------------------------------------------
    def register_voucher_key(self) -> None:
        """Tell the fleet the web stream's voucher key, so any kiosk verifies a web voucher."""
        pub = self.voucher_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.ledger.register_node(self.sources.stream("web"), pub.hex())

    def program(self) -> Program:
        program = self.ledger.current_program()
        if program is None:
            raise Unavailable("no programme has been published yet", "no_program")
        return program

    def online_rules(self) -> OnlineRules:
        return parse_online_rules(self.program())

    # -- API keys ---------------------------------------------------------------------------
    def create_key(self, name: str, scopes: list[str], properties: list[str], now: datetime) -> str:
        """A new key; the secret is returned once and stored only as a hash."""
        from staypoint.central.api import keys  # the one copy of the key rules (CLI, console)

        try:
            return keys.create_key(self.side, name, scopes, properties, now)
        except keys.KeyRefused as exc:
            raise Invalid(str(exc)) from None

    def revoke_key(self, key_id: str, now: datetime) -> bool:
        from staypoint.central.api import keys

        try:
            keys.revoke_key(self.side, key_id, now)
        except keys.KeyRefused:
            return False
        return True

    def check_key(self, raw: str | None) -> ApiKey:
        if not raw:
            raise Unauthenticated("an API key is required (header X-API-Key)", "no_key")
        parts = raw.split("_", 2)
        if len(parts) != 3 or parts[0] != "sp":
            raise Unauthenticated("this API key is not valid", "bad_key")
        row = self.side.read_row(
            "SELECT secret_hash, name, scopes, properties, revoked FROM api_keys WHERE id = ?", (parts[1],)
        )
        if row is None or not hmac.compare_digest(str(row[0]), _sha256(parts[2])):
            raise Unauthenticated("this API key is not valid", "bad_key")
        if row[4] is not None:
            raise Unauthenticated("this API key has been revoked", "revoked")
        return ApiKey(parts[1], str(row[1]), frozenset(json.loads(row[2])), frozenset(json.loads(row[3])))

    # -- member sign-in ----------------------------------------------------------------------
    def login(self, login: str, pin: str, now: datetime) -> tuple[str, datetime]:
        """Member number or e-mail + PIN → a signed token; wrong PINs lock fleet-wide.

        The lock-out is the member record's (loyalty/fold.py): a wrong PIN here is a
        ``pin.failed`` event on the web stream, so five wrong tries here lock the kiosks too,
        and a lock set at a kiosk refuses the right PIN here."""
        number = self._resolve_login(login)
        m = self.ledger.member(number) if number else None
        if number is None or m is None:
            raise Unauthenticated("member number, e-mail or PIN is not right", "bad_login")
        if not m.get("pin_hash"):  # imported without one: first use sets it (central/first_pin.py)
            raise Forbidden(
                "this member has no PIN yet: set one with the first-use code from head office", "no_pin"
            )
        policy = self.program().pin
        state = pins.current(fold.pin_state(m), now)
        if state.locked_until is not None:
            raise Locked(f"too many wrong PINs: try again after {iso(state.locked_until)}", "locked")
        if pins.verify_pin(pin, str(m.get("pin_hash", ""))):
            if state.failures:
                self.sources.emit("web", [Draft("pin.verified", number, {})], now)
            exp = now + self.token_ttl
            return self._sign({"sub": number, "exp": int(exp.timestamp()), "iat": int(now.timestamp())}), exp
        self.sources.emit("web", [Draft("pin.failed", number, {})], now)
        # Head office's count after the fold, which may hold tries made at a kiosk meanwhile.
        state = pins.current(fold.pin_state(self._member(number)), now)
        if state.locked_until is not None:
            raise Locked(f"too many wrong PINs: try again after {iso(state.locked_until)}", "locked")
        left = pins.tries_left(state, policy)
        raise Unauthenticated(f"member number, e-mail or PIN is not right ({left} tries left)", "bad_login")

    def _resolve_login(self, login: str) -> str | None:
        login = login.strip()
        if "@" in login:
            profile = self.profiles.by_email(login)
            return profile.member if profile else None
        try:
            return member_numbers.normalise(login)
        except member_numbers.MemberNumberError as exc:
            raise Invalid(str(exc), "bad_number") from None

    def _sign(self, claims: dict[str, Any]) -> str:
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        sig = _b64(hmac.new(self.token_key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{sig}"

    def member_from_token(self, token: str | None, now: datetime) -> str:
        if not token:
            raise Unauthenticated("sign in first (Authorization: Bearer <token>)", "no_token")
        body, _, sig = token.partition(".")
        want = _b64(hmac.new(self.token_key, body.encode(), hashlib.sha256).digest())
        if not sig or not hmac.compare_digest(sig, want):
            raise Unauthenticated("this sign-in token is not valid", "bad_token")
        try:
            claims = json.loads(_unb64(body))
            sub, exp = str(claims["sub"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError):
            raise Unauthenticated("this sign-in token is not valid", "bad_token") from None
        if now.timestamp() >= exp:
            raise Unauthenticated("this sign-in token has expired: sign in again", "expired")
        return sub

    # -- dashboard ------------------------------------------------------------------------------
    def _member(self, number: str) -> dict[str, Any]:
        m = self.ledger.member(number)
        if m is None:
            raise NotFound(f"no member {number}", "unknown_member")
        return m

    def _stock_left(self, program: Program) -> dict[str, int]:
        if not any(r.stock is not None for r in program.rewards):
            return {}
        stamp, counts = self._stock_cache
        if time.monotonic() - stamp > 5:
            counts = self.ledger.store.voucher_counts()
            self._stock_cache = (time.monotonic(), counts)
        return {r.code: r.stock - counts.get(r.code, 0) for r in program.rewards if r.stock is not None}

    def dashboard(self, number: str, now: datetime) -> dict[str, Any]:
        """The kiosk's figures for a member, from head office's record (the same loyalty code)."""
        program = self.program()
        m = self._member(number)
        held = self.ledger.store.held_points(number)
        seen = fold.view(m, program, now.date(), held=held, stock=self._stock_left(program))
        rewards = [
            {"code": r.code, "name": r.name, "points": r.points, "available": r.available, "reason": r.reason}
            for r in seen.rewards
        ]
        recent = [_activity(json.loads(b)) for b in self.ledger.store.member_events(number, 8)]
        vouchers_ = [
            {"code": v["code"], "reward": v["reward"], "status": v["status"], "expires": v.get("expires", "")}
            for v in self.ledger.store.member_vouchers(number, 5)
        ]
        return {
            "member": number,
            "name": seen.name,
            "tier": seen.tier,
            "tier_name": seen.tier_name,
            "points": seen.points,
            "points_on_hold": seen.held,
            "points_available": seen.available,
            "stored_value": str(seen.stored_value),
            "currency": seen.currency,
            "qualifying_nights": seen.qualifying_nights,
            "qualifying_points": seen.qualifying_points,
            "next_tier": seen.next_tier,
            "next_tier_message": seen.next_tier_message,
            "progress": round(seen.progress, 4),
            "nights_needed": seen.nights_needed,
            "expiring_points": seen.expiring_points,
            "expiring_on": seen.expiring_on.isoformat() if seen.expiring_on else None,
            "blocked": seen.blocked,
            "benefits": list(seen.benefits),
            "recent": [a for a in recent if a is not None],
            "rewards": rewards,
            "offers": list(seen.offers),
            "vouchers": vouchers_,
            # The same code the kiosk shows: a pure function of the member number.
            "referral_code": referral_codes.referral_code(number),
        }

    # -- rates and offers --------------------------------------------------------------------------
    def quote(
        self,
        number: str | None,
        prop: str,
        room_type: str,
        arrival: date,
        nights: int,
        public: Decimal,
        now: datetime,
    ) -> dict[str, Any]:
        tier = self._member(number)["tier"] if number else None
        if public < 0 or not public.is_finite():
            raise Invalid("public_rate must be zero or more")
        if tier is None:  # not signed in: the public rate, and what a member would pay
            tier = self.program().base_tier.code
        q = quote(
            self.online_rules(),
            tier=tier,
            prop=prop,
            room_type=room_type,
            arrival=arrival,
            nights=nights,
            public_rate=public,
            today=now.date(),
            currency=self.program().currency,
        )
        return {
            "property": prop,
            "room_type": room_type,
            "arrival": arrival.isoformat(),
            "nights": nights,
            "tier": tier,
            "public_rate": str(q.public_rate),
            "member_rate": str(q.member_rate),
            "total": str(q.total),
            "saving": str(q.saving),
            "plan": q.plan,
            "plan_name": q.plan_name,
            "currency": q.currency,
            "applied": [
                {
                    "code": a.code,
                    "name": a.name,
                    "group": a.group,
                    "discount": str(a.discount),
                    "amount": str(a.amount),
                }
                for a in q.applied
            ],
            "floored": q.floored,
        }

    def offers(self, number: str, now: datetime) -> list[dict[str, Any]]:
        tier = self._member(number)["tier"]
        today = now.date()
        out = []
        for o in self.online_rules().vip_offers:
            if o.visible(tier, today):
                out.append(
                    {
                        "code": o.code,
                        "name": o.name,
                        "public_from": o.public_from.isoformat(),
                        "ends": o.ends.isoformat(),
                        "early_access": today < o.public_from,
                    }
                )
        return out

    def last_minute(self, number: str, now: datetime) -> list[dict[str, Any]]:
        tier = self._member(number)["tier"]
        return [
            {
                "code": lm.code,
                "name": lm.name,
                "property": lm.property,
                "room_type": lm.room_type,
                "date": lm.day.isoformat(),
                "rooms": lm.rooms,
                "price": str(lm.price),
            }
            for lm in self.online_rules().last_minute
            if lm.visible(tier, now.date())
        ]

    # -- stays from the property system ----------------------------------------------------------
    def post_stay(self, prop: str, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """A folio from the PMS: idempotent by (property, folio); a changed folio is a correction."""
        program = self.program()
        folio = str(body["folio"]).strip()
        member = body.get("member")
        record: dict[str, Any] | None = None  # read once: the tier the stay earns at
        if member is not None:
            try:
                member = member_numbers.normalise(str(member))
            except member_numbers.MemberNumberError as exc:
                raise Invalid(str(exc)) from None
            record = self._member(member)
        arrival, departure = body["arrival"], body["departure"]
        if departure < arrival:
            raise Invalid("departure is before arrival")
        if departure > now.date() + timedelta(days=1):
            raise Invalid("a stay is posted after it happens: departure is in the future")
        nights = (departure - arrival).days
        try:
            revenue = {Outlet(k): parse_amount(str(v)) for k, v in dict(body.get("revenue", {})).items()}
        except (MoneyError, ValueError) as exc:
            raise Invalid(f"revenue: {exc}") from None
        channel = str(body.get("channel", "direct")).lower()
        rules = self.online_rules()
        canon = {
            "member": member,
            "arrival": arrival.isoformat(),
            "departure": departure.isoformat(),
            "revenue": {o.value: str(a) for o, a in sorted(revenue.items()) if a},
            "channel": channel,
        }
        digest = _sha256(json.dumps(canon, sort_keys=True))[:32]
        with self.side.transaction():
            prev = self.side.row(
                "SELECT digest, member, event_id, bonus_event, points, bonus, nights FROM folios "
                "WHERE property = ? AND folio = ?",
                (prop, folio),
            )
            if prev is not None and prev[0] == digest:
                return {
                    "folio": folio,
                    "property": prop,
                    "result": "unchanged",
                    "points": int(prev[4]) + int(prev[5]),
                }
            drafts: list[Draft] = []
            stream = f"pms-{prop}"
            if prev is not None and prev[2]:  # a correction: take the old posting back first
                old_member, old_event, old_points, old_nights = (
                    str(prev[1]),
                    str(prev[2]),
                    int(prev[4]),
                    int(prev[6]),
                )
                drafts.append(
                    Draft(
                        "stay.voided",
                        old_member,
                        {
                            "stay": old_event,
                            "points": old_points,
                            "nights": old_nights,
                            "folio": folio,
                            "property": prop,
                            "reason": "folio corrected by the property system",
                        },
                        id=str(uuid.uuid5(STAYS_NAMESPACE, f"void:{old_event}")),
                    )
                )
                if prev[3] and int(prev[5]):
                    drafts.append(
                        Draft(
                            "points.adjusted",
                            old_member,
                            {
                                "points": -int(prev[5]),
                                "reason": f"direct-booking bonus, folio {folio} corrected",
                                "staff": "pms",
                            },
                            id=str(uuid.uuid5(STAYS_NAMESPACE, f"void:{prev[3]}")),
                        )
                    )
            points = bonus = 0
            event_id = bonus_id = None
            if member is not None and rules.channels.earns(channel):
                m = record if record is not None else self._member(member)
                earned = stay_points(program, m["tier"], revenue, departure)
                points = earned.points
                event_id = str(
                    uuid.uuid5(STAYS_NAMESPACE, f"{prop}:{folio}:{digest}:{prev[2] if prev else ''}")
                )
                drafts.append(
                    Draft(
                        "stay.posted",
                        member,
                        {
                            "folio": folio,
                            "property": prop,
                            "arrival": canon["arrival"],
                            "departure": canon["departure"],
                            "nights": nights,
                            "revenue": canon["revenue"],
                            "points": points,
                            "qualifying_points": qualifying_points(program, earned),
                            "tier": m["tier"],
                            "channel": channel,
                            "promotions": sorted({c for ln in earned.lines for c in ln.promotions}),
                        },
                        id=event_id,
                    )
                )
                bonus = rules.channels.bonus(channel)
                if bonus:
                    bonus_id = str(uuid.uuid5(STAYS_NAMESPACE, f"bonus:{event_id}"))
                    drafts.append(
                        Draft(
                            "points.adjusted",
                            member,
                            {
                                "points": bonus,
                                "reason": f"direct-booking bonus, folio {folio}",
                                "staff": "pms",
                            },
                            id=bonus_id,
                        )
                    )
            if drafts:
                self.sources.emit(stream, drafts, now)
            self.side.execute(
                "INSERT INTO folios (property, folio, member, event_id, bonus_event, digest, points, bonus, "
                "nights, channel, arrival, departure, revenue, posted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (property, folio) DO UPDATE SET member = excluded.member, "
                "event_id = excluded.event_id, "
                "bonus_event = excluded.bonus_event, digest = excluded.digest, points = excluded.points, "
                "bonus = excluded.bonus, nights = excluded.nights, channel = excluded.channel, "
                "arrival = excluded.arrival, departure = excluded.departure, revenue = excluded.revenue, "
                "posted_at = excluded.posted_at",
                (
                    prop,
                    folio,
                    member,
                    event_id,
                    bonus_id,
                    digest,
                    points,
                    bonus,
                    nights,
                    channel,
                    canon["arrival"],
                    canon["departure"],
                    json.dumps(canon["revenue"]),
                    iso(now),
                ),
            )
        result = "corrected" if prev is not None else "posted"
        if member is not None and not rules.channels.earns(channel):
            result += "-no-points"
        return {"folio": folio, "property": prop, "result": result, "points": points + bonus}

    # -- enrolment and profile ------------------------------------------------------------------------
    def enrol(self, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """Online enrolment: a number from head office's own blocks, the enrolment as an event."""
        program = self.program()
        name = " ".join(str(body["name"]).split())
        pin = str(body["pin"])
        try:
            pins.check_format(pin, program.pin)
        except pins.PinFormatError as exc:
            raise Invalid(str(exc)) from None
        email = body.get("email")
        try:  # before a member number is taken: a refused enrolment must not use one up
            _, phone = check_contact(email or None, body.get("phone") or None)
        except ProfileError as exc:
            raise Invalid(str(exc)) from None
        if email and self.profiles.by_email(str(email)) is not None:
            raise Conflict("this e-mail address is already enrolled", "duplicate_email")
        if phone and self.profiles.by_phone(phone) is not None:
            raise Conflict("this phone number is already enrolled", "duplicate_phone")
        referral = None
        if body.get("referred_by"):
            referral = self.referral_data(str(body["referred_by"]), email=email, phone=phone)
        serial = self.side.next_counter("enrol_serial")
        number = member_numbers.next_number(list(HEAD_OFFICE_BLOCKS), serial)
        display = display_name(name)
        try:
            self.profiles.upsert(
                number,
                at=iso(now),
                full_name=name,
                email=email or None,
                phone=body.get("phone") or None,
                birth_date=body.get("birth_date"),
                language=body.get("language") or "en",
                home_property=body.get("home_property"),
            )
        except ProfileError as exc:
            raise Invalid(str(exc)) from None
        if body.get("marketing_email") is not None:
            self.profiles.set_consent(
                number, "email", bool(body["marketing_email"]), source="web", at=iso(now)
            )
        pin_hash = pins.hash_pin(pin, os.urandom(16))
        self.sources.emit(
            "web",
            [
                Draft(
                    "member.enrolled",
                    number,
                    {
                        "display_name": display,
                        "name": name,
                        "pin_hash": pin_hash,
                        "tier": program.base_tier.code,
                        "home_property": body.get("home_property") or "WEB",
                    },
                ),
                *([Draft("member.referred", number, referral)] if referral else []),
            ],
            now,
        )
        return {"member": number, "name": display, "tier": program.base_tier.code}

    def referral_data(
        self, code: str, *, email: Any = None, phone: Any = None, member: str | None = None
    ) -> dict[str, Any]:
        """The ``member.referred`` data for a friend's code, or a 422 naming what is wrong: a
        code that cannot be one (its check character), nobody's, or the same person's (the
        member's own number, e-mail or phone)."""
        try:
            referrer = referral_codes.member_for_code(code)
        except referral_codes.ReferralCodeError as exc:
            raise Invalid(str(exc), "bad_referral") from None
        if self.ledger.member(referrer) is None:
            raise Invalid(f"referral code {code.upper()} is not known", "bad_referral")
        theirs = self.profiles.get(referrer)
        if member is not None:
            mine = self.profiles.get(member)
            email, phone = (mine.email, mine.phone) if mine is not None else (email, phone)
        if referrer == member or (
            theirs is not None
            and (
                (email and theirs.email and str(email).lower() == theirs.email.lower())
                or (phone and theirs.phone and phone == theirs.phone)
            )
        ):
            raise Invalid("you cannot use your own referral code", "bad_referral")
        return {"referrer": referrer, "code": referral_codes.referral_code(referrer)}

    def refer(
        self, number: str, code: str, now: datetime, *, stream: str = "web", staff: str = ""
    ) -> dict[str, str]:
        """Record a friend's code for an enrolled member (before their first stay): checked by
        the one fold first, so a refusal is a 422 with its reason and nothing is booked.
        ``result`` is ``"referred"`` or ``"unchanged"`` (the same referral again)."""
        m = self.ledger.member(number)
        if m is None:
            raise NotFound(f"no member {number}", "unknown_member")
        data = self.referral_data(code, member=number)
        if staff:
            data["staff"] = staff
        out = {"member": number, "referred_by": str(data["referrer"]), "result": "unchanged"}
        if m.get("referred_by") == data["referrer"]:
            return out
        probe = Event(stream, 1, 1, uuid7(now), iso(now), "member.referred", number, 1, data)
        try:
            fold.apply(json.loads(json.dumps(m)), probe, self.ledger.program(), self.ledger)
        except fold.Quarantine as exc:
            raise Invalid(exc.reason, "bad_referral") from None
        self.sources.emit(stream, [Draft("member.referred", number, data)], now)
        return {**out, "result": "referred"}

    def set_first_pin(self, raw_number: str, code: str, pin: str, now: datetime) -> dict[str, Any]:
        """An imported member's first PIN, with head office's one-time code: a ``pin.set`` event."""
        from staypoint.central import first_pin

        try:
            number = member_numbers.normalise(raw_number)
        except member_numbers.MemberNumberError as exc:
            raise Invalid(str(exc), "bad_number") from None
        m = self._member(number)
        if m.get("pin_hash"):
            raise Conflict("this member has a PIN already: sign in with it", "has_pin")
        try:
            pins.check_format(pin, self.program().pin)
        except pins.PinFormatError as exc:
            raise Invalid(str(exc)) from None
        first_pin.consume(self.side, number, code, now)  # its refusals are domain errors already
        try:
            pin_hash = pins.hash_pin(pin, os.urandom(16))
            self.sources.emit("web", [Draft("pin.set", number, {"pin_hash": pin_hash})], now)
        except BaseException:
            first_pin.release(self.side, number)
            raise
        return {"member": number, "pin": "set"}

    def profile(self, number: str) -> dict[str, Any]:
        p = self.profiles.get(number)
        if p is None:
            raise NotFound("no profile for this member", "no_profile")
        return {
            "member": p.member,
            "full_name": p.full_name,
            "email": p.email,
            "phone": p.phone,
            "birth_date": p.birth_date.isoformat() if p.birth_date else None,
            "language": p.language,
            "marketing_email": p.consent_email,
            "marketing_sms": p.consent_sms,
        }

    def update_profile(self, number: str, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        self._member(number)
        try:
            self.profiles.upsert(
                number,
                at=iso(now),
                full_name=body.get("full_name"),
                email=body.get("email"),
                phone=body.get("phone"),
                birth_date=body.get("birth_date"),
                language=body.get("language"),
            )
            for channel in ("email", "sms"):
                value = body.get(f"marketing_{channel}")
                if value is not None:
                    self.profiles.set_consent(number, channel, bool(value), source="web", at=iso(now))
        except ProfileError as exc:
            raise Invalid(str(exc)) from None
        return self.profile(number)

    # -- redemption and transfer --------------------------------------------------------------------------
    def redeem(self, number: str, reward_code: str, now: datetime) -> dict[str, Any]:
        """Online redemption through the kiosk's hold-and-settle path: hold first, then the event."""
        program = self.program()
        m = self._member(number)
        held = self.ledger.store.held_points(number)
        check = check_redemption(
            program,
            reward_code,
            tier=m["tier"],
            points=int(m["points"]) - held,
            stock_left=self._stock_left(program).get(reward_code.upper()),
            blocked=bool(m.get("blocked")),
        )
        if not check.ok or check.reward is None:
            raise Conflict(check.detail, "refused")
        reward = check.reward
        node = self.sources.stream("web")
        decision = self.ledger.authorise(node, number, reward.points, reward.code, now)
        if not decision.ok:
            raise Conflict(decision.reason or "refused", "refused")
        serial = self.side.next_counter("web_voucher_serial", 1)
        code = vouchers.make_code(os.urandom(8))
        expires = now.date() + timedelta(days=reward.voucher_days)
        claims = vouchers.VoucherClaims(code, reward.code, number, node, serial, expires)
        token = vouchers.sign_token(claims, self.voucher_key)
        self._stock_cache = (0.0, {})
        self.sources.emit(
            "web",
            [
                Draft(
                    "points.redeemed",
                    number,
                    {
                        "reward": reward.code,
                        "points": reward.points,
                        "hold": decision.hold,
                        "voucher": code,
                        "serial": serial,
                        "expires": expires.isoformat(),
                        "token": token,
                        "limits": None,
                    },
                    auth="online",
                )
            ],
            now,
        )
        balance = int(self._member(number)["points"])
        return {
            "reward": reward.code,
            "points": reward.points,
            "voucher": vouchers.format_code(code),
            "token": token,
            "expires": expires.isoformat(),
            "balance": balance,
        }

    def transfer(self, number: str, partner_code: str, points: int, now: datetime) -> dict[str, Any]:
        """Points to a partner programme at the programme's ratio, within the daily cap (an event)."""
        partner = self.online_rules().partner(partner_code)
        if partner is None:
            raise NotFound(f"no partner {partner_code!r}", "unknown_partner")
        if points < partner.min_points:
            raise Invalid(f"transfer at least {partner.min_points:,} points to {partner.name}")
        units = partner.units(points)
        if units < 1:
            raise Invalid(f"{points} points buy no {partner.name} units at ratio {partner.ratio}")
        day = now.date().isoformat()
        # The member's number at the partner, linked at head office (central/partners.py): the
        # settlement file names it, so a transfer without one could never be credited.
        account = self.side.one(
            "SELECT account FROM partner_accounts WHERE member = ? AND partner = ?", (number, partner.code)
        )
        if account is None:
            raise Conflict(f"no {partner.name} account is linked to this member", "no_partner_account")
        with self.side.transaction():
            done = int(
                self.side.one(
                    "SELECT coalesce(sum(points), 0) FROM transfers WHERE member = ? AND day = ?",
                    (number, day),
                )
            )
            if done + points > partner.daily_cap:
                raise Conflict(
                    f"daily transfer cap is {partner.daily_cap:,} points; {partner.daily_cap - done:,} left",
                    "cap",
                )
            m = self._member(number)
            available = int(m["points"]) - self.ledger.store.held_points(number)
            if m.get("blocked") or available < points:
                raise Conflict("not enough points", "refused")
            transfer_id = uuid7(now)
            self.sources.emit(
                "web",
                [
                    Draft(
                        "points.adjusted",
                        number,
                        {
                            "points": -points,
                            "reason": f"transfer to {partner.name}",
                            "staff": "web",
                            "partner": partner.code,
                            "units": units,
                            "transfer": transfer_id,
                            "account": str(account),
                        },
                    )
                ],
                now,
            )
            self.side.execute(
                "INSERT INTO transfers (id, member, day, partner, points, units, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (transfer_id, number, day, partner.code, points, units, iso(now)),
            )
            self.side.execute(
                "INSERT INTO partner_transfers (transfer, partner, member, account, points, units, day, at, "
                "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                (transfer_id, partner.code, number, str(account), points, units, day, iso(now)),
            )
        return {
            "partner": partner.code,
            "points": points,
            "units": units,
            "transfer": transfer_id,
            "balance": int(self._member(number)["points"]),
        }

    # -- claims and feedback ---------------------------------------------------------------------------
    def claim(self, number: str, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """A missing-points claim from the web: a claim event, queued like a kiosk's."""
        arrival, departure = body["arrival"], body["departure"]
        if departure < arrival or departure > now.date():
            raise Invalid("the stay's dates are not possible")
        events, _ = self.sources.emit(
            "web",
            [
                Draft(
                    "claim.recorded",
                    number,
                    {
                        "folio": str(body["folio"]).strip(),
                        "property": str(body["property"]),
                        "arrival": arrival.isoformat(),
                        "departure": departure.isoformat(),
                        "note": str(body.get("note", ""))[:500],
                    },
                )
            ],
            now,
        )
        return {"claim": events[0].id, "status": "received"}

    def feedback(
        self, number: str, stars: int, tags: list[str], comment: str, now: datetime
    ) -> dict[str, Any]:
        events, _ = self.sources.emit(
            "web",
            [
                Draft(
                    "feedback.recorded",
                    number,
                    {"stars": stars, "tags": tags, "context": "web", "comment": comment[:1000]},
                )
            ],
            now,
        )
        return {"feedback": events[0].id}

    # -- staff (console) -------------------------------------------------------------------------------
    def adjust(self, number: str, points: int, reason: str, clerk: str, now: datetime) -> int:
        """A head-office adjustment with a reason: an event on the console's stream."""
        if points == 0 or not reason.strip():
            raise Invalid("an adjustment is a non-zero number of points with a reason")
        m = self._member(number)
        if int(m["points"]) + points < 0:
            raise Conflict(f"the member has only {int(m['points']):,} points")
        self.sources.emit(
            "console",
            [Draft("points.adjusted", number, {"points": points, "reason": reason.strip(), "staff": clerk})],
            now,
        )
        return int(self._member(number)["points"])


def _activity(ev: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = str(ev.get("type"))
    if kind in fold.NOT_ACTIVITY:
        return None
    data = ev.get("data", {})
    try:
        delta = points_delta(kind, data)
    except ValueError:
        return None
    return {
        "at": str(ev.get("at")),
        "type": kind,
        "points": delta,
        "description": fold.activity_line(kind, data if isinstance(data, Mapping) else {}),
    }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token_key() -> bytes:
    return secrets.token_bytes(32)
