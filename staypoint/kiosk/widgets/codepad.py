"""A touch pad for head office's one-time codes: only the code's 32 letters and digits.

The code on the welcome letter (``ABCD-EFGH-JKLM``) has no 0/O or 1/I, so the pad has no key
a guest could confuse; it takes at most the code's length and reads back in its groups.
"""

from __future__ import annotations

from textual.message import Message

from staypoint.kiosk.widgets.keypad import TouchPad
from staypoint.loyalty import first_pin_codes


class Codepad(TouchPad):
    """Letters and digits typed by touch, shown as the letter prints them."""

    KEYS = (*first_pin_codes.ALPHABET, "del", "ok")
    PAD = "codepad"
    KEY_ID = "code-key-"

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
        super().__init__(max_length=first_pin_codes.LENGTH, id=id)

    def _shown(self) -> str:
        return first_pin_codes.display(self.value) or " "

    def _changed(self) -> Message:
        return self.Changed(self, self.value)

    def _submitted(self) -> Message:
        return self.Submitted(self, self.value)
