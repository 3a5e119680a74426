"""Member numbers: 10 digits with a Luhn check digit, allocated offline.

A number is ``IIII SSSSS C``: a 4-digit issuer block, a 5-digit serial within the
block and the Luhn check digit. Head office hands each node one or more issuer
blocks when it is provisioned (and more when one runs low), so any node can enrol a
member with no network and no two nodes ever allocate the same number. Blocks
0000-0099 are head office's own (online enrolment); 9000-9999 are for demo and
benchmark data.
"""

from __future__ import annotations

from collections.abc import Sequence

SERIALS_PER_BLOCK = 100_000
NUMBER_LENGTH = 10


class MemberNumberError(ValueError):
    """A typed or scanned member number that cannot be right."""


def luhn_check_digit(body: str) -> str:
    """The Luhn check digit for a string of digits."""
    total = 0
    # Walk from the right; the digit next to the (future) check digit is doubled.
    for i, ch in enumerate(reversed(body)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def normalise(raw: str) -> str:
    """Strip spaces and dashes from a typed number; raise MemberNumberError if it is wrong.

    Catches every single mistyped digit and most swapped neighbours before any lookup.
    """
    cleaned = raw.replace(" ", "").replace("-", "")
    if not cleaned.isdigit() or not cleaned.isascii():
        raise MemberNumberError(f"member number {raw!r} must be digits only")
    if len(cleaned) != NUMBER_LENGTH:
        raise MemberNumberError(
            f"member number {raw!r} has {len(cleaned)} digits; it should have {NUMBER_LENGTH}"
        )
    if luhn_check_digit(cleaned[:-1]) != cleaned[-1]:
        raise MemberNumberError(f"member number {raw!r} has a wrong check digit: please re-type it")
    return cleaned


def is_valid(raw: str) -> bool:
    """True when ``raw`` is a well-formed member number."""
    try:
        normalise(raw)
    except MemberNumberError:
        return False
    return True


def make_number(block: int, serial: int) -> str:
    """The member number for ``serial`` within issuer ``block``."""
    if not 0 <= block < 10_000:
        raise ValueError(f"issuer block {block} out of range 0-9999")
    if not 0 <= serial < SERIALS_PER_BLOCK:
        raise ValueError(f"serial {serial} out of range for one block")
    body = f"{block:04d}{serial:05d}"
    return body + luhn_check_digit(body)


def next_number(blocks: Sequence[int], allocated: int) -> str:
    """The member number after ``allocated`` numbers have been handed out from ``blocks``."""
    index, serial = divmod(allocated, SERIALS_PER_BLOCK)
    if index >= len(blocks):
        raise MemberNumberError(
            "this node has used all its member-number blocks; head office must assign another"
        )
    return make_number(blocks[index], serial)
