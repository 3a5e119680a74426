"""Points for a stay: per-outlet rates × tier multiplier × promotions, rounded down once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from typing import NamedTuple

from staypoint.loyalty.program import Outlet, Program


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


def stay_points(program: Program, tier: str, revenue: Mapping[Outlet, Decimal], day: date) -> EarnResult:
    """Points a member of ``tier`` earns for ``revenue`` charged on ``day``.

    Fractions are kept exact through every multiplication and the total is rounded
    down once, at the end, so splitting a bill never earns more or less than one bill.
    """
    multiplier = program.tier(tier).multiplier
    lines: list[EarnLine] = []
    bonus = 0
    bonus_codes: list[str] = []
    total = Decimal(0)
    for outlet, amount in revenue.items():
        if amount < 0:
            raise ValueError(f"revenue at {outlet.value} cannot be negative")
        if amount == 0:
            continue
        exact = amount * program.earn[outlet] * multiplier
        applied: list[str] = []
        for promo in program.promotions:
            if not promo.applies(day, outlet, tier):
                continue
            applied.append(promo.code)
            if promo.multiplier is not None:
                exact *= promo.multiplier
            elif promo.bonus is not None and promo.code not in bonus_codes:
                bonus += promo.bonus
                bonus_codes.append(promo.code)
        lines.append(EarnLine(outlet, amount, exact, tuple(applied)))
        total += exact
    total += bonus
    # NamedTuples, not frozen dataclasses: head office builds these once per stay it books.
    return EarnResult(int(total.to_integral_value(ROUND_FLOOR)), tuple(lines), bonus, tuple(bonus_codes))
