"""Segments: saved, versioned member selections, counted and previewed before use.

A segment is a small JSON definition (see ``Segment``); saving it again makes a new
version, and a campaign names the version it was approved with, so changing a segment
never silently changes who an approved campaign reaches. Evaluation is one SQL query
over the reporting projection (``rpt_members``, ``rpt_stays``) and the profiles table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from staypoint.central.campaigns.store import CampaignDb
from staypoint.central.reports import projection

OUTLETS = ("room", "fnb", "spa", "other")


class SegmentError(ValueError):
    """A definition that cannot be evaluated (unknown field, bad date...)."""


@dataclass(frozen=True)
class Segment:
    """Who is in: every criterion given must hold (an empty segment is every member)."""

    tiers: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()  # stayed at one of these (within the window if one is given)
    home_properties: tuple[str, ...] = ()
    last_stay_before: date | None = None
    last_stay_after: date | None = None
    window_from: date | None = None  # window for nights, spend, outlets and channels
    window_to: date | None = None  # exclusive
    nights_min: int | None = None
    nights_max: int | None = None
    spend_min: Decimal | None = None
    spend_max: Decimal | None = None
    outlets: tuple[str, ...] = ()  # used every one of these outlets
    channels: tuple[str, ...] = ()  # booked through one of these (kiosk, web, pms...)
    points_min: int | None = None
    points_max: int | None = None
    languages: tuple[str, ...] = ()
    consent: str | None = None  # email | sms | any
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> Segment:
        known = {f for f in Segment.__dataclass_fields__ if f != "extra"}
        unknown = set(raw) - known
        if unknown:
            raise SegmentError(f"unknown segment fields: {', '.join(sorted(unknown))}")
        kw: dict[str, Any] = {}
        for k, v in raw.items():
            if k in ("tiers", "properties", "home_properties", "outlets", "channels", "languages"):
                kw[k] = tuple(str(x) for x in v)
            elif k in ("last_stay_before", "last_stay_after", "window_from", "window_to"):
                kw[k] = date.fromisoformat(str(v)) if v else None
            elif k in ("spend_min", "spend_max"):
                kw[k] = Decimal(str(v)) if v is not None else None
            else:
                kw[k] = v
        for o in kw.get("outlets", ()):
            if o not in OUTLETS:
                raise SegmentError(f"unknown outlet {o!r}")
        if kw.get("consent") not in (None, "email", "sms", "any"):
            raise SegmentError("consent is email, sms or any")
        return Segment(**kw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if k == "extra" or v in (None, (), []):
                continue
            out[k] = v.isoformat() if isinstance(v, date) else str(v) if isinstance(v, Decimal) else v
            if isinstance(out[k], tuple):
                out[k] = list(out[k])
        return out


def profiles_schema(conn: sqlite3.Connection, ledger_path: Path, profiles_path: Path) -> str:
    """The schema name under which ``profiles`` is visible on ``conn`` (attaching its file)."""
    if Path(profiles_path).resolve() == Path(ledger_path).resolve():
        return "main"
    names = {r[1] for r in conn.execute("PRAGMA database_list")}
    if "prof" not in names:
        conn.execute("ATTACH DATABASE ? AS prof", (str(profiles_path),))
    return "prof"


def _cents(d: Decimal) -> int:
    return int((d * 100).to_integral_value())


def build_sql(seg: Segment, prof: str) -> tuple[str, list[Any]]:
    """The member numbers of ``seg`` as (SQL, args)."""
    where: list[str] = []
    args: list[Any] = []

    def in_list(col: str, values: tuple[str, ...]) -> None:
        where.append(f"{col} IN ({', '.join('?' * len(values))})")
        args.extend(values)

    if seg.tiers:
        in_list("m.tier", seg.tiers)
    if seg.home_properties:
        in_list("coalesce(p.home_property, m.home_property)", seg.home_properties)
    if seg.last_stay_before:
        where.append("m.last_stay < ?")
        args.append(seg.last_stay_before.isoformat())
    if seg.last_stay_after:
        where.append("m.last_stay >= ?")
        args.append(seg.last_stay_after.isoformat())
    if seg.points_min is not None:
        where.append("m.points >= ?")
        args.append(seg.points_min)
    if seg.points_max is not None:
        where.append("m.points <= ?")
        args.append(seg.points_max)
    if seg.languages:
        in_list("p.language", seg.languages)
    if seg.consent == "email":
        where.append("p.consent_email = 1 AND p.email IS NOT NULL AND p.email_bounced = 0")
    elif seg.consent == "sms":
        where.append("p.consent_sms = 1 AND p.phone IS NOT NULL")
    elif seg.consent == "any":
        where.append(
            "((p.consent_email = 1 AND p.email IS NOT NULL AND p.email_bounced = 0) "
            "OR (p.consent_sms = 1 AND p.phone IS NOT NULL))"
        )
    stay_crit = (
        seg.properties
        or seg.window_from
        or seg.window_to
        or seg.nights_min is not None
        or seg.nights_max is not None
        or seg.spend_min is not None
        or seg.spend_max is not None
        or seg.outlets
        or seg.channels
    )
    if stay_crit:
        sw: list[str] = ["s.voided = 0"]
        sargs: list[Any] = []
        if seg.window_from:
            sw.append("s.arrival >= ?")
            sargs.append(seg.window_from.isoformat())
        if seg.window_to:
            sw.append("s.arrival < ?")
            sargs.append(seg.window_to.isoformat())
        if seg.properties:
            sw.append(f"s.property IN ({', '.join('?' * len(seg.properties))})")
            sargs.extend(seg.properties)
        if seg.channels:
            sw.append(f"s.channel IN ({', '.join('?' * len(seg.channels))})")
            sargs.extend(seg.channels)
        having: list[str] = []
        if seg.nights_min is not None:
            having.append("sum(s.nights) >= ?")
            sargs.append(seg.nights_min)
        if seg.nights_max is not None:
            having.append("sum(s.nights) <= ?")
            sargs.append(seg.nights_max)
        if seg.spend_min is not None:
            having.append("sum(s.total_c) >= ?")
            sargs.append(_cents(seg.spend_min))
        if seg.spend_max is not None:
            having.append("sum(s.total_c) <= ?")
            sargs.append(_cents(seg.spend_max))
        for o in seg.outlets:
            having.append(f"sum(s.{o}_c > 0) > 0")
        sub = f"SELECT s.member FROM rpt_stays s WHERE {' AND '.join(sw)} GROUP BY s.member"
        if having:
            sub += " HAVING " + " AND ".join(having)
        where.append(f"m.member IN ({sub})")
        args.extend(sargs)
    sql = (
        f"SELECT m.member FROM rpt_members m LEFT JOIN {prof}.profiles p ON p.member = m.member"
        f" WHERE {' AND '.join(where) or '1'} ORDER BY m.member"
    )
    return sql, args


# A PostgreSQL ledger's segments run on its report cache (``projection.connect_store``): the
# profiles' columns a segment or an occasion reads are copied into it whole at every refresh.
# No e-mail address or phone number is copied, only whether there is one.
_CACHE_PROFILES = (
    "DROP TABLE IF EXISTS profiles",
    """CREATE TABLE profiles (member TEXT PRIMARY KEY, full_name TEXT NOT NULL, email TEXT, phone TEXT,
        birth_date TEXT, language TEXT NOT NULL, time_zone TEXT NOT NULL, home_property TEXT,
        joined TEXT NOT NULL, consent_email INTEGER NOT NULL, consent_sms INTEGER NOT NULL,
        email_bounced INTEGER NOT NULL, referral_code TEXT, referred_by TEXT) WITHOUT ROWID""",
)
_PG_PROFILES = (
    "SELECT member, full_name, CASE WHEN email IS NULL THEN NULL ELSE '@' END, "
    "CASE WHEN phone IS NULL THEN NULL ELSE '+' END, birth_date, language, time_zone, home_property, "
    "joined, consent_email, consent_sms, email_bounced, referral_code, referred_by FROM profile.profiles"
)


class Segments:
    """Saved segment versions and their evaluation."""

    def __init__(self, ledger_path: Path, profiles_path: Path) -> None:
        self.ledger_path = ledger_path
        self.db: CampaignDb = CampaignDb(ledger_path)
        self.conn = projection.connect(ledger_path)
        self.prof = profiles_schema(self.conn, ledger_path, profiles_path)
        self.pg_url: str | None = None
        self.pg_profiles: str | None = None

    @classmethod
    def on_postgresql(cls, ledger_url: str, profiles_url: str, *, cache: Path | None = None) -> Segments:
        """Segments of a PostgreSQL ledger: saved versions in its database (``PgCampaignDb``),
        evaluated on its report cache (filled by ``projection.mirror_pg``) with the profiles
        (``profiles_url``: its schema ``profile``, or a SQLite profiles file) copied in at
        every :meth:`refresh`."""
        from staypoint.central.campaigns.store import PgCampaignDb

        self = cls.__new__(cls)
        self.ledger_path = Path(ledger_url)
        self.db = PgCampaignDb(ledger_url)
        self.conn = projection.connect_store(ledger_url, cache=cache)
        self.prof = "main"
        self.pg_url, self.pg_profiles = ledger_url, profiles_url
        self._copy_profiles()
        return self

    def _copy_profiles(self) -> None:
        import psycopg

        from staypoint.sqlitetx import immediate

        assert self.pg_profiles is not None
        if self.pg_profiles.startswith(("postgresql://", "postgres://")):
            with psycopg.connect(self.pg_profiles, autocommit=True) as pg:
                rows = pg.execute(_PG_PROFILES).fetchall()
        else:  # a PostgreSQL ledger with its profiles in a SQLite file
            src = sqlite3.connect(self.pg_profiles, timeout=60)
            try:
                rows = src.execute(_PG_PROFILES.replace("profile.profiles", "profiles")).fetchall()
            finally:
                src.close()
        with immediate(self.conn):
            for stmt in _CACHE_PROFILES:
                self.conn.execute(stmt)
            self.conn.executemany(f"INSERT INTO profiles VALUES ({', '.join('?' * 14)})", rows)

    def refresh(self) -> None:
        """Bring what segments and occasions read up to date: the projection (on PostgreSQL,
        the report cache from the ledger first) and, on PostgreSQL, the profiles' copy."""
        if self.pg_url is not None:
            projection.mirror_pg(self.conn, self.pg_url)
            self._copy_profiles()
        projection.refresh(self.conn)

    def close(self) -> None:
        self.db.close()
        self.conn.close()

    def save(self, code: str, seg: Segment, at: str, by: str) -> int:
        """Store a new version of segment ``code``; returns its version number."""
        with self.db.tx() as c:
            version = int(
                c.execute(
                    "SELECT coalesce(max(version), 0) + 1 FROM cmp_segments WHERE code = ?", (code,)
                ).fetchone()[0]
            )
            c.execute(
                "INSERT INTO cmp_segments (code, version, definition, created_at, created_by) VALUES (?, ?, "
                "?, ?, ?)",
                (code, version, json.dumps(seg.to_dict(), sort_keys=True), at, by),
            )
        return version

    def get(self, code: str, version: int | None = None) -> Segment:
        row = self.db.conn.execute(
            "SELECT definition FROM cmp_segments WHERE code = ? "
            + ("AND version = ?" if version is not None else "ORDER BY version DESC LIMIT 1"),
            (code, version) if version is not None else (code,),
        ).fetchone()
        if row is None:
            raise SegmentError(f"no segment {code!r}" + (f" version {version}" if version else ""))
        return Segment.from_dict(json.loads(row[0]))

    def versions(self, code: str) -> list[tuple[int, str, str]]:
        return [
            (int(v), str(a), str(b))
            for v, a, b in self.db.conn.execute(
                "SELECT version, created_at, created_by FROM cmp_segments WHERE code = ? ORDER BY version",
                (code,),
            )
        ]

    def members(self, seg: Segment) -> Iterator[str]:
        self.refresh()
        sql, args = build_sql(seg, self.prof)
        for (m,) in self.conn.execute(sql, args):
            yield str(m)

    def count(self, seg: Segment) -> int:
        self.refresh()
        sql, args = build_sql(seg, self.prof)
        return int(self.conn.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0])

    def preview(self, seg: Segment, limit: int = 10) -> list[dict[str, Any]]:
        """The first ``limit`` members with the fields a person checks a segment by."""
        self.refresh()
        sql, args = build_sql(seg, self.prof)
        cur = self.conn.execute(
            f"SELECT m.member, p.full_name, m.tier, m.points, m.last_stay, m.stays, p.language, "
            f"p.consent_email, p.consent_sms FROM ({sql} LIMIT ?) x JOIN rpt_members m ON m.member = "
            f"x.member "
            f"LEFT JOIN {self.prof}.profiles p ON p.member = m.member ORDER BY m.member",
            [*args, limit],
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]
