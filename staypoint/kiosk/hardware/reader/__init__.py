"""Member-card readers: PC/SC (pyscard), keyboard wedge (evdev), simulator."""

from __future__ import annotations

from staypoint.kiosk.hardware.reader.base import CardRead, CardReader, OnRead

__all__ = ["CardRead", "CardReader", "OnRead"]
