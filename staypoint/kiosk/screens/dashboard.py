"""Dashboard: who you are, your tier, points, stored value, progress and recent activity.

Built once by the app and reused for every guest: :meth:`DashboardScreen.show` fills it
before it is shown (so its first paint already carries the figures), and
:meth:`DashboardScreen.forget` blanks every widget when the session ends.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, ProgressBar, Static

from staypoint.edge.service import MemberSummary
from staypoint.kiosk.screens.base import KioskScreen
from staypoint.localtime import day_text

#: The tier badge's classes, one per tier (only one is set at a time).
TIER_CLASSES = ("tier-member", "tier-silver", "tier-gold", "tier-platinum")


def _money(amount: object, currency: str) -> str:
    return f"{amount} {currency}"


class DashboardScreen(KioskScreen):
    """The member's home screen for the visit (one instance, reused)."""

    REUSED: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.summary: MemberSummary | None = None
        #: A screen opened from here may have changed the balance: re-read when we are back.
        self._stale = False

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="dash-head"):
            yield Static("", id="member-name", classes="title")
            yield Static("", id="tier-badge")
        with Grid(id="dash-figures"):
            with Vertical(classes="figure"):
                yield Static("Points", classes="figure-label")
                yield Static("", id="points", classes="figure-value")
            with Vertical(classes="figure"):
                yield Static("Stored value", classes="figure-label")
                yield Static("", id="stored-value", classes="figure-value")
            with Vertical(classes="figure", id="progress-box"):
                yield Static("", id="next-tier", classes="figure-label")
                yield ProgressBar(total=1.0, show_eta=False, show_percentage=False, id="tier-progress")
        yield Static("", id="expiring")
        yield Static("", id="recent")
        with Horizontal(classes="actions"):
            yield Button("Rewards", id="rewards", classes="big primary")
            yield Button("Offers", id="offers", classes="big")
            yield Button("Rate your stay", id="feedback", classes="big")
            yield Button("Done", id="done", classes="big secondary")

    def show(self, summary: MemberSummary) -> None:
        """Fill every widget for this member (before the screen is pushed)."""
        self.summary = summary
        self._stale = False
        self.query_one("#member-name", Static).update(f"Welcome back, {summary.name}")
        badge = self.query_one("#tier-badge", Static)
        badge.update(f" {summary.tier_name.upper()} ")
        badge.set_classes(f"tier-{summary.tier.lower()}")
        self._figures(summary)

    def _figures(self, s: MemberSummary) -> None:
        self.query_one("#points", Static).update(f"{s.points:,}")
        self.query_one("#stored-value", Static).update(_money(s.stored_value, s.currency))
        self.query_one("#next-tier", Static).update(s.next_tier_message)
        self.query_one(ProgressBar).update(progress=s.progress)
        expiring = self.query_one("#expiring", Static)
        expiring.update(self._expiry(s))
        expiring.set_class(bool(s.expiring_points), "warning")
        self.query_one("#recent", Static).update(self._recent(s, self.kiosk.tz))

    def forget(self) -> None:
        """Blank every widget that showed the member (the session has ended)."""
        self.forget_pending()
        self.set_focus(None)  # the last guest's pressed button must not look pressed
        self.summary = None
        self._stale = False
        for selector in ("#member-name", "#tier-badge", "#points", "#stored-value", "#next-tier"):
            self.query_one(selector, Static).update("")
        self.query_one("#tier-badge", Static).set_classes("")
        self.query_one(ProgressBar).update(progress=0)
        expiring = self.query_one("#expiring", Static)
        expiring.update("")
        expiring.remove_class("warning")
        self.query_one("#recent", Static).update("")

    @staticmethod
    def _expiry(s: MemberSummary) -> str:
        if not s.expiring_points or s.expiring_on is None:
            return ""
        when = f"{s.expiring_on:%d %b %Y}"
        return f"⚠ {s.expiring_points:,} points expire on {when}: a stay or a reward keeps them."

    @staticmethod
    def _recent(s: MemberSummary, tz: tzinfo | None = None) -> str:
        lines = ["Recent activity"]
        for a in s.recent[:4]:
            figure = f"{a.points:+,} pts" if a.points else (a.amount or "")
            lines.append(f"  {day_text(a.at, tz)}  {a.description[:48]:<48} {figure:>12}")
        if len(lines) == 1:
            lines.append("  nothing yet")
        if s.referral_code:
            lines.append(f"Invite a friend with code {s.referral_code}: you both earn a bonus")
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
        self._figures(summary)

    def on_screen_resume(self) -> None:
        """Back from rewards, offers or feedback: the balance may have changed."""
        if self._stale:
            self._stale = False
            self.refresh_summary()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The dashboard's four ways on."""
        from staypoint.kiosk.screens.feedback import FeedbackScreen
        from staypoint.kiosk.screens.offers import OffersScreen
        from staypoint.kiosk.screens.rewards import RewardsScreen

        if event.button.id == "done":
            self.kiosk.end_session()
            return
        summary = self.summary
        if summary is None:
            return
        match event.button.id:
            case "rewards":
                self._stale = True
                self.app.push_screen(RewardsScreen(summary))
            case "offers":
                self._stale = True
                self.app.push_screen(OffersScreen(summary))
            case "feedback":
                self._stale = True
                self.app.push_screen(FeedbackScreen(summary.member, "dashboard"))
