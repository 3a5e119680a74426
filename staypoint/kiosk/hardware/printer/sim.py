"""Simulated printer (in memory) and a pty "printer sink" for tests."""

from __future__ import annotations

import threading
import time

from staypoint.kiosk.hardware.errors import PaperOut, PrinterOffline
from staypoint.kiosk.hardware.printer.base import VoucherSlip
from staypoint.kiosk.hardware.status import DeviceState, DeviceStatus

#: DLE EOT 4 answers: fixed bits 1 and 4, plus paper-end bits 5-6 when empty.
PAPER_OK = 0x12
PAPER_END = 0x72


class SimPrinter:
    """Keeps printed slips in ``slips``; set ``paper_out`` / ``offline`` to simulate faults."""

    def __init__(self) -> None:
        self.slips: list[VoucherSlip] = []
        self.test_pages = 0
        self.paper_out = False
        self.offline = False

    def _check(self) -> None:
        if self.offline:
            raise PrinterOffline("simulated printer offline")
        if self.paper_out:
            raise PaperOut("simulated printer out of paper")

    def print_voucher(self, slip: VoucherSlip) -> None:
        """Record the slip, or raise like the real driver would."""
        self._check()
        self.slips.append(slip)

    def print_test_page(self) -> None:
        """Count a test page."""
        self._check()
        self.test_pages += 1

    def status(self) -> DeviceStatus:
        """Reflects the simulated fault flags."""
        if self.offline:
            return DeviceStatus("printer", "sim", DeviceState.OFFLINE, "simulated")
        if self.paper_out:
            return DeviceStatus("printer", "sim", DeviceState.PAPER_OUT, "simulated")
        return DeviceStatus("printer", "sim", DeviceState.OK)


class PrinterSink:
    """The printer's end of a pty: captures bytes, answers DLE EOT status queries.

    ``paper_status`` is the byte sent back for DLE EOT 4 (``PAPER_OK`` or
    ``PAPER_END``); ``answer=False`` plays a printer that never talks back.
    """

    def __init__(self, path: str, *, paper_status: int = PAPER_OK, answer: bool = True) -> None:
        import serial

        self.paper_status = paper_status
        self.answer = answer
        self._port = serial.serial_for_url(path, baudrate=19200, timeout=0.05)
        self._buf = bytearray()
        self._last_rx = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="printer-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tail = b""
        while not self._stop.is_set():
            try:
                chunk = self._port.read(4096)
            except (OSError, TypeError):
                return
            if not chunk:
                continue
            with self._lock:
                self._buf += chunk
                self._last_rx = time.monotonic()
            # Status queries may straddle reads: look at the last few bytes too.
            window = tail + chunk
            tail = window[-2:]
            if self.answer:
                for n in (1, 4):
                    if b"\x10\x04" + bytes([n]) in window:
                        self._port.write(bytes([self.paper_status if n == 4 else 0x12]))

    def capture(self, idle_s: float = 0.3, max_s: float = 5.0) -> bytes:
        """Wait until bytes stop arriving for ``idle_s`` (a job ended); return and clear them."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            with self._lock:
                quiet = time.monotonic() - self._last_rx
                if self._buf and quiet >= idle_s:
                    break
            time.sleep(0.02)
        with self._lock:
            data = bytes(self._buf)
            self._buf.clear()
        return data

    def close(self) -> None:
        """Stop reading and close the port."""
        self._stop.set()
        self._thread.join(2)
        self._port.close()
