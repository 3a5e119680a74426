"""Keyboard-wedge card reader read through evdev.

A wedge reader "types" the card's number followed by Enter. Production code
opens the input device, ``grab()``s it (so the digits never reach the
terminal or another app) and feeds ``device.async_read_loop()`` to
:class:`EvdevWedgeReader`. Tests feed recorded events instead: this machine has
no ``/dev/input`` and no uinput.

Decoding rule (documented in docs/hardware.md):

* only key-down events (value 1) count; key-up (0) and auto-repeat (2) do not;
* Shift/Ctrl/Alt key presses themselves are ignored, but a *digit* typed while
  Shift is held (``!@#...``) makes the line garbled;
* Enter / keypad Enter ends the line;
* mode ``auto`` (default): all decimal digits -> ``member_number``; hex with at
  least one letter A-F and 8/14/20 characters -> ``uid``; anything else is
  garbled (counted, dropped). Mode ``member`` / ``uid`` forces one reading
  (use ``uid`` for readers that print an all-digit hex UID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from staypoint.kiosk.hardware.reader.base import (
    CardRead,
    OnRead,
    is_valid_member_number,
    is_valid_uid,
)
from staypoint.kiosk.hardware.status import DeviceState, DeviceStatus

log = logging.getLogger(__name__)

EV_KEY = 0x01
KEY_DOWN = 1

# Linux input-event-codes.h; only what a wedge reader types.
KEY_ENTER = 28
KEY_KPENTER = 96
_SHIFT_KEYS = frozenset({42, 54})  # KEY_LEFTSHIFT, KEY_RIGHTSHIFT
_OTHER_MODIFIERS = frozenset({29, 97, 56, 100, 58})  # ctrl, alt, capslock
_DIGITS: dict[int, str] = {
    2: "1",
    3: "2",
    4: "3",
    5: "4",
    6: "5",
    7: "6",
    8: "7",
    9: "8",
    10: "9",
    11: "0",
    79: "1",
    80: "2",
    81: "3",
    75: "4",
    76: "5",
    77: "6",
    71: "7",
    72: "8",
    73: "9",
    82: "0",
}
_HEX_LETTERS: dict[int, str] = {30: "A", 48: "B", 46: "C", 32: "D", 18: "E", 33: "F"}
#: Keycode for each character, for building recordings in tests and tools.
KEYCODE_FOR: dict[str, int] = {
    **{ch: code for code, ch in _DIGITS.items() if code < 20},
    **{ch: code for code, ch in _HEX_LETTERS.items()},
}

#: ``struct input_event`` on 64-bit Linux: timeval (2 x long), u16 type, u16 code, s32 value.
INPUT_EVENT = struct.Struct("<qqHHi")
MAX_LINE = 40  # longer than any card number: a stuck key or a keyboard, not a reader

WedgeMode = Literal["auto", "member", "uid"]


class InputEventLike(Protocol):
    """What we need from ``evdev.InputEvent``."""

    @property
    def type(self) -> int: ...
    @property
    def code(self) -> int: ...
    @property
    def value(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RawInputEvent:
    """One decoded ``struct input_event`` record (duck-types ``evdev.InputEvent``)."""

    sec: int
    usec: int
    type: int
    code: int
    value: int


def parse_input_events(blob: bytes) -> list[RawInputEvent]:
    """Decode raw 24-byte ``input_event`` records (e.g. a recorded ``/dev/input`` dump).

    Raises ValueError when the blob is not a whole number of records.
    """
    if len(blob) % INPUT_EVENT.size:
        raise ValueError(
            f"{len(blob)} bytes is not a whole number of {INPUT_EVENT.size}-byte input_event records"
        )
    return [RawInputEvent(*fields) for fields in INPUT_EVENT.iter_unpack(blob)]


def encode_input_events(events: Iterable[InputEventLike]) -> bytes:
    """Encode events as raw ``input_event`` records (timestamps zero)."""
    return b"".join(INPUT_EVENT.pack(0, 0, e.type, e.code, e.value) for e in events)


def typed(text: str, *, enter: bool = True, shift: bool = False) -> list[RawInputEvent]:
    """The key events a wedge reader emits when it types ``text`` (a test/recording helper)."""
    events: list[RawInputEvent] = []

    def press(code: int) -> None:
        events.append(RawInputEvent(0, 0, EV_KEY, code, 1))
        events.append(RawInputEvent(0, 0, 0, 0, 0))  # EV_SYN between, as the kernel does
        events.append(RawInputEvent(0, 0, EV_KEY, code, 0))

    if shift:
        events.append(RawInputEvent(0, 0, EV_KEY, 42, 1))
    for ch in text.upper():
        press(KEYCODE_FOR[ch])
    if shift:
        events.append(RawInputEvent(0, 0, EV_KEY, 42, 0))
    if enter:
        press(KEY_ENTER)
    return events


async def iter_events(events: Iterable[InputEventLike]) -> AsyncIterator[InputEventLike]:
    """Turn a recording into the async iterator the reader consumes."""
    for event in events:
        yield event
        await asyncio.sleep(0)


class WedgeDecoder:
    """Turns key events into lines and lines into :class:`CardRead` (no I/O)."""

    def __init__(self, mode: WedgeMode = "auto", source: str = "evdev") -> None:
        if mode not in ("auto", "member", "uid"):
            raise ValueError(f"evdev mode must be auto, member or uid, not {mode!r}")
        self.mode: WedgeMode = mode
        self.source = source
        self.garbled = 0
        self._chars: list[str] = []
        self._bad = False
        self._shift = False

    def feed(self, event: InputEventLike) -> CardRead | None:
        """Consume one event; return a read when it completes a good line."""
        if event.type != EV_KEY:
            return None
        if event.code in _SHIFT_KEYS:
            self._shift = event.value != 0
            return None
        if event.value != KEY_DOWN or event.code in _OTHER_MODIFIERS:
            return None
        if event.code in (KEY_ENTER, KEY_KPENTER):
            return self._end_line()
        if event.code in _DIGITS and not self._shift:
            self._chars.append(_DIGITS[event.code])
        elif event.code in _HEX_LETTERS:
            # Readers commonly send uppercase hex with Shift held: same letter.
            self._chars.append(_HEX_LETTERS[event.code])
        else:
            self._bad = True
        if len(self._chars) > MAX_LINE:
            self._bad = True
            self._chars.clear()
        return None

    def _end_line(self) -> CardRead | None:
        text, bad = "".join(self._chars), self._bad
        self._chars.clear()
        self._bad = False
        if not text and not bad:
            return None  # a lone Enter is noise, not a misread
        read = None if bad else self.classify(text)
        if read is None:
            self.garbled += 1
            log.info("wedge reader: dropped a garbled line (%d chars)", len(text))
        return read

    def classify(self, text: str) -> CardRead | None:
        """Apply the mode's rule to one complete line."""
        is_digits = text.isdigit()
        if self.mode == "member" or (self.mode == "auto" and is_digits):
            if is_valid_member_number(text):
                return CardRead(member_number=text, source=self.source)
            return None
        if self.mode == "auto" and len(text) not in (8, 14, 20):
            return None
        if is_valid_uid(text):
            return CardRead(uid=text, source=self.source)
        return None


