"""PIN: on the PIN pad when one is fitted, else on a masked on-screen keypad.

Wrong PINs say how many tries are left; the last one locks the member out of kiosk
redemptions, and the screen says so and what to do (staff can unlock).
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from staypoint.edge.replica import MemberRow
from staypoint.edge.service import MemberSummary, PinLocked, PinProof, WrongPin
from staypoint.kiosk.hardware.errors import DeviceError
from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.session import sentence
from staypoint.kiosk.widgets.keypad import Keypad

#: Seconds the PIN pad waits for the guest before it gives up.
PINPAD_TIMEOUT_S = 30.0


class PinScreen(KioskScreen):
    """Asks the member identified by card or number for their PIN."""

    def __init__(self, member: MemberRow) -> None:
        super().__init__(id="pin")
        self.member = member
        self.on_pad = self.kiosk.pinpad is not None

    def compose_body(self) -> ComposeResult:
        yield Static(f"Hello {self.member.name}", classes="title")
        prompt = "Enter your PIN on the PIN pad" if self.on_pad else "Enter your PIN"
        yield Static(prompt, id="pin-prompt", classes="help")
        yield Keypad(max_length=self.kiosk.pin_length, mask=True, id="pin-pad")
        with Horizontal(classes="actions"):
            yield Button("Cancel", id="cancel", classes="secondary")
            yield Button("OK", id="locked-ok", classes="hidden")

    def on_mount(self) -> None:
        """With a PIN pad the keypad stays hidden: PINs are typed where no one can watch."""
        if self.on_pad:
            self.query_one(Keypad).display = False
            self.read_on_pad()

    @work(exclusive=True, group="pinpad", exit_on_error=False)
    async def read_on_pad(self) -> None:
        """The pad's driver does its own blocking I/O off the loop."""
        pad = self.kiosk.pinpad
        assert pad is not None
        try:
            pin = await pad.read_pin("Enter PIN", self.kiosk.pin_length, PINPAD_TIMEOUT_S)
        except DeviceError:
            self.on_pad = False
            self.query_one(Keypad).display = True
            self._say("The PIN pad is not answering: please enter your PIN here.", error=True)
            return
        if pin is None:  # cancelled or timed out on the pad
            self.app.pop_screen()
            return
        self.check(pin)

    def _say(self, text: str, error: bool = False) -> None:
        prompt = self.query_one("#pin-prompt", Static)
        prompt.update(text)
        prompt.set_class(error, "error")

    def check(self, pin: str) -> None:
        """Verify the PIN, and read the dashboard's data in the same trip to the thread."""
        service, member, now = self.service, self.member.number, self.kiosk.now()

        def verify() -> tuple[PinProof, MemberSummary]:
            proof = service.verify_pin(member, pin, now)
            return proof, service.summary(member, now)

        self._say("Checking…")
        self.call(verify, self.verified)

    def verified(self, answer: tuple[PinProof, MemberSummary]) -> None:
        """Good PIN: the session starts."""
        self.kiosk.start_session(*answer)

    def show_error(self, error: Exception) -> None:
        """Wrong PIN (tries left) or locked (what to do); anything else as said."""
        keypad = self.query_one(Keypad)
        keypad.clear()
        if isinstance(error, PinLocked) or (isinstance(error, WrongPin) and error.tries_left == 0):
            keypad.display = False
            self._say(
                "Too many wrong PINs: your account is locked for redemptions.\n"
                "Please ask at the front desk; staff can unlock it.",
                error=True,
            )
            self.query_one("#cancel").display = False
            self.query_one("#locked-ok").remove_class("hidden")
            self.add_class("-locked")
            return
        self._say(sentence(str(error)), error=True)
        if self.on_pad:
            self.read_on_pad()

    def on_keypad_submitted(self, event: Keypad.Submitted) -> None:
        """OK on the on-screen keypad."""
        if len(event.value) < self.kiosk.pin_length:
            self._say(f"Your PIN has {self.kiosk.pin_length} digits.", error=True)
            return
        self.check(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Cancel goes back; after a lock-out, OK ends the visit."""
        if event.button.id == "cancel":
            self.app.pop_screen()
        elif event.button.id == "locked-ok":
            self.kiosk.end_session()
