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

This is SQLite-specific (rowid, json_extract); a PostgreSQL ledger store would fill the
same tables from its own sequence column with ``jsonb`` operators.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
        revenue_c INTEGER NOT NULL DEFAULT 0, first_stay TEXT, last_stay TEXT) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS rpt_members_last_stay ON rpt_members (last_stay)",
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

# Points movements other than stays (stays are read from rpt_stays after their fill).
_FILL_POINTS = """
INSERT OR IGNORE INTO rpt_points (rowid, event_id, member, node, at, month, kind, points, reward, auth)
SELECT e.rowid, e.id, e.member, e.node, json_extract(e.body, '$.at'),
    substr(json_extract(e.body, '$.at'), 1, 7),
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
FROM events e
WHERE e.rowid > ? AND e.rowid <= ?
  AND e.type IN ('points.redeemed', 'points.expired', 'stay.voided', 'voucher.voided', 'points.adjusted')
"""

_FILL_EARNED = """
INSERT OR IGNORE INTO rpt_points (rowid, event_id, member, node, at, month, kind, points, reward, auth)
SELECT rowid, event_id, member, node, at, substr(at, 1, 7), 'earned', points, NULL, NULL
FROM rpt_stays WHERE rowid > ? AND rowid <= ?
"""

_MARK_VOIDED = """
UPDATE rpt_stays SET voided = 1 WHERE event_id IN (
    SELECT json_extract(e.body, '$.data.stay') FROM events e
    WHERE e.rowid > ? AND e.rowid <= ? AND e.type = 'stay.voided')
"""

_FILL_FEEDBACK = """
INSERT OR IGNORE INTO rpt_feedback (rowid, event_id, member, node, property, at, stars, context)
SELECT e.rowid, e.id, e.member, e.node, json_extract(e.body, '$.data.property'),
    json_extract(e.body, '$.at'), coalesce(json_extract(e.body, '$.data.stars'), 0),
    json_extract(e.body, '$.data.context')
FROM events e WHERE e.rowid > ? AND e.rowid <= ? AND e.type = 'feedback.recorded'
"""

_FILL_ENROLMENTS = """
INSERT OR IGNORE INTO rpt_enrolments (member, node, property, at, month, tier)
SELECT e.member, e.node, json_extract(e.body, '$.data.home_property'), json_extract(e.body, '$.at'),
    substr(json_extract(e.body, '$.at'), 1, 7), json_extract(e.body, '$.data.tier')
FROM events e WHERE e.rowid > ? AND e.rowid <= ? AND e.type = 'member.enrolled' AND e.member IS NOT NULL
"""

_MEMBER_STAYS = """
INSERT INTO rpt_members (member, stays, nights, revenue_c, first_stay, last_stay)
SELECT member, count(*), sum(nights), sum(total_c), min(arrival), max(departure)
FROM rpt_stays WHERE rowid > ? AND rowid <= ? GROUP BY member
ON CONFLICT (member) DO UPDATE SET
    stays = stays + excluded.stays, nights = nights + excluded.nights,
    revenue_c = revenue_c + excluded.revenue_c,
    first_stay = CASE WHEN first_stay IS NULL OR excluded.first_stay < first_stay
                      THEN excluded.first_stay ELSE first_stay END,
    last_stay = CASE WHEN last_stay IS NULL OR excluded.last_stay > last_stay
                     THEN excluded.last_stay ELSE last_stay END
"""

# The latest change per member in the range wins (max(version) per key).
_MEMBER_RECORDS = """
INSERT INTO rpt_members (member, tier, points, last_activity, enrolled_at, home_property)
SELECT c.key, json_extract(c.body, '$.tier'), coalesce(json_extract(c.body, '$.points'), 0),
    json_extract(c.body, '$.last_activity'), json_extract(c.body, '$.enrolled_at'),
    json_extract(c.body, '$.home_property')
FROM changes c JOIN (
    SELECT max(version) AS v FROM changes WHERE kind = 'member' AND version > ? AND version <= ? GROUP BY key
) latest ON latest.v = c.version
WHERE true
ON CONFLICT (member) DO UPDATE SET
    tier = excluded.tier, points = excluded.points, last_activity = excluded.last_activity,
    enrolled_at = coalesce(excluded.enrolled_at, enrolled_at),
    home_property = coalesce(excluded.home_property, home_property)
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the ledger file for reading and for the projection's own tables."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA busy_timeout = 60000")
    ensure_schema(conn)
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the projection's tables (idempotent)."""
    for stmt in SCHEMA:
        conn.execute(stmt)


def _cursor(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT pos FROM rpt_cursor WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _set_cursor(conn: sqlite3.Connection, name: str, pos: int) -> None:
    conn.execute(
        "INSERT INTO rpt_cursor (name, pos) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET pos = "
        "excluded.pos",
        (name, pos),
    )


def refresh(conn: sqlite3.Connection, *, batch: int = 500_000) -> dict[str, int]:
    """Fold every event and member change since the last refresh into the fact tables.

    Each batch is one transaction that moves its cursor with it, so a refresh killed half
    way resumes where the last committed batch ended, and two refreshes at once simply
    queue on SQLite's write lock (the second finds nothing left to do).
    """
    ensure_schema(conn)
    done = {"events": 0, "changes": 0}
    has_events = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
    if has_events is None:
        return done
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            lo = _cursor(conn, "events")
            top = int(conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])
            if top <= lo:
                conn.execute("COMMIT")
                break
            hi = min(top, lo + batch)
            conn.execute(_FILL_STAYS, (lo, hi))
            conn.execute(_FILL_EARNED, (lo, hi))
            conn.execute(_FILL_POINTS, (lo, hi))
            conn.execute(_MARK_VOIDED, (lo, hi))
            conn.execute(_FILL_FEEDBACK, (lo, hi))
            conn.execute(_FILL_ENROLMENTS, (lo, hi))
            conn.execute(_MEMBER_STAYS, (lo, hi))
            _set_cursor(conn, "events", hi)
            conn.execute("COMMIT")
            done["events"] += hi - lo
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            lo = _cursor(conn, "changes")
            top = int(conn.execute("SELECT coalesce(max(version), 0) FROM changes").fetchone()[0])
            if top <= lo:
                conn.execute("COMMIT")
                break
            hi = min(top, lo + batch)
            conn.execute(_MEMBER_RECORDS, (lo, hi))
            _set_cursor(conn, "changes", hi)
            conn.execute("COMMIT")
            done["changes"] += hi - lo
        except BaseException:
            conn.execute("ROLLBACK")
            raise
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
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO rpt_property_revenue (property, month, total_c) VALUES (?, ?, ?) "
            "ON CONFLICT (property, month) DO UPDATE SET total_c = excluded.total_c",
            rows,
        )
    return len(rows)