EventSource = Callable[[], AsyncIterator[InputEventLike]]


class EvdevWedgeReader:
    """Keyboard-wedge reader over any async iterator of input events.

    ``source`` is a zero-argument callable returning a fresh iterator; it is
    called again after the device disappears (``OSError`` from the read loop),
    so an unplugged and re-plugged reader is picked up without a restart.
    """

    def __init__(
        self,
        source: EventSource,
        *,
        mode: WedgeMode = "auto",
        retry_s: float = 2.0,
        name: str = "evdev",
    ) -> None:
        self._source = source
        self._decoder = WedgeDecoder(mode, source=name)
        self._retry_s = retry_s
        self._task: asyncio.Task[None] | None = None
        self._state = DeviceState.MISSING
        self._detail = "not started"

    @property
    def garbled(self) -> int:
        """Lines dropped as unreadable since start."""
        return self._decoder.garbled

    @classmethod
    def from_device(cls, path: str, *, mode: WedgeMode = "auto", retry_s: float = 2.0) -> EvdevWedgeReader:
        """A reader for ``/dev/input/by-id/...``: opens and grabs it on every (re)connect."""

        async def events() -> AsyncIterator[InputEventLike]:
            import evdev  # heavy and Linux-only: imported only when this driver runs

            device = evdev.InputDevice(path)
            try:
                device.grab()  # keep the typed digits away from the console and the app
                async for event in device.async_read_loop():
                    yield event
            finally:
                with contextlib.suppress(OSError):
                    device.close()

        return cls(events, mode=mode, retry_s=retry_s, name=f"evdev:{path}")

    async def start(self, on_read: OnRead) -> None:
        """Start consuming events in a background task."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(on_read), name="evdev-wedge-reader")
        await asyncio.sleep(0)

    async def stop(self) -> None:
        """Cancel the read loop (which closes and ungrabs the device)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._state, self._detail = DeviceState.MISSING, "stopped"

    def status(self) -> DeviceStatus:
        """OK while the read loop is attached to a device."""
        return DeviceStatus("reader", "evdev", self._state, self._detail)

    async def _run(self, on_read: OnRead) -> None:
        while True:
            try:
                self._state, self._detail = DeviceState.OK, ""
                async for event in self._source():
                    read = self._decoder.feed(event)
                    if read is not None:
                        on_read(read)
                # A finite source (a recording) ended: nothing more will come.
                self._state, self._detail = DeviceState.MISSING, "event source ended"
                return
            except OSError as err:  # unplugged (ENODEV) or cannot open / grab
                self._state, self._detail = DeviceState.MISSING, f"{type(err).__name__}: {err}"
                log.warning("wedge reader unavailable, retrying: %s", err)
            await asyncio.sleep(self._retry_s)
