"""Rewards: the member's catalogue, greyed with the reason where points, tier or offline limits fall short.

Redeem → confirm → the service redeems (online first, else within the offline limits) →
the voucher prints; its code and QR are on screen either way, so a printer fault never
loses a voucher.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Static

from staypoint.edge.service import MemberSummary, Redemption, RewardView
from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.screens.confirm import ConfirmScreen
from staypoint.kiosk.session import PrintOutcome, sentence


class RewardsScreen(KioskScreen):
    """One row per reward: a button and, when it is greyed, why."""

    def __init__(self, summary: MemberSummary) -> None:
        super().__init__(id="rewards")
        self.summary = summary
        #: Points one offline redemption may cost now; None until read (or when online).
        self.headroom: int | None = None

    def compose_body(self) -> ComposeResult:
        s = self.summary
        yield Static(f"Rewards · you have {s.points:,} points", id="rewards-title", classes="title")
        yield Static("", id="offline-note", classes="hidden")
        with VerticalScroll(id="reward-list"):
            for r in s.rewards:
                with Horizontal(classes="reward-row"):
                    yield Button(
                        f"{r.name}\n{r.points:,} points",
                        id=f"reward-{r.code}",
                        classes="reward",
                        disabled=not r.available,
                    )
                    yield Static(self._reason(r), id=f"reason-{r.code}", classes="reason")
        with Horizontal(classes="actions"):
            yield Button("Back", id="back", classes="big secondary")

    def _reason(self, r: RewardView) -> str:
        if not r.available:
            return sentence(r.reason or "not available")
        if self.headroom is not None and r.points > self.headroom:
            return "Needs head office: too many points to redeem while offline"
        return "Available"

    def on_mount(self) -> None:
        """Offline: ask the service what the offline limits still allow this member."""
        health = self.kiosk.health
        if health is not None and not health.online:
            service, member, now = self.service, self.summary.member, self.kiosk.now()
            self.call(lambda: service.offline_headroom(member, now), self.show_headroom)

    def show_headroom(self, headroom: int) -> None:
        """Explain what is still possible, and grey what is not."""
        self.headroom = headroom
        note = self.query_one("#offline-note", Static)
        note.remove_class("hidden")
        if headroom > 0:
            note.update(
                "Head office cannot be reached just now. You can still redeem rewards of up to "
                f"{headroom:,} points here; larger ones need the connection back."
            )
        else:
            note.update(
                "Head office cannot be reached just now, and this kiosk's offline limits are used up "
                "for you: redemptions resume when the connection is back. Your points are safe."
            )
        for r in self.summary.rewards:
            button = self.query_one(f"#reward-{r.code}", Button)
            button.disabled = not r.available or r.points > headroom
            self.query_one(f"#reason-{r.code}", Static).update(self._reason(r))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """A reward: confirm first."""
        bid = event.button.id or ""
        if bid == "back":
            self.app.pop_screen()
            return
        if not bid.startswith("reward-"):
            return
        code = bid.removeprefix("reward-")
        reward = next(r for r in self.summary.rewards if r.code == code)
        left = self.summary.points - reward.points

        def answered(yes: bool | None) -> None:
            if yes:
                self.redeem(code)

        self.app.push_screen(
            ConfirmScreen(
                f"Redeem {reward.name}?",
                f"{reward.points:,} points; you will have {left:,} left.",
                yes="Redeem",
                no="Not now",
            ),
            answered,
        )

    def redeem(self, code: str) -> None:
        """Redeem and print in one trip to the worker thread."""
        session = self.kiosk.session
        if session is None:
            return
        kiosk, service, proof, now = self.kiosk, self.service, session.proof, self.kiosk.now()
        name = self.summary.name

        def run() -> tuple[Redemption, PrintOutcome]:
            red = service.redeem(proof, code, now)
            return red, kiosk.print_redemption(red, name, now)

        self.query_one("#rewards-title", Static).update("Redeeming…")
        self.call(run, self.redeemed, self.refused)

    def redeemed(self, answer: tuple[Redemption, PrintOutcome]) -> None:
        """Show the voucher (printed or not) in place of the catalogue."""
        from staypoint.kiosk.screens.voucher import VoucherScreen

        red, outcome = answer
        self.app.switch_screen(VoucherScreen(outcome, auth=red.auth, member=red.member))

    def refused(self, error: Exception) -> None:
        """Refusals keep the guest here, with the service's own reason."""
        self.query_one("#rewards-title", Static).update(f"Rewards · you have {self.summary.points:,} points")
        note = self.query_one("#offline-note", Static)
        note.remove_class("hidden")
        note.add_class("error")
        note.update(sentence(str(error)))
