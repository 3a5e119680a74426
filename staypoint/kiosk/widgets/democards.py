"""The demo's "Tap a demo card" panel: buttons that present cards to the simulated reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Button, Static

if TYPE_CHECKING:
    from staypoint.kiosk.app import KioskApp


@dataclass(frozen=True)
class DemoCard:
    """One card in the panel: what the button says and the UID it presents."""

    label: str
    uid: str


class DemoCards(VerticalScroll):
    """Only shown when the app runs on a simulated reader (``staypoint demo``)."""

    def __init__(self, cards: tuple[DemoCard, ...]) -> None:
        super().__init__(id="demo-cards")
        self.cards = cards

    def compose(self) -> ComposeResult:
        yield Static("Tap a demo card", classes="demo-title")
        for i, card in enumerate(self.cards):
            yield Button(card.label, id=f"democard-{i}", classes="demo-card")
        yield Static("Guest PIN 1234\nDesk PIN 2468\nTech PIN 1357", classes="demo-hint")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Hand the card to the simulated reader, exactly as a real tap would arrive."""
        name = event.button.id or ""
        if not name.startswith("democard-"):
            return
        event.stop()
        app: KioskApp = self.app  # type: ignore[assignment]
        app.demo_tap(self.cards[int(name.removeprefix("democard-"))].uid)
