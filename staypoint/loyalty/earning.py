"""Points for a stay: per-outlet rates × tier multiplier × promotions, rounded down once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from typing import NamedTuple

from staypoint.loyalty.program import Outlet, Program, QualifyOn


class EarnLine(NamedTuple):
    outlet: Outlet
    revenue: Decimal
    points: Decimal  # exact, before the single final rounding
    promotions: tuple[str, ...]


class EarnResult(NamedTuple):
    points: int
    lines: tuple[EarnLine, ...]
    bonus: int
    bonus_promotions: tuple[str, ...]
    # revenue × earn rate only (no tier multiplier, no promotion), rounded down once
    base: int = 0


MEMO_ENTRIES = 4096


class _Terms(NamedTuple):
    """What a charge at one outlet earns for one tier on one day, whatever its amount."""

    earn: Decimal
    rate: Decimal  # earn rate × tier multiplier × the multiplier of every promotion that applies
    applied: tuple[str, ...]  # the promotions that apply, in the programme's order
    bonuses: tuple[tuple[str, int], ...]  # (code, points) of the fixed-bonus ones among them


def _terms(program: Program, tier: str, outlet: Outlet, day: date) -> _Terms:
    earn = program.earn[outlet]
    rate = earn * program.tier(tier).multiplier
    applied: list[str] = []
    bonuses: list[tuple[str, int]] = []
    for promo in program.promotions:
        if not promo.applies(day, outlet, tier):
            continue
        applied.append(promo.code)
        if promo.multiplier is not None:
            rate *= promo.multiplier
        elif promo.bonus is not None:
            bonuses.append((promo.code, promo.bonus))
    return _Terms(earn, rate, tuple(applied), tuple(bonuses))


def stay_points(program: Program, tier: str, revenue: Mapping[Outlet, Decimal], day: date) -> EarnResult:
    """Points a member of ``tier`` earns for ``revenue`` charged on ``day``.

    Fractions are kept exact through every multiplication and the total is rounded
    down once, at the end, so splitting a bill never earns more or less than one bill.
    """
    program.tier(tier)  # KeyError for a tier the programme has not, charges or none
    terms = program.earn_terms
    if len(terms) > MEMO_ENTRIES:  # quotes may name any day: the memo stays bounded
        terms.clear()
    lines: list[EarnLine] = []
    bonus = 0
    bonus_codes: list[str] = []
    total = Decimal(0)
    base = Decimal(0)
    for outlet, amount in revenue.items():
        if amount < 0:
            raise ValueError(f"revenue at {outlet.value} cannot be negative")
        if amount == 0:
            continue
        key = (tier, outlet, day)
        term = terms.get(key)
        if term is None:
            term = terms[key] = _terms(program, tier, outlet, day)
        base += amount * term.earn
        exact = amount * term.rate
        for code, points in term.bonuses:
            if code not in bonus_codes:
                bonus += points
                bonus_codes.append(code)
        lines.append(EarnLine(outlet, amount, exact, term.applied))
        total += exact
    total += bonus
    # NamedTuples, not frozen dataclasses: head office builds these once per stay it books.
    return EarnResult(
        int(total.to_integral_value(ROUND_FLOOR)),
        tuple(lines),
        bonus,
        tuple(bonus_codes),
        int(base.to_integral_value(ROUND_FLOOR)),
    )


def qualifying_points(program: Program, earned: EarnResult) -> int:
    """The points of a stay that count towards tier status, by ``[qualification] qualify_on``.

    ``all_points``: every point earned but the fixed promotion bonuses; ``base_points``: the
    revenue at the earn rates only, without the tier multiplier's uplift or any promotion.
    The one home of this rule: the node's post_stay, head office's fold, the API's stays and
    claims all ask it.
    """
    if program.qualify_on is QualifyOn.BASE_POINTS:
        return min(earned.base, earned.points)
    return earned.points - earned.bonus
