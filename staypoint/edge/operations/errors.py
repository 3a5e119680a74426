"""Every refusal the node service gives: each is one line a guest or a clerk can act on."""

from __future__ import annotations

from datetime import datetime

from staypoint.loyalty.redemption import Refusal


class NodeError(Exception):
    """Base of every refusal the node gives; ``code`` is stable for --json and the kiosk."""

    code = "error"


class BadInput(NodeError):
    code = "bad_input"


class UnknownMember(NodeError):
    code = "unknown_member"


class UnknownCard(NodeError):
    code = "unknown_card"


class WrongPin(NodeError):
    code = "wrong_pin"

    def __init__(self, tries_left: int) -> None:
        msg = (
            f"wrong PIN: {tries_left} {'try' if tries_left == 1 else 'tries'} left"
            if tries_left
            else "wrong PIN: the account is now locked for redemptions"
        )
        super().__init__(msg)
        self.tries_left = tries_left


class PinLocked(NodeError):
    code = "locked"

    def __init__(self, until: datetime) -> None:
        super().__init__(f"too many wrong PINs: locked until {until:%H:%M} UTC (staff can unlock it)")
        self.until = until


class RedemptionRefused(NodeError):
    code = "refused"

    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal


class OfflineLimitReached(NodeError):
    code = "offline_limit"


class AuthorisationDenied(NodeError):
    """Head office answered and said no (its balance is the authority)."""

    code = "denied"


class VoucherRejected(NodeError):
    code = "voucher_rejected"


class NotAllowed(NodeError):
    code = "not_allowed"
