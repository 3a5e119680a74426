"""Stored value: a member's wallet topped up at the desk and spent with a PIN."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from staypoint.edge.operations.core import NodeCore, require_role
from staypoint.edge.operations.errors import BadInput, NotAllowed, OfflineLimitReached, UnknownMember
from staypoint.edge.operations.views import PinProof, StaffProof
from staypoint.loyalty import bounds
from staypoint.loyalty.events import EventType
from staypoint.loyalty.money import MoneyError, parse_amount
from staypoint.loyalty.redemption import check_offline_spend
from staypoint.loyalty.roles import Task


class StoredValue:
    """Money on a member's account, in the programme's currency."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.replica = core.replica

    def top_up(self, member: str, amount: str | Decimal, now: datetime, staff: StaffProof) -> Decimal:
        """Add money to a member's stored-value balance; returns the new balance."""
        require_role(staff, Task.TOP_UP)
        rules = self.core.program.stored_value
        try:
            value = parse_amount(amount, allow_zero=False)
        except MoneyError as exc:
            raise BadInput(str(exc)) from None
        if not rules.min_top_up <= value <= rules.max_top_up:
            raise BadInput(f"a top-up is between {rules.min_top_up} and {rules.max_top_up}")
        row0 = self.core.resolve_member(member)
        with self.replica.write():
            row = self.replica.member(row0.number)
            assert row is not None
            balance = Decimal(row.stored_value) + value
            if balance > rules.max_balance:
                raise NotAllowed(f"the stored-value balance cannot exceed {rules.max_balance}")
            event = self.core.emit(
                EventType.VALUE_TOPPED_UP,
                row.number,
                {"amount": str(value), "currency": self.core.program.currency, "staff": staff.staff_id},
                now,
            )
            self.replica.update_member(row.number, stored_value=str(balance))
            self.core.activity(event, row.number, 0, str(value))
        return balance

    def spend(self, proof: PinProof, amount: str | Decimal, now: datetime, *, online: bool = True) -> Decimal:
        """Pay from stored value (PIN proven): head office asked first for a hold on the
        wallet, else the offline limits; returns the new balance."""
        try:
            value = parse_amount(amount, allow_zero=False)
            bounds.money(str(value), "amount", self.core.program.bounds.money_per_event)
        except (MoneyError, bounds.BoundError) as exc:
            raise BadInput(str(exc)) from None
        row0 = self.replica.member(proof.member)
        if row0 is None:
            raise UnknownMember(f"no member {proof.member}")
        if value > Decimal(row0.stored_value):
            raise NotAllowed(f"stored value is {row0.stored_value} {self.core.program.currency}: not enough")
        # Ask head office before taking the write lock (a network wait must never block the
        # other writers): it holds the amount against the wallet, so two nodes online can never
        # both spend it. No answer: the offline floor limits bound what two offline nodes can
        # overdraw.
        hold = self.core.authoriser.authorise_value(row0.number, value, now) if online else None
        with self.replica.write():
            row = self.replica.member(proof.member)
            assert row is not None
            balance = Decimal(row.stored_value)
            if value > balance:
                raise NotAllowed(f"stored value is {balance} {self.core.program.currency}: not enough")
            profile = None
            if hold is None:
                state = self.core.offline_state(row)
                since = self.replica.meta("last_contact")
                decision = check_offline_spend(
                    self.core.program.offline,
                    value,
                    self.replica.value_spent_since(row.number, since),
                    state,
                    now,
                )
                if not decision.allowed:
                    raise OfflineLimitReached(decision.message)
                profile = decision.profile
            event = self.core.emit(
                EventType.VALUE_SPENT,
                row.number,
                {
                    "amount": str(value),
                    "currency": self.core.program.currency,
                    "hold": hold.id if hold else None,
                    "limits": profile,
                },
                now,
                auth="online" if hold else "offline",
                row=row,
            )
            self.replica.update_member(row.number, stored_value=str(balance - value))
            self.core.activity(event, row.number, 0, str(-value))
        return balance - value
