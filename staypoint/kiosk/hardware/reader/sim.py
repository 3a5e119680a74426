"""Simulated card reader for the demo and for app tests."""

from __future__ import annotations

from staypoint.kiosk.hardware.reader.base import CardRead, OnRead
from staypoint.kiosk.hardware.status import DeviceState, DeviceStatus


class SimReader:
    """A reader driven by code: the demo's "tap demo card" button calls :meth:`tap`."""

    def __init__(self) -> None:
        self.garbled = 0
        self._on_read: OnRead | None = None
        self.present = True

    async def start(self, on_read: OnRead) -> None:
        """Begin delivering taps to ``on_read``."""
        self._on_read = on_read

    async def stop(self) -> None:
        """Stop delivering taps."""
        self._on_read = None

    def status(self) -> DeviceStatus:
        """OK unless a test has unplugged it with ``present = False``."""
        state = DeviceState.OK if self.present else DeviceState.MISSING
        return DeviceStatus("reader", "sim", state, "" if self.present else "unplugged")

    def tap(self, uid: str | None = None, member_number: str | None = None) -> bool:
        """Simulate one card presented to the reader.

        Returns True when the read was delivered. A bad value (wrong length,
        not hex / not digits) is counted as garbled and dropped, exactly like a
        misread on real hardware.
        """
        try:
            read = CardRead(
                uid=uid.upper() if uid is not None else None,
                member_number=member_number,
                source="sim",
            )
        except ValueError:
            self.garbled += 1
            return False
        if self._on_read is None or not self.present:
            return False
        self._on_read(read)
        return True
