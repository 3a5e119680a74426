"""PIN pad on a serial port, speaking the framed protocol in :mod:`.protocol`.

The port is opened with pyserial's ``serial_for_url`` so ``/dev/ttyUSB0``, a pty
path, ``loop://`` or ``socket://host:port`` all work. Blocking serial I/O runs
in a worker thread; one lock keeps two callers from interleaving frames. On any
port error the port is closed and reopened on next use, so an unplugged and
re-plugged pad comes back without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from staypoint.kiosk.hardware.errors import PinPadUnavailable
from staypoint.kiosk.hardware.pinpad.protocol import (
    CMD_ABORT,
    CMD_STATUS,
    RSP_CANCEL,
    RSP_PIN,
    RSP_STATUS,
    RSP_TIMEOUT,
    FrameLink,
    LinkError,
    SerialLike,
    prompt_command,
)
from staypoint.kiosk.hardware.status import DeviceState, DeviceStatus

log = logging.getLogger(__name__)

#: Extra seconds we wait past the pad's own timeout for its TIMEOUT answer.
ANSWER_GRACE_S = 2.0

PortFactory = Callable[[], SerialLike]


class SerialPinPad:
    """:class:`PinPad` driver for the Staypoint framed serial protocol."""

    def __init__(
        self,
        port: str = "",
        *,
        baudrate: int = 9600,
        ack_timeout: float = 0.5,
        port_factory: PortFactory | None = None,
        driver: str = "serial",
    ) -> None:
        if not port and port_factory is None:
            raise ValueError("SerialPinPad needs a port (path or pyserial URL) or a port_factory")
        self.port = port
        self.baudrate = baudrate
        self.ack_timeout = ack_timeout
        self._factory = port_factory or self._open_serial
        self._driver = driver
        self._link: FrameLink | None = None
        self._lock = threading.Lock()
        self._status = DeviceStatus("pinpad", driver, DeviceState.OK, "not yet used")
        self.retransmits = 0
        self.bad_frames = 0
        self.bad_answers = 0

    def _open_serial(self) -> SerialLike:
        import serial  # pyserial: imported by the driver that needs it

        try:
            port: SerialLike = serial.serial_for_url(
                self.port, baudrate=self.baudrate, timeout=0.2, write_timeout=2
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise PinPadUnavailable(f"cannot open PIN pad port {self.port}: {err}") from err
        return port

    # ---- public API ----------------------------------------------------------
    async def read_pin(self, prompt: str, length: int, timeout_s: float) -> str | None:
        """Prompt on the pad; digits, or None for cancel/timeout. Raises PinPadUnavailable."""
        payload = prompt_command(prompt, length, timeout_s)  # ValueError before any I/O
        return await asyncio.to_thread(self._read_pin_blocking, payload, length, timeout_s)

    async def probe(self) -> DeviceStatus:
        """Ask the pad whether it is there (periodic health check); updates :meth:`status`."""
        return await asyncio.to_thread(self._probe_blocking)

    def status(self) -> DeviceStatus:
        """Last known health, from the most recent exchange or probe."""
        return self._status

    def close(self) -> None:
        """Close the port (it is reopened on next use)."""
        with self._lock:
            self._drop()

    # ---- blocking internals (worker thread) -----------------------------------
    def _ensure_link(self) -> FrameLink:
        if self._link is None:
            try:
                port = self._factory()
            except PinPadUnavailable as err:
                self._mark(DeviceState.MISSING, str(err))
                raise
            self._link = FrameLink(port, ack_timeout=self.ack_timeout)
        return self._link

    def _drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            self.retransmits += link.retransmits
            self.bad_frames += link.bad_frames
            with contextlib.suppress(Exception):
                link.port.close()

    def _mark(self, state: DeviceState, detail: str = "") -> None:
        self._status = DeviceStatus("pinpad", self._driver, state, detail)

    def _fail(self, err: Exception) -> PinPadUnavailable:
        self._drop()
        self._mark(DeviceState.OFFLINE, str(err))
        return PinPadUnavailable(f"PIN pad on {self.port or self._driver}: {err}")

    def _exchange(self, payload: bytes, answer_timeout: float) -> bytes | None:
        link = self._ensure_link()
        try:
            link.port.reset_input_buffer()  # drop stale bytes from an aborted exchange
            link.send(payload)
            answer = link.receive(answer_timeout)
        except (LinkError, OSError) as err:
            # pyserial's SerialException is an OSError subclass: one except covers both.
            raise self._fail(err) from err
        self.retransmits, self.bad_frames = (
            self.retransmits + link.retransmits,
            self.bad_frames + link.bad_frames,
        )
        link.retransmits = link.bad_frames = 0
        self._mark(DeviceState.OK)
        return answer

    def _read_pin_blocking(self, payload: bytes, length: int, timeout_s: float) -> str | None:
        with self._lock:
            answer = self._exchange(payload, timeout_s + ANSWER_GRACE_S)
            if answer is None:
                # The pad never answered: clear its display so the next guest
                # does not type into a stale prompt. Best effort.
                with contextlib.suppress(PinPadUnavailable):
                    self._exchange(CMD_ABORT, 0)
                return None
            code, body = answer[:1], answer[1:]
            if code == RSP_PIN and body.isdigit() and 1 <= len(body) <= length:
                return body.decode("ascii")
            if code in (RSP_CANCEL, RSP_TIMEOUT):
                return None
            # A well-framed but meaningless answer: treat as cancel, count it.
            self.bad_answers += 1
            log.warning("PIN pad: unexpected answer code %r", code)
            return None

    def _probe_blocking(self) -> DeviceStatus:
        with self._lock:
            try:
                answer = self._exchange(CMD_STATUS, self.ack_timeout * 2)
            except PinPadUnavailable:
                return self._status
            if answer is None or answer[:1] != RSP_STATUS:
                self._mark(DeviceState.OFFLINE, "no status answer")
            return self._status
