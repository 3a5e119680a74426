"""Redemptions: the programme's rules, head office's authorisation asked first, else the
offline limits; the voucher signed in the same transaction as the points taken."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from staypoint.edge.operations.core import NodeCore, require_utc, utc_today
from staypoint.edge.operations.errors import NotAllowed, OfflineLimitReached, RedemptionRefused
from staypoint.edge.operations.views import PinProof, Redemption
from staypoint.edge.replica import MemberRow
from staypoint.loyalty import vouchers
from staypoint.loyalty.events import EventType, parse_iso
from staypoint.loyalty.redemption import (
    Refusal,
    check_offline,
    check_redemption,
    is_redeemable_now,
    offline_headroom,
)


class Redemptions:
    """Rewards redeemed for points at this node."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.replica = core.replica

    def offline_headroom(self, member: str, now: datetime) -> int:
        """The most points one offline redemption could cost this member right now."""
        row = self.core.resolve_member(member)
        return offline_headroom(self.core.program.offline, self.core.offline_state(row), now)

    def redeem(self, proof: PinProof, reward_code: str, now: datetime, *, online: bool = True) -> Redemption:
        """Redeem a reward: rules checked, head office asked first, else the offline limits."""
        require_utc(now)
        if now - proof.verified_at > timedelta(minutes=5) or proof.verified_at > now:
            raise NotAllowed("the PIN was entered too long ago: please enter it again")
        program = self.core.program
        row = self.core.resolve_member(proof.member)
        self._check_rules(row, reward_code)
        reward = program.reward(reward_code)
        assert reward is not None
        # Ask head office before taking the write lock: a network wait must never block
        # the other writers on this node.
        hold = self.core.authoriser.authorise(row.number, reward.points, reward.code, now) if online else None
        with self.replica.write():
            current = self.replica.member(row.number)
            assert current is not None
            self._check_rules(current, reward_code, now)
            profile = None
            if hold is None:
                decision = check_offline(
                    program.offline, reward.points, self.core.offline_state(current), now
                )
                if not decision.allowed:
                    raise OfflineLimitReached(decision.message)
                profile = decision.profile
            serial = self.replica.bump_meta("voucher_serial")
            code = vouchers.make_code(os.urandom(8))
            expires = utc_today(now) + timedelta(days=reward.voucher_days)
            claims = vouchers.VoucherClaims(code, reward.code, row.number, self.core.node_id, serial, expires)
            token = vouchers.sign_token(claims, self.core.keys.voucher)
            auth = "online" if hold else "offline"
            event = self.core.emit(
                EventType.POINTS_REDEEMED,
                row.number,
                {
                    "reward": reward.code,
                    "points": reward.points,
                    "hold": hold.id if hold else None,
                    "voucher": code,
                    "serial": serial,
                    "expires": expires.isoformat(),
                    "token": token,
                    "limits": profile,
                },
                now,
                auth=auth,
                row=current,
            )
            self.replica.insert_voucher(
                code,
                token,
                reward.code,
                row.number,
                self.core.node_id,
                serial,
                reward.points,
                event.at,
                expires.isoformat(),
            )
            balance = current.points - reward.points
            self.replica.update_member(row.number, points=balance, last_activity=utc_today(now).isoformat())
            if reward.stock is not None:
                self.replica.add_stock(reward.code, -1)
            if hold is None:
                self.replica.add_offline(row.number, reward.points)
                self.replica.bump_meta("offline_exposure", reward.points)
            self.core.activity(event, row.number, -reward.points)
        return Redemption(
            row.number,
            reward.code,
            reward.name,
            reward.points,
            balance,
            code,
            token,
            expires,
            auth,
            profile,
            event,
        )

    def _check_rules(self, row: MemberRow, reward_code: str, now: datetime | None = None) -> None:
        if now is not None and row.locked_until and now < parse_iso(row.locked_until):
            raise RedemptionRefused(Refusal.LOCKED, Refusal.LOCKED.value)
        program = self.core.program
        reward = program.reward(reward_code)
        stock = self.replica.stock(reward.code) if reward and reward.stock is not None else None
        check = check_redemption(
            program,
            reward_code,
            tier=row.tier,
            points=row.points,
            stock_left=stock,
            blocked=row.blocked,
        )
        if not check.ok:
            assert check.refusal is not None
            raise RedemptionRefused(check.refusal, check.detail)

    def check_redeemable(self, member: str, reward_code: str) -> None:
        """Raise RedemptionRefused when the rules alone refuse (before asking for a PIN)."""
        self._check_rules(self.core.resolve_member(member), reward_code)

    def can_redeem(self, member: MemberRow, reward_code: str) -> bool:
        """Tier and points allow the reward (for greying out on screens)."""
        reward = self.core.program.reward(reward_code)
        return reward is not None and is_redeemable_now(self.core.program, reward, member.tier, member.points)
