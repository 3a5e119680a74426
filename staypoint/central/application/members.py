"""Members: online enrolment (a number from head office's own blocks), referrals, the
dashboard (the kiosk's figures), the profile, feedback, and head office's adjustments."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from staypoint.central.application.core import OfficeCore
from staypoint.central.application.sources import Draft
from staypoint.central.errors import Conflict, Invalid, NotFound
from staypoint.central.profiles import ProfileError, check_contact
from staypoint.loyalty import fold, member_numbers, pins, referral_codes
from staypoint.loyalty.events import Event, iso, points_delta, uuid7

HEAD_OFFICE_BLOCKS = range(0, 100)  # member-number blocks 0000-0099 are head office's own


def display_name(name: str) -> str:
    """What a node shows of a member's name: the first name and the last name's initial."""
    parts = name.split()
    return parts[0][:40] if len(parts) == 1 else f"{parts[0][:40]} {parts[-1][0].upper()}."


class Members:
    """What head office does for and about a member, online and at the console."""

    def __init__(self, core: OfficeCore) -> None:
        self.core = core

    # -- dashboard ------------------------------------------------------------------------------
    def dashboard(self, number: str, now: datetime) -> dict[str, Any]:
        """The kiosk's figures for a member, from head office's record (the same loyalty code)."""
        core = self.core
        program = core.program()
        m = core.member(number)
        held = core.ledger.store.held_points(number)
        seen = fold.view(m, program, now.date(), held=held, stock=core.stock_left(program))
        rewards = [
            {"code": r.code, "name": r.name, "points": r.points, "available": r.available, "reason": r.reason}
            for r in seen.rewards
        ]
        recent = [_activity(json.loads(b)) for b in core.ledger.store.member_events(number, 8)]
        vouchers_ = [
            {"code": v["code"], "reward": v["reward"], "status": v["status"], "expires": v.get("expires", "")}
            for v in core.ledger.store.member_vouchers(number, 5)
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

    # -- enrolment and referrals ----------------------------------------------------------------------
    def enrol(self, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """Online enrolment: a number from head office's own blocks, the enrolment as an event."""
        core = self.core
        program = core.program()
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
        if email and core.profiles.by_email(str(email)) is not None:
            raise Conflict("this e-mail address is already enrolled", "duplicate_email")
        if phone and core.profiles.by_phone(phone) is not None:
            raise Conflict("this phone number is already enrolled", "duplicate_phone")
        referral = None
        if body.get("referred_by"):
            referral = self.referral_data(str(body["referred_by"]), email=email, phone=phone)
        serial = core.side.next_counter("enrol_serial")
        number = member_numbers.next_number(list(HEAD_OFFICE_BLOCKS), serial)
        display = display_name(name)
        try:
            core.profiles.upsert(
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
            core.profiles.set_consent(
                number, "email", bool(body["marketing_email"]), source="web", at=iso(now)
            )
        pin_hash = pins.hash_pin(pin, os.urandom(16))
        core.sources.emit(
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
        core = self.core
        try:
            referrer = referral_codes.member_for_code(code)
        except referral_codes.ReferralCodeError as exc:
            raise Invalid(str(exc), "bad_referral") from None
        if core.ledger.member(referrer) is None:
            raise Invalid(f"referral code {code.upper()} is not known", "bad_referral")
        theirs = core.profiles.get(referrer)
        if member is not None:
            mine = core.profiles.get(member)
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
        core = self.core
        m = core.member(number)
        data = self.referral_data(code, member=number)
        if staff:
            data["staff"] = staff
        out = {"member": number, "referred_by": str(data["referrer"]), "result": "unchanged"}
        if m.get("referred_by") == data["referrer"]:
            return out
        probe = Event(stream, 1, 1, uuid7(now), iso(now), "member.referred", number, 1, data)
        try:
            fold.apply(json.loads(json.dumps(m)), probe, core.ledger.program(), core.ledger)
        except fold.Quarantine as exc:
            raise Invalid(exc.reason, "bad_referral") from None
        core.sources.emit(stream, [Draft("member.referred", number, data)], now)
        return {**out, "result": "referred"}

    # -- the profile ----------------------------------------------------------------------------------
    def profile(self, number: str) -> dict[str, Any]:
        p = self.core.profiles.get(number)
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
        core = self.core
        core.member(number)
        try:
            core.profiles.upsert(
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
                    core.profiles.set_consent(number, channel, bool(value), source="web", at=iso(now))
        except ProfileError as exc:
            raise Invalid(str(exc)) from None
        return self.profile(number)

    # -- feedback and adjustments ---------------------------------------------------------------------
    def feedback(
        self, number: str, stars: int, tags: list[str], comment: str, now: datetime
    ) -> dict[str, Any]:
        events, _ = self.core.sources.emit(
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

    def adjust(self, number: str, points: int, reason: str, clerk: str, now: datetime) -> int:
        """A head-office adjustment with a reason: an event on the console's stream."""
        core = self.core
        if points == 0 or not reason.strip():
            raise Invalid("an adjustment is a non-zero number of points with a reason")
        m = core.member(number)
        if int(m["points"]) + points < 0:
            raise Conflict(f"the member has only {int(m['points']):,} points")
        core.sources.emit(
            "console",
            [Draft("points.adjusted", number, {"points": points, "reason": reason.strip(), "staff": clerk})],
            now,
        )
        return int(core.member(number)["points"])


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
