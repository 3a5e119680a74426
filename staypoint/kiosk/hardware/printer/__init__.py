"""Voucher printers: ESC/POS (python-escpos) and a simulator."""

from __future__ import annotations

from staypoint.kiosk.hardware.printer.base import Printer, VoucherSlip

__all__ = ["Printer", "VoucherSlip"]
