"""Device health as reported to the kiosk and in the node's heartbeat."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DeviceState(enum.StrEnum):
    """Coarse health of one device; the values go into the health message as-is."""

    OK = "ok"
    MISSING = "missing"
    PAPER_OUT = "paper_out"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """Snapshot of one device's health.

    ``kind`` is ``reader`` / ``pinpad`` / ``printer``; ``driver`` names the driver
    (``pcsc``, ``evdev``, ``serial``, ``escpos``, ``sim``, ``none``); ``detail`` is a
    short human-readable reason, empty when all is well.
    """

    kind: str
    driver: str
    state: DeviceState
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the device is usable."""
        return self.state is DeviceState.OK
