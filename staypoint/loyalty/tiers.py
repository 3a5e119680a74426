"""Tier qualification: upgrades at once, downgrades at the window's end by one tier at most."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from staypoint.loyalty.program import Program, Tier, Window


def window_start(window: Window, today: date) -> date:
    """First day of the qualification window that contains ``today``."""
    if window is Window.CALENDAR_YEAR:
        return date(today.year, 1, 1)
    # Rolling 12 months: the same day a year ago (29 Feb falls back to 28 Feb).
    try:
        return today.replace(year=today.year - 1)
    except ValueError:
        return today.replace(year=today.year - 1, day=28)


def window_end(window: Window, start: date) -> date:
    """Last day of a calendar-year window that starts on ``start``."""
    return date(start.year, 12, 31) if window is Window.CALENDAR_YEAR else start


@lru_cache(maxsize=256)
def _window_start_text(window: Window, today: date) -> str:
    # Head office asks for the same few days' windows once per stay it books.
    return window_start(window, today).isoformat()


def window_ended(program: Program, since: str, today: date) -> bool:
    """True when figures counted from ``since`` (ISO date) belong to a window that has ended.

    A calendar year ends on 31 December: from 1 January last year's nights no longer count.
    (A rolling window never ends as a whole, so its figures are never reset in one go.)
    """
    return ended_before(program, since, window_start_of(program, today))


def ended_before(program: Program, since: str, start: str) -> bool:
    """window_ended, for a caller that already holds the current window's ``start``."""
    return program.window is Window.CALENDAR_YEAR and since < start


def window_start_of(program: Program, today: date) -> str:
    """The current window's first day as stored with a member's figures (ISO date)."""
    return _window_start_text(program.window, today)


def qualifying_now(program: Program, since: str, nights: int, points: int, today: date) -> tuple[int, int]:
    """A member's qualifying (nights, points) as of ``today``: zero once their window ended."""
    return (0, 0) if window_ended(program, since, today) else (nights, points)


def earned_tier(program: Program, nights: int, points: int) -> Tier:
    """The highest tier whose nights *or* qualifying-points threshold is met."""
    # From the top down: the first tier met is the highest (head office asks once per stay).
    for tier in reversed(program.tiers):
        if nights >= tier.nights or (tier.points is not None and points >= tier.points):
            return tier
    return program.base_tier


def after_activity(program: Program, current: str, nights: int, points: int) -> Tier:
    """The tier after a stay: an upgrade takes effect at once; never a downgrade here."""
    now = program.tier(current)
    earned = earned_tier(program, nights, points)
    return earned if earned.rank > now.rank else now


def at_window_end(program: Program, current: str, nights: int, points: int) -> Tier:
    """The tier for the next window: kept if re-qualified, else one tier down (soft landing)."""
    now = program.tier(current)
    earned = earned_tier(program, nights, points)
    if earned.rank >= now.rank:
        return earned
    return program.tiers[now.rank - 1]


@dataclass(frozen=True)
class Progress:
    """What a member needs for the next tier; ``next_tier`` is None at the top."""

    next_tier: Tier | None
    nights_needed: int
    points_needed: int | None
    fraction: float  # 0..1, for a progress bar only (display, not money)

    def message(self) -> str:
        """A line for the guest: ``7 more nights to Gold``."""
        if self.next_tier is None:
            return "You are at our highest tier"
        unit = "night" if self.nights_needed == 1 else "nights"
        text = f"{self.nights_needed} more {unit} to {self.next_tier.name}"
        if self.points_needed is not None:
            text += f" (or {self.points_needed:,} qualifying points)"
        return text


def progress(program: Program, current: str, nights: int, points: int) -> Progress:
    """Progress from ``current`` to the next tier in this window."""
    tier = program.tier(current)
    if tier.rank + 1 >= len(program.tiers):
        return Progress(None, 0, None, 1.0)
    nxt = program.tiers[tier.rank + 1]
    nights_needed = max(0, nxt.nights - nights)
    points_needed = max(0, nxt.points - points) if nxt.points is not None else None
    by_nights = min(1.0, nights / nxt.nights) if nxt.nights else 1.0
    by_points = min(1.0, points / nxt.points) if nxt.points else 0.0
    return Progress(nxt, nights_needed, points_needed, max(by_nights, by_points))
