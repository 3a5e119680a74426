"""Points expiry: the whole balance lapses after N months without activity."""

from __future__ import annotations

from datetime import date

from staypoint.loyalty.program import ExpiryRules


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, clamped to the month's last day."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def expiry_date(rules: ExpiryRules, last_activity: date) -> date:
    """The day a balance lapses if nothing happens before it."""
    return add_months(last_activity, rules.months_without_activity)


def expiring_soon(
    rules: ExpiryRules, last_activity: date | None, points: int, today: date
) -> tuple[int, date | None]:
    """Points that lapse within the warning window, and when; (0, None) if none."""
    if last_activity is None or points <= 0:
        return 0, None
    when = expiry_date(rules, last_activity)
    if (when - today).days <= rules.warn_days:
        return points, when
    return 0, when
