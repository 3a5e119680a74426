"""The PIN-pad interface."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from staypoint.kiosk.hardware.status import DeviceStatus


@runtime_checkable
class PinPad(Protocol):
    """A PIN pad that shows a prompt and returns the digits the guest typed."""

    async def read_pin(self, prompt: str, length: int, timeout_s: float) -> str | None:
        """Ask for a PIN of up to ``length`` digits.

        Returns the digits, or None when the guest cancelled or the pad timed
        out. Raises :class:`~staypoint.kiosk.hardware.errors.PinPadUnavailable`
        when the pad cannot be reached.
        """
        ...

    def status(self) -> DeviceStatus:
        """Last known health (cheap; no I/O)."""
        ...

    def close(self) -> None:
        """Release the port (the driver reopens it on next use)."""
        ...
