"""Vouchers: a short typed code and a signed token for the QR code.

The **code** is 12 characters from a 24-character alphabet with no look-alikes
(0/O, 1/I/L, 2/Z, 5/S, 8/B and V, next to U, are left out), the last one a Luhn
mod-N check character, so any single mistyped character and every swap of
neighbours (but 'A' with '9', Luhn's one blind spot) is caught before a lookup.
It carries 50 random bits: unique across the fleet without coordination, and
unguessable, but it proves nothing by itself — it resolves through the replica
(or head office) to the voucher record.

The **token** is what the QR code holds: the voucher's claims (reward, member,
issuing node, serial, expiry, code) signed with the issuing node's Ed25519 key,
so any node verifies a scanned voucher offline with only public keys.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# Look-alikes (0O 1IL 2Z 5S 8B, and V beside U) left out; an even size keeps Luhn mod N a permutation.
ALPHABET = "ACDEFGHJKMNPQRTUWXY34679"
CODE_LENGTH = 12
TOKEN_PREFIX = "SPV1"


class VoucherError(ValueError):
    """A code or token that is malformed, altered or not signed by a known node."""


def _check_char(body: str) -> str:
    """Luhn mod N over ALPHABET: catches every single substitution and adjacent swap."""
    n = len(ALPHABET)
    factor = 2
    total = 0
    for ch in reversed(body):
        addend = factor * ALPHABET.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return ALPHABET[(n - total % n) % n]


def make_code(entropy: bytes) -> str:
    """A voucher code from at least 8 random bytes (the caller owns the randomness)."""
    if len(entropy) < 8:
        raise ValueError("need 8 random bytes")
    value = int.from_bytes(entropy[:8], "big")
    chars = []
    for _ in range(CODE_LENGTH - 1):
        value, rem = divmod(value, len(ALPHABET))
        chars.append(ALPHABET[rem])
    body = "".join(chars)
    return body + _check_char(body)


def normalise_code(raw: str) -> str:
    """Upper-case and strip spaces/dashes; raise VoucherError if the code cannot be right."""
    cleaned = raw.upper().replace(" ", "").replace("-", "")
    if len(cleaned) != CODE_LENGTH or any(c not in ALPHABET for c in cleaned):
        raise VoucherError(f"voucher code {raw!r} is not {CODE_LENGTH} voucher characters")
    if _check_char(cleaned[:-1]) != cleaned[-1]:
        raise VoucherError(f"voucher code {raw!r} has a wrong check character: please re-type it")
    return cleaned


def format_code(code: str) -> str:
    """The code in groups of four, as printed: ``ACDE-FGHJ-KMNP``."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


@dataclass(frozen=True)
class VoucherClaims:
    code: str
    reward: str
    member: str
    node: str
    serial: int
    expires: date

    def to_json(self) -> bytes:
        body = asdict(self)
        body["expires"] = self.expires.isoformat()
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(claims: VoucherClaims, key: Ed25519PrivateKey) -> str:
    """The QR token: ``SPV1.<claims>.<signature>``, both base64url."""
    payload = claims.to_json()
    return f"{TOKEN_PREFIX}.{_b64(payload)}.{_b64(key.sign(payload))}"


def verify_token(token: str, public_keys: Mapping[str, Ed25519PublicKey]) -> VoucherClaims:
    """The claims of an untouched token signed by a known node; VoucherError otherwise."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise VoucherError("not a Staypoint voucher")
    try:
        payload, signature = _unb64(parts[1]), _unb64(parts[2])
        body = json.loads(payload)
        claims = VoucherClaims(
            code=str(body["code"]),
            reward=str(body["reward"]),
            member=str(body["member"]),
            node=str(body["node"]),
            serial=int(body["serial"]),
            expires=date.fromisoformat(body["expires"]),
        )
    except (ValueError, KeyError, TypeError):
        raise VoucherError("voucher token is damaged") from None
    key = public_keys.get(claims.node)
    if key is None:
        raise VoucherError(f"voucher was issued by an unknown node {claims.node!r}")
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise VoucherError("voucher signature does not match: it has been altered") from None
    # The signed bytes must be the canonical encoding, so two tokens never share claims.
    if claims.to_json() != payload:
        raise VoucherError("voucher token is not in canonical form")
    return claims
