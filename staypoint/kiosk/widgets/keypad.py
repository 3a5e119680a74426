"""Big on-screen pads: the calculator example's grid, one Button per key (digits; codes in codepad.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.widgets import Button, Static


class KeyButton(Button):
    """A key that takes every tap.

    Button ignores a click while its 200 ms "pressed" effect shows; that guards a Redeem
    button against a double tap, but on a keypad it would swallow the second 0 of "00".
    """

    async def _on_click(self, event: events.Click) -> None:
        event.stop()
        self.press()


class TouchPad(Vertical):
    """A grid of :class:`KeyButton` keys that edit one typed value; ``del`` and ``ok`` are
    keys like the others. Subclasses give the keys, how the value reads back, and their own
    Changed/Submitted messages (so a screen's handler names the pad it listens to)."""

    KEYS: tuple[str, ...] = ()
    LABELS: ClassVar[Mapping[str, str]] = {"del": "⌫", "ok": "OK"}
    PAD = "keypad"  # CSS class of the pad; its display and grid are "<PAD>-display", "<PAD>-grid"
    KEY_ID = "key-"  # a key's id prefix

    def __init__(self, *, max_length: int, id: str | None = None) -> None:
        super().__init__(id=id, classes=self.PAD)
        self.max_length = max_length
        self.value = ""

    def compose(self) -> ComposeResult:
        yield Static(self._shown(), classes=f"{self.PAD}-display")
        with Grid(classes=f"{self.PAD}-grid"):
            for key in self.KEYS:
                yield KeyButton(
                    self.LABELS.get(key, key), id=f"{self.KEY_ID}{key}", classes=f"key {self.KEY_ID}{key}"
                )

    def _shown(self) -> str:
        return self.value or " "

    def _changed(self) -> Message:
        raise NotImplementedError

    def _submitted(self) -> Message:
        raise NotImplementedError

    def clear(self) -> None:
        """Forget what was typed (after a wrong PIN or code)."""
        self.value = ""
        self.query_one(f".{self.PAD}-display", Static).update(self._shown())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Keys edit the value; the press is not passed on to the screen."""
        key = (event.button.id or "").removeprefix(self.KEY_ID)
        if key not in self.KEYS:
            return
        # The screen only hears Submitted/Changed; the touch itself was counted on MouseDown.
        event.stop()
        if key == "ok":
            self.post_message(self._submitted())
            return
        if key == "del":
            self.value = self.value[:-1]
        elif len(self.value) < self.max_length:
            self.value += key
        self.query_one(f".{self.PAD}-display", Static).update(self._shown())
        self.post_message(self._changed())


class Keypad(TouchPad):
    """Digits typed by touch; ``mask`` shows dots instead of digits (PINs)."""

    KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "del", "0", "ok")

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
        self.mask = mask
        super().__init__(max_length=max_length, id=id)

    def _shown(self) -> str:
        if self.mask:
            return " ".join("●" for _ in self.value) or " "
        # Member numbers read back as on the card: 4-5-1 groups.
        v = self.value
        return " ".join(p for p in (v[:4], v[4:9], v[9:]) if p) or " "

    def _changed(self) -> Message:
        return self.Changed(self, self.value)

    def _submitted(self) -> Message:
        return self.Submitted(self, self.value)
