"""A yes/no question over the current screen: ``ModalScreen[bool]`` and ``dismiss()``."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True for the confirm button, False for the other."""

    def __init__(self, question: str, detail: str = "", *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__(id="confirm")
        self.question = question
        self.detail = detail
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, classes="title")
            yield Static(self.detail, classes="help")
            with Horizontal(classes="actions"):
                yield Button(self.yes, id="yes", classes="big primary")
                yield Button(self.no, id="no", classes="big secondary")

    def on_mouse_down(self, event: events.MouseDown) -> None:
        """A touch here keeps the session alive too."""
        touched = getattr(self.app, "touched", None)
        if touched is not None:
            touched()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer and close."""
        event.stop()
        self.dismiss(event.button.id == "yes")
