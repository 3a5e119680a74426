"""Members' personal data and consent: kept only at head office, never sent to a node.

The node replica holds a display name and balances; e-mail, phone, birth date, language,
time zone and marketing consent live here, in head office's own tables. Every change of
consent is kept with its time and source (kiosk, web, console, import, unsubscribe link),
because a chain must be able to show when and how a guest said yes or no.

One SQLite file (head office's ledger file or a file of its own), WAL, its own connection
(``ProfileStore``), or, beside a PostgreSQL ledger, a schema ``profile`` in its database
(``PgProfileStore``); both behind ``Profiles``, opened by URL with ``open_profiles``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from staypoint.sqlitetx import immediate

CHANNELS = ("email", "sms")
LANGUAGES = ("en", "zh")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS profiles (
        member TEXT PRIMARY KEY,
        full_name TEXT NOT NULL,
        email TEXT,
        phone TEXT,
        birth_date TEXT,
        language TEXT NOT NULL DEFAULT 'en',
        time_zone TEXT NOT NULL DEFAULT 'UTC',
        home_property TEXT,
        joined TEXT NOT NULL,
        consent_email INTEGER NOT NULL DEFAULT 0,
        consent_sms INTEGER NOT NULL DEFAULT 0,
        email_bounced INTEGER NOT NULL DEFAULT 0,
        referral_code TEXT UNIQUE,
        referred_by TEXT,
        updated_at TEXT NOT NULL) WITHOUT ROWID""",
    "CREATE UNIQUE INDEX IF NOT EXISTS profiles_email ON profiles (lower(email)) WHERE email IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS profiles_phone ON profiles (phone) WHERE phone IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS consent_log (
        id INTEGER PRIMARY KEY,
        member TEXT NOT NULL,
        channel TEXT NOT NULL,
        granted INTEGER NOT NULL,
        source TEXT NOT NULL,
        at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS consent_log_member ON consent_log (member, id)",
    # A postal address, where an import brings one (central/member_import.py): personal data,
    # kept here beside the profile and never sent to a node.
    """CREATE TABLE IF NOT EXISTS addresses (member TEXT PRIMARY KEY, address TEXT NOT NULL,
        updated_at TEXT NOT NULL) WITHOUT ROWID""",
)


class ProfileError(ValueError):
    """A profile change that cannot be right (bad e-mail, unknown language, ...)."""


@dataclass(frozen=True)
class Profile:
    member: str
    full_name: str
    email: str | None
    phone: str | None
    birth_date: date | None
    language: str
    time_zone: str
    home_property: str | None
    joined: date
    consent_email: bool
    consent_sms: bool
    email_bounced: bool
    referral_code: str | None
    referred_by: str | None
    updated_at: str

    def may_contact(self, channel: str) -> bool:
        """Consent given for ``channel`` and the address is usable."""
        if channel == "email":
            return self.consent_email and bool(self.email) and not self.email_bounced
        if channel == "sms":
            return self.consent_sms and bool(self.phone)
        raise ProfileError(f"unknown channel {channel!r}")


_COLUMNS = [f.name for f in fields(Profile)]


def _row_to_profile(row: tuple[Any, ...]) -> Profile:
    d = dict(zip(_COLUMNS, row, strict=True))
    d["birth_date"] = date.fromisoformat(d["birth_date"]) if d["birth_date"] else None
    d["joined"] = date.fromisoformat(d["joined"])
    for k in ("consent_email", "consent_sms", "email_bounced"):
        d[k] = bool(d[k])
    return Profile(**d)


def _check_email(email: str) -> str:
    email = email.strip()
    local, _, domain = email.rpartition("@")
    if not local or "." not in domain or " " in email or len(email) > 254:
        raise ProfileError(f"{email!r} is not an e-mail address")
    return email


def _check_phone(phone: str) -> str:
    cleaned = phone.replace(" ", "").replace("-", "")
    if not cleaned.startswith("+") or not cleaned[1:].isdigit() or not 8 <= len(cleaned) <= 16:
        raise ProfileError(f"{phone!r}: give the phone number in international form, +4930...")
    return cleaned


