from __future__ import annotations

import os
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from staypoint.loyalty import vouchers as v

KEY = Ed25519PrivateKey.generate()
KEYS = {"sha-lobby-01": KEY.public_key()}


def _token(code: str | None = None) -> tuple[v.VoucherClaims, str]:
    claims = v.VoucherClaims(
        code or v.make_code(os.urandom(8)), "LATE-CO", "0042000017", "sha-lobby-01", 7, date(2026, 12, 23)
    )
    return claims, v.sign_token(claims, KEY)


def test_code_is_short_typeable_and_grouped() -> None:
    code = v.make_code(os.urandom(8))
    assert len(code) == 12 and set(code) <= set(v.ALPHABET)
    assert v.normalise_code(v.format_code(code).lower()) == code
    for bad in "0O1IL2Z5S8B":
        assert bad not in v.ALPHABET


@given(st.binary(min_size=8, max_size=8), st.integers(0, 11), st.integers(1, len(v.ALPHABET) - 1))
def test_any_changed_character_of_a_code_fails(entropy: bytes, pos: int, shift: int) -> None:
    code = v.make_code(entropy)
    changed = (
        code[:pos] + v.ALPHABET[(v.ALPHABET.index(code[pos]) + shift) % len(v.ALPHABET)] + code[pos + 1 :]
    )
    with pytest.raises(v.VoucherError):
        v.normalise_code(changed)


@given(st.binary(min_size=8, max_size=8), st.integers(0, 10))
def test_swapped_neighbours_fail(entropy: bytes, pos: int) -> None:
    code = v.make_code(entropy)
    # Luhn mod N misses exactly one swap, of the alphabet's first and last characters
    # (like Luhn's 09 <-> 90); every other neighbour swap is caught.
    if code[pos] == code[pos + 1] or {code[pos], code[pos + 1]} == {v.ALPHABET[0], v.ALPHABET[-1]}:
        return
    swapped = code[:pos] + code[pos + 1] + code[pos] + code[pos + 2 :]
    with pytest.raises(v.VoucherError):
        v.normalise_code(swapped)


@settings(max_examples=300)
@given(st.data())
def test_token_verifies_iff_untouched(data: st.DataObject) -> None:
    # The code comes from Hypothesis, not os.urandom: a replayed example must draw the same token
    # (Ed25519 signs deterministically), or its filtered draws differ and Hypothesis calls it flaky.
    claims, token = _token(v.make_code(data.draw(st.binary(min_size=8, max_size=8))))
    assert v.verify_token(token, KEYS) == claims
    pos = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    ch = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[pos]))
    tampered = token[:pos] + ch + token[pos + 1 :]
    try:
        got = v.verify_token(tampered, KEYS)
    except v.VoucherError:
        return
    # base64 has slack in the last character's low bits: the bytes, hence the claims, are unchanged.
    assert got == claims and pos == len(token) - 1


def test_a_token_from_an_unknown_node_or_key_fails() -> None:
    _, token = _token()
    with pytest.raises(v.VoucherError, match="unknown node"):
        v.verify_token(token, {})
    with pytest.raises(v.VoucherError, match="altered"):
        v.verify_token(token, {"sha-lobby-01": Ed25519PrivateKey.generate().public_key()})
    with pytest.raises(v.VoucherError, match="not a Staypoint voucher"):
        v.verify_token("hello", KEYS)
