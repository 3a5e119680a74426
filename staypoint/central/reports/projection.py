"""The reporting projection: fact tables filled incrementally from the ledger's events.

Reports must not parse the JSON of ten million events every time someone opens one, so
the events are folded once into narrow fact tables (stays, points movements, feedback,
enrolments) and a per-member summary, each remembering how far it has read:

- ``events`` by ``rowid``: SQLite hands rowids out in commit order (one writer), so
  ``rowid > cursor`` is exactly "what arrived since last time". A fact row reuses its
  event's rowid, so a batch's facts are found again by a range scan with no extra index.
- ``changes`` by ``version``: member records (tier, balance, last activity) change without
  an event of their own (window-end downgrades, expiry by the jobs); the change log is
  the one place every such change is written, so the member summary follows it.

The JSON is read by SQLite's own ``json_extract`` inside ``INSERT ... SELECT``: the fill
never brings an event body into Python. Money is kept as integer cents (exact for the
two-decimal amounts the nodes send) and turned back into ``Decimal`` by the reports.

The fill is SQLite's (rowid, json_extract). A ledger on PostgreSQL is reported through a
SQLite report cache filled from it by its ``pos`` column (``mirror_pg`` at the end of this
file), so the fill and every report query are the same code on both stores.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from staypoint import localtime
from staypoint.loyalty.program import ProgramError, parse_program
from staypoint.sqlitetx import immediate

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rpt_cursor (name TEXT PRIMARY KEY, pos INTEGER NOT NULL) WITHOUT ROWID",
    # One row per stay.posted; rowid = the event's rowid.
    """CREATE TABLE IF NOT EXISTS rpt_stays (
        event_id TEXT NOT NULL, member TEXT NOT NULL, node TEXT NOT NULL, property TEXT,
        at TEXT NOT NULL, arrival TEXT, departure TEXT, month TEXT, nights INTEGER NOT NULL,
        room_c INTEGER NOT NULL, fnb_c INTEGER NOT NULL, spa_c INTEGER NOT NULL,
        other_c INTEGER NOT NULL, total_c INTEGER NOT NULL, points INTEGER NOT NULL,
        tier TEXT, tier_after TEXT, weekend INTEGER NOT NULL, room_type TEXT, channel TEXT,
        voided INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS rpt_stays_member ON rpt_stays (member, arrival)",
    "CREATE INDEX IF NOT EXISTS rpt_stays_at ON rpt_stays (at)",
    # Every movement of points (signed as it moves the balance).
    """CREATE TABLE IF NOT EXISTS rpt_points (
        event_id TEXT NOT NULL, member TEXT, node TEXT NOT NULL, at TEXT NOT NULL, month TEXT,
        kind TEXT NOT NULL, points INTEGER NOT NULL, reward TEXT, auth TEXT)""",
    "CREATE INDEX IF NOT EXISTS rpt_points_at ON rpt_points (at)",
    """CREATE TABLE IF NOT EXISTS rpt_feedback (
        event_id TEXT NOT NULL, member TEXT, node TEXT NOT NULL, property TEXT, at TEXT NOT NULL,
        stars INTEGER NOT NULL, context TEXT)""",
    """CREATE TABLE IF NOT EXISTS rpt_enrolments (
        member TEXT PRIMARY KEY, node TEXT NOT NULL, property TEXT, at TEXT NOT NULL, month TEXT,
        tier TEXT) WITHOUT ROWID""",
    # The member summary: current record fields (from the change log) + stay aggregates.
    """CREATE TABLE IF NOT EXISTS rpt_members (
        member TEXT PRIMARY KEY, tier TEXT, points INTEGER NOT NULL DEFAULT 0,
        last_activity TEXT, enrolled_at TEXT, home_property TEXT,
        stays INTEGER NOT NULL DEFAULT 0, nights INTEGER NOT NULL DEFAULT 0,
        revenue_c INTEGER NOT NULL DEFAULT 0, first_stay TEXT, last_stay TEXT,
        kept INTEGER NOT NULL DEFAULT 0, dated INTEGER NOT NULL DEFAULT 0,
        first_arrival TEXT, last_arrival TEXT,
        fb_n INTEGER NOT NULL DEFAULT 0, fb_stars INTEGER NOT NULL DEFAULT 0,
        value_c INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS rpt_members_last_stay ON rpt_members (last_stay)",
    # Covering index of the repeat-stay report (per-member figures, no scan of the stays).
    "CREATE INDEX IF NOT EXISTS rpt_members_kept ON rpt_members (kept, dated, first_arrival, last_arrival) "
    "WHERE kept > 0",
    # Feedback by the member's current tier: per-member counts, read through this index.
    "CREATE INDEX IF NOT EXISTS rpt_members_fb ON rpt_members (tier, fb_n, fb_stars) WHERE fb_n > 0",
    # Running totals, upserted per batch as signed deltas (a missing key is kept as ''):
    # non-voided stays by month of arrival, property and tier at the stay ...
    """CREATE TABLE IF NOT EXISTS rpt_stay_cube (month TEXT NOT NULL, property TEXT NOT NULL,
        tier TEXT NOT NULL, stays INTEGER NOT NULL, total_c INTEGER NOT NULL, nights INTEGER NOT NULL,
        PRIMARY KEY (month, property, tier)) WITHOUT ROWID""",
    # ... who stayed in which month (month '' = no arrival date) and how many members that is ...
    """CREATE TABLE IF NOT EXISTS rpt_member_months (month TEXT NOT NULL, member TEXT NOT NULL,
        n INTEGER NOT NULL, PRIMARY KEY (month, member)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS rpt_month_active (month TEXT PRIMARY KEY, members INTEGER NOT NULL)
        WITHOUT ROWID""",
    # ... and points moved, by month of the movement, kind, reward, node and offline or not.
    # ... feedback by property and kiosk (anon: given without a member) ...
    """CREATE TABLE IF NOT EXISTS rpt_feedback_cube (property TEXT NOT NULL, node TEXT NOT NULL,
        anon INTEGER NOT NULL, n INTEGER NOT NULL, stars INTEGER NOT NULL,
        PRIMARY KEY (property, node, anon)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS rpt_points_cube (month TEXT NOT NULL, kind TEXT NOT NULL,
        reward TEXT NOT NULL, node TEXT NOT NULL, offline INTEGER NOT NULL, n INTEGER NOT NULL,
        points INTEGER NOT NULL, PRIMARY KEY (month, kind, reward, node, offline)) WITHOUT ROWID""",
    # Property totals from the property system, by month (imported from CSV).
    """CREATE TABLE IF NOT EXISTS rpt_property_revenue (
        property TEXT NOT NULL, month TEXT NOT NULL, total_c INTEGER NOT NULL,
        PRIMARY KEY (property, month)) WITHOUT ROWID""",
)

# Two-decimal amount text -> integer cents, computed by SQLite (exact after rounding for
# amounts far beyond any hotel bill).
_CENTS = (
    "CAST(round(CAST(coalesce(json_extract(e.body, '$.data.revenue.{o}'), '0') AS REAL) * 100) AS INTEGER)"
)
_ROOM, _FNB, _SPA, _OTHER = (_CENTS.format(o=o) for o in ("room", "fnb", "spa", "other"))

_FILL_STAYS = f"""
INSERT OR IGNORE INTO rpt_stays (rowid, event_id, member, node, property, at, arrival, departure, month,
    nights, room_c, fnb_c, spa_c, other_c, total_c, points, tier, tier_after, weekend, room_type, channel)
SELECT e.rowid, e.id, e.member, e.node, json_extract(e.body, '$.data.property'),
    json_extract(e.body, '$.at'), json_extract(e.body, '$.data.arrival'),
    json_extract(e.body, '$.data.departure'), substr(json_extract(e.body, '$.data.arrival'), 1, 7),
    coalesce(json_extract(e.body, '$.data.nights'), 0),
    {_ROOM}, {_FNB}, {_SPA}, {_OTHER}, {_ROOM} + {_FNB} + {_SPA} + {_OTHER},
    coalesce(s.points, json_extract(e.body, '$.data.points'), 0),
    json_extract(e.body, '$.data.tier'), json_extract(e.body, '$.data.tier_after'),
    strftime('%w', json_extract(e.body, '$.data.arrival')) IN ('5', '6'),
    json_extract(e.body, '$.data.room_type'),
    coalesce(json_extract(e.body, '$.data.channel'), 'kiosk')
FROM events e LEFT JOIN stays s ON s.event_id = e.id
WHERE e.rowid > ? AND e.rowid <= ? AND e.type = 'stay.posted' AND e.member IS NOT NULL
"""

# The month of the event's time at its node's property. Only the first and the last days of
# a UTC month can belong to another month anywhere (no zone is 14 h or more off UTC), and a
# node with no zone keeps UTC's: SQLite answers those itself, Python only the few others.
_LOCAL_MONTH = """CASE WHEN z.zone IS NULL OR substr(json_extract(e.body, '$.at'), 9, 2) BETWEEN '02' AND '27'
        THEN substr(json_extract(e.body, '$.at'), 1, 7)
        ELSE sp_local_month(json_extract(e.body, '$.at'), z.zone) END"""

# Points movements other than stays (stays are read from rpt_stays after their fill).
_FILL_POINTS = f"""
INSERT OR IGNORE INTO rpt_points (rowid, event_id, member, node, at, month, kind, points, reward, auth)
SELECT e.rowid, e.id, e.member, e.node, json_extract(e.body, '$.at'),
    {_LOCAL_MONTH},
    CASE e.type
        WHEN 'points.redeemed' THEN 'redeemed'
        WHEN 'points.expired' THEN 'expired'
        WHEN 'stay.voided' THEN 'voided'
        WHEN 'voucher.voided' THEN 'refunded'
        WHEN 'points.adjusted' THEN CASE WHEN e.node IN ('campaigns') THEN 'bonus' ELSE 'adjusted' END
    END,
    CASE e.type
        WHEN 'points.adjusted' THEN coalesce(json_extract(e.body, '$.data.points'), 0)
        WHEN 'voucher.voided' THEN coalesce(json_extract(e.body, '$.data.points'), 0)
        ELSE -coalesce(json_extract(e.body, '$.data.points'), 0)
    END,
    json_extract(e.body, '$.data.reward'), json_extract(e.body, '$.auth')
FROM events e LEFT JOIN temp.rpt_node_zone z ON z.node = e.node
WHERE e.rowid > ? AND e.rowid <= ?
  AND e.type IN ('points.redeemed', 'points.expired', 'stay.voided', 'voucher.voided', 'points.adjusted')
"""

# Stays voided in this batch that were not yet voided: the stay event is found through the
# ledger's ``id`` key, and its fact row has the same rowid (no index on rpt_stays needed).
_FLIP_VOIDED = """
INSERT OR IGNORE INTO temp.rpt_flip (id)
SELECT s.rowid FROM events e JOIN events ev ON ev.id = json_extract(e.body, '$.data.stay')
JOIN rpt_stays s ON s.rowid = ev.rowid
WHERE e.rowid > ? AND e.rowid <= ? AND e.type = 'stay.voided' AND s.voided = 0
"""

_MARK_VOIDED = "UPDATE rpt_stays SET voided = 1 WHERE rowid IN (SELECT id FROM temp.rpt_flip)"

_FILL_FEEDBACK = """
INSERT OR IGNORE INTO rpt_feedback (rowid, event_id, member, node, property, at, stars, context)
SELECT e.rowid, e.id, e.member, e.node, json_extract(e.body, '$.data.property'),
    json_extract(e.body, '$.at'), coalesce(json_extract(e.body, '$.data.stars'), 0),
    json_extract(e.body, '$.data.context')
FROM events e WHERE e.rowid > ? AND e.rowid <= ? AND e.type = 'feedback.recorded'
"""

_FILL_ENROLMENTS = f"""
INSERT OR IGNORE INTO rpt_enrolments (member, node, property, at, month, tier)
SELECT e.member, e.node, json_extract(e.body, '$.data.home_property'), json_extract(e.body, '$.at'),
    {_LOCAL_MONTH},
    json_extract(e.body, '$.data.tier')
FROM events e LEFT JOIN temp.rpt_node_zone z ON z.node = e.node
WHERE e.rowid > ? AND e.rowid <= ? AND e.type = 'member.enrolled' AND e.member IS NOT NULL
"""

# Per-member stay figures, kept up to date instead of recomputed: all stays (``stays``,
# nights, revenue, first arrival / last departure, as before) and the non-voided ones
# (``kept``; ``dated`` = with a valid arrival date, first and last such arrival). The
# days between consecutive stays telescope: their sum for a member is last - first
# arrival and their number dated - 1, so the repeat report needs no window function.
_VALID = "voided = 0 AND julianday(arrival) IS NOT NULL"
_MEMBER_STAYS = f"""
INSERT INTO rpt_members (member, stays, nights, revenue_c, first_stay, last_stay, kept, dated,
    first_arrival, last_arrival)
SELECT member, count(*), sum(nights), sum(total_c), min(arrival), max(departure), sum(voided = 0),
    sum({_VALID}), min(CASE WHEN {_VALID} THEN arrival END), max(CASE WHEN {_VALID} THEN arrival END)
FROM rpt_stays WHERE rowid > ? AND rowid <= ? GROUP BY member
ON CONFLICT (member) DO UPDATE SET
    stays = stays + excluded.stays, nights = nights + excluded.nights,
    revenue_c = revenue_c + excluded.revenue_c,
    first_stay = CASE WHEN first_stay IS NULL OR excluded.first_stay < first_stay
                      THEN excluded.first_stay ELSE first_stay END,
    last_stay = CASE WHEN last_stay IS NULL OR excluded.last_stay > last_stay
                     THEN excluded.last_stay ELSE last_stay END,
    kept = kept + excluded.kept, dated = dated + excluded.dated,
    first_arrival = CASE WHEN first_arrival IS NULL OR excluded.first_arrival < first_arrival
                         THEN excluded.first_arrival ELSE first_arrival END,
    last_arrival = CASE WHEN last_arrival IS NULL OR excluded.last_arrival > last_arrival
                        THEN excluded.last_arrival ELSE last_arrival END
"""

# A voided stay can take a member's first or last arrival with it: those members'
# non-voided figures are recomputed from their stays (by the member index).
_MEMBER_UNVOID = f"""
UPDATE rpt_members SET kept = x.kept, dated = x.dated, first_arrival = x.fa, last_arrival = x.la
FROM (SELECT m.member, count(s.rowid) AS kept, count(CASE WHEN {_VALID.replace("voided", "s.voided")}
            THEN 1 END) AS dated,
        min(CASE WHEN julianday(s.arrival) IS NOT NULL THEN s.arrival END) AS fa,
        max(CASE WHEN julianday(s.arrival) IS NOT NULL THEN s.arrival END) AS la
      FROM (SELECT DISTINCT member FROM rpt_stays WHERE rowid IN (SELECT id FROM temp.rpt_flip)) m
      LEFT JOIN rpt_stays s ON s.member = m.member AND s.voided = 0
      GROUP BY m.member) x
WHERE rpt_members.member = x.member
"""

# Running totals, as signed deltas: + the batch's non-voided stays, - older stays voided now.
_NEW_STAYS = "rowid > ? AND rowid <= ? AND voided = 0"
_OLD_VOIDED = "rowid IN (SELECT id FROM temp.rpt_flip) AND rowid <= ?"

_CUBE = """
INSERT INTO rpt_stay_cube (month, property, tier, stays, total_c, nights)
SELECT coalesce(month, ''), coalesce(property, ''), coalesce(tier, ''),
    {sign} * count(*), {sign} * sum(total_c), {sign} * sum(nights)
FROM rpt_stays WHERE {cond} GROUP BY 1, 2, 3
ON CONFLICT (month, property, tier) DO UPDATE SET stays = stays + excluded.stays,
    total_c = total_c + excluded.total_c, nights = nights + excluded.nights
"""

_PAIRS = """
INSERT INTO temp.rpt_pairs (month, member, n)
SELECT coalesce(month, ''), member, {sign} * count(*) FROM rpt_stays WHERE {cond} GROUP BY 1, 2
"""

# A member counts in a month while they have a non-voided stay in it.
_MONTH_ACTIVE = """
INSERT INTO rpt_month_active (month, members)
SELECT p.month, sum((coalesce(mm.n, 0) + p.n > 0) - (coalesce(mm.n, 0) > 0))
FROM temp.rpt_pairs p LEFT JOIN rpt_member_months mm ON mm.month = p.month AND mm.member = p.member
WHERE true GROUP BY p.month
ON CONFLICT (month) DO UPDATE SET members = members + excluded.members
"""

_MEMBER_MONTHS = """
INSERT INTO rpt_member_months (month, member, n) SELECT month, member, n FROM temp.rpt_pairs WHERE true
ON CONFLICT (month, member) DO UPDATE SET n = n + excluded.n
"""

# Points moved (earned = every stay posted, as the stays fact table has them).
_POINTS_CUBE = """
INSERT INTO rpt_points_cube (month, kind, reward, node, offline, n, points)
SELECT coalesce(month, ''), kind, coalesce(reward, ''), node, auth IS 'offline', count(*), sum(points)
FROM rpt_points WHERE rowid > ? AND rowid <= ? GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (month, kind, reward, node, offline) DO UPDATE SET n = n + excluded.n,
    points = points + excluded.points
"""

_FEEDBACK_CUBE = """
INSERT INTO rpt_feedback_cube (property, node, anon, n, stars)
SELECT coalesce(property, ''), node, member IS NULL, count(*), sum(stars)
FROM rpt_feedback WHERE rowid > ? AND rowid <= ? GROUP BY 1, 2, 3
ON CONFLICT (property, node, anon) DO UPDATE SET n = n + excluded.n, stars = stars + excluded.stars
"""

_MEMBER_FEEDBACK = """
INSERT INTO rpt_members (member, fb_n, fb_stars)
SELECT member, count(*), sum(stars) FROM rpt_feedback
WHERE rowid > ? AND rowid <= ? AND member IS NOT NULL GROUP BY member
ON CONFLICT (member) DO UPDATE SET fb_n = fb_n + excluded.fb_n, fb_stars = fb_stars + excluded.fb_stars
"""

_EARNED_CUBE = """
INSERT INTO rpt_points_cube (month, kind, reward, node, offline, n, points)
SELECT coalesce(substr(at, 1, 7), ''), 'earned', '', node, 0, count(*), sum(points)
FROM rpt_stays WHERE rowid > ? AND rowid <= ? GROUP BY 1, 4
ON CONFLICT (month, kind, reward, node, offline) DO UPDATE SET n = n + excluded.n,
    points = points + excluded.points
"""

# The latest change per member in the range wins (max(version) per key).
_MEMBER_RECORDS = """
INSERT INTO rpt_members (member, tier, points, last_activity, enrolled_at, home_property, value_c)
SELECT c.key, json_extract(c.body, '$.tier'), coalesce(json_extract(c.body, '$.points'), 0),
    json_extract(c.body, '$.last_activity'), json_extract(c.body, '$.enrolled_at'),
    json_extract(c.body, '$.home_property'),
    CAST(round(CAST(coalesce(json_extract(c.body, '$.stored_value'), '0') AS REAL) * 100) AS INTEGER)
FROM changes c JOIN (
    SELECT max(version) AS v FROM changes WHERE kind = 'member' AND version > ? AND version <= ? GROUP BY key
) latest ON latest.v = c.version
WHERE true
ON CONFLICT (member) DO UPDATE SET
    tier = excluded.tier, points = excluded.points, last_activity = excluded.last_activity,
    value_c = excluded.value_c,
    enrolled_at = coalesce(excluded.enrolled_at, enrolled_at),
    home_property = coalesce(excluded.home_property, home_property)
"""


# The projection is derived data: a new layout rebuilds it from the ledger (the imported
# property totals are not derived and are kept).
SCHEMA_VERSION = 5  # 4: rpt_members.value_c (cents); 5: months at the property ([[properties]])
_DERIVED = (
    "rpt_stays",
    "rpt_points",
    "rpt_feedback",
    "rpt_enrolments",
    "rpt_members",
    "rpt_stay_cube",
    "rpt_member_months",
    "rpt_month_active",
    "rpt_points_cube",
    "rpt_feedback_cube",
)
# Secondary indexes dropped for a first fill and built once at its end (a sorted build
# beats ten million random inserts into a B-tree).
_FILL_INDEXES = (
    "rpt_stays_member",
    "rpt_stays_at",
    "rpt_points_at",
    "rpt_members_last_stay",
    "rpt_members_kept",
    "rpt_members_fb",
)

FIRST_FILL_BATCH = 4_000_000


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the ledger file for reading and for the projection's own tables."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA busy_timeout = 60000")
    # Reports and fills walk millions of rows: a page cache of up to 512 MB, temp in memory.
    conn.execute("PRAGMA cache_size = -512000")
    conn.execute("PRAGMA temp_store = MEMORY")
    # Derived data with its cursor in the same transaction: a commit lost to a power cut
    # is folded again, so the fill does not wait for the disk at every batch.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.create_function("sp_local_month", 2, local_month)
    ensure_schema(conn)
    return conn


@lru_cache(maxsize=65_536)
def local_month(at: object, zone_name: object) -> str | None:
    """``YYYY-MM`` of the instant ``at`` (ISO, UTC) in the property's zone (None: UTC).

    A movement or an enrolment counts in the month its property lived it: a redemption at
    23:30 on 31 December in Berlin is December's, though it is 22:30Z. (A stay counts in the
    month of its arrival, a date the property gave.)"""
    if not isinstance(at, str):
        return None
    if not isinstance(zone_name, str) or zone_name in ("", localtime.UTC_NAME):
        return at[:7]
    try:
        zone = localtime.zone(zone_name)
        ts = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:  # ZoneError is one; a bad time is the event's problem, not the report's
        return at[:7]
    return localtime.local(ts, zone).strftime("%Y-%m")


def _node_zones(conn: sqlite3.Connection) -> None:
    """Fill ``temp.rpt_node_zone`` from the newest programme's ``[[properties]]`` and the
    ledger's node → property table (both small): what ``sp_local_month`` is given per node."""
    conn.execute("DELETE FROM temp.rpt_node_zone")
    row = conn.execute("SELECT version, document FROM programs ORDER BY version DESC LIMIT 1").fetchone()
    if row is None:
        return
    zones = _programme_zones(int(row[0]), str(row[1]))
    if not zones:
        return
    conn.executemany(
        "INSERT OR REPLACE INTO temp.rpt_node_zone (node, zone) VALUES (?, ?)",
        [
            (node, zones[prop])
            for node, prop in conn.execute("SELECT node, property FROM node_properties")
            if prop in zones
        ],
    )


@lru_cache(maxsize=8)
def _programme_zones(version: int, document: str) -> dict[str, str]:
    try:
        program = parse_program(document, f"programme v{version}")
    except ProgramError:
        return {}
    return {p.code: p.timezone for p in program.properties}


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the projection's tables (idempotent); rebuild them when their layout changed."""
    row = None
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'rpt_cursor'").fetchone():
        row = conn.execute("SELECT pos FROM rpt_cursor WHERE name = 'schema'").fetchone()
    if row is None or int(row[0]) != SCHEMA_VERSION:
        with immediate(conn):
            # Looked at again under the write lock: another process may have just rebuilt it.
            for stmt in SCHEMA[:1]:
                conn.execute(stmt)
            row = conn.execute("SELECT pos FROM rpt_cursor WHERE name = 'schema'").fetchone()
            rebuilt_meanwhile = row is not None and int(row[0]) == SCHEMA_VERSION
            if not rebuilt_meanwhile:
                for t in _DERIVED:
                    conn.execute(f"DROP TABLE IF EXISTS {t}")
                conn.execute("DROP TABLE IF EXISTS rpt_cursor")
                for stmt in SCHEMA:
                    conn.execute(stmt)
                _set_cursor(conn, "schema", SCHEMA_VERSION)
        if rebuilt_meanwhile:
            return ensure_schema(conn)
    else:
        for stmt in SCHEMA:
            conn.execute(stmt)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS rpt_flip (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS rpt_node_zone (node TEXT PRIMARY KEY, zone TEXT NOT NULL)")
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS rpt_pairs (month TEXT NOT NULL, member TEXT NOT NULL, "
        "n INTEGER NOT NULL, PRIMARY KEY (month, member)) WITHOUT ROWID"
    )


def _cursor(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT pos FROM rpt_cursor WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _set_cursor(conn: sqlite3.Connection, name: str, pos: int) -> None:
    conn.execute(
        "INSERT INTO rpt_cursor (name, pos) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET pos = "
        "excluded.pos",
        (name, pos),
    )


def _running_totals(conn: sqlite3.Connection, cond: str, sign: int, args: tuple[int, ...]) -> None:
    conn.execute(_CUBE.format(sign=sign, cond=cond), args)
    conn.execute("DELETE FROM temp.rpt_pairs")
    conn.execute(_PAIRS.format(sign=sign, cond=cond), args)
    conn.execute(_MONTH_ACTIVE)
    conn.execute(_MEMBER_MONTHS)


def _fold_events(conn: sqlite3.Connection, lo: int, hi: int) -> None:
    """Every fact of the events in ``(lo, hi]`` (one transaction, the caller's)."""
    _node_zones(conn)
    conn.execute(_FILL_STAYS, (lo, hi))
    conn.execute(_FILL_POINTS, (lo, hi))
    conn.execute("DELETE FROM temp.rpt_flip")
    conn.execute(_FLIP_VOIDED, (lo, hi))
    flipped = conn.execute("SELECT count(*) FROM temp.rpt_flip").fetchone()[0]
    if flipped:
        conn.execute(_MARK_VOIDED)
    conn.execute(_FILL_FEEDBACK, (lo, hi))
    conn.execute(_FILL_ENROLMENTS, (lo, hi))
    conn.execute(_MEMBER_STAYS, (lo, hi))
    _running_totals(conn, _NEW_STAYS, 1, (lo, hi))
    if flipped:
        conn.execute(_MEMBER_UNVOID)
        _running_totals(conn, _OLD_VOIDED, -1, (lo,))
    conn.execute(_POINTS_CUBE, (lo, hi))
    conn.execute(_EARNED_CUBE, (lo, hi))
    conn.execute(_FEEDBACK_CUBE, (lo, hi))
    conn.execute(_MEMBER_FEEDBACK, (lo, hi))


def _drain(
    conn: sqlite3.Connection,
    name: str,
    top_sql: str,
    fold: Callable[[int, int], object],
    step: Callable[[int, int], int],
) -> int:
    """Fold rows (cursor ``name``, top]: each batch one transaction that moves the cursor with it."""
    done = 0
    while True:
        with immediate(conn):
            lo = _cursor(conn, name)
            top = int(conn.execute(top_sql).fetchone()[0])
            if top <= lo:
                return done
            hi = min(top, lo + step(lo, top))
            fold(lo, hi)
            _set_cursor(conn, name, hi)
        done += hi - lo


def refresh(conn: sqlite3.Connection, *, batch: int = 500_000) -> dict[str, int]:
    """Fold every event and member change since the last refresh into the fact tables.

    Each batch is one transaction that moves its cursor with it, so a refresh killed half
    way resumes where the last committed batch ended, and two refreshes at once simply
    queue on SQLite's write lock (the second finds nothing left to do).

    The first fill (cursor at 0) drops the secondary indexes, folds in batches of
    ``FIRST_FILL_BATCH`` and builds the indexes once at the end; a fill killed before that
    leaves them to ``ensure_schema`` (built on the next connect).
    """
    ensure_schema(conn)
    done = {"events": 0, "changes": 0}
    has_events = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
    if has_events is None:
        return done
    first = False

    def events_step(lo: int, top: int) -> int:
        nonlocal first
        if lo == 0 and top > batch:
            first = True
            for ix in _FILL_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {ix}")
        return max(batch, FIRST_FILL_BATCH) if first else batch

    done["events"] = _drain(
        conn,
        "events",
        "SELECT coalesce(max(rowid), 0) FROM events",
        lambda lo, hi: _fold_events(conn, lo, hi),
        events_step,
    )
    done["changes"] = _drain(
        conn,
        "changes",
        "SELECT coalesce(max(version), 0) FROM changes",
        lambda lo, hi: conn.execute(_MEMBER_RECORDS, (lo, hi)),
        lambda lo, top: max(batch, FIRST_FILL_BATCH) if first else batch,
    )
    if first:
        with immediate(conn):
            for stmt in SCHEMA:
                conn.execute(stmt)
        conn.execute("PRAGMA analysis_limit = 1000")
        conn.execute("ANALYZE")
    return done


def import_property_revenue(conn: sqlite3.Connection, csv_text: str) -> int:
    """Load the properties' own monthly totals: CSV ``property,month,revenue`` (month YYYY-MM).

    A later import of the same (property, month) replaces the figure: the property system
    is the authority on its own total.
    """
    import csv
    import io
    from decimal import Decimal, InvalidOperation

    rows = []
    reader = csv.DictReader(io.StringIO(csv_text))
    for n, rec in enumerate(reader, start=2):
        try:
            prop, month = rec["property"].strip(), rec["month"].strip()
            amount = Decimal(rec["revenue"].strip())
        except (KeyError, AttributeError, InvalidOperation):
            raise ValueError(f"line {n}: need property,month,revenue with a decimal revenue") from None
        if len(month) != 7 or month[4] != "-":
            raise ValueError(f"line {n}: month must be YYYY-MM, got {month!r}")
        rows.append((prop, month, int((amount * 100).to_integral_value())))
    with immediate(conn):
        conn.executemany(
            "INSERT INTO rpt_property_revenue (property, month, total_c) VALUES (?, ?, ?) "
            "ON CONFLICT (property, month) DO UPDATE SET total_c = excluded.total_c",
            rows,
        )
    return len(rows)


# -- a PostgreSQL ledger: the same projection, over a local mirror of the tables it reads ----------
#
# The fill above is SQLite's (rowid ranges, json_extract). For a ledger on PostgreSQL the
# projection keeps a SQLite file of its own (``--cache``): the events (with the ledger's
# ``pos`` as rowid, so "rowid > cursor" keeps meaning "arrived since"), their stays, the
# change log and the overdrafts are copied across incrementally, and the same fill and the
# same report queries run on it. PostgreSQL's ``pos`` is handed out under the ledger's
# single-writer lock (overlapping ingest groups: under ``store_pg.ORDER_LOCK``, from a group's
# first write to its commit), so positions commit in order and a copy up to the last one seen
# misses nothing. The file is derived data: deleting it costs one full copy and fill.

MIRROR_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (id TEXT NOT NULL UNIQUE, node TEXT NOT NULL,
        epoch INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, member TEXT, body TEXT NOT NULL,
        applied_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_type ON events (type)",
    """CREATE TABLE IF NOT EXISTS stays (event_id TEXT PRIMARY KEY, member TEXT NOT NULL,
        points INTEGER NOT NULL, nights INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS changes (version INTEGER PRIMARY KEY, kind TEXT NOT NULL,
        key TEXT NOT NULL, body TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS overdrafts (id INTEGER PRIMARY KEY, member TEXT NOT NULL,
        node TEXT NOT NULL, event_id TEXT NOT NULL, balance INTEGER NOT NULL, at TEXT NOT NULL,
        resolved_at TEXT, kind TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS mirror_source (one INTEGER PRIMARY KEY CHECK (one = 1), "
    "source TEXT NOT NULL)",
    # What a month is at each property: the programme's [[properties]] and node -> property.
    "CREATE TABLE IF NOT EXISTS programs (version INTEGER PRIMARY KEY, document TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS node_properties (node TEXT PRIMARY KEY, property TEXT NOT NULL)",
)

MIRROR_BATCH = 50_000


def mirror_pg(conn: sqlite3.Connection, pg_url: str, *, batch: int = MIRROR_BATCH) -> dict[str, int]:
    """Copy what arrived in the PostgreSQL ledger since the last copy into ``conn`` (a cache file)."""
    import psycopg

    for stmt in MIRROR_SCHEMA:
        conn.execute(stmt)
    source = _source_key(pg_url)
    with immediate(conn):
        row = conn.execute("SELECT source FROM mirror_source").fetchone()
        if row is not None and row[0] != source:
            raise ValueError(f"the report cache holds another ledger ({row[0]}): give its own --cache")
        conn.execute("INSERT OR IGNORE INTO mirror_source (one, source) VALUES (1, ?)", (source,))
    copied = {"events": 0, "changes": 0}
    with psycopg.connect(pg_url, autocommit=True) as pg:
        while True:
            lo = int(conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])
            events = pg.execute(
                "SELECT pos, id, node, epoch, seq, type, member, body, applied_at FROM events "
                "WHERE pos > %s ORDER BY pos LIMIT %s",
                (lo, batch),
            ).fetchall()
            if not events:
                break
            stay_ids = [e[1] for e in events if e[5] == "stay.posted"]
            stays = (
                pg.execute(
                    "SELECT event_id, member, points, nights FROM stays WHERE event_id = ANY(%s)", (stay_ids,)
                ).fetchall()
                if stay_ids
                else []
            )
            with immediate(conn):
                conn.executemany(
                    "INSERT INTO events (rowid, id, node, epoch, seq, type, member, body, applied_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    events,
                )
                conn.executemany("INSERT OR REPLACE INTO stays VALUES (?, ?, ?, ?)", stays)
            copied["events"] += len(events)
        while True:
            lo = int(conn.execute("SELECT coalesce(max(version), 0) FROM changes").fetchone()[0])
            changes = pg.execute(
                "SELECT version, kind, key, body::text FROM changes WHERE version > %s "
                "ORDER BY version LIMIT %s",
                (lo, batch),
            ).fetchall()
            if not changes:
                break
            with immediate(conn):
                conn.executemany("INSERT INTO changes VALUES (?, ?, ?, ?)", changes)
            copied["changes"] += len(changes)
        # Few rows, and resolved in place: copied whole.
        overdrafts = pg.execute(
            "SELECT id, member, node, event_id, balance, at, resolved_at, kind FROM overdrafts"
        ).fetchall()
        newest = pg.execute("SELECT version, document FROM programs ORDER BY version DESC LIMIT 1").fetchall()
        node_props = pg.execute("SELECT node, property FROM node_properties").fetchall()
    with immediate(conn):
        conn.execute("DELETE FROM overdrafts")
        conn.executemany("INSERT INTO overdrafts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", overdrafts)
        conn.executemany("INSERT OR REPLACE INTO programs VALUES (?, ?)", newest)
        conn.execute("DELETE FROM node_properties")
        conn.executemany("INSERT INTO node_properties VALUES (?, ?)", node_props)
    return copied


def _source_key(pg_url: str) -> str:
    """Which ledger a cache holds: the URL's host, port and database (no user or password)."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(pg_url)
    return f"{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"


def default_cache(pg_url: str) -> Path:
    """Where a PostgreSQL ledger's report cache lives without ``--cache``: the user's cache folder."""
    import hashlib
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "staypoint"
    digest = hashlib.sha256(_source_key(pg_url).encode()).hexdigest()[:16]
    return base / f"reports-{digest}.db"


def connect_store(url: str, *, cache: Path | None = None) -> sqlite3.Connection:
    """A projection connection for the ledger ``url`` names (``store.parse_store_url``).

    SQLite: the ledger file itself (which must exist). PostgreSQL: the report cache
    (``cache``, or :func:`default_cache`), brought up to date from the ledger first.
    Bad URLs, a missing file and an unreachable server are ``StoreConfigError``.
    """
    from staypoint.central.store import StoreConfigError, parse_store_url

    parsed = parse_store_url(url)
    if not parsed.is_pg:
        path = Path(parsed.path or "")
        if not path.is_file():
            raise StoreConfigError(f"no ledger at {path}: check --store (a report creates nothing)")
        try:
            return connect(path)
        except sqlite3.DatabaseError as exc:
            raise StoreConfigError(f"cannot read the ledger {path}: {exc}") from None
    import psycopg

    target = cache or default_cache(parsed.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(target)
    try:
        mirror_pg(conn, parsed.url)
    except psycopg.Error as exc:
        conn.close()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreConfigError(f"cannot read the ledger in PostgreSQL: {first}") from None
    except ValueError as exc:
        conn.close()
        raise StoreConfigError(str(exc)) from None
    return conn
