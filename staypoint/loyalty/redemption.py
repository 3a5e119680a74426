"""Whether a member may redeem a reward, and, offline, whether the floor limits allow it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from staypoint.loyalty.program import OfflineLimits, Program, Reward


class Refusal(StrEnum):
    """Why a redemption is refused; the value is the message a guest reads."""

    UNKNOWN_REWARD = "we do not have that reward"
    TOO_FEW_POINTS = "not enough points"
    TIER_TOO_LOW = "this reward needs a higher tier"
    OUT_OF_STOCK = "this reward is out of stock"
    BLOCKED = "redemptions are paused on this account: please see the front desk"
    LOCKED = "too many wrong PINs: redemptions are locked for now"


class OfflineRefusal(StrEnum):
    PER_REDEMPTION = "while we are offline, a single reward can cost at most {limit:,} points"
    PER_MEMBER = "while we are offline, you can redeem up to {limit:,} points in all"
    CONSECUTIVE = "while we are offline, you can redeem at most {limit} rewards in a row"
    NODE_EXPOSURE = "this kiosk has reached its offline limit: please see the front desk"
    STALE = "this kiosk has been offline too long to redeem: please see the front desk"
    DENY_LISTED = "redemptions are paused on this account: please see the front desk"
    PER_SPEND = "while we are offline, one payment from stored value can be at most {limit}"
    PER_MEMBER_VALUE = "while we are offline, you can pay up to {limit} from stored value in all"


@dataclass(frozen=True)
class RedemptionCheck:
    reward: Reward | None
    refusal: Refusal | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.refusal is None


def check_redemption(
    program: Program,
    reward_code: str,
    *,
    tier: str,
    points: int,
    stock_left: int | None,
    blocked: bool = False,
) -> RedemptionCheck:
    """Check a redemption against the programme's rules (not the offline limits)."""
    reward = program.reward(reward_code)
    if reward is None:
        return RedemptionCheck(None, Refusal.UNKNOWN_REWARD, f"no reward {reward_code!r}")
    if blocked:
        return RedemptionCheck(reward, Refusal.BLOCKED, "member blocked by head office")
    if reward.min_tier is not None and program.tier(tier).rank < program.tier(reward.min_tier).rank:
        need = program.tier(reward.min_tier).name
        return RedemptionCheck(reward, Refusal.TIER_TOO_LOW, f"{reward.name} needs {need} or above")
    if points < reward.points:
        short = reward.points - points
        return RedemptionCheck(reward, Refusal.TOO_FEW_POINTS, f"{reward.name} needs {short:,} more points")
    if stock_left is not None and stock_left <= 0:
        return RedemptionCheck(reward, Refusal.OUT_OF_STOCK, f"{reward.name} is out of stock")
    return RedemptionCheck(reward, None, "ok")


@dataclass(frozen=True)
class OfflineState:
    """What the node knows when it cannot reach head office."""

    member_points_since_contact: int
    member_consecutive_offline: int
    node_exposure_points: int
    last_contact: datetime | None
    deny_listed: bool


@dataclass(frozen=True)
class OfflineDecision:
    allowed: bool
    refusal: OfflineRefusal | None
    message: str
    profile: str


def check_offline(limits: OfflineLimits, points: int, state: OfflineState, now: datetime) -> OfflineDecision:
    """Apply the offline floor limits, like an EMV terminal's floor limit and velocity checks."""

    def refuse(r: OfflineRefusal, limit: int = 0) -> OfflineDecision:
        return OfflineDecision(False, r, r.value.format(limit=limit), limits.profile)

    if state.deny_listed:
        return refuse(OfflineRefusal.DENY_LISTED)
    if state.last_contact is None or now - state.last_contact > timedelta(hours=limits.max_staleness_hours):
        return refuse(OfflineRefusal.STALE)
    if points > limits.per_redemption_points:
        return refuse(OfflineRefusal.PER_REDEMPTION, limits.per_redemption_points)
    if state.member_points_since_contact + points > limits.per_member_points_since_contact:
        return refuse(OfflineRefusal.PER_MEMBER, limits.per_member_points_since_contact)
    if state.member_consecutive_offline + 1 > limits.consecutive_redemptions_per_member:
        return refuse(OfflineRefusal.CONSECUTIVE, limits.consecutive_redemptions_per_member)
    if state.node_exposure_points + points > limits.node_exposure_points:
        return refuse(OfflineRefusal.NODE_EXPOSURE, limits.node_exposure_points)
    return OfflineDecision(True, None, "ok", limits.profile)


def offline_headroom(limits: OfflineLimits, state: OfflineState, now: datetime) -> int:
    """The most points one offline redemption could cost right now (0 if none is possible)."""
    if state.deny_listed or state.last_contact is None:
        return 0
    if now - state.last_contact > timedelta(hours=limits.max_staleness_hours):
        return 0
    if state.member_consecutive_offline >= limits.consecutive_redemptions_per_member:
        return 0
    return max(
        0,
        min(
            limits.per_redemption_points,
            limits.per_member_points_since_contact - state.member_points_since_contact,
            limits.node_exposure_points - state.node_exposure_points,
        ),
    )


def is_redeemable_now(program: Program, reward: Reward, tier: str, points: int) -> bool:
    """True when tier and points allow ``reward`` (stock and limits aside)."""
    if reward.min_tier is not None and program.tier(tier).rank < program.tier(reward.min_tier).rank:
        return False
    return points >= reward.points


def check_offline_spend(
    limits: OfflineLimits, amount: Decimal, spent_since_contact: Decimal, state: OfflineState, now: datetime
) -> OfflineDecision:
    """The floor limits for paying from stored value while head office cannot be asked:
    money spent twice at two offline nodes is bounded by these, like points are."""

    def refuse(r: OfflineRefusal, limit: Decimal | int = 0) -> OfflineDecision:
        return OfflineDecision(False, r, r.value.format(limit=limit), limits.profile)

    if state.deny_listed:
        return refuse(OfflineRefusal.DENY_LISTED)
    if state.last_contact is None or now - state.last_contact > timedelta(hours=limits.max_staleness_hours):
        return refuse(OfflineRefusal.STALE)
    if amount > limits.per_spend_value:
        return refuse(OfflineRefusal.PER_SPEND, limits.per_spend_value)
    if spent_since_contact + amount > limits.per_member_value_since_contact:
        return refuse(OfflineRefusal.PER_MEMBER_VALUE, limits.per_member_value_since_contact)
    return OfflineDecision(True, None, "ok", limits.profile)
