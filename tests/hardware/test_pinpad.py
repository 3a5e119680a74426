"""PIN pad: exact frame bytes, and the driver against the device simulator over a real pty."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import serial

from staypoint.kiosk.hardware.errors import PinPadUnavailable
from staypoint.kiosk.hardware.pinpad.device_sim import Answer, PinPadDevice
from staypoint.kiosk.hardware.pinpad.protocol import (
    ACK,
    NAK,
    FrameLink,
    LinkError,
    check_frame,
    encode_frame,
    lrc,
    prompt_command,
)
from staypoint.kiosk.hardware.pinpad.serial_pinpad import SerialPinPad
from staypoint.kiosk.hardware.pinpad.sim import SimPinPad
from staypoint.kiosk.hardware.status import DeviceState
from tests.waits import wait_until_async

from .conftest import PtyPair

# ---- exact bytes ------------------------------------------------------------------


def test_prompt_frame_exact_bytes() -> None:
    payload = prompt_command("Enter PIN", 4, 30)
    assert payload == b"P04030Enter PIN"
    frame = encode_frame(payload)
    # STX, LEN=15, payload, ETX, LRC = XOR(0x0F, payload..., 0x03)
    assert frame == bytes.fromhex("02 0F 50 30 34 30 33 30 45 6E 74 65 72 20 50 49 4E 03 54")
    assert lrc(frame[1:-1]) == 0x54
    assert check_frame(frame) == payload


def test_short_frames_exact_bytes() -> None:
    assert encode_frame(b"K1234") == bytes.fromhex("02 05 4B 31 32 33 34 03 49")
    assert encode_frame(b"C") == bytes.fromhex("02 01 43 03 41")
    assert encode_frame(b"S") == bytes.fromhex("02 01 53 03 51")


def test_prompt_text_is_sanitised_and_bounded() -> None:
    assert prompt_command("Café PIN", 6, 0.2) == b"P06001Caf? PIN"
    assert len(prompt_command("x" * 80, 4, 5)) == 6 + 32
    with pytest.raises(ValueError):
        prompt_command("PIN", 0, 5)
    with pytest.raises(ValueError):
        encode_frame(b"")


def test_bad_frames_rejected() -> None:
    good = encode_frame(b"K1234")
    assert check_frame(good[:-1] + bytes([good[-1] ^ 1])) is None  # LRC
    assert check_frame(good[:-2] + b"\x04" + good[-1:]) is None  # ETX
    assert check_frame(b"\x01" + good[1:]) is None  # STX
    assert check_frame(good[:-3] + good[-2:]) is None  # LEN disagrees


def test_link_over_loop_retries_then_gives_up() -> None:
    # loop:// echoes our own frame back, never an ACK: every send times out.
    port = serial.serial_for_url("loop://", timeout=0.05)
    link = FrameLink(port, ack_timeout=0.05, retries=3)
    with pytest.raises(LinkError):
        link.send(b"S")
    assert link.retransmits == 3


def test_link_receive_naks_bad_lrc_then_accepts_good() -> None:
    port = serial.serial_for_url("loop://", timeout=0.05)
    good = encode_frame(b"K42")
    port.write(good[:-1] + b"\x00" + good)
    link = FrameLink(port)
    assert link.receive(1.0) == b"K42"
    assert link.bad_frames == 1
    assert port.read(2) == bytes([NAK, ACK])  # what the link answered, echoed by loop://


# ---- over a real pty pair ---------------------------------------------------------


@pytest.fixture
def pad(pty_pair: PtyPair) -> Iterator[tuple[SerialPinPad, PinPadDevice]]:
    device = PinPadDevice.on_url(pty_pair.b).start()
    driver = SerialPinPad(pty_pair.a, ack_timeout=0.3)
    try:
        yield driver, device
    finally:
        driver.close()
        device.stop()


integration = pytest.mark.integration


@integration
async def test_read_pin(pad: tuple[SerialPinPad, PinPadDevice]) -> None:
    driver, device = pad
    device.type_pin("4821")
    assert await driver.read_pin("Enter PIN", 4, 5) == "4821"
    assert device.prompts == ["Enter PIN"]
    assert driver.status().state is DeviceState.OK


@integration
async def test_nak_then_retransmit(pad: tuple[SerialPinPad, PinPadDevice]) -> None:
    driver, device = pad
    device.nak_next = 1
    device.type_pin("9999")
    assert await driver.read_pin("PIN", 4, 5) == "9999"
    assert device.naks_sent == 1
    assert driver.retransmits == 1
    assert device.received == [b"P04005PIN"]


@integration
async def test_bad_lrc_answer_rejected_and_resent(
    pad: tuple[SerialPinPad, PinPadDevice],
) -> None:
    driver, device = pad
    device.corrupt_next = 1
    device.type_pin("1357")
    assert await driver.read_pin("PIN", 4, 5) == "1357"
    assert driver.bad_frames == 1
    assert device.retransmits == 1


@integration
async def test_cancel(pad: tuple[SerialPinPad, PinPadDevice]) -> None:
    driver, device = pad
    device.press_cancel()
    assert await driver.read_pin("PIN", 4, 5) is None


@integration
async def test_pad_reports_timeout(pad: tuple[SerialPinPad, PinPadDevice]) -> None:
    driver, device = pad
    device.queue(Answer("timeout"))
    assert await driver.read_pin("PIN", 4, 1) is None


@integration
async def test_silent_pad_times_out_and_aborts(
    pad: tuple[SerialPinPad, PinPadDevice], monkeypatch: pytest.MonkeyPatch
) -> None:
    import staypoint.kiosk.hardware.pinpad.serial_pinpad as sp

    monkeypatch.setattr(sp, "ANSWER_GRACE_S", 0.2)
    driver, device = pad
    device.queue(Answer("silent"))
    started = time.monotonic()
    assert await driver.read_pin("PIN", 4, 0.5) is None
    assert time.monotonic() - started < 3
    # the clear is sent after the read gave up: the stale prompt is cleared
    await wait_until_async(lambda: device.received[-1:] == [b"A"], 5, "the prompt's clear")


@integration
async def test_missing_pad_raises_and_recovers(pty_pair: PtyPair) -> None:
    driver = SerialPinPad(pty_pair.a, ack_timeout=0.1)
    with pytest.raises(PinPadUnavailable):
        await driver.read_pin("PIN", 4, 1)  # nobody on the other end: no ACK
    assert driver.status().state is DeviceState.OFFLINE
    device = PinPadDevice.on_url(pty_pair.b).start()
    try:
        assert (await driver.probe()).state is DeviceState.OK
        device.type_pin("2468")
        assert await driver.read_pin("PIN", 4, 5) == "2468"
    finally:
        driver.close()
        device.stop()


async def test_unopenable_port_is_missing(tmp_path: object) -> None:
    driver = SerialPinPad("/nonexistent/ttyPINPAD")
    with pytest.raises(PinPadUnavailable):
        await driver.read_pin("PIN", 4, 1)
    assert driver.status().state is DeviceState.MISSING


async def test_sim_pinpad_uses_the_real_protocol() -> None:
    pad = SimPinPad("2580", delay_s=0)
    try:
        assert await pad.read_pin("PIN", 4, 5) == "2580"
        pad.device.press_cancel()
        assert await pad.read_pin("PIN", 4, 5) is None
        assert pad.status().driver == "sim"
    finally:
        pad.close()
