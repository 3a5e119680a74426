"""Feedback: 1-5 stars and a few tags, stored on the node as an event."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widgets import Button, Static

from staypoint.edge.service import FEEDBACK_TAGS
from staypoint.kiosk.screens.base import KioskScreen


class FeedbackScreen(KioskScreen):
    """Rate the stay (from the dashboard, or after a redemption)."""

    def __init__(self, member: str, context: str) -> None:
        super().__init__(id="feedback")
        self.member = member
        self.context = context
        self.stars = 0
        self.tags: list[str] = []

    def compose_body(self) -> ComposeResult:
        yield Static("How was your stay?", classes="title")
        with Horizontal(id="stars"):
            for n in range(1, 6):
                yield Button("★" * n, id=f"star-{n}", classes="star")
        yield Static("Anything in particular? (tap any)", classes="help")
        with Grid(id="tags"):
            for i, tag in enumerate(FEEDBACK_TAGS):
                yield Button(tag, id=f"tag-{i}", classes="tag")
        with Horizontal(classes="actions"):
            yield Button("Send", id="send", classes="big primary", disabled=True)
            yield Button("Back", id="back", classes="big secondary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Stars pick one; tags toggle; Send stores it."""
        bid = event.button.id or ""
        if bid.startswith("star-"):
            self.stars = int(bid.removeprefix("star-"))
            for b in self.query(".star"):
                b.set_class(b.id == bid, "-chosen")
            self.query_one("#send", Button).disabled = False
        elif bid.startswith("tag-"):
            tag = FEEDBACK_TAGS[int(bid.removeprefix("tag-"))]
            if tag in self.tags:
                self.tags.remove(tag)
            else:
                self.tags.append(tag)
            event.button.set_class(tag in self.tags, "-chosen")
        elif bid == "send":
            service, now = self.service, self.kiosk.now()
            member, stars, tags, context = self.member, self.stars, list(self.tags), self.context
            event.button.disabled = True
            self.call(lambda: service.record_feedback(member, stars, tags, now, context=context), self._sent)
        elif bid == "back":
            self.app.pop_screen()

    def _sent(self, _: object) -> None:
        self.notify("Thank you: your feedback reaches the hotel team today.", timeout=4)
        self.app.pop_screen()
