"""The card-reader interface every reader driver implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from staypoint.kiosk.hardware.status import DeviceStatus

#: UIDs are 4 (single size), 7 (double) or 10 (triple size) bytes: ISO 14443-3.
UID_BYTE_LENGTHS = frozenset({4, 7, 10})
#: Member numbers are decimal; anything shorter or longer is a misread.
MEMBER_NUMBER_MIN = 6
MEMBER_NUMBER_MAX = 20


@dataclass(frozen=True, slots=True)
class CardRead:
    """One successful read of a member card.

    Exactly one of ``uid`` (uppercase hex of a contactless UID) and
    ``member_number`` (decimal string from a contact card's file or typed by a
    keyboard-wedge reader) is set. ``source`` names the driver and, where known,
    the reader (``pcsc:Virtual PCD 00 00``, ``evdev``, ``sim``).
    """

    uid: str | None = None
    member_number: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if (self.uid is None) == (self.member_number is None):
            raise ValueError("CardRead needs exactly one of uid or member_number")
        if self.uid is not None and not is_valid_uid(self.uid):
            raise ValueError(f"not a card UID: {self.uid!r}")
        if self.member_number is not None and not is_valid_member_number(self.member_number):
            raise ValueError(f"not a member number: {self.member_number!r}")


OnRead = Callable[[CardRead], None]


def is_valid_uid(text: str) -> bool:
    """True for uppercase hex of a 4-, 7- or 10-byte UID."""
    if len(text) % 2 or len(text) // 2 not in UID_BYTE_LENGTHS:
        return False
    return all(c in "0123456789ABCDEF" for c in text)


def is_valid_member_number(text: str) -> bool:
    """True for a decimal member number of plausible length."""
    return text.isascii() and text.isdigit() and (MEMBER_NUMBER_MIN <= len(text) <= MEMBER_NUMBER_MAX)


@runtime_checkable
class CardReader(Protocol):
    """A member-card reader.

    ``on_read`` is called on the event loop that called :meth:`start`, once per
    good read. Garbled reads are counted in ``garbled`` and dropped: a reader
    never raises a bad card into the app.
    """

    @property
    def garbled(self) -> int:
        """Unreadable reads dropped since the reader was created."""
        ...

    async def start(self, on_read: OnRead) -> None:
        """Start watching for cards; returns once watching has begun."""
        ...

    async def stop(self) -> None:
        """Stop watching and release the device."""
        ...

    def status(self) -> DeviceStatus:
        """Current health of the reader (cheap; no I/O)."""
        ...
