"""Kiosk hardware: one small Protocol per device kind, drivers and simulators.

Only light modules are imported here. Each driver imports its heavy library
(pyscard, evdev, python-escpos, pyserial) inside its own module, so a laptop
without pcscd or a printer can run the demo with the simulators.
"""

from __future__ import annotations

from staypoint.kiosk.hardware.errors import (
    DeviceError,
    PaperOut,
    PinPadUnavailable,
    PrinterOffline,
    ReaderUnavailable,
)
from staypoint.kiosk.hardware.factory import (
    HardwareConfig,
    make_pinpad,
    make_printer,
    make_reader,
)
from staypoint.kiosk.hardware.status import DeviceState, DeviceStatus

__all__ = [
    "DeviceError",
    "DeviceState",
    "DeviceStatus",
    "HardwareConfig",
    "PaperOut",
    "PinPadUnavailable",
    "PrinterOffline",
    "ReaderUnavailable",
    "make_pinpad",
    "make_printer",
    "make_reader",
]
