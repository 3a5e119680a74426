"""Money: Decimal amounts in the property's currency, never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

CENT = Decimal("0.01")
# Far past any folio or balance, and small enough that every amount keeps its cents
# within Decimal's 28 digits: "1e400" would otherwise fail inside quantize().
MAX_AMOUNT = Decimal(10) ** 15


class MoneyError(ValueError):
    """An amount that cannot be money."""


def parse_amount(raw: str | Decimal | int, *, allow_zero: bool = True) -> Decimal:
    """Parse a typed amount (``"120.50"``) to a 2-place Decimal; reject floats and junk."""
    if isinstance(raw, (float, bool)):
        raise MoneyError("amounts must not be floating point")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise MoneyError(f"{_short(raw)} is not an amount") from None
    if not value.is_finite():
        raise MoneyError(f"{_short(raw)} is not an amount")
    if value < 0 or (value == 0 and not allow_zero):
        raise MoneyError(f"{_short(raw)}: the amount must be {'zero or ' if allow_zero else ''}positive")
    if value >= MAX_AMOUNT:
        raise MoneyError(f"{_short(raw)}: the amount must be below {MAX_AMOUNT:,.0f}")
    if value != value.quantize(CENT, rounding=ROUND_HALF_EVEN):
        raise MoneyError(f"{_short(raw)}: at most two decimal places")
    return value.quantize(CENT)


def _short(raw: object) -> str:
    # A thousand-digit amount must not become a thousand-character error line.
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."
