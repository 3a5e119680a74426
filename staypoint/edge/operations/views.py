"""What the node service's callers get back: proofs, holds and the views a screen shows."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

from staypoint.loyalty import fold
from staypoint.loyalty.events import Event


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


RewardView = fold.RewardLine  # one shape for a reward line, on the kiosk and in the API


@dataclass(frozen=True)
class Activity:
    at: str
    type: str
    points: int
    amount: str | None
    description: str


@dataclass(frozen=True)
class MemberSummary(fold.MemberView):
    """What a node's dashboard shows: the member's view (``fold.MemberView``, every field of
    it, the same at the desk and in the API; on a node nothing is held, so ``available`` is
    ``points``) and what only the node adds: its PIN lock, recent activity, vouchers and the
    referral code."""

    locked: bool
    recent: tuple[Activity, ...]
    vouchers: tuple[dict[str, Any], ...] = field(default=())
    referral_code: str = ""

    @classmethod
    def of(
        cls,
        seen: fold.MemberView,
        *,
        locked: bool,
        recent: tuple[Activity, ...],
        vouchers: tuple[dict[str, Any], ...],
        referral_code: str,
    ) -> MemberSummary:
        """``seen`` as it is, with the node's own parts."""
        shared = {f.name: getattr(seen, f.name) for f in fields(fold.MemberView)}
        return cls(**shared, locked=locked, recent=recent, vouchers=vouchers, referral_code=referral_code)

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
