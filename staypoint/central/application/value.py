"""Stored value spent online: the path a node's online payment takes (``NodeService.spend``
through the agent link). A value hold at head office first (``Ledger.authorise_value``: the
balance less open holds, so two payments at once never both get more than the wallet holds),
then a ``value.spent`` event carrying the hold, on the web stream."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from staypoint.central.application.core import OfficeCore
from staypoint.central.application.sources import Draft
from staypoint.central.errors import Conflict, Invalid
from staypoint.loyalty import bounds
from staypoint.loyalty.money import MoneyError, parse_amount


class StoredValue:
    """Payments from a member's wallet."""

    def __init__(self, core: OfficeCore) -> None:
        self.core = core

    def spend_value(
        self, number: str, amount: str, now: datetime, reference: str | None = None
    ) -> dict[str, Any]:
        """Take ``amount`` from ``number``'s stored value: a hold first, then ``value.spent``."""
        core = self.core
        program = core.program()
        try:
            value = parse_amount(amount, allow_zero=False)
            bounds.money(str(value), "amount", program.bounds.money_per_event)
        except (MoneyError, bounds.BoundError) as exc:
            raise Invalid(f"amount: {exc}", "bad_amount") from None
        m = core.member(number)
        node = core.sources.stream("web")
        decision = core.ledger.authorise_value(node, number, f"{value:.2f}", now)
        if not decision.ok or decision.hold is None:
            raise Conflict(decision.reason or "refused", "refused")
        data: dict[str, Any] = {
            "amount": f"{value:.2f}",
            "currency": program.currency,
            "hold": decision.hold,
            "limits": None,
        }
        core.sources.emit("web", [Draft("value.spent", number, data, auth="online")], now)
        after = core.ledger.member(number) or m
        return {
            "member": number,
            "amount": f"{value:.2f}",
            "currency": program.currency,
            "balance": str(after.get("stored_value", "0.00")),
            "hold": decision.hold,
            "reference": reference,
        }
