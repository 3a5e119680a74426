"""Offers: member-only rates and the VIP offers of the member's tier, and tier benefits."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Static

from staypoint.edge.service import MemberSummary
from staypoint.kiosk.screens.base import KioskScreen


class OffersScreen(KioskScreen):
    """What the member's tier opens up today."""

    def __init__(self, summary: MemberSummary) -> None:
        super().__init__(id="offers")
        self.summary = summary

    def compose_body(self) -> ComposeResult:
        s = self.summary
        yield Static(f"Offers for {s.tier_name} members", classes="title")
        with VerticalScroll(id="offer-list"):
            for offer in s.offers:
                yield Static(f"★ {offer}", classes="offer")
            if not s.offers:
                yield Static("No offers for your tier today.", classes="help")
            yield Static("Your benefits", classes="subtitle")
            for benefit in s.benefits:
                yield Static(f"✓ {benefit}", classes="benefit")
        with Horizontal(classes="actions"):
            yield Button("Back", id="back", classes="big secondary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Back to the dashboard."""
        if event.button.id == "back":
            self.app.pop_screen()
