"""Dashboard: who you are, your tier, points, stored value, progress and recent activity."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, ProgressBar, Static

from staypoint.edge.service import MemberSummary
from staypoint.kiosk.screens.base import KioskScreen


def _money(amount: object, currency: str) -> str:
    return f"{amount} {currency}"


class DashboardScreen(KioskScreen):
    """The member's home screen for the visit."""

    def __init__(self, summary: MemberSummary) -> None:
        super().__init__(id="dashboard")
        self.summary = summary

    def compose_body(self) -> ComposeResult:
        s = self.summary
        with Horizontal(id="dash-head"):
            yield Static(f"Welcome back, {s.name}", id="member-name", classes="title")
            yield Static(f" {s.tier_name.upper()} ", id="tier-badge", classes=f"tier-{s.tier.lower()}")
        with Grid(id="dash-figures"):
            with Vertical(classes="figure"):
                yield Static("Points", classes="figure-label")
                yield Static(f"{s.points:,}", id="points", classes="figure-value")
            with Vertical(classes="figure"):
                yield Static("Stored value", classes="figure-label")
                yield Static(_money(s.stored_value, s.currency), id="stored-value", classes="figure-value")
            with Vertical(classes="figure", id="progress-box"):
                yield Static(s.next_tier_message, id="next-tier", classes="figure-label")
                bar = ProgressBar(total=1.0, show_eta=False, show_percentage=False, id="tier-progress")
                yield bar
        yield Static(self._expiry(), id="expiring", classes="warning" if s.expiring_points else "")
        yield Static(self._recent(), id="recent")
        with Horizontal(classes="actions"):
            yield Button("Rewards", id="rewards", classes="big primary")
            yield Button("Offers", id="offers", classes="big")
            yield Button("Rate your stay", id="feedback", classes="big")
            yield Button("Done", id="done", classes="big secondary")

    def on_mount(self) -> None:
        """The bar is set here: ProgressBar takes progress after it is mounted."""
        self.query_one(ProgressBar).update(progress=self.summary.progress)

    def _expiry(self) -> str:
        s = self.summary
        if not s.expiring_points or s.expiring_on is None:
            return ""
        when = f"{s.expiring_on:%d %b %Y}"
        return f"⚠ {s.expiring_points:,} points expire on {when}: a stay or a reward keeps them."

    def _recent(self) -> str:
        lines = ["Recent activity"]
        for a in self.summary.recent[:4]:
            figure = f"{a.points:+,} pts" if a.points else (a.amount or "")
            lines.append(f"  {a.at[:10]}  {a.description[:48]:<48} {figure:>12}")
        if len(lines) == 1:
            lines.append("  nothing yet")
        return "\n".join(lines)

    def refresh_summary(self) -> None:
        """Re-read after a redemption (points changed) when the guest comes back here."""
        session = self.kiosk.session
        if session is None:
            return
        service, member, now = self.service, session.member, self.kiosk.now()
        self.call(lambda: service.summary(member, now), self._refreshed)

    def _refreshed(self, summary: MemberSummary) -> None:
        if self.kiosk.session is None:
            return
        self.kiosk.session.summary = summary
        self.summary = summary
        self.query_one("#points", Static).update(f"{summary.points:,}")
        self.query_one("#stored-value", Static).update(_money(summary.stored_value, summary.currency))
        self.query_one("#next-tier", Static).update(summary.next_tier_message)
        self.query_one(ProgressBar).update(progress=summary.progress)
        self.query_one("#expiring", Static).update(self._expiry())
        self.query_one("#recent", Static).update(self._recent())

    def on_screen_resume(self) -> None:
        """Coming back from rewards: the balance may have changed."""
        if self.is_mounted:
            self.refresh_summary()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The dashboard's four ways on."""
        from staypoint.kiosk.screens.feedback import FeedbackScreen
        from staypoint.kiosk.screens.offers import OffersScreen
        from staypoint.kiosk.screens.rewards import RewardsScreen

        match event.button.id:
            case "rewards":
                self.app.push_screen(RewardsScreen(self.summary))
            case "offers":
                self.app.push_screen(OffersScreen(self.summary))
            case "feedback":
                self.app.push_screen(FeedbackScreen(self.summary.member, "dashboard"))
            case "done":
                self.kiosk.end_session()
