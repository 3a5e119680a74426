"""One-time codes with which an imported member sets a first PIN (docs/head-office.md, Importing members).

A member imported from a property system has no PIN (the export has none). Head office
issues each one a code, printed on the welcome letter or mailed; ``POST /v1/members/{n}/pin``
with the code and a new PIN sets it (a ``pin.set`` event on the web stream, so every node
gets the PIN with the member's record). The code is:

- random, 12 characters from a 32-letter alphabet with no look-alikes (60 bits), shown as
  ``ABCD-EFGH-JKLM``;
- stored only as a SHA-256 of the member number and the code, in head office's side tables;
- single use, and void after :data:`TTL` (30 days) or :data:`MAX_TRIES` wrong tries (a new
  one is issued with ``staypoint central import codes``).

The rate limit is per member: five wrong codes void it, whatever the source of the tries,
so 60 bits are never searched online; the API's own key and body limits bound the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from staypoint.central.application.state import SideStore
from staypoint.central.errors import DomainError, Gone, Locked, NotFound, Unauthenticated
from staypoint.loyalty.events import iso, parse_iso
from staypoint.loyalty.first_pin_codes import ALPHABET, LENGTH, display, normalise  # the kiosk's too

TTL = timedelta(days=30)
MAX_TRIES = 5

SCHEMA = """CREATE TABLE IF NOT EXISTS first_pin_codes (member TEXT PRIMARY KEY, code_hash TEXT NOT NULL,
    issued TEXT NOT NULL, expires TEXT NOT NULL, failures INTEGER NOT NULL, used TEXT)"""


class CodeError(DomainError):
    """A code that does not set a PIN: one safe line, a stable ``code``; the kind below."""


class NoCode(CodeError, NotFound):
    pass


class CodeSpent(CodeError, Gone):
    """Used already, or expired."""


class CodeVoid(CodeError, Locked):
    """Too many wrong codes."""


class WrongCode(CodeError, Unauthenticated):
    pass


@dataclass(frozen=True)
class Issued:
    member: str
    code: str  # as printed: ABCD-EFGH-JKLM
    expires: datetime


def ensure(side: SideStore) -> None:
    side.execute(SCHEMA)


def _hash(member: str, code: str) -> str:
    return hashlib.sha256(f"staypoint-first-pin:{member}:{normalise(code)}".encode()).hexdigest()


def new_code() -> str:
    """A fresh random code as the letter prints it (``ABCD-EFGH-JKLM``)."""
    return display("".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))


def issue(side: SideStore, members: Sequence[str], now: datetime, ttl: timedelta = TTL) -> list[Issued]:
    """A fresh code for each member (an earlier one, used or not, is replaced), in one transaction."""
    ensure(side)
    expires = now + ttl
    out = [Issued(m, new_code(), expires) for m in members]
    with side.transaction():
        for item in out:
            side.execute(
                "INSERT INTO first_pin_codes (member, code_hash, issued, expires, failures, used) "
                "VALUES (?, ?, ?, ?, 0, NULL) ON CONFLICT (member) DO UPDATE SET "
                "code_hash = excluded.code_hash, issued = excluded.issued, expires = excluded.expires, "
                "failures = 0, used = NULL",
                (item.member, _hash(item.member, item.code), iso(now), iso(expires)),
            )
    return out


def live(side: SideStore, members: Sequence[str], now: datetime) -> set[str]:
    """Those of ``members`` holding a code that still works (not used, not expired, not void)."""
    ensure(side)
    found: set[str] = set()
    for i in range(0, len(members), 500):
        chunk = list(members[i : i + 500])
        rows = side.all(
            f"SELECT member, expires, failures, used FROM first_pin_codes WHERE member IN "
            f"({', '.join('?' * len(chunk))})",
            chunk,
        )
        for member, expires, failures, used in rows:
            if used is None and int(failures) < MAX_TRIES and parse_iso(str(expires)) > now:
                found.add(str(member))
    return found


def consume(side: SideStore, member: str, code: str, now: datetime) -> None:
    """Use ``member``'s code, or raise CodeError (a wrong one counted, and committed, first)."""
    ensure(side)
    refusal: CodeError | None = None
    with side.transaction():
        row = side.row(
            "SELECT code_hash, expires, failures, used FROM first_pin_codes WHERE member = ?", (member,)
        )
        if row is None:
            raise NoCode("this member has no first-use code: ask head office for one", "no_code")
        code_hash, expires, failures, used = str(row[0]), parse_iso(str(row[1])), int(row[2]), row[3]
        if used is not None:
            raise CodeSpent("this code has been used already: sign in with your PIN", "code_used")
        if now >= expires:
            raise CodeSpent("this code has expired: ask head office for a new one", "code_expired")
        if failures >= MAX_TRIES:
            raise CodeVoid("too many wrong codes: ask head office for a new one", "code_void")
        if not hmac.compare_digest(code_hash, _hash(member, code)):
            failures += 1
            side.execute("UPDATE first_pin_codes SET failures = ? WHERE member = ?", (failures, member))
            left = MAX_TRIES - failures
            refusal = (
                CodeVoid("too many wrong codes: ask head office for a new one", "code_void")
                if left == 0
                else WrongCode(f"this code is not right ({left} tries left)", "bad_code")
            )
        else:
            side.execute("UPDATE first_pin_codes SET used = ? WHERE member = ?", (iso(now), member))
    if refusal is not None:  # raised after the commit, so the wrong try stays counted
        raise refusal


def release(side: SideStore, member: str) -> None:
    """Give back a code consumed by a PIN change that then failed to be written."""
    side.execute("UPDATE first_pin_codes SET used = NULL WHERE member = ?", (member,))
