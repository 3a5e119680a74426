"""The Staypoint PIN-pad wire protocol: frames, link layer, commands.

Frame::

    STX(0x02) LEN PAYLOAD[LEN] ETX(0x03) LRC

LEN is the payload length (1..MAX_PAYLOAD); LRC is the XOR of every byte after
STX up to and including ETX (LEN, payload, ETX). The receiver answers each
frame with ACK (0x06) or, when ETX or LRC is wrong, NAK (0x15); the sender
retransmits on NAK or when no answer comes within ``ack_timeout`` up to
``RETRIES`` times. Byte-for-byte reference with examples: docs/hardware.md.

The link code here is blocking (pyserial) and shared by the host driver and the
device-side simulator; async callers run it in a thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

STX, ETX, ACK, NAK = 0x02, 0x03, 0x06, 0x15
MAX_PAYLOAD = 64
RETRIES = 3  # retransmissions after the first try: 4 sends at most
MAX_PROMPT = 32  # characters on a typical two-line, 16-column pad display

# Payload command/response codes (first payload byte, ASCII).
CMD_PROMPT = b"P"  # P nn ttt text  : ask for a PIN of up to nn digits, pad times out after ttt s
CMD_ABORT = b"A"  # A              : stop prompting, clear the display
CMD_STATUS = b"S"  # S              : are you there?
RSP_PIN = b"K"  # K digits       : PIN entered
RSP_CANCEL = b"C"  # C              : guest pressed Cancel
RSP_TIMEOUT = b"T"  # T              : nobody typed in time
RSP_STATUS = b"S"  # S 0            : idle and well


class LinkError(Exception):
    """The peer did not acknowledge a frame after all retransmissions."""


class SerialLike(Protocol):
    """The part of ``serial.Serial`` the link uses (``timeout`` in seconds)."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes, /) -> int | None: ...
    def reset_input_buffer(self) -> None: ...
    def close(self) -> None: ...


def lrc(data: bytes) -> int:
    """XOR of ``data`` (pass LEN + payload + ETX)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def encode_frame(payload: bytes) -> bytes:
    """STX LEN payload ETX LRC."""
    if not 1 <= len(payload) <= MAX_PAYLOAD:
        raise ValueError(f"payload must be 1..{MAX_PAYLOAD} bytes, got {len(payload)}")
    body = bytes([len(payload)]) + payload + bytes([ETX])
    return bytes([STX]) + body + bytes([lrc(body)])


def check_frame(frame: bytes) -> bytes | None:
    """The payload of a complete frame, or None when STX/LEN/ETX/LRC are wrong."""
    if len(frame) < 5 or frame[0] != STX:
        return None
    length = frame[1]
    if len(frame) != length + 4 or frame[-2] != ETX or not 1 <= length <= MAX_PAYLOAD:
        return None
    if lrc(frame[1:-1]) != frame[-1]:
        return None
    return frame[2:-2]


def prompt_command(prompt: str, length: int, timeout_s: float) -> bytes:
    """Payload of a PIN prompt: ``P`` + 2-digit max length + 3-digit timeout + text."""
    if not 1 <= length <= 12:  # ISO 9564 PINs are 4-12 digits; allow short for tests
        raise ValueError(f"PIN length must be 1..12, got {length}")
    seconds = max(1, min(999, round(timeout_s)))
    # The pad's display is ASCII only: anything else becomes '?', never an error.
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in prompt)[:MAX_PROMPT]
    return CMD_PROMPT + f"{length:02d}{seconds:03d}".encode() + text.encode("ascii")


@dataclass(frozen=True, slots=True)
class Prompt:
    """A decoded prompt command (device side)."""

    length: int
    timeout_s: int
    text: str


def parse_prompt(payload: bytes) -> Prompt | None:
    """Decode a ``P`` payload; None if malformed."""
    if payload[:1] != CMD_PROMPT or len(payload) < 6 or not payload[1:6].isdigit():
        return None
    return Prompt(int(payload[1:3]), int(payload[3:6]), payload[6:].decode("ascii", "replace"))


class FrameLink:
    """Blocking framed link over a serial-like port (one per side)."""

    def __init__(self, port: SerialLike, *, ack_timeout: float = 0.5, retries: int = RETRIES):
        self.port = port
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.retransmits = 0  # statistics, for health and tests
        self.bad_frames = 0

    # ---- sending -------------------------------------------------------------
    def encode(self, payload: bytes) -> bytes:
        """The bytes put on the wire for ``payload`` (the simulator overrides this)."""
        return encode_frame(payload)

    def send(self, payload: bytes) -> None:
        """Send one frame and wait for its ACK, retransmitting on NAK or silence.

        Raises LinkError after ``1 + retries`` unacknowledged sends.
        """
        for attempt in range(self.retries + 1):
            if attempt:
                self.retransmits += 1
            self.port.write(self.encode(payload))
            if self._await_ack():
                return
        raise LinkError(f"no ACK after {self.retries + 1} sends")

    def _await_ack(self) -> bool:
        deadline = time.monotonic() + self.ack_timeout
        while (left := deadline - time.monotonic()) > 0:
            self.port.timeout = left
            byte = self.port.read(1)
            if byte == bytes([ACK]):
                return True
            if byte == bytes([NAK]):
                return False
            # anything else while waiting for ACK is line noise: skip it
        return False

    # ---- receiving -----------------------------------------------------------
    def should_ack(self, payload: bytes) -> bool:
        """Hook for the simulator to NAK a good frame; the host always ACKs."""
        return True

    def receive(self, timeout: float, byte_timeout: float = 0.5) -> bytes | None:
        """Wait up to ``timeout`` for a good frame; ACK it and return its payload.

        Bad frames are NAKed and counted, and we keep waiting (the sender
        retransmits). Returns None when nothing good arrives in time.
        """
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.port.timeout = min(left, 0.2)
            first = self.port.read(1)
            if first != bytes([STX]):
                continue  # idle line, noise, stray ACK/NAK: resynchronise on STX
            self.port.timeout = byte_timeout
            head = self.port.read(1)
            if not head:
                self._reject()
                continue
            rest = self._read_exact(head[0] + 2)
            frame = first + head + rest
            payload = check_frame(frame)
            if payload is None:
                self._reject()
                continue
            if not self.should_ack(payload):
                self.port.write(bytes([NAK]))
                continue
            self.port.write(bytes([ACK]))
            return payload
        return None

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.port.read(n - len(buf))
            if not chunk:
                break  # inter-byte timeout: a truncated frame, check_frame rejects it
            buf += chunk
        return buf

    def _reject(self) -> None:
        self.bad_frames += 1
        self.port.write(bytes([NAK]))
