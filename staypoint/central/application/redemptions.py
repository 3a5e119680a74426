"""Redemptions online, through the kiosk's hold-and-settle path: a head-office hold, then the
``points.redeemed`` event with a voucher signed by the web stream's key (registered with the
fleet like a node's, so any kiosk verifies a web voucher offline); a member's voucher token."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from staypoint.central.application.core import OfficeCore
from staypoint.central.application.sources import Draft
from staypoint.central.errors import Conflict, NotFound
from staypoint.loyalty import vouchers
from staypoint.loyalty.redemption import check_redemption


class Redemptions:
    """Rewards redeemed on the web stream, and the vouchers they made."""

    def __init__(self, core: OfficeCore, voucher_key: Ed25519PrivateKey) -> None:
        self.core = core
        self.voucher_key = voucher_key

    def register_voucher_key(self) -> None:
        """Tell the fleet the web stream's voucher key, so any kiosk verifies a web voucher."""
        core = self.core
        pub = self.voucher_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        core.ledger.register_node(core.sources.stream("web"), pub.hex())

    def redeem(self, number: str, reward_code: str, now: datetime) -> dict[str, Any]:
        """Online redemption through the kiosk's hold-and-settle path: hold first, then the event."""
        core = self.core
        program = core.program()
        m = core.member(number)
        held = core.ledger.store.held_points(number)
        check = check_redemption(
            program,
            reward_code,
            tier=m["tier"],
            points=int(m["points"]) - held,
            stock_left=core.stock_left(program).get(reward_code.upper()),
            blocked=bool(m.get("blocked")),
        )
        if not check.ok or check.reward is None:
            raise Conflict(check.detail, "refused")
        reward = check.reward
        node = core.sources.stream("web")
        decision = core.ledger.authorise(node, number, reward.points, reward.code, now)
        if not decision.ok:
            raise Conflict(decision.reason or "refused", "refused")
        serial = core.side.next_counter("web_voucher_serial", 1)
        code = vouchers.make_code(os.urandom(8))
        expires = now.date() + timedelta(days=reward.voucher_days)
        claims = vouchers.VoucherClaims(code, reward.code, number, node, serial, expires)
        token = vouchers.sign_token(claims, self.voucher_key)
        core.forget_stock()
        core.sources.emit(
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
        balance = int(core.member(number)["points"])
        return {
            "reward": reward.code,
            "points": reward.points,
            "voucher": vouchers.format_code(code),
            "token": token,
            "expires": expires.isoformat(),
            "balance": balance,
        }

    def voucher_token(self, number: str, code: str) -> str:
        """What a voucher's QR holds: its signed token (the one a kiosk verifies offline), or its
        code for a voucher without one. ``code`` as the member wrote it (dashes, spaces, case)."""
        wanted = code.replace("-", "").replace(" ", "").upper()
        for v in self.core.ledger.store.member_vouchers(number, 100):
            raw = str(v.get("code", ""))
            if raw.upper() == wanted or vouchers.format_code(raw).replace("-", "") == wanted:
                token: Any = v.get("token") or raw
                return str(token)
        raise NotFound(f"no voucher {code[:40]!r} for this member", "unknown_voucher")
