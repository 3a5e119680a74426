"""PINs: scrypt with a per-member salt, compared in constant time, and the lock-out rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from staypoint.loyalty.program import PinPolicy

# scrypt cost: ~16 MiB and tens of milliseconds on a Raspberry-class board — slow enough
# to make an offline brute force of a stolen replica expensive, fast enough for a kiosk.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


class PinFormatError(ValueError):
    """A PIN that does not meet the programme's policy."""


def check_format(pin: str, policy: PinPolicy) -> None:
    """Raise PinFormatError unless ``pin`` is ``policy.length`` digits."""
    if not pin.isascii() or not pin.isdigit() or len(pin) != policy.length:
        raise PinFormatError(f"a PIN is exactly {policy.length} digits")


def hash_pin(pin: str, salt: bytes) -> str:
    """The stored form of ``pin``: ``scrypt$N$r$p$salt$hash`` (base64)."""
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def is_standard_hash(stored: str) -> bool:
    """True when ``stored`` is exactly what :func:`hash_pin` makes: this scheme and cost, a
    16-byte salt, a 32-byte digest. A PIN hashed elsewhere (a kiosk's first PIN, sent to head
    office hashed) is taken only in this form, so no one can hand in a cheaper one."""
    if not isinstance(stored, str) or len(stored) > 200:
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[:4] != ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P)]:
        return False
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return False
    return len(salt) == 16 and len(digest) == 32


def verify_pin(pin: str, stored: str) -> bool:
    """True when ``pin`` matches ``stored``; constant-time in the digest comparison."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        got = hashlib.scrypt(pin.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@dataclass(frozen=True)
class PinState:
    failures: int
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def current(state: PinState, now: datetime) -> PinState:
    """The state as it stands at ``now``: a lock-out that has run its course leaves fresh tries."""
    if state.locked_until is not None and now >= state.locked_until:
        return PinState(0, None)
    return state


def after_failure(state: PinState, policy: PinPolicy, now: datetime) -> PinState:
    """The state after one more wrong PIN: locked for the policy's time at the last try."""
    failures = state.failures + 1
    if failures >= policy.max_tries:
        return PinState(failures, now + timedelta(minutes=policy.lockout_minutes))
    return PinState(failures, state.locked_until)


def tries_left(state: PinState, policy: PinPolicy) -> int:
    """How many wrong PINs remain before lock-out."""
    return max(0, policy.max_tries - state.failures)
