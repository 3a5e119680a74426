"""Pay from stored value at the staff menu: the member's card (or number), the amount, and
the member's own PIN — on the PIN pad when one is fitted, else typed by the guest in the
masked field — as the guest's redemption flow proves it (``NodeService.verify_pin``).

The payment is ``NodeService.spend``: online, head office holds the amount against the wallet
through the agent link first; with no answer, the programme's offline value limits apply.
Every blocking step (scrypt, the hold, SQLite) runs in the screen's service worker.
"""

from __future__ import annotations

from decimal import Decimal

from textual import work
from textual.widgets import Button, Input, Static

from staypoint.edge.service import NotAllowed
from staypoint.kiosk.hardware.errors import DeviceError
from staypoint.kiosk.screens.pin import PINPAD_TIMEOUT_S
from staypoint.kiosk.screens.staff import Field, StaffForm


class SpendForm(StaffForm):
    """A payment from a member's stored value, authorised by the member's PIN."""

    TITLE_TEXT = "Pay from stored value"
    FIELDS = (
        Field("member", "Member", "tap the member's card, or type the number", card=True),
        Field("amount", "Amount", "e.g. 25.00"),
        Field("pin", "Member's PIN", "typed by the guest (or on the PIN pad)", password=True),
    )
    ACTIONS = (("go", "Pay"),)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """With a PIN pad fitted and no PIN typed, the guest enters it on the pad first."""
        if event.button.id == "do-go" and self.kiosk.pinpad is not None and not self.values()["pin"]:
            self.query_one("#result", Static).update("Member: enter your PIN on the PIN pad")
            self.read_pin_on_pad(self.values())
            return
        super().on_button_pressed(event)

    @work(exclusive=True, group="pinpad", exit_on_error=False)
    async def read_pin_on_pad(self, values: dict[str, str]) -> None:
        """The pad's driver does its own blocking I/O off the loop."""
        pad = self.kiosk.pinpad
        assert pad is not None
        try:
            pin = await pad.read_pin("Enter PIN", self.kiosk.pin_length, PINPAD_TIMEOUT_S)
        except DeviceError as exc:
            self.show_error(NotAllowed(f"the PIN pad is not answering ({exc}): the guest types the PIN here"))
            return
        if pin is None:
            self.show_error(NotAllowed("no PIN entered: nothing paid"))
            return
        self.call(lambda: self.perform("go", values | {"pin": pin}), self.done)

    def perform(self, action: str, values: dict[str, str]) -> str:
        """Find the member, prove their PIN, pay (blocking: in the service worker)."""
        service, now = self.service, self.kiosk.now()
        raw = values["member"]
        if not raw:
            raise NotAllowed("tap the member's card or type their number")
        digits = raw.replace(" ", "").replace("-", "")
        row = service.resolve_member(raw) if digits.isdigit() and len(digits) == 10 else None
        if row is None:
            row = service.member_by_card(raw)
        if not values["pin"]:
            raise NotAllowed("the member enters their PIN")
        proof = service.verify_pin(row.number, values["pin"], now)
        balance: Decimal = service.spend(proof, values["amount"], now)
        currency = service.program.currency
        return f"Paid {values['amount']} {currency} for {row.name}: stored value is now {balance} {currency}."

    def done(self, text: str) -> None:
        """Success: the PIN field is blanked (a PIN never stays on screen)."""
        self.query_one("#f-pin", Input).value = ""
        super().done(text)

    def show_error(self, error: Exception) -> None:
        """A refusal: the PIN field is blanked too."""
        self.query_one("#f-pin", Input).value = ""
        super().show_error(error)
