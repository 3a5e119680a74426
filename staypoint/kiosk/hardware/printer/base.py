"""The voucher-printer interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from staypoint.kiosk.hardware.status import DeviceStatus


@dataclass(frozen=True, slots=True)
class VoucherSlip:
    """Everything printed on one voucher (already formatted strings).

    ``code`` is the short typed code; ``qr_payload`` the long signed token that
    goes into the QR code.
    """

    property_name: str
    reward_name: str
    member_name: str
    member_number: str
    code: str
    qr_payload: str
    expires: str
    issued_at: str

    @property
    def masked_member_number(self) -> str:
        """Only the last four digits: a slip left on the counter must not leak a member number."""
        return "*" * max(0, len(self.member_number) - 4) + self.member_number[-4:]


@runtime_checkable
class Printer(Protocol):
    """A receipt printer for vouchers.

    Blocking: call from a thread worker (Textual ``@work(thread=True)``). On
    failure it raises :class:`~staypoint.kiosk.hardware.errors.PaperOut` or
    :class:`~staypoint.kiosk.hardware.errors.PrinterOffline` and has printed
    nothing the caller must worry about; the caller keeps the voucher for reprint.
    """

    def print_voucher(self, slip: VoucherSlip) -> None:
        """Print one voucher, or raise PaperOut / PrinterOffline."""
        ...

    def print_test_page(self) -> None:
        """Print a short self-test page (technician self-test)."""
        ...

    def status(self) -> DeviceStatus:
        """Last known health (cheap; no I/O)."""
        ...