def check_contact(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """The e-mail address and phone number as a profile stores them; ProfileError if either is
    malformed. For a caller that must refuse before it writes anything else (an enrolment
    takes a member number first)."""
    return (_check_email(email) if email else None, _check_phone(phone) if phone else None)


def _changes(
    *,
    full_name: str | None,
    email: str | None,
    phone: str | None,
    birth_date: date | None,
    language: str | None,
    time_zone: str | None,
    home_property: str | None,
    referral_code: str | None,
    referred_by: str | None,
) -> dict[str, Any]:
    """The checked columns an upsert changes (only the fields given); ProfileError if one is wrong."""
    changes: dict[str, Any] = {}
    if full_name is not None:
        if not full_name.strip() or len(full_name) > 120:
            raise ProfileError("name must be 1-120 characters")
        changes["full_name"] = full_name.strip()
    if email is not None:
        changes["email"] = _check_email(email) if email else None
        changes["email_bounced"] = 0  # a new address gets a fresh chance
    if phone is not None:
        changes["phone"] = _check_phone(phone) if phone else None
    if birth_date is not None:
        changes["birth_date"] = birth_date.isoformat()
    if language is not None:
        if language not in LANGUAGES:
            raise ProfileError(f"language is one of {', '.join(LANGUAGES)}")
        changes["language"] = language
    if time_zone is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProfileError(f"unknown time zone {time_zone!r}") from None
        changes["time_zone"] = time_zone
    for key, value in (
        ("home_property", home_property),
        ("referral_code", referral_code),
        ("referred_by", referred_by),
    ):
        if value is not None:
            changes[key] = value
    return changes


def profiles_path(location: str) -> Path:
    """The profiles file ``--profiles`` names: a path or a ``sqlite:`` URL (see
    ``store.parse_store_url``), for the callers that need a SQLite file: a PostgreSQL URL is refused
    in one line (``open_profiles`` takes either)."""
    from staypoint.central.store import StoreConfigError, parse_store_url

    parsed = parse_store_url(location)
    if parsed.is_pg:
        raise StoreConfigError(
            "this needs the profiles as a SQLite file: give --profiles a file (or sqlite:///path)"
        )
    path = Path(parsed.path or "").absolute()
    if not path.parent.is_dir():
        raise StoreConfigError(f"no folder {path.parent} for the profiles file {path}")
    return path


class ProfileStore:
    """Personal data and consent on SQLite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self._lock = threading.RLock()
        with self._lock:
            for stmt in _SCHEMA:
                self.conn.execute(stmt)

    def close(self) -> None:
        self.conn.close()

    def _write(self, sql: str, args: tuple[Any, ...] | list[Any]) -> None:
        with self._lock:
            self.conn.execute(sql, args)

    def upsert(
        self,
        member: str,
        *,
        at: str,
        full_name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        birth_date: date | None = None,
        language: str | None = None,
        time_zone: str | None = None,
        home_property: str | None = None,
        joined: date | None = None,
        referral_code: str | None = None,
        referred_by: str | None = None,
    ) -> Profile:
        """Create or change a profile; only the fields given change."""
        changes = _changes(
            full_name=full_name,
            email=email,
            phone=phone,
            birth_date=birth_date,
            language=language,
            time_zone=time_zone,
            home_property=home_property,
            referral_code=referral_code,
            referred_by=referred_by,
        )
        try:
            with self._lock, immediate(self.conn):
                exists = self.conn.execute("SELECT 1 FROM profiles WHERE member = ?", (member,)).fetchone()
                if exists is None:
                    base = {
                        "member": member,
                        "full_name": changes.pop("full_name", member),
                        "joined": (joined or date.fromisoformat(at[:10])).isoformat(),
                        "updated_at": at,
                    }
                    row = base | changes
                    cols = ", ".join(row)
                    self.conn.execute(
                        f"INSERT INTO profiles ({cols}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()),
                    )
                elif changes:
                    changes["updated_at"] = at
                    sets = ", ".join(f"{k} = ?" for k in changes)
                    self.conn.execute(
                        f"UPDATE profiles SET {sets} WHERE member = ?", [*changes.values(), member]
                    )
        except sqlite3.IntegrityError as exc:
            raise ProfileError(f"already used by another member ({exc})") from None
        got = self.get(member)
        assert got is not None
        return got

    def add_many(self, records: list[dict[str, Any]], addresses: list[tuple[str, str]], at: str) -> None:
        """New profiles in one transaction (a member import's batch): the records hold the same
        profile columns, already checked (``check_contact``); ``addresses`` is (member, address).
        A member who already has a profile keeps it; an e-mail another member has is a
        ProfileError and nothing of the batch is written."""
        rows = [{"joined": at[:10], "updated_at": at} | rec for rec in records]
        try:
            with self._lock, immediate(self.conn):
                if rows:
                    cols = list(rows[0])
                    self.conn.executemany(
                        f"INSERT INTO profiles ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                        "ON CONFLICT (member) DO NOTHING",
                        [[r[c] for c in cols] for r in rows],
                    )
                self.conn.executemany(
                    "INSERT OR REPLACE INTO addresses (member, address, updated_at) VALUES (?, ?, ?)",
                    [(m, a, at) for m, a in addresses],
                )
        except sqlite3.IntegrityError as exc:
            raise ProfileError(f"already used by another member ({exc})") from None

    def address(self, member: str) -> str | None:
        with self._lock:
            row = self.conn.execute("SELECT address FROM addresses WHERE member = ?", (member,)).fetchone()
        return None if row is None else str(row[0])

    def set_consent(self, member: str, channel: str, granted: bool, *, source: str, at: str) -> None:
        """Record a yes or no for marketing on ``channel``; the history keeps every change."""
        if channel not in CHANNELS:
            raise ProfileError(f"channel is one of {', '.join(CHANNELS)}")
        with self._lock, immediate(self.conn):
            cur = self.conn.execute(
                f"UPDATE profiles SET consent_{channel} = ?, updated_at = ? WHERE member = ?",
                (int(granted), at, member),
            )
            if cur.rowcount == 0:
                raise ProfileError(f"no profile for member {member}")
            self.conn.execute(
                "INSERT INTO consent_log (member, channel, granted, source, at) VALUES (?, ?, ?, ?, ?)",
                (member, channel, int(granted), source, at),
            )

    def mark_bounced(self, email: str, at: str) -> int:
        """Stop mailing an address that bounced; returns how many profiles had it."""
        with self._lock:
            cur = self.conn.execute(
                "UPDATE profiles SET email_bounced = 1, updated_at = ? WHERE lower(email) = lower(?)",
                (at, email),
            )
            return int(cur.rowcount)

    def get(self, member: str) -> Profile | None:
        with self._lock:
            row = self.conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM profiles WHERE member = ?", (member,)
            ).fetchone()
        return None if row is None else _row_to_profile(row)

    def many(self, members: list[str]) -> dict[str, Profile]:
        """The profiles of ``members`` that exist, in one query (a campaign chunk's, say)."""
        if not members:
            return {}
        marks = ", ".join("?" * len(members))
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM profiles WHERE member IN ({marks})", members
            ).fetchall()
        return {r[0]: _row_to_profile(r) for r in rows}

    def by_email(self, email: str) -> Profile | None:
        with self._lock:
            row = self.conn.execute(
                # ``email IS NOT NULL`` lets SQLite use the partial index profiles_email (else a full scan)
                f"SELECT {', '.join(_COLUMNS)} FROM profiles "
                "WHERE lower(email) = lower(?) AND email IS NOT NULL",
                (email.strip(),),
            ).fetchone()
        return None if row is None else _row_to_profile(row)

    def by_phone(self, phone: str) -> Profile | None:
        with self._lock:
            row = self.conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM profiles WHERE phone = ?", (phone.replace(" ", ""),)
            ).fetchone()
        return None if row is None else _row_to_profile(row)

    def by_referral_code(self, code: str) -> Profile | None:
        with self._lock:
            row = self.conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM profiles WHERE referral_code = ?", (code.upper(),)
            ).fetchone()
        return None if row is None else _row_to_profile(row)

    def search_name(self, text: str, limit: int = 50) -> list[Profile]:
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM profiles WHERE full_name LIKE ? LIMIT ?",
                (f"%{text}%", limit),
            ).fetchall()
        return [_row_to_profile(r) for r in rows]

    def all(self, batch: int = 10_000) -> Iterator[Profile]:
        """Every profile, in member order, read in batches (for campaigns over a million members)."""
        last = ""
        while True:
            with self._lock:
                rows = self.conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM profiles WHERE member > ? ORDER BY member LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield _row_to_profile(r)
            last = rows[-1][0]

    def consent_log(self, member: str) -> list[tuple[str, bool, str, str]]:
        """(channel, granted, source, at) for every consent change, oldest first."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT channel, granted, source, at FROM consent_log WHERE member = ? ORDER BY id",
                (member,),
            ).fetchall()
        return [(str(c), bool(g), str(s), str(a)) for c, g, s, a in rows]


class Profiles(Protocol):
    """Members' personal data and consent, on either store (``ProfileStore``: SQLite,
    ``PgProfileStore``: PostgreSQL); :func:`open_profiles` picks one by URL."""

    def close(self) -> None: ...

    def upsert(
        self,
        member: str,
        *,
        at: str,
        full_name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        birth_date: date | None = None,
        language: str | None = None,
        time_zone: str | None = None,
        home_property: str | None = None,
        joined: date | None = None,
        referral_code: str | None = None,
        referred_by: str | None = None,
    ) -> Profile: ...

    def add_many(self, records: list[dict[str, Any]], addresses: list[tuple[str, str]], at: str) -> None: ...

    def address(self, member: str) -> str | None: ...

    def set_consent(self, member: str, channel: str, granted: bool, *, source: str, at: str) -> None: ...

    def mark_bounced(self, email: str, at: str) -> int: ...

    def get(self, member: str) -> Profile | None: ...

    def many(self, members: list[str]) -> dict[str, Profile]: ...

    def by_email(self, email: str) -> Profile | None: ...

    def by_phone(self, phone: str) -> Profile | None: ...

    def by_referral_code(self, code: str) -> Profile | None: ...

    def search_name(self, text: str, limit: int = 50) -> list[Profile]: ...

    def all(self, batch: int = 10_000) -> Iterator[Profile]: ...

    def consent_log(self, member: str) -> list[tuple[str, bool, str, str]]: ...


# -- PostgreSQL: the same tables in a schema of their own in the ledger's database -------------
#
# ``profile.profiles``, ``profile.consent_log``, ``profile.addresses``: a schema of their own so
# personal data can be granted (or not) apart from the ledger's tables. Dates stay ISO text and
# flags integers, exactly as in the SQLite file, so a row reads back through the same code.

PG_SCHEMA = "profile"
PG_MIGRATIONS_TABLE = "profile.migrations"
PG_LOCK = 5360  # pg_advisory_xact_lock key of the profiles' migrations
PG_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE profile.profiles (
                member TEXT PRIMARY KEY,
                full_name TEXT NOT NULL,
                email TEXT,
                phone TEXT,
                birth_date TEXT,
                language TEXT NOT NULL DEFAULT 'en',
                time_zone TEXT NOT NULL DEFAULT 'UTC',
                home_property TEXT,
                joined TEXT NOT NULL,
                consent_email INTEGER NOT NULL DEFAULT 0,
                consent_sms INTEGER NOT NULL DEFAULT 0,
                email_bounced INTEGER NOT NULL DEFAULT 0,
                referral_code TEXT UNIQUE,
                referred_by TEXT,
                updated_at TEXT NOT NULL)""",
            # The same partial indexes as the SQLite file: by_email's ``email IS NOT NULL`` uses this one.
            "CREATE UNIQUE INDEX profiles_email ON profile.profiles (lower(email)) WHERE email IS NOT NULL",
            "CREATE INDEX profiles_phone ON profile.profiles (phone) WHERE phone IS NOT NULL",
            """CREATE TABLE profile.consent_log (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                member TEXT NOT NULL,
                channel TEXT NOT NULL,
                granted INTEGER NOT NULL,
                source TEXT NOT NULL,
                at TEXT NOT NULL)""",
            "CREATE INDEX consent_log_member ON profile.consent_log (member, id)",
            """CREATE TABLE profile.addresses (member TEXT PRIMARY KEY, address TEXT NOT NULL,
                updated_at TEXT NOT NULL)""",
        ),
    ),
)


