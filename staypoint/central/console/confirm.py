"""The console's one "are you sure?": a modal with the question, a big Yes and a big Cancel.

``app.push_screen(Confirm("Revoke API key 1a2b…?", "Revoke"), on_answer)``: ``on_answer`` gets
True for Yes and False for Cancel (the button, escape, or enter: Cancel has the focus). Used
before what cannot be undone from the console: revoking an API key, removing a webhook,
sending a campaign.
Styles: ``confirm.tcss``.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class Confirm(ModalScreen[bool]):
    """A question and two answers; dismissed with True (yes) or False (cancel)."""

    CSS_PATH = "confirm.tcss"
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "cancel", "Cancel")
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(self.yes, id="confirm-yes", variant="error")
                yield Button("Cancel", id="confirm-no", variant="default")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()  # enter alone never does the deed

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-yes")

    def action_cancel(self) -> None:
        self.dismiss(False)
