"""One-time enrolment tokens: bound to a node id, stored hashed, expiring, used once.

A token looks like ``<node id>.<secret>``: the node id in clear so the board knows which
identity to put in its CSR, the secret (128 random bits, base32) proving head office
issued it. Only ``sha256(secret)`` is stored, so the token file at head office is useless
to a thief. The node id the CA signs comes from the *stored* record, never from the token
text: editing the node part of a token gets "issued for another node", not a certificate.

"Used once" has one nuance, for re-runnable enrolment: the first successful use records
the fingerprint of the CSR's public key; the same board asking again with the same key
(its reply was lost, or it crashed after the request) gets the same answer again, while
any other key gets "already used".
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from staypoint.fsutil import atomic_write
from staypoint.provisioning.pki import is_node_id

__all__ = ["TokenRecord", "TokenRefused", "TokenStore", "atomic_write", "parse_ttl", "split_token"]

_TTL_RE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = dt.timedelta(days=7)  # a token is for an installation visit, not a standing key


class TokenRefused(ValueError):
    """The token cannot be used; the message is what the technician reads."""


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path.lock`` (two head-office processes, one file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def parse_ttl(text: str) -> dt.timedelta:
    """``"2h"`` → 2 hours; units s, m, h, d; at most 7 days."""
    m = _TTL_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"ttl {text!r}: use a number and a unit, e.g. 30m, 2h, 1d")
    ttl = dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    if not dt.timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"ttl {text!r}: must be more than 0 and at most 7d")
    return ttl


def split_token(token: str) -> tuple[str, str]:
    """``"<node>.<secret>"`` → ``(node, secret)``; ``TokenRefused`` when malformed."""
    node, sep, secret = token.strip().rpartition(".")
    if not sep or not is_node_id(node) or not re.fullmatch(r"[a-z2-7]{16,64}", secret):
        raise TokenRefused("malformed enrolment token: expected <node id>.<secret> as printed by head office")
    return node, secret


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    """What head office keeps of one token (never the secret itself)."""

    node: str
    property: str
    secret_sha256: str
    created: str
    expires: str
    used_at: str | None = None
    key_fingerprint: str | None = None  # the CSR key that used it (re-runs with it are allowed)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


class TokenStore:
    """Tokens in one JSON file (``tokens.json``, mode 0600), changed under a file lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> list[TokenRecord]:
        if not self.path.exists():
            return []
        raw: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
        return [TokenRecord(**entry) for entry in raw.get("tokens", [])]

    def _save(self, records: list[TokenRecord]) -> None:
        body = {"tokens": [asdict(r) for r in records]}
        atomic_write(self.path, (json.dumps(body, indent=2) + "\n").encode(), 0o600)

    def records(self) -> list[TokenRecord]:
        """Every token record (for ``provision token list``)."""
        return self._load()

    def create(self, node: str, property_: str, ttl: dt.timedelta, *, now: dt.datetime | None = None) -> str:
        """Issue a token for ``node``; return its text (shown once, never stored)."""
        if not is_node_id(node):
            raise ValueError(f"{node!r} is not a valid node id (a-z, 0-9, inner '-', not reserved)")
        if not property_.strip():
            raise ValueError("property must not be empty")
        now = _now(now)
        secret = base64.b32encode(secrets.token_bytes(20)).decode().lower().rstrip("=")
        record = TokenRecord(
            node=node,
            property=property_,
            secret_sha256=_hash(secret),
            created=now.isoformat(),
            expires=(now + ttl).isoformat(),
        )
        with locked(self.path):
            records = self._load()
            records.append(record)
            self._save(records)
        return f"{node}.{secret}"

    def redeem(
        self,
        token: str,
        key_fingerprint: str,
        *,
        node: str | None = None,
        now: dt.datetime | None = None,
    ) -> TokenRecord:
        """Use ``token`` for the CSR key ``key_fingerprint``; return its record, or refuse.

        ``node`` is the identity the board asks for (its CSR's CN); it must be the token's.
        Refusals, in the order checked: malformed, unknown, wrong node, expired, used.
        """
        claimed, secret = split_token(token)
        digest = _hash(secret)
        now = _now(now)
        with locked(self.path):
            records = self._load()
            # compare_digest: the lookup must not leak, by timing, how much of a hash matched.
            found = [i for i, r in enumerate(records) if hmac.compare_digest(r.secret_sha256, digest)]
            if not found:
                raise TokenRefused("unknown enrolment token: ask head office for a new one")
            i = found[0]
            rec = records[i]
            if claimed != rec.node or (node is not None and node != rec.node):
                asked = node if node is not None and node != rec.node else claimed
                raise TokenRefused(f"token was issued for node {rec.node!r}, not {asked!r}")
            if rec.used_at is not None:
                if rec.key_fingerprint == key_fingerprint:
                    return rec  # the same board finishing an interrupted enrolment
                raise TokenRefused(f"token for {rec.node!r} was already used at {rec.used_at}")
            if now >= dt.datetime.fromisoformat(rec.expires):
                raise TokenRefused(f"token for {rec.node!r} expired at {rec.expires}")
            used = TokenRecord(
                **{**asdict(rec), "used_at": now.isoformat(), "key_fingerprint": key_fingerprint}
            )
            records[i] = used
            self._save(records)
            return used
