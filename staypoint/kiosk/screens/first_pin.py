"""Set your PIN: an imported member's first PIN, with the one-time code from the welcome letter.

A member imported from a property system has no PIN, so the PIN screen cannot let them in;
the app opens this screen instead. It offers "Set your PIN", takes the code on a pad of the
code's own letters (``widgets/codepad.py``) and the new PIN twice (on the PIN pad when one is
fitted, else a masked keypad), then asks head office through the node's service, on the
app's service thread (:meth:`NodeService.set_first_pin`: the PIN is hashed on the node and
only the hash and the code travel). Head office's answer is one line here: a wrong code (and
the tries left: the code is asked for again, the PIN kept), a used, expired or void code, or
no answer ("needs head office": offline). Once set, the screen waits for the PIN to reach the
replica with the member's record (head office's ``pin.set``, fanned out) and hands over to
the PIN screen, where the member signs in with it. Styles: ``first_pin.tcss``.
"""

from __future__ import annotations

import asyncio
import time

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from staypoint.edge.replica import MemberRow
from staypoint.edge.service import BadInput, FirstPinOffline, FirstPinRefused, FirstPinSet
from staypoint.kiosk.hardware.errors import DeviceError
from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.screens.pin import PINPAD_TIMEOUT_S
from staypoint.kiosk.session import sentence
from staypoint.kiosk.widgets.codepad import Codepad
from staypoint.kiosk.widgets.keypad import Keypad
from staypoint.loyalty import first_pin_codes

OFFLINE = "Setting a first PIN needs head office; please ask at the desk."
#: Head office's refusals that end the visit, in the kiosk's words (a wrong code is asked again).
REFUSED = {
    "code_used": "This code has been used already: sign in with your PIN.",
    "code_expired": "This code has expired: please ask at the desk for a new one.",
    "code_void": "Too many wrong codes: this code no longer works. Please ask at the desk for a new one.",
    "no_code": "There is no first-use code for this membership: please ask at the desk.",
    "has_pin": "This membership has a PIN already: sign in with it.",
    "unknown_member": "Head office does not know this membership yet: please ask at the desk.",
    "not_offered": "Setting a first PIN is not possible here yet: please ask at the desk.",
}
#: How long the screen waits for the new PIN to reach the replica (head office's fan-out).
ARRIVAL_WAIT_S = 20.0
ARRIVAL_POLL_S = 0.25


