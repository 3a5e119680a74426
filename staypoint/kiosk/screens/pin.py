"""PIN: on the PIN pad when one is fitted, else on a masked on-screen keypad.

Wrong PINs say how many tries are left; the last one locks the member out of kiosk
redemptions, and the screen says so and what to do (staff can unlock).

The app builds this screen once and reuses it for every guest (composing a keypad of
twelve buttons per tap was most of the tap-to-PIN time): :meth:`PinScreen.prepare` fills
it for the member just identified, :meth:`PinScreen.forget` blanks it again the moment
the guest leaves it, so no name stays in the DOM between guests.
"""

from __future__ import annotations

from typing import ClassVar

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
    """Asks the member identified by card or number for their PIN (one instance, reused)."""

    REUSED: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__(id="pin")
        self.member: MemberRow | None = None
        self.on_pad = False

    def compose_body(self) -> ComposeResult:
        yield Static("", id="pin-hello", classes="title")
        yield Static("", id="pin-prompt", classes="help")
        yield Keypad(max_length=self.kiosk.pin_length, mask=True, id="pin-pad")
        with Horizontal(classes="actions"):
            yield Button("Cancel", id="cancel", classes="secondary")
            yield Button("OK", id="locked-ok", classes="hidden")

    def prepare(self, member: MemberRow) -> None:
        """Fill the screen for this member, before it is pushed (so its first paint is complete)."""
        self.forget()
        self.member = member
        self.on_pad = self.kiosk.pinpad is not None
        self.query_one("#pin-hello", Static).update(f"Hello {member.name}")
        self._say("Enter your PIN on the PIN pad" if self.on_pad else "Enter your PIN")
        # With a PIN pad the keypad stays hidden: PINs are typed where no one can watch.
        self.query_one(Keypad).display = not self.on_pad
        if self.on_pad:
            self.read_on_pad()

    def forget(self) -> None:
        """Blank the screen and drop any answer still on its way (the guest has gone)."""
        self.forget_pending()
        self.workers.cancel_group(self, "pinpad")
        self.set_focus(None)  # the last guest's pressed button must not look pressed
        self.member = None
        self.query_one("#pin-hello", Static).update("")
        self._say("")
        keypad = self.query_one(Keypad)
        keypad.clear()
        keypad.display = True
        self.query_one("#cancel").display = True
        self.query_one("#locked-ok").add_class("hidden")
        self.remove_class("-locked")

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
        if self.member is None:  # the guest left meanwhile
            return
        if pin is None:  # cancelled or timed out on the pad
            self.kiosk.cancel_pin()
            return
        self.check(pin)

    def _say(self, text: str, error: bool = False) -> None:
        prompt = self.query_one("#pin-prompt", Static)
        prompt.update(text)
        prompt.set_class(error, "error")

    def check(self, pin: str) -> None:
        """Verify the PIN, and read the dashboard's data in the same trip to the thread."""
        if self.member is None:
            return
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
            self.kiosk.cancel_pin()
        elif event.button.id == "locked-ok":
            self.kiosk.end_session()
