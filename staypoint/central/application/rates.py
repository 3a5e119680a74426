"""Rates and offers: a member's price for a stay request (never above the public rate), the
VIP offers a member may see today, and the last-minute rooms held back for VIPs."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from staypoint.central.application.core import OfficeCore
from staypoint.central.errors import Invalid
from staypoint.loyalty.rates import quote


class Rates:
    """The online rules (``loyalty/rates.py``) for one member, or for a guest not signed in."""

    def __init__(self, core: OfficeCore) -> None:
        self.core = core

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
        core = self.core
        tier = core.member(number)["tier"] if number else None
        if public < 0 or not public.is_finite():
            raise Invalid("public_rate must be zero or more")
        if tier is None:  # not signed in: the public rate, and what a member would pay
            tier = core.program().base_tier.code
        q = quote(
            core.online_rules(),
            tier=tier,
            prop=prop,
            room_type=room_type,
            arrival=arrival,
            nights=nights,
            public_rate=public,
            today=now.date(),
            currency=core.program().currency,
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
        tier = self.core.member(number)["tier"]
        today = now.date()
        out = []
        for o in self.core.online_rules().vip_offers:
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
        tier = self.core.member(number)["tier"]
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
            for lm in self.core.online_rules().last_minute
            if lm.visible(tier, now.date())
        ]
