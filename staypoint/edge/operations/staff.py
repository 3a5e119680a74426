"""Staff: accounts on this node, signing in by card or id with a PIN (locking out like
members do), and telling a staff card from a guest's."""

from __future__ import annotations

import os
from datetime import datetime

from staypoint.edge.operations.core import NodeCore, require_role
from staypoint.edge.operations.errors import BadInput, PinLocked, UnknownCard, WrongPin
from staypoint.edge.operations.views import StaffProof
from staypoint.loyalty import pins
from staypoint.loyalty.events import iso, parse_iso
from staypoint.loyalty.roles import STAFF_ROLES, Task


class Staff:
    """The node's staff accounts and their sign-in."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.replica = core.replica

    def add_staff(
        self,
        staff_id: str,
        name: str,
        role: str,
        pin: str,
        card_uid: str | None = None,
        *,
        by: StaffProof | None = None,
    ) -> None:
        """Register a staff member on this node (a technician task; ``by=None`` is node set-up)."""
        require_role(by, Task.ADD_STAFF)
        if role not in STAFF_ROLES:
            raise BadInput(f"role is one of {', '.join(STAFF_ROLES)}")
        if len(pin) < 4 or not pin.isdigit():
            raise BadInput("a staff PIN is at least 4 digits")
        card_hash = self.core.keys.card_hash(card_uid) if card_uid else None
        pin_hash = pins.hash_pin(pin, os.urandom(16))
        with self.replica.write():
            if self.replica.staff(staff_id=staff_id) is not None:
                raise BadInput(f"staff {staff_id} already exists")
            # The replica would refuse it too, but as an IntegrityError: say which rule it is.
            if card_hash is not None and self.replica.staff(card_hash=card_hash) is not None:
                raise BadInput("that card is already another staff member's")
            self.replica.insert_staff(staff_id, name, role, card_hash, pin_hash)

    def staff_login(
        self, pin: str, now: datetime, *, staff_id: str | None = None, card_uid: str | None = None
    ) -> StaffProof:
        """Staff card (or id) + PIN; staff lock out like members do."""
        rec = (
            self.replica.staff(card_hash=self.core.keys.card_hash(card_uid))
            if card_uid
            else self.replica.staff(staff_id=staff_id)
        )
        if rec is None:
            who = f"no staff member {staff_id!r} on this node"
            raise UnknownCard("not a staff card" if card_uid else who)
        until = parse_iso(rec["locked_until"]) if rec["locked_until"] else None
        if until is not None and now < until:
            raise PinLocked(until)
        policy = self.core.program.pin
        if pins.verify_pin(pin, str(rec["pin_hash"])):
            with self.replica.write():
                self.replica.update_staff_pin_state(str(rec["staff_id"]), 0, None)
            return StaffProof(str(rec["staff_id"]), str(rec["name"]), str(rec["role"]))
        failures = 0 if (until is not None and now >= until) else int(rec["pin_failures"])
        state = pins.after_failure(pins.PinState(failures, None), policy, now)
        with self.replica.write():
            self.replica.update_staff_pin_state(
                str(rec["staff_id"]),
                state.failures,
                iso(state.locked_until) if state.locked_until else None,
            )
        raise WrongPin(pins.tries_left(state, policy))

    def is_staff_card(self, card_uid: str) -> bool:
        """True when the card is a staff member's (the kiosk opens the staff screen)."""
        try:
            return self.replica.staff(card_hash=self.core.keys.card_hash(card_uid)) is not None
        except ValueError:
            return False