class PgProfileStore:
    """Personal data and consent on PostgreSQL (a pool of autocommit connections)."""

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        from staypoint.central.store_pg import apply_migrations

        self.url = url
        self.pool: ConnectionPool[Any] = ConnectionPool(
            url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
        )
        self.pool.open(wait=True, timeout=10)
        with self.pool.connection() as conn:
            with contextlib.suppress(psycopg.errors.UniqueViolation):  # two processes creating it at once
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
            apply_migrations(conn, PG_MIGRATIONS_TABLE, PG_LOCK, PG_MIGRATIONS)

    def close(self) -> None:
        self.pool.close()

    def _rows(self, sql: str, args: tuple[Any, ...] | list[Any]) -> list[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(sql, args).fetchall()
        return rows

    def _profile(self, where: str, args: tuple[Any, ...]) -> Profile | None:
        rows = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM profile.profiles WHERE {where}", args)
        return _row_to_profile(rows[0]) if rows else None

    def upsert(
        self,
        member: str,
        *,
        at: str,
        full_name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        birth_date: date | None = None,
        language: str | None = None,
        time_zone: str | None = None,
        home_property: str | None = None,
        joined: date | None = None,
        referral_code: str | None = None,
        referred_by: str | None = None,
    ) -> Profile:
        """Create or change a profile; only the fields given change."""
        import psycopg

        changes = _changes(
            full_name=full_name,
            email=email,
            phone=phone,
            birth_date=birth_date,
            language=language,
            time_zone=time_zone,
            home_property=home_property,
            referral_code=referral_code,
            referred_by=referred_by,
        )
        try:
            with self.pool.connection() as conn, conn.transaction():
                row = {
                    "member": member,
                    "full_name": changes.get("full_name", member),
                    "joined": (joined or date.fromisoformat(at[:10])).isoformat(),
                    "updated_at": at,
                } | {k: v for k, v in changes.items() if k != "full_name"}
                marks = ", ".join(["%s"] * len(row))
                cur = conn.execute(
                    f"INSERT INTO profile.profiles ({', '.join(row)}) VALUES ({marks}) "
                    "ON CONFLICT (member) DO NOTHING",
                    list(row.values()),
                )
                if cur.rowcount == 0 and changes:  # there already: only the fields given change
                    changes["updated_at"] = at
                    sets = ", ".join(f"{k} = %s" for k in changes)
                    conn.execute(
                        f"UPDATE profile.profiles SET {sets} WHERE member = %s", [*changes.values(), member]
                    )
        except psycopg.errors.UniqueViolation as exc:
            raise ProfileError(f"already used by another member ({str(exc).splitlines()[0]})") from None
        got = self.get(member)
        assert got is not None
        return got

    def add_many(self, records: list[dict[str, Any]], addresses: list[tuple[str, str]], at: str) -> None:
        """As ``ProfileStore.add_many``: one transaction, nothing written on a clash."""
        import psycopg

        rows = [{"joined": at[:10], "updated_at": at} | rec for rec in records]
        try:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                if rows:
                    cols = list(rows[0])
                    marks = ", ".join(["%s"] * len(cols))
                    cur.executemany(
                        f"INSERT INTO profile.profiles ({', '.join(cols)}) VALUES ({marks}) "
                        "ON CONFLICT (member) DO NOTHING",
                        [[r[c] for c in cols] for r in rows],
                    )
                if addresses:
                    cur.executemany(
                        "INSERT INTO profile.addresses (member, address, updated_at) VALUES (%s, %s, %s) "
                        "ON CONFLICT (member) DO UPDATE SET address = excluded.address, "
                        "updated_at = excluded.updated_at",
                        [(m, a, at) for m, a in addresses],
                    )
        except psycopg.errors.UniqueViolation as exc:
            raise ProfileError(f"already used by another member ({str(exc).splitlines()[0]})") from None

    def address(self, member: str) -> str | None:
        rows = self._rows("SELECT address FROM profile.addresses WHERE member = %s", (member,))
        return str(rows[0][0]) if rows else None

    def set_consent(self, member: str, channel: str, granted: bool, *, source: str, at: str) -> None:
        """Record a yes or no for marketing on ``channel``; the history keeps every change."""
        if channel not in CHANNELS:
            raise ProfileError(f"channel is one of {', '.join(CHANNELS)}")
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                f"UPDATE profile.profiles SET consent_{channel} = %s, updated_at = %s WHERE member = %s",
                (int(granted), at, member),
            )
            if cur.rowcount == 0:
                raise ProfileError(f"no profile for member {member}")
            conn.execute(
                "INSERT INTO profile.consent_log (member, channel, granted, source, at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (member, channel, int(granted), source, at),
            )

    def mark_bounced(self, email: str, at: str) -> int:
        """Stop mailing an address that bounced; returns how many profiles had it."""
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE profile.profiles SET email_bounced = 1, updated_at = %s "
                "WHERE lower(email) = lower(%s) AND email IS NOT NULL",
                (at, email),
            )
            return int(cur.rowcount)

    def get(self, member: str) -> Profile | None:
        return self._profile("member = %s", (member,))

    def many(self, members: list[str]) -> dict[str, Profile]:
        """The profiles of ``members`` that exist, in one query."""
        if not members:
            return {}
        rows = self._rows(
            f"SELECT {', '.join(_COLUMNS)} FROM profile.profiles WHERE member = ANY(%s)", (list(members),)
        )
        return {r[0]: _row_to_profile(r) for r in rows}

    def by_email(self, email: str) -> Profile | None:
        # ``email IS NOT NULL`` matches the partial index profiles_email, as on SQLite.
        return self._profile("lower(email) = lower(%s) AND email IS NOT NULL", (email.strip(),))

    def by_phone(self, phone: str) -> Profile | None:
        return self._profile("phone = %s AND phone IS NOT NULL", (phone.replace(" ", ""),))

    def by_referral_code(self, code: str) -> Profile | None:
        return self._profile("referral_code = %s", (code.upper(),))

    def search_name(self, text: str, limit: int = 50) -> list[Profile]:
        # ILIKE: SQLite's LIKE ignores the case of ASCII letters, PostgreSQL's does not.
        rows = self._rows(
            f"SELECT {', '.join(_COLUMNS)} FROM profile.profiles WHERE full_name ILIKE %s LIMIT %s",
            (f"%{text}%", limit),
        )
        return [_row_to_profile(r) for r in rows]

    def all(self, batch: int = 10_000) -> Iterator[Profile]:
        """Every profile, in member order, read in batches."""
        last = ""
        while True:
            rows = self._rows(
                f'SELECT {", ".join(_COLUMNS)} FROM profile.profiles WHERE member COLLATE "C" > %s '
                'ORDER BY member COLLATE "C" LIMIT %s',
                (last, batch),
            )
            if not rows:
                return
            for r in rows:
                yield _row_to_profile(r)
            last = rows[-1][0]

    def consent_log(self, member: str) -> list[tuple[str, bool, str, str]]:
        """(channel, granted, source, at) for every consent change, oldest first."""
        rows = self._rows(
            "SELECT channel, granted, source, at FROM profile.consent_log WHERE member = %s ORDER BY id",
            (member,),
        )
        return [(str(c), bool(g), str(s), str(a)) for c, g, s, a in rows]


