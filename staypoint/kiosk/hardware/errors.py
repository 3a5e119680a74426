"""Domain errors raised by hardware drivers.

Drivers translate their library's exceptions (pyscard, pyserial, python-escpos,
evdev) into these once, in the driver, so the kiosk app handles four errors
instead of a dozen library-specific ones.
"""

from __future__ import annotations


class DeviceError(Exception):
    """Base class of every error a hardware driver raises into the app."""


class ReaderUnavailable(DeviceError):
    """The card reader (or the PC/SC service behind it) cannot be reached."""


class PinPadUnavailable(DeviceError):
    """The PIN pad does not answer, or its port cannot be opened."""


class PaperOut(DeviceError):
    """The printer reports that its paper roll is empty."""


class PrinterOffline(DeviceError):
    """The printer cannot be reached or does not answer a status query."""
