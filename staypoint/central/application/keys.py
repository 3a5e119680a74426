"""API keys in the side tables: create (the secret shown once, kept as SHA-256), list, revoke.

One copy of the rules for ``Services`` (the API) and ``staypoint central api keys`` (the CLI).
A revoked key is kept (``revoked`` set) so its id, name and history stay readable; it gets
``401 "this API key has been revoked"`` at once, in every API process (each request reads
the row).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from staypoint.central.application.state import SideStore
from staypoint.loyalty.events import iso

SCOPES = ("member", "enrol", "stays", "rates", "claims", "reports")
PROPERTY = re.compile(r"^(\*|[A-Za-z0-9_-]{1,32})$")


class KeyRefused(ValueError):
    """A refusal in one line (unknown scope, unknown key, already revoked)."""


@dataclass(frozen=True)
class KeyRow:
    id: str
    name: str
    scopes: tuple[str, ...]
    properties: tuple[str, ...]
    created: str
    revoked: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "properties": list(self.properties),
            "created": self.created,
            "revoked": self.revoked,
        }


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(side: SideStore, name: str, scopes: list[str], properties: list[str], now: datetime) -> str:
    """A new key ``sp_<id>_<secret>``; the secret is returned once and stored only as a hash."""
    scopes = [s.strip() for s in scopes if s.strip()]
    properties = [p.strip() for p in properties if p.strip()]
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise KeyRefused(f"unknown scopes {bad or scopes}; use {', '.join(SCOPES)}")
    bad = [p for p in properties if not PROPERTY.match(p)]
    if bad or not properties:
        raise KeyRefused(f"bad properties {bad or properties}: property codes, or * for all")
    if not name.strip() or not name.isprintable() or len(name) > 80:
        raise KeyRefused("a key's name is 1 to 80 printable characters")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    side.execute(
        "INSERT INTO api_keys (id, secret_hash, name, scopes, properties, created) VALUES (?, ?, ?, ?, ?, ?)",
        (
            key_id,
            secret_hash(secret),
            name.strip(),
            json.dumps(sorted(scopes)),
            json.dumps(sorted(properties)),
            iso(now),
        ),
    )
    return f"sp_{key_id}_{secret}"


def list_keys(side: SideStore) -> list[KeyRow]:
    rows = side.all(
        "SELECT id, name, scopes, properties, created, revoked FROM api_keys ORDER BY created, id"
    )
    return [
        KeyRow(
            str(r[0]),
            str(r[1]),
            tuple(json.loads(r[2])),
            tuple(json.loads(r[3])),
            str(r[4]),
            None if r[5] is None else str(r[5]),
        )
        for r in rows
    ]


def revoke_key(side: SideStore, key_id: str, now: datetime) -> KeyRow:
    """Revoke key ``key_id`` (the id, or the whole ``sp_<id>_...`` key); a one-line refusal when
    there is no such key or it is revoked already."""
    if key_id.startswith("sp_"):
        key_id = key_id.split("_", 2)[1]
    with side.transaction():
        row = side.row("SELECT revoked FROM api_keys WHERE id = ?", (key_id,))
        if row is None:
            raise KeyRefused(f"no API key {key_id[:40]!r} (staypoint central api keys list)")
        if row[0] is not None:
            raise KeyRefused(f"API key {key_id} was revoked already, at {row[0]}")
        side.execute("UPDATE api_keys SET revoked = ? WHERE id = ?", (iso(now), key_id))
    return next(k for k in list_keys(side) if k.id == key_id)
