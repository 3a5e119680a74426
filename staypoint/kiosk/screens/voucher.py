"""The voucher: its code and QR on screen whether or not the printer managed, and a reprint."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.session import PrintOutcome
from staypoint.kiosk.widgets.qr import QrCode, qr_rows


class VoucherScreen(KioskScreen):
    """Shown after a redemption."""

    def __init__(self, outcome: PrintOutcome, *, auth: str, member: str) -> None:
        super().__init__(id="voucher")
        self.outcome = outcome
        self.auth = auth
        self.member = member

    def _qr_payload(self) -> str:
        # The signed token is the better QR (any node verifies it offline) but needs about
        # 30 rows; on a small panel the short code's QR still lets staff scan it in.
        slip = self.outcome.slip
        room = self.app.size.height - 4
        return slip.qr_payload if qr_rows(slip.qr_payload) <= room else slip.code

    def compose_body(self) -> ComposeResult:
        slip = self.outcome.slip
        with Horizontal(id="voucher-box"):
            yield QrCode(self._qr_payload(), id="voucher-qr")
            with Vertical(id="voucher-text"):
                yield Static(slip.reward_name, classes="title")
                yield Static(slip.code, id="voucher-code")
                yield Static(f"Valid until {slip.expires}", classes="help")
                yield Static(self._print_text(), id="print-state")
                with Horizontal(classes="actions"):
                    yield Button("Reprint", id="reprint", classes="big")
                    yield Button("Rate your stay", id="feedback", classes="big")
                yield Button("Back to my account", id="back", classes="big secondary")

    def _print_text(self) -> str:
        if self.outcome.printed:
            return "Printed: please take your voucher."
        return (
            f"Not printed: {self.outcome.problem}. Your voucher is safe: show this code at the "
            "desk, or press Reprint when the printer is ready."
        )

    def on_mount(self) -> None:
        """Mark the fault so the stylesheet can show it in the warning colour."""
        self.query_one("#print-state").set_class(not self.outcome.printed, "error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Reprint, rate, or back."""
        from staypoint.kiosk.screens.feedback import FeedbackScreen

        match event.button.id:
            case "reprint":
                kiosk, slip = self.kiosk, self.outcome.slip
                self.query_one("#print-state", Static).update("Printing…")
                self.call(lambda: kiosk.print_slip(slip), self.printed)
            case "feedback":
                self.app.push_screen(FeedbackScreen(self.member, "redemption"))
            case "back":
                self.app.pop_screen()

    def printed(self, outcome: PrintOutcome) -> None:
        """After a reprint attempt."""
        self.outcome = outcome
        self.query_one("#print-state", Static).update(self._print_text())
        self.query_one("#print-state").set_class(not outcome.printed, "error")