def profiles_location(location: str | None, ledger: str | None = None) -> str:
    """What ``--profiles`` names, canonical: an absolute SQLite path or a PostgreSQL URL. Without
    ``--profiles`` a PostgreSQL ledger's own database is meant (as for ``--side``); with a SQLite
    ledger it must be given. StoreConfigError (one line) otherwise."""
    from staypoint.central.store import StoreConfigError, parse_store_url

    if not location:
        if ledger and parse_store_url(ledger).is_pg:
            return parse_store_url(ledger).url
        raise StoreConfigError("--profiles is needed with a SQLite ledger (a file, or sqlite:///path)")
    parsed = parse_store_url(location)
    return parsed.url if parsed.is_pg else str(profiles_path(location))


def open_profiles(location: str | None, ledger: str | None = None) -> Profiles:
    """The profile store ``--profiles`` names (see :func:`profiles_location`): ``ProfileStore``
    on a SQLite file, ``PgProfileStore`` on a PostgreSQL database. An unreachable server is a
    StoreConfigError."""
    from staypoint.central.store import StoreConfigError, parse_store_url

    where = profiles_location(location, ledger)
    if not parse_store_url(where).is_pg:
        return ProfileStore(Path(where))
    import psycopg

    try:
        return PgProfileStore(where)
    except (psycopg.Error, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreConfigError(f"cannot open the profiles in PostgreSQL: {first}") from None
    except Exception as exc:  # the pool's own timeout when the server is not there
        if type(exc).__name__ == "PoolTimeout":
            raise StoreConfigError(f"cannot reach the profiles' PostgreSQL server: {exc}") from None
        raise
