"""Who may ask: API keys (scopes and properties), member sign-in (number or e-mail + PIN, the
fleet-wide lock-out), signed member tokens, and an imported member's first PIN."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from staypoint.central import first_pin
from staypoint.central.application import keys
from staypoint.central.application.core import OfficeCore, sha256
from staypoint.central.application.sources import Draft
from staypoint.central.errors import Conflict, Forbidden, Invalid, Locked, Unauthenticated
from staypoint.loyalty import fold, member_numbers, pins
from staypoint.loyalty.events import iso

TOKEN_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[str]
    properties: frozenset[str]  # "*" = every property

    def require(self, scope: str, prop: str | None = None) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key does not have the {scope!r} scope", "scope")
        if prop is not None and "*" not in self.properties and prop not in self.properties:
            raise Forbidden(f"this API key is not for property {prop!r}", "property")


def member_number(raw: str) -> str:
    """A member number as a client wrote it, normalised; a malformed one is a 422 ``bad_number``."""
    try:
        return member_numbers.normalise(raw)
    except member_numbers.MemberNumberError as exc:
        raise Invalid(str(exc), "bad_number") from None


class Access:
    """API keys, sign-in and member tokens (HMAC-SHA256 under ``token_key``)."""

    def __init__(self, core: OfficeCore, token_key: bytes, token_ttl: timedelta = TOKEN_TTL) -> None:
        self.core = core
        self.token_key = token_key
        self.token_ttl = token_ttl

    # -- API keys ---------------------------------------------------------------------------
    def create_key(self, name: str, scopes: list[str], properties: list[str], now: datetime) -> str:
        """A new key; the secret is returned once and stored only as a hash."""
        try:  # the one copy of the key rules (the CLI's too): application/keys.py
            return keys.create_key(self.core.side, name, scopes, properties, now)
        except keys.KeyRefused as exc:
            raise Invalid(str(exc)) from None

    def revoke_key(self, key_id: str, now: datetime) -> bool:
        try:
            keys.revoke_key(self.core.side, key_id, now)
        except keys.KeyRefused:
            return False
        return True

    def check_key(self, raw: str | None) -> ApiKey:
        if not raw:
            raise Unauthenticated("an API key is required (header X-API-Key)", "no_key")
        parts = raw.split("_", 2)
        if len(parts) != 3 or parts[0] != "sp":
            raise Unauthenticated("this API key is not valid", "bad_key")
        row = self.core.side.read_row(
            "SELECT secret_hash, name, scopes, properties, revoked FROM api_keys WHERE id = ?", (parts[1],)
        )
        if row is None or not hmac.compare_digest(str(row[0]), sha256(parts[2])):
            raise Unauthenticated("this API key is not valid", "bad_key")
        if row[4] is not None:
            raise Unauthenticated("this API key has been revoked", "revoked")
        return ApiKey(parts[1], str(row[1]), frozenset(json.loads(row[2])), frozenset(json.loads(row[3])))

    # -- member sign-in ----------------------------------------------------------------------
    def login(self, login: str, pin: str, now: datetime) -> tuple[str, datetime]:
        """Member number or e-mail + PIN → a signed token; wrong PINs lock fleet-wide.

        The lock-out is the member record's (loyalty/fold.py): a wrong PIN here is a
        ``pin.failed`` event on the web stream, so five wrong tries here lock the kiosks too,
        and a lock set at a kiosk refuses the right PIN here."""
        core = self.core
        number = self._resolve_login(login)
        m = core.ledger.member(number) if number else None
        if number is None or m is None:
            raise Unauthenticated("member number, e-mail or PIN is not right", "bad_login")
        if not m.get("pin_hash"):  # imported without one: first use sets it (central/first_pin.py)
            raise Forbidden(
                "this member has no PIN yet: set one with the first-use code from head office", "no_pin"
            )
        policy = core.program().pin
        state = pins.current(fold.pin_state(m), now)
        if state.locked_until is not None:
            raise Locked(f"too many wrong PINs: try again after {iso(state.locked_until)}", "locked")
        if pins.verify_pin(pin, str(m.get("pin_hash", ""))):
            if state.failures:
                core.sources.emit("web", [Draft("pin.verified", number, {})], now)
            exp = now + self.token_ttl
            return self._sign({"sub": number, "exp": int(exp.timestamp()), "iat": int(now.timestamp())}), exp
        core.sources.emit("web", [Draft("pin.failed", number, {})], now)
        # Head office's count after the fold, which may hold tries made at a kiosk meanwhile.
        state = pins.current(fold.pin_state(core.member(number)), now)
        if state.locked_until is not None:
            raise Locked(f"too many wrong PINs: try again after {iso(state.locked_until)}", "locked")
        left = pins.tries_left(state, policy)
        raise Unauthenticated(f"member number, e-mail or PIN is not right ({left} tries left)", "bad_login")

    def _resolve_login(self, login: str) -> str | None:
        login = login.strip()
        if "@" in login:
            profile = self.core.profiles.by_email(login)
            return profile.member if profile else None
        return member_number(login)

    def _sign(self, claims: dict[str, Any]) -> str:
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        sig = _b64(hmac.new(self.token_key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{sig}"

    def member_from_token(self, token: str | None, now: datetime) -> str:
        if not token:
            raise Unauthenticated("sign in first (Authorization: Bearer <token>)", "no_token")
        body, _, sig = token.partition(".")
        want = _b64(hmac.new(self.token_key, body.encode(), hashlib.sha256).digest())
        if not sig or not hmac.compare_digest(sig, want):
            raise Unauthenticated("this sign-in token is not valid", "bad_token")
        try:
            claims = json.loads(_unb64(body))
            sub, exp = str(claims["sub"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError):
            raise Unauthenticated("this sign-in token is not valid", "bad_token") from None
        if now.timestamp() >= exp:
            raise Unauthenticated("this sign-in token has expired: sign in again", "expired")
        return sub

    def member_in_path(self, raw_number: str, token: str | None, now: datetime) -> str:
        """The member a ``/v1/members/{number}/...`` request names, proved by a sign-in token for
        that member: a malformed number is a 422, another member's token a 403."""
        wanted = member_number(raw_number)
        if self.member_from_token(token, now) != wanted:
            raise Forbidden("this sign-in token is for another member", "other_member")
        return wanted

    def prove_member(self, raw_number: str, token: str | None, pin: str | None, now: datetime) -> str:
        """The member a request names, proved by their sign-in token or by their PIN (checked as
        :meth:`login` checks it: a wrong one counts towards the fleet-wide lock-out)."""
        if token is not None:
            return self.member_in_path(raw_number, token, now)
        wanted = member_number(raw_number)
        if pin is None:
            raise Unauthenticated("give the member's PIN or their sign-in token", "no_proof")
        self.login(wanted, pin, now)
        return wanted

    # -- the first PIN -----------------------------------------------------------------------
    def set_first_pin(self, raw_number: str, code: str, pin: str, now: datetime) -> dict[str, Any]:
        """An imported member's first PIN, with head office's one-time code: a ``pin.set`` event."""
        core = self.core
        number = member_number(raw_number)
        m = core.member(number)
        if m.get("pin_hash"):
            raise Conflict("this member has a PIN already: sign in with it", "has_pin")
        try:
            pins.check_format(pin, core.program().pin)
        except pins.PinFormatError as exc:
            raise Invalid(str(exc)) from None
        first_pin.consume(core.side, number, code, now)  # its refusals are domain errors already
        try:
            pin_hash = pins.hash_pin(pin, os.urandom(16))
            core.sources.emit("web", [Draft("pin.set", number, {"pin_hash": pin_hash})], now)
        except BaseException:
            first_pin.release(core.side, number)
            raise
        return {"member": number, "pin": "set"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
