"""PIN pads: framed serial protocol driver, device-side simulator, host-side simulator."""

from __future__ import annotations

from staypoint.kiosk.hardware.pinpad.base import PinPad

__all__ = ["PinPad"]
