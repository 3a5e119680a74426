"""A touch pad for head office's one-time codes: only the code's 32 letters and digits.

The code on the welcome letter (``ABCD-EFGH-JKLM``) has no 0/O or 1/I, so the pad has no key
a guest could confuse; it takes at most the code's length and reads back in its groups.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.widgets import Button, Static

from staypoint.kiosk.widgets.keypad import KeyButton
from staypoint.loyalty import first_pin_codes

KEYS = (*first_pin_codes.ALPHABET, "del", "ok")
LABELS = {"del": "⌫", "ok": "OK"}


class Codepad(Vertical):
    """Letters and digits typed by touch, shown as the letter prints them."""

    class Changed(Message):
        """The typed code changed."""

        def __init__(self, codepad: Codepad, value: str) -> None:
            super().__init__()
            self.codepad = codepad
            self.value = value

    class Submitted(Message):
        """OK was pressed."""

        def __init__(self, codepad: Codepad, value: str) -> None:
            super().__init__()
            self.codepad = codepad
            self.value = value

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="codepad")
        self.value = ""

    def compose(self) -> ComposeResult:
        yield Static(self._shown(), classes="codepad-display")
        with Grid(classes="codepad-grid"):
            for key in KEYS:
                yield KeyButton(LABELS.get(key, key), id=f"code-key-{key}", classes=f"key code-key-{key}")

    def _shown(self) -> str:
        return first_pin_codes.display(self.value) or " "

    def clear(self) -> None:
        """Forget what was typed."""
        self.value = ""
        self.query_one(".codepad-display", Static).update(self._shown())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Keys edit the value; the press is not passed on to the screen."""
        key = (event.button.id or "").removeprefix("code-key-")
        if key not in KEYS:
            return
        event.stop()
        if key == "ok":
            self.post_message(self.Submitted(self, self.value))
            return
        if key == "del":
            self.value = self.value[:-1]
        elif len(self.value) < first_pin_codes.LENGTH:
            self.value += key
        self.query_one(".codepad-display", Static).update(self._shown())
        self.post_message(self.Changed(self, self.value))
