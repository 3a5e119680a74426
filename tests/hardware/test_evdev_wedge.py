"""Keyboard-wedge reader from recorded events (no /dev/input or uinput here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from staypoint.kiosk.hardware.reader.base import CardRead
from staypoint.kiosk.hardware.reader.evdev_wedge import (
    EV_KEY,
    INPUT_EVENT,
    EvdevWedgeReader,
    InputEventLike,
    RawInputEvent,
    WedgeDecoder,
    encode_input_events,
    iter_events,
    parse_input_events,
    typed,
)
from staypoint.kiosk.hardware.status import DeviceState
from tests.waits import wait_until_async


def decode(events: list[RawInputEvent], mode: str = "auto") -> tuple[list[CardRead], int]:
    decoder = WedgeDecoder(mode)  # type: ignore[arg-type]
    reads = [r for e in events if (r := decoder.feed(e)) is not None]
    return reads, decoder.garbled


def test_digits_and_enter_give_member_number() -> None:
    reads, garbled = decode(typed("7001234567"))
    assert reads == [CardRead(member_number="7001234567", source="evdev")]
    assert garbled == 0


def test_hex_uid_rule() -> None:
    reads, _ = decode(typed("04a1b2c3d4e5f6"))
    assert reads == [CardRead(uid="04A1B2C3D4E5F6", source="evdev")]
    # all-digit 8 chars is a member number in auto mode, a UID in uid mode
    assert decode(typed("04123456"))[0][0].member_number == "04123456"
    assert decode(typed("04123456"), "uid")[0][0].uid == "04123456"


def test_shifted_digits_and_garbage_are_counted_and_dropped() -> None:
    shifted = typed("1234567", shift=True)  # !@#$%^& on a US layout
    garbage = [RawInputEvent(0, 0, EV_KEY, 16, 1), *typed("123456")]  # 'q' then digits
    wrong_len = typed("ABCDEF123")  # hex but not 8/14/20 chars
    reads, garbled = decode(shifted + garbage + wrong_len + typed("7001234567"))
    assert garbled == 3
    assert reads == [CardRead(member_number="7001234567", source="evdev")]


def test_key_up_repeat_and_lone_enter_ignored() -> None:
    events = [RawInputEvent(0, 0, EV_KEY, 28, 1), *typed("123456")]
    events.insert(2, RawInputEvent(0, 0, EV_KEY, 2, 2))  # auto-repeat: not a key press
    reads, garbled = decode(events)
    assert [r.member_number for r in reads] == ["123456"]
    assert garbled == 0


def test_raw_input_event_records() -> None:
    blob = encode_input_events(typed("7001234567"))
    assert INPUT_EVENT.size == 24 and len(blob) % 24 == 0
    events = parse_input_events(blob)
    assert decode(events)[0][0].member_number == "7001234567"
    # a record as the kernel writes it: tv_sec, tv_usec, type, code, value
    one = INPUT_EVENT.pack(1700000000, 5, EV_KEY, 28, 1)
    assert parse_input_events(one) == [RawInputEvent(1700000000, 5, EV_KEY, 28, 1)]
    with pytest.raises(ValueError):
        parse_input_events(blob[:-1])


async def test_reader_consumes_async_source() -> None:
    recording = parse_input_events(encode_input_events(typed("7001234567")))
    reader = EvdevWedgeReader(lambda: iter_events(recording))
    reads: list[CardRead] = []
    await reader.start(reads.append)
    await wait_until_async(lambda: bool(reads), 10, "the reader")
    await reader.stop()
    assert [r.member_number for r in reads] == ["7001234567"]


async def test_reader_survives_unplug_and_replug() -> None:
    attempts = 0

    async def source() -> AsyncIterator[InputEventLike]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError(19, "No such device")
        for event in typed("123456"):
            yield event
        await asyncio.Event().wait()  # a live device: stays open

    reader = EvdevWedgeReader(source, retry_s=0.05)
    reads: list[CardRead] = []
    await reader.start(reads.append)
    await wait_until_async(lambda: bool(reads), 10, "the reader")
    assert reader.status().state is DeviceState.OK
    await reader.stop()
    assert attempts == 2
    assert reads[0].member_number == "123456"
