from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from staypoint.loyalty import member_numbers, tiers
from staypoint.loyalty.earning import stay_points
from staypoint.loyalty.events import uuid7
from staypoint.loyalty.expiry import add_months, expiring_soon
from staypoint.loyalty.program import Outlet, default_program
from staypoint.loyalty.redemption import OfflineState, check_offline, check_redemption

P = default_program()
NOV = date(2026, 11, 20)
OCT = date(2026, 10, 20)


def test_points_are_rounded_down_once_at_the_end() -> None:
    # 0.15 × 10 × 1.1 = 1.65 at each outlet-line: rounding per line would give 1+0,
    # rounding the exact sum once gives floor(1.65 + 0.825) = 2.
    r = stay_points(P, "SILVER", {Outlet.ROOM: Decimal("0.15"), Outlet.FNB: Decimal("0.15")}, OCT)
    assert r.points == 2


def test_tier_multiplier_and_promotions() -> None:
    room_only = stay_points(P, "MEMBER", {Outlet.ROOM: Decimal("100.00")}, OCT)
    assert room_only.points == 1000
    assert stay_points(P, "PLATINUM", {Outlet.ROOM: Decimal("100.00")}, OCT).points == 1500 + 500
    # WINTER-SPA doubles spa points from 1 November; GOLD-WELCOME adds 500 once per stay.
    spa = stay_points(P, "GOLD", {Outlet.SPA: Decimal("100.00"), Outlet.ROOM: Decimal("1")}, NOV)
    assert spa.points == int(Decimal("100") * 5 * Decimal("1.25") * 2 + Decimal("12.5")) + 500
    assert "WINTER-SPA" in spa.lines[0].promotions or "WINTER-SPA" in spa.lines[1].promotions


@given(st.lists(st.decimals(min_value=0, max_value=10_000, places=2), min_size=1, max_size=6))
def test_splitting_a_bill_never_earns_more_than_one_bill(amounts: list[Decimal]) -> None:
    whole = stay_points(P, "SILVER", {Outlet.ROOM: sum(amounts, Decimal(0))}, OCT).points
    parts = sum(stay_points(P, "SILVER", {Outlet.ROOM: a}, OCT).points for a in amounts)
    assert parts <= whole


def test_upgrade_at_once_downgrade_one_tier_at_window_end() -> None:
    assert tiers.after_activity(P, "MEMBER", 26, 0).code == "GOLD"
    assert tiers.after_activity(P, "GOLD", 3, 0).code == "GOLD"  # never a downgrade mid-window
    assert tiers.at_window_end(P, "PLATINUM", 0, 0).code == "GOLD"  # soft landing
    assert tiers.at_window_end(P, "GOLD", 30, 0).code == "GOLD"
    assert tiers.at_window_end(P, "SILVER", 60, 0).code == "PLATINUM"
    assert tiers.earned_tier(P, 0, 60_000).code == "GOLD"  # qualifying points instead of nights


def test_progress_message() -> None:
    prog = tiers.progress(P, "SILVER", 18, 0)
    assert prog.message().startswith("7 more nights to Gold")
    assert tiers.progress(P, "PLATINUM", 80, 0).next_tier is None


def test_rolling_window() -> None:
    from staypoint.loyalty.program import Window

    assert tiers.window_start(Window.ROLLING_12_MONTHS, date(2028, 2, 29)) == date(2027, 2, 28)
    assert tiers.window_start(Window.CALENDAR_YEAR, NOV) == date(2026, 1, 1)


def test_redemption_refusals() -> None:
    assert check_redemption(P, "LATE-CO", tier="MEMBER", points=2500, stock_left=None).ok
    assert check_redemption(P, "LATE-CO", tier="MEMBER", points=2499, stock_left=None).detail == (
        "Late check-out (4 pm) needs 1 more points"
    )
    assert not check_redemption(P, "UPGRADE", tier="SILVER", points=99_999, stock_left=None).ok
    assert not check_redemption(P, "SPA-60", tier="GOLD", points=9_000, stock_left=0).ok
    assert not check_redemption(P, "NOPE", tier="GOLD", points=9_000, stock_left=None).ok


def test_offline_limits() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    fresh = OfflineState(0, 0, 0, now - timedelta(hours=1), False)
    lim = P.offline
    assert check_offline(lim, 10_000, fresh, now).allowed
    assert not check_offline(lim, 10_001, fresh, now).allowed
    stale = OfflineState(0, 0, 0, now - timedelta(hours=lim.max_staleness_hours + 1), False)
    assert "offline too long" in check_offline(lim, 100, stale, now).message
    busy = OfflineState(14_000, 1, 0, now, False)
    assert "15,000" in check_offline(lim, 2500, busy, now).message
    assert not check_offline(lim, 100, OfflineState(0, 3, 0, now, False), now).allowed
    assert not check_offline(lim, 100, OfflineState(0, 0, lim.node_exposure_points, now, False), now).allowed
    assert not check_offline(lim, 100, OfflineState(0, 0, 0, now, True), now).allowed


@given(st.integers(0, 9999), st.integers(0, 99_999), st.integers(0, 9), st.integers(1, 9))
def test_member_number_catches_any_single_wrong_digit(block: int, serial: int, pos: int, delta: int) -> None:
    number = member_numbers.make_number(block, serial)
    assert member_numbers.is_valid(number)
    wrong = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1 :]
    assert not member_numbers.is_valid(wrong)


def test_member_numbers_from_blocks_are_unique_and_roll_over() -> None:
    numbers = {member_numbers.next_number([5, 6], i) for i in range(0, 200_000, 997)}
    assert len(numbers) == len(range(0, 200_000, 997))
    assert member_numbers.next_number([5, 6], 100_000).startswith("0006")


def test_expiry_and_uuid7_order() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert expiring_soon(P.expiry, date(2024, 12, 1), 500, date(2026, 11, 23)) == (500, date(2026, 12, 1))
    assert expiring_soon(P.expiry, date(2026, 1, 1), 500, date(2026, 11, 23))[0] == 0
    t = datetime(2026, 11, 23, tzinfo=UTC)
    assert uuid7(t) < uuid7(t + timedelta(milliseconds=1))


@given(st.integers(0, 9999), st.integers(0, 99_999))
def test_referral_codes_are_one_per_member_and_lead_back(block: int, serial: int) -> None:
    from staypoint.loyalty.referral_codes import ReferralCodeError, member_for_code, referral_code

    number = member_numbers.make_number(block, serial)
    code = referral_code(number)
    assert member_for_code(code) == number
    assert member_for_code(code.lower().replace("-", "")) == number
    other = member_numbers.make_number(block, (serial + 1) % 100_000)
    assert referral_code(other) != code
    typo = code[:2] + ("A" if code[2] != "A" else "C") + code[3:]
    with pytest.raises(ReferralCodeError):  # a mistyped character is caught, never another member
        member_for_code(typo)
