"""Identify: tap a card, or type the member number on a big keypad.

The check digit is checked the moment the tenth digit is typed, before any lookup, so
a slip of the finger is caught at once and the guest is never told "unknown member"
for a typo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from staypoint.edge.replica import MemberRow
from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.session import sentence
from staypoint.kiosk.widgets.keypad import Keypad
from staypoint.loyalty import member_numbers

if TYPE_CHECKING:
    from staypoint.kiosk.hardware.reader.base import CardRead


def start_lookup(screen: KioskScreen, read: CardRead | None = None, number: str | None = None) -> None:
    """Find who a card or number belongs to, then open the member's or staff's PIN screen."""
    service = screen.service

    def find() -> tuple[str, Any]:
        if read is not None and read.uid is not None:
            if service.is_staff_card(read.uid):
                return "staff", read.uid
            return "member", service.member_by_card(read.uid)
        return "member", service.resolve_member(number or (read.member_number if read else "") or "")

    def found(answer: tuple[str, Any]) -> None:
        # Imported here: the staff screens import this module's neighbours.
        from staypoint.kiosk.screens.staff import StaffLoginScreen

        kind, value = answer
        screen.kiosk.touched()
        if kind == "staff":
            screen.app.push_screen(StaffLoginScreen(str(value)))
        else:
            assert isinstance(value, MemberRow)
            screen.kiosk.ask_pin(value)

    screen.call(find, found)


class IdentifyScreen(KioskScreen):
    """Member number by touch (a card tap works here too)."""

    SHOW_DEMO_CARDS = True

    def compose_body(self) -> ComposeResult:
        yield Static("Type your member number", classes="title")
        yield Static("It is on your card and in the app: 10 digits.", id="identify-help", classes="help")
        yield Keypad(max_length=member_numbers.NUMBER_LENGTH, id="number-pad")
        with Horizontal(classes="actions"):
            yield Button("Back", id="back", classes="secondary")

    def _say(self, text: str, error: bool = True) -> None:
        help_ = self.query_one("#identify-help", Static)
        help_.update(text)
        help_.set_class(error, "error")

    def on_keypad_changed(self, event: Keypad.Changed) -> None:
        """Ten digits typed: check the check digit now, before the guest reaches for OK."""
        if len(event.value) == member_numbers.NUMBER_LENGTH and not member_numbers.is_valid(event.value):
            self._say("That number is not right (check digit): please check it and re-type.")
        else:
            self._say("It is on your card and in the app: 10 digits.", error=False)

    def on_keypad_submitted(self, event: Keypad.Submitted) -> None:
        """OK: check locally, then look the member up."""
        try:
            number = member_numbers.normalise(event.value)
        except member_numbers.MemberNumberError:
            if len(event.value) < member_numbers.NUMBER_LENGTH:
                self._say(f"A member number has 10 digits; you typed {len(event.value)}.")
            else:
                self._say("That number is not right (check digit): please check it and re-type.")
            return
        start_lookup(self, number=number)

    def show_error(self, error: Exception) -> None:
        """Unknown member and the like: said where the guest is looking."""
        self._say(sentence(str(error)))
        self.query_one(Keypad).clear()

    def card_read(self, read: CardRead) -> bool:
        """A card tapped while typing wins."""
        start_lookup(self, read=read)
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Back to the attract screen."""
        if event.button.id == "back":
            self.app.pop_screen()
