"""Vouchers: verifying a typed code or a scanned token (a revoked node's included), marking
one used, voiding one, and the last one for a reprint."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from staypoint.edge.keys import public_key_from_hex
from staypoint.edge.operations.core import NodeCore, require_role, require_utc, utc_today
from staypoint.edge.operations.errors import BadInput, VoucherRejected
from staypoint.edge.operations.views import StaffProof, VoucherInfo
from staypoint.loyalty import vouchers
from staypoint.loyalty.events import EventType, parse_iso
from staypoint.loyalty.roles import Task


class Vouchers:
    """The vouchers of the fleet, as this node sees and settles them."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.replica = core.replica

    def _public_keys(self) -> dict[str, Any]:
        return {n: public_key_from_hex(k) for n, k in self.replica.node_public_keys().items()}

    def verify_voucher(self, code_or_token: str, now: datetime) -> VoucherInfo:
        """Check a typed code or a scanned token; VoucherRejected when it is not genuine."""
        require_utc(now)
        raw = code_or_token.strip()
        try:
            if raw.startswith(vouchers.TOKEN_PREFIX + "."):
                claims = vouchers.verify_token(raw, self._public_keys())
                code = claims.code
            else:
                code = vouchers.normalise_code(raw)
                claims = None
        except vouchers.VoucherError as exc:
            raise VoucherRejected(str(exc)) from None
        rec = self.replica.voucher(code)
        if rec is None:
            if claims is None:
                raise VoucherRejected(f"voucher {vouchers.format_code(code)} is not known on this node")
            status, valid = "unknown-here", claims.expires >= utc_today(now)
        else:
            # The stored token is checked too: a row edited in the file must not pass.
            try:
                stored = vouchers.verify_token(str(rec["token"]), self._public_keys())
            except vouchers.VoucherError as exc:
                raise VoucherRejected(f"voucher record is damaged: {exc}") from None
            if claims is not None and stored != claims:
                raise VoucherRejected("voucher does not match the issued record")
            claims = stored
            status = str(rec["status"])
            if status == "issued" and claims.expires < utc_today(now):
                status = "expired"
            valid = status == "issued"
        self._refuse_if_revoked(claims, rec)
        reward = self.core.program.reward(claims.reward)
        messages = {
            "issued": "valid",
            "unknown-here": "genuine, issued elsewhere: not yet synced to this node",
            "used": "already used",
            "voided": "voided",
            "expired": f"expired on {claims.expires.isoformat()}",
        }
        return VoucherInfo(
            code=vouchers.format_code(claims.code),
            reward=claims.reward,
            reward_name=reward.name if reward else claims.reward,
            member=claims.member,
            node=claims.node,
            expires=claims.expires,
            status=status,
            valid=valid,
            message=messages[status],
        )

    def _refuse_if_revoked(self, claims: vouchers.VoucherClaims, rec: Mapping[str, Any] | None) -> None:
        """VoucherRejected for a voucher of a revoked node issued after its revocation.

        Head office books nothing a revoked node sends, so such a voucher was never paid for
        in points; one it never booked (known here only by its token) counts as issued after.
        Vouchers booked before the revocation stay good until they expire (docs/programme.md)."""
        revoked = self.replica.node_revoked_at(claims.node)
        if revoked is None:
            return
        code = vouchers.format_code(claims.code)
        if rec is None:
            raise VoucherRejected(
                f"voucher {code} refused: node {claims.node} was revoked at {revoked} "
                "and head office never booked this voucher"
            )
        if parse_iso(str(rec["issued_at"])) >= parse_iso(revoked):
            raise VoucherRejected(
                f"voucher {code} refused: issued by node {claims.node} after its revocation at {revoked}"
            )

    def use_voucher(self, code_or_token: str, now: datetime, staff: StaffProof) -> VoucherInfo:
        """Mark a voucher used (the guest got the reward)."""
        require_role(staff, Task.USE_VOUCHER)
        info = self.verify_voucher(code_or_token, now)
        code = vouchers.normalise_code(info.code)
        with self.replica.write():
            rec = self.replica.voucher(code)
            if rec is None:
                raise VoucherRejected("this voucher has not reached this node yet: ask head office")
            if rec["status"] != "issued" or info.status == "expired":
                raise VoucherRejected(f"voucher cannot be used: {info.message}")
            event = self.core.emit(
                EventType.VOUCHER_USED,
                str(rec["member"]),
                {"voucher": code, "reward": rec["reward"], "staff": staff.staff_id},
                now,
            )
            self.replica.set_voucher_status(code, "used", event.at)
        return self.verify_voucher(code, now)

    def void_voucher(self, code_or_token: str, now: datetime, staff: StaffProof, reason: str) -> VoucherInfo:
        """Void an unused voucher: its points go back to the member and its stock back on the shelf."""
        require_role(staff, Task.VOID_VOUCHER)
        if not reason.strip():
            raise BadInput("a void needs a reason")
        info = self.verify_voucher(code_or_token, now)
        code = vouchers.normalise_code(info.code)
        with self.replica.write():
            rec = self.replica.voucher(code)
            if rec is None or rec["status"] != "issued":
                raise VoucherRejected(f"voucher cannot be voided: {info.message}")
            member = str(rec["member"])
            points = int(rec["points"])
            event = self.core.emit(
                EventType.VOUCHER_VOIDED,
                member,
                {
                    "voucher": code,
                    "reward": rec["reward"],
                    "points": points,
                    "reason": reason,
                    "staff": staff.staff_id,
                },
                now,
            )
            self.replica.set_voucher_status(code, "voided", event.at)
            row = self.replica.member(member)
            assert row is not None
            self.replica.update_member(member, points=row.points + points)
            reward = self.core.program.reward(str(rec["reward"]))
            if reward is not None and reward.stock is not None:
                self.replica.add_stock(reward.code, 1)
            self.core.activity(event, member, points)
        return self.verify_voucher(code, now)

    def last_voucher(self, member: str | None = None) -> dict[str, Any] | None:
        """The most recent voucher (of a member, or of the node) for a reprint."""
        return self.replica.last_voucher(member)