class FirstPinScreen(KioskScreen):
    """Offer, code, new PIN, the same again, head office's answer (one instance per guest)."""

    CSS_PATH = "first_pin.tcss"

    def __init__(self, member: MemberRow) -> None:
        super().__init__(id="first-pin")
        self.member = member
        self.step = "offer"
        self.code = ""
        self.pin = ""
        self.on_pad = False

    def compose_body(self) -> ComposeResult:
        yield Static(f"Hello {self.member.name}", id="first-pin-hello", classes="title")
        yield Static("", id="first-pin-prompt", classes="help")
        yield Codepad(id="code-pad")
        yield Keypad(max_length=self.kiosk.pin_length, mask=True, id="new-pin-pad")
        yield Static("", id="first-pin-message")
        with Horizontal(classes="actions"):
            yield Button("Set your PIN", id="start", classes="big primary")
            yield Button("Cancel", id="cancel", classes="big secondary")
            yield Button("OK", id="done", classes="big primary")

    def on_mount(self) -> None:
        """The offer; offline (or an offline-only kiosk) it says so at once: nothing to type."""
        health = self.kiosk.health
        if not self.service.can_ask_first_pin() or (health is not None and not health.online):
            self._finish(OFFLINE, error=True)
            return
        self._show("offer")
        self._prompt("You have no PIN yet. With the code from your welcome letter you can set one here.")

    # -- what the screen shows ------------------------------------------------------------------

    def _show(self, step: str) -> None:
        self.step = step
        self.query_one(Codepad).display = step == "code"
        self.query_one(Keypad).display = step in ("pin", "again") and not self.on_pad
        self.query_one("#start").display = step == "offer"
        self.query_one("#cancel").display = step != "done"
        self.query_one("#done").display = step == "done"

    def _prompt(self, text: str) -> None:
        self.query_one("#first-pin-prompt", Static).update(text)

    def _say(self, text: str, error: bool = False) -> None:
        message = self.query_one("#first-pin-message", Static)
        message.update(text)
        message.set_class(error, "error")
        message.set_class(bool(text) and not error, "-ok")

    def _finish(self, text: str, error: bool = False) -> None:
        """The visit's last word: one line and OK (which ends it)."""
        self.pin = self.code = ""
        self.workers.cancel_group(self, "pinpad")
        self._show("done")
        self._prompt("")
        self._say(text, error)

    # -- the steps ------------------------------------------------------------------------------

    def _ask_code(self) -> None:
        self.query_one(Codepad).clear()
        self._show("code")
        self._prompt(f"Type the code from your welcome letter: {first_pin_codes.LENGTH} letters and digits.")

    def _ask_pin(self, again: bool = False) -> None:
        self.query_one(Keypad).clear()
        self.on_pad = self.kiosk.pinpad is not None
        self._show("again" if again else "pin")
        n = self.kiosk.pin_length
        where = " on the PIN pad" if self.on_pad else ""
        self._prompt(f"Type your new PIN again{where}." if again else f"Choose a PIN of {n} digits{where}.")
        if self.on_pad:
            self.read_on_pad(again)

    @work(exclusive=True, group="pinpad", exit_on_error=False)
    async def read_on_pad(self, again: bool) -> None:
        """The new PIN on the PIN pad, where no one can watch (its driver blocks off the loop)."""
        pad = self.kiosk.pinpad
        assert pad is not None
        try:
            pin = await pad.read_pin(
                "PIN again" if again else "New PIN", self.kiosk.pin_length, PINPAD_TIMEOUT_S
            )
        except DeviceError:
            self.on_pad = False
            self._show(self.step)
            self._say("The PIN pad is not answering: please type your new PIN here.", error=True)
            return
        if pin is None:  # cancelled or timed out on the pad
            self.kiosk.end_session()
            return
        self._pin_typed(pin)

    def _pin_typed(self, pin: str) -> None:
        if len(pin) != self.kiosk.pin_length or not pin.isdigit():
            self._say(f"A PIN has {self.kiosk.pin_length} digits.", error=True)
            self._ask_pin(again=self.step == "again")
            return
        if self.step == "pin":
            self.pin = pin
            self._say("")
            self._ask_pin(again=True)
            return
        if pin != self.pin:
            self.pin = ""
            self._say("The two PINs were not the same: please choose your PIN again.", error=True)
            self._ask_pin()
            return
        self._send()

    def _send(self) -> None:
        service, number, code, pin, now = (
            self.service,
            self.member.number,
            self.code,
            self.pin,
            self.kiosk.now(),
        )
        self._show("sending")
        self._prompt("")
        self._say("Asking head office…")
        self.call(lambda: service.set_first_pin(number, code, pin, now), self._sent, self._refused)

    def _sent(self, result: FirstPinSet) -> None:
        """Head office set it: wait for the PIN to reach this kiosk, then the PIN screen."""
        self.pin = self.code = ""
        self._show("waiting")
        self._say("Your PIN is set. One moment while it reaches this kiosk…")
        self.await_pin(result)

    def _refused(self, error: Exception) -> None:
        if isinstance(error, FirstPinRefused) and error.reason_code == "bad_code":
            self._say(sentence(str(error)), error=True)  # "this code is not right (4 tries left)"
            self._ask_code()
        elif isinstance(error, FirstPinRefused):
            self._finish(REFUSED.get(error.reason_code, sentence(str(error))), error=True)
        elif isinstance(error, FirstPinOffline):
            self._finish(OFFLINE, error=True)
        elif isinstance(error, BadInput):
            self._finish(sentence(str(error)), error=True)
        else:
            self._finish(sentence(str(error)) or OFFLINE, error=True)

    @work(exclusive=True, group="arrival", exit_on_error=False)
    async def await_pin(self, result: FirstPinSet) -> None:
        """Head office's ``pin.set`` reaches the replica with the member's record: then sign in."""
        deadline = time.monotonic() + ARRIVAL_WAIT_S
        while True:
            try:
                row = await self.kiosk.blocking(self.service.resolve_member, result.member)
            except Exception:  # the replica unreadable for a moment: the PIN is set all the same
                break
            if row.pin_hash:
                self.kiosk.ask_pin(row)
                self.kiosk.notify("Your PIN is set: enter it to sign in.", timeout=6)
                return
            if time.monotonic() >= deadline:
                break
            self.kiosk.touched()  # the guest is waiting in front of the screen
            await asyncio.sleep(ARRIVAL_POLL_S)
        self._finish("Your PIN is set. It reaches this kiosk within a few minutes: tap your card again then.")

    # -- touches --------------------------------------------------------------------------------

    def on_codepad_submitted(self, event: Codepad.Submitted) -> None:
        """OK on the code pad: the shape is checked here, so a slip costs no try at head office."""
        try:
            self.code = first_pin_codes.parse(event.value)
        except first_pin_codes.CodeFormatError as exc:
            self._say(sentence(str(exc)) + ".", error=True)
            return
        self._say("")
        if self.pin:  # a wrong code was typed: the PIN chosen (twice) is kept
            self._send()
        else:
            self._ask_pin()

    def on_keypad_submitted(self, event: Keypad.Submitted) -> None:
        """OK on the on-screen PIN keypad."""
        self._pin_typed(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Set your PIN starts; Cancel and OK end the visit (nothing of it is kept)."""
        if event.button.id == "start":
            self._say("")
            self._ask_code()
        elif event.button.id in ("cancel", "done"):
            self.kiosk.end_session()
