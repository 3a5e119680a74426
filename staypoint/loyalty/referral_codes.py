"""Referral codes (推荐奖励): one per member, derived from the member number.

A code is a pure function of the member number, so a kiosk shows it offline with nothing
synced, head office finds the referrer from a code without a lookup table, and two members
can never share one (the mapping is a bijection). It is 7 characters from the voucher
alphabet, scrambled so neighbours' codes look unrelated, plus a check character; shown
``ABCD-EFGH``. It is not a secret: a friend is meant to type it.
"""

from __future__ import annotations

from staypoint.loyalty import member_numbers
from staypoint.loyalty.vouchers import ALPHABET, _check_char

_N = len(ALPHABET)
_SPACE = _N**7  # 4.6e9 codes for 1e9 member-number bodies
# An odd multiplier coprime with the space (24^7 = 2^21·3^7) scrambles the order and is
# undone by its modular inverse.
_MUL = 2_654_435_761
_INV = pow(_MUL, -1, _SPACE)
_OFFSET = 1_234_567_891
MAX_CHAIN = 1000  # a referral chain longer than this is a data error, not a family


class ReferralCodeError(ValueError):
    """A typed referral code that cannot be right."""


def referral_code(member: str) -> str:
    """The member's referral code, ``ABCD-EFGH``."""
    body = int(member_numbers.normalise(member)[:-1])
    value = (body * _MUL + _OFFSET) % _SPACE
    chars = []
    for _ in range(7):
        value, rem = divmod(value, _N)
        chars.append(ALPHABET[rem])
    code = "".join(chars)
    code += _check_char(code)
    return f"{code[:4]}-{code[4:]}"


def member_for_code(raw: str) -> str:
    """The member number a referral code belongs to; ReferralCodeError if it cannot be one."""
    code = raw.upper().replace("-", "").replace(" ", "")
    if len(code) != 8 or any(c not in ALPHABET for c in code) or _check_char(code[:7]) != code[7]:
        raise ReferralCodeError(f"{raw!r} is not a referral code: please check it")
    value = 0
    for ch in reversed(code[:7]):
        value = value * _N + ALPHABET.index(ch)
    body = ((value - _OFFSET) * _INV) % _SPACE
    if body >= 10**9:
        raise ReferralCodeError(f"{raw!r} is not a referral code: please check it")
    text = f"{body:09d}"
    return text + member_numbers.luhn_check_digit(text)
