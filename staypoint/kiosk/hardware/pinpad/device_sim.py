"""Device-side PIN-pad simulator: sits on the far end of a pty (or socket) and
answers like a real pad, typing the digits it was given.

Used by the integration tests (over a socat pty pair) and by
:class:`~staypoint.kiosk.hardware.pinpad.sim.SimPinPad` (over a socketpair).
Fault injection: ``nak_next`` NAKs the next N good frames (the host must
retransmit); ``corrupt_next`` sends the next N frames with a wrong LRC (the
host must NAK them, and we retransmit).
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from dataclasses import dataclass

from staypoint.kiosk.hardware.pinpad.protocol import (
    CMD_ABORT,
    CMD_PROMPT,
    CMD_STATUS,
    RSP_CANCEL,
    RSP_PIN,
    RSP_TIMEOUT,
    FrameLink,
    LinkError,
    SerialLike,
    encode_frame,
    parse_prompt,
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the simulated guest does at the next prompt.

    ``kind``: ``pin`` (type ``digits``), ``cancel``, ``timeout`` (the pad reports
    TIMEOUT) or ``silent`` (the pad says nothing: host-side timeout).
    """

    kind: str
    digits: str = ""
    delay_s: float = 0.0


class _SimLink(FrameLink):
    def __init__(self, port: SerialLike, device: PinPadDevice) -> None:
        super().__init__(port)
        self.device = device

    def should_ack(self, payload: bytes) -> bool:
        if self.device.nak_next > 0:
            self.device.nak_next -= 1
            self.device.naks_sent += 1
            return False
        return True

    def encode(self, payload: bytes) -> bytes:
        frame = encode_frame(payload)
        if self.device.corrupt_next > 0:
            self.device.corrupt_next -= 1
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame


class PinPadDevice:
    """A simulated PIN pad serving one port in a background thread."""

    def __init__(self, port: SerialLike, *, default: Answer | None = None) -> None:
        self.answers: collections.deque[Answer] = collections.deque()
        self.default = default or Answer("pin", "1234")
        self.received: list[bytes] = []  # every good payload, retransmissions included
        self.prompts: list[str] = []
        self.nak_next = 0
        self.corrupt_next = 0
        self.naks_sent = 0
        self._link = _SimLink(port, self)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pinpad-device-sim", daemon=True)

    @classmethod
    def on_url(cls, url: str, **kwargs: Answer | None) -> PinPadDevice:
        """Open ``url`` (a pty path, ``socket://``...) with pyserial and serve it."""
        import serial

        return cls(serial.serial_for_url(url, baudrate=9600, timeout=0.1), **kwargs)

    @property
    def bad_frames(self) -> int:
        """Frames from the host this pad rejected (bad ETX/LRC)."""
        return self._link.bad_frames

    @property
    def retransmits(self) -> int:
        """Frames this pad had to send again."""
        return self._link.retransmits

    def type_pin(self, digits: str, delay_s: float = 0.0) -> None:
        """Queue: at the next prompt the guest types ``digits`` and OK."""
        self.answers.append(Answer("pin", digits, delay_s))

    def press_cancel(self, delay_s: float = 0.0) -> None:
        """Queue: at the next prompt the guest presses Cancel."""
        self.answers.append(Answer("cancel", delay_s=delay_s))

    def queue(self, answer: Answer) -> None:
        """Queue any :class:`Answer`."""
        self.answers.append(answer)

    def start(self) -> PinPadDevice:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._stop.set()
        self._thread.join(3)
        with contextlib.suppress(Exception):
            self._link.port.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                payload = self._link.receive(0.2)
            except (OSError, ValueError, TypeError):
                return  # port closed under us
            if payload is None:
                continue
            self.received.append(payload)
            if payload[:1] == CMD_STATUS:
                self._reply(b"S0")
            elif payload[:1] == CMD_PROMPT:
                self._prompt(payload)
            elif payload[:1] == CMD_ABORT:
                pass  # display cleared; nothing to answer

    def _prompt(self, payload: bytes) -> None:
        prompt = parse_prompt(payload)
        if prompt is None:
            return
        self.prompts.append(prompt.text)
        answer = self.answers.popleft() if self.answers else self.default
        if answer.delay_s and self._stop.wait(answer.delay_s):
            return
        if answer.kind == "pin":
            self._reply(RSP_PIN + answer.digits[: prompt.length].encode("ascii"))
        elif answer.kind == "cancel":
            self._reply(RSP_CANCEL)
        elif answer.kind == "timeout":
            self._reply(RSP_TIMEOUT)
        # "silent": say nothing, the host times out

    def _reply(self, payload: bytes) -> None:
        with contextlib.suppress(LinkError, OSError):
            self._link.send(payload)
        time.sleep(0)
