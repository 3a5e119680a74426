"""A big on-screen number pad: the calculator example's grid, one Button per key."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.widgets import Button, Static

KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "del", "0", "ok")
LABELS = {"del": "⌫", "ok": "OK"}


class KeyButton(Button):
    """A key that takes every tap.

    Button ignores a click while its 200 ms "pressed" effect shows; that guards a Redeem
    button against a double tap, but on a keypad it would swallow the second 0 of "00".
    """

    async def _on_click(self, event: events.Click) -> None:
        event.stop()
        self.press()


class Keypad(Vertical):
    """Digits typed by touch; ``mask`` shows dots instead of digits (PINs)."""

    class Changed(Message):
        """The typed value changed (the identify screen checks a full number at once)."""

        def __init__(self, keypad: Keypad, value: str) -> None:
            super().__init__()
            self.keypad = keypad
            self.value = value

    class Submitted(Message):
        """OK was pressed."""

        def __init__(self, keypad: Keypad, value: str) -> None:
            super().__init__()
            self.keypad = keypad
            self.value = value

    def __init__(self, *, max_length: int, mask: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, classes="keypad")
        self.max_length = max_length
        self.mask = mask
        self.value = ""

    def compose(self) -> ComposeResult:
        yield Static(self._shown(), classes="keypad-display")
        with Grid(classes="keypad-grid"):
            for key in KEYS:
                yield KeyButton(LABELS.get(key, key), id=f"key-{key}", classes=f"key key-{key}")

    def _shown(self) -> str:
        if self.mask:
            return " ".join("●" for _ in self.value) or " "
        # Member numbers read back as on the card: 4-5-1 groups.
        v = self.value
        return " ".join(p for p in (v[:4], v[4:9], v[9:]) if p) or " "

    def clear(self) -> None:
        """Forget what was typed (after a wrong PIN)."""
        self.value = ""
        self.query_one(".keypad-display", Static).update(self._shown())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Keys edit the value; the press is not passed on to the screen."""
        key = (event.button.id or "").removeprefix("key-")
        if key not in KEYS:
            return
        # The screen only hears Submitted/Changed; the touch itself was counted on MouseDown.
        event.stop()
        if key == "ok":
            self.post_message(self.Submitted(self, self.value))
            return
        if key == "del":
            self.value = self.value[:-1]
        elif len(self.value) < self.max_length:
            self.value += key
        self.query_one(".keypad-display", Static).update(self._shown())
        self.post_message(self.Changed(self, self.value))
