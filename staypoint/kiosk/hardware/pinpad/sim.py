"""Host-side simulated PIN pad for the demo: the real driver and protocol, with
the device simulator on the other end of an in-process socket pair."""

from __future__ import annotations

import socket

from staypoint.kiosk.hardware.pinpad.device_sim import Answer, PinPadDevice
from staypoint.kiosk.hardware.pinpad.serial_pinpad import SerialPinPad


class SocketPort:
    """A connected socket with the pyserial calls the framed link uses."""

    def __init__(self, sock: socket.socket, *, closable: bool = True) -> None:
        self._sock = sock
        self._closable = closable
        self.timeout: float | None = 0.2

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes, or b"" after ``timeout``."""
        self._sock.settimeout(self.timeout)
        try:
            return self._sock.recv(size)
        except TimeoutError:
            return b""

    def write(self, data: bytes, /) -> int:
        """Send all of ``data``."""
        self._sock.sendall(data)
        return len(data)

    def reset_input_buffer(self) -> None:
        """Discard whatever is waiting to be read."""
        self._sock.setblocking(False)
        try:
            while self._sock.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self._sock.setblocking(True)

    def close(self) -> None:
        """Close the socket (unless it outlives reopen cycles, as in :class:`SimPinPad`)."""
        if self._closable:
            self._sock.close()


class SimPinPad(SerialPinPad):
    """A PIN pad that "types" ``default_pin`` (or what was queued on ``device``).

    The demo can call ``pad.device.type_pin("4321")`` or
    ``pad.device.press_cancel()`` before the prompt.
    """

    def __init__(self, default_pin: str = "1234", *, delay_s: float = 0.3) -> None:
        host, pad = socket.socketpair()
        self.device = PinPadDevice(SocketPort(pad), default=Answer("pin", default_pin, delay_s))
        self.device.start()
        self._host = host
        # The driver closes and reopens its port after errors; the socket pair must survive that.
        host_port = SocketPort(host, closable=False)
        super().__init__(port_factory=lambda: host_port, driver="sim")

    def close(self) -> None:
        """Stop the simulated device too."""
        super().close()
        self.device.stop()
        self._host.close()
