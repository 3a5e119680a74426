"""Attract: the property's name, "tap your card", and a strip of current offers."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.containers import Center, Horizontal
from textual.widgets import Button, Static

from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.screens.identify import IdentifyScreen, start_lookup
from staypoint.kiosk.session import sentence

if TYPE_CHECKING:
    from staypoint.kiosk.hardware.reader.base import CardRead


class AttractScreen(KioskScreen):
    """The resting screen: no member data ever appears here."""

    MEMBER_DATA: ClassVar[bool] = False
    SHOW_DEMO_CARDS = True

    def __init__(self) -> None:
        super().__init__(id="attract")
        self._offer = 0

    def compose_body(self) -> ComposeResult:
        yield Static(self.kiosk.property_name, id="property-name", classes="title")
        yield Static("Staypoint Rewards", classes="subtitle")
        yield Static("◉  Tap your card on the reader", id="tap-prompt")
        with Center():
            yield Button("or type your member number", id="type-number", classes="big")
        yield Static("", id="attract-message")
        with Horizontal(id="offers-strip"):
            yield Static(self._offer_text(), id="offer")

    def _offer_text(self) -> str:
        offers = self.kiosk.attract_offers
        if not offers:
            return ""
        return f"★ {offers[self._offer % len(offers)]}"

    def on_mount(self) -> None:
        """Rotate the offers strip (0 s keeps it still, for snapshots)."""
        if self.kiosk.offers_rotate_s > 0 and len(self.kiosk.attract_offers) > 1:
            self.set_interval(self.kiosk.offers_rotate_s, self.next_offer)

    def next_offer(self) -> None:
        """Show the next offer in the strip."""
        self._offer += 1
        self.query_one("#offer", Static).update(self._offer_text())

    def say(self, text: str) -> None:
        """A short message under the prompt (unknown card, session ended)."""
        self.query_one("#attract-message", Static).update(text)

    def show_error(self, error: Exception) -> None:
        """Unknown card and the like."""
        self.say(sentence(str(error)))

    def card_read(self, read: CardRead) -> bool:
        """A tap starts the journey."""
        self.say("")
        start_lookup(self, read=read)
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Type the number instead."""
        if event.button.id == "type-number":
            self.say("")
            self.app.push_screen(IdentifyScreen())
