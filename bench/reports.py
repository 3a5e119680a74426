# ruff: noqa: E501  (the generator is SQL in triple-quoted strings)
"""Benchmark: every report over N members / M events, and the daily campaign job over N members.

    .venv/bin/python bench/reports.py                       # 1,000,000 members, 10,000,000 events
    .venv/bin/python bench/reports.py --members 100000 --events 1000000   # quicker
    .venv/bin/python bench/reports.py --keep /work/benchdb/gen.db   # generate once, reuse after

With ``--keep FILE`` the generated ledger is kept in FILE (made when missing or of another
size) and each run works on a fresh copy of it, so a second run skips the generation.

Prints one JSON object. Each timing comes with, in the same run, one plain
``SELECT count(*) FROM events`` as the floor and the ratio to it. The data is generated
inside SQLite (a recursive CTE building the event bodies with ``json_object``) in large
transactions with ``synchronous=OFF`` - a load, not the durability the ledger runs with.

Timings:
- ``projection_fill``: folding all M events into the fact tables the first time (once,
  then incremental);
- ``reports``: all reports, including the (empty) incremental refresh they start with,
  with each report's own time in ``per_report_s``;
- ``reports_after_campaigns``: the same again after the campaign job has added its bonus
  events: the refresh folds only those (incremental by cursor);
- ``campaign_job``: the daily job (birthdays, anniversaries, upgrades, Nth stay, expiring
  points, win-back) over N members, to a recording gateway: evaluation, claims, bonus
  events through the ledger, hand-over marks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from staypoint.central.campaigns.channels import RecordingGateway
from staypoint.central.campaigns.config import parse_config
from staypoint.central.campaigns.engine import CampaignJob
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.reports import figures, projection
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.program import default_program, default_program_text

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NODES = 100

CAMPAIGNS = """
[[campaign]]
code = "BDAY"
trigger = "birthday"
bonus_points = 500
holdout_percent = 10
[[campaign]]
code = "ANNIV"
trigger = "anniversary"
[[campaign]]
code = "UPGRADE"
trigger = "tier_upgrade"
[[campaign]]
code = "STAY5"
trigger = "nth_stay"
[[campaign]]
code = "EXPIRING"
trigger = "points_expiring"
[[campaign]]
code = "WINBACK"
trigger = "win_back"
"""


def _series(n: int) -> str:
    return f"WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < {n})"


def generate(db: Path, members: int, events: int) -> dict[str, float]:
    """Members (ledger + change log + profiles) and events, bulk-inserted by SQLite itself."""
    t0 = time.perf_counter()
    ledger = Ledger(SqliteLedgerStore(db, synchronous="OFF"))
    ledger.publish_program(default_program_text(), NOW)
    ledger.store.close()
    ProfileStore(db).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -400000")
    # The member and type indexes are built once after the load (sorted), not row by row.
    conn.execute("DROP INDEX IF EXISTS events_member")
    conn.execute("DROP INDEX IF EXISTS events_type")
    num = "printf('%010d', 9000000000 + {x})"
    member = num.format(x="i")
    tiers = "CASE WHEN i % 20 = 0 THEN 'GOLD' WHEN i % 5 = 0 THEN 'SILVER' ELSE 'MEMBER' END"
    # Last activity spread over 800 days back, so some balances are close to expiry.
    last = "date('2026-11-23', '-' || (i * 7 % 800) || ' days')"
    conn.execute("BEGIN")
    conn.execute(
        f"""{_series(members)} INSERT INTO members (number, doc, points, blocked)
        SELECT {member}, json_object('number', {member}, 'tier', {tiers}, 'points', i % 20000,
            'last_activity', {last}, 'enrolled_at', date('2020-01-01', '+' || (i % 2400) || ' days') || 'T09:00:00.000Z',
            'home_property', 'P' || (i % 50), 'name', 'Guest', 'stored_value', '0.00',
            'window_start', '2026-01-01', 'qual_nights', 0, 'qual_points', 0, 'pin_hash', 'x',
            'blocked', json('false'), 'overdrawn', json('false'), 'cards', json('[]'), 'folded', json('{{}}')),
            i % 20000, 0 FROM c"""
    )
    conn.execute(
        "INSERT INTO changes (kind, key, body) SELECT 'member', number, doc FROM members ORDER BY number"
    )
    conn.execute(
        f"""{_series(members)} INSERT INTO profiles (member, full_name, email, birth_date, language, time_zone,
            home_property, joined, consent_email, consent_sms, updated_at)
        SELECT {member}, 'Guest ' || i, 'g' || i || '@example.com',
            date('1950-01-01', '+' || (i * 37 % 18250) || ' days'), CASE WHEN i % 3 = 0 THEN 'zh' ELSE 'en' END,
            'UTC', 'P' || (i % 50), date('2020-01-01', '+' || (i % 2400) || ' days'), i % 4 <> 0, 0,
            '2026-01-01T00:00:00Z' FROM c"""
    )
    conn.execute("COMMIT")
    t1 = time.perf_counter()
    # Events: 10 % enrolments, 60 % stays, 10 % feedback, 10 % redemptions, 10 % adjustments.
    m = f"printf('%010d', 9000000000 + (i * 7919) % {members})"
    day = "date('2024-01-01', '+' || (i % 1050) || ' days')"
    dep = "date('2024-01-01', '+' || (i % 1050 + 1 + i % 3) || ' days')"
    kind = (
        "CASE i % 10 WHEN 0 THEN 'member.enrolled' WHEN 1 THEN 'feedback.recorded' "
        "WHEN 2 THEN 'points.redeemed' WHEN 3 THEN 'points.adjusted' ELSE 'stay.posted' END"
    )
    data = f"""CASE i % 10
        WHEN 0 THEN json_object('name', 'G', 'display_name', 'G', 'tier', 'MEMBER', 'home_property', 'P' || (i % 50))
        WHEN 1 THEN json_object('stars', 1 + i % 5, 'tags', json('[]'), 'context', 'dashboard',
                                'property', 'P' || (i % 50))
        WHEN 2 THEN json_object('reward', CASE i % 3 WHEN 0 THEN 'LATE-CO' WHEN 1 THEN 'BREAKFAST' ELSE 'SPA-60' END,
                                'points', CASE i % 3 WHEN 0 THEN 2500 WHEN 1 THEN 3000 ELSE 8000 END,
                                'voucher', 'V' || i)
        WHEN 3 THEN json_object('points', 100 + i % 900, 'reason', 'goodwill')
        ELSE json_object('property', 'P' || (i % 50), 'arrival', {day}, 'departure', {dep},
             'nights', 1 + i % 3, 'revenue', json_object('room', printf('%d.00', 90 + i % 300),
             'fnb', printf('%d.50', i % 80)), 'points', 1000, 'tier', 'MEMBER',
             'tier_after', CASE WHEN i % 997 = 0 THEN 'SILVER' ELSE 'MEMBER' END, 'room_type', 'Deluxe')
        END"""
    node = f"'n' || (i % {NODES})"
    seq = f"i / {NODES} + 1"
    step = 1_000_000
    for lo in range(0, events, step):
        n = min(step, events - lo)
        conn.execute("BEGIN")
        conn.execute(
            f"""WITH RECURSIVE c(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM c WHERE i + 1 < {lo + n})
            INSERT INTO events (id, node, epoch, seq, type, member, body, applied_at)
            SELECT printf('%08x-0000-7000-8000-%012x', i / 65536, i), {node}, 1, {seq}, {kind}, {m},
                json_object('v', 1, 'node', {node}, 'epoch', 1, 'seq', {seq},
                    'id', printf('%08x-0000-7000-8000-%012x', i / 65536, i),
                    'at', {day} || 'T12:00:00.000Z', 'type', {kind}, 'member', {m}, 'program', 1,
                    'data', json({data}), 'auth', CASE WHEN i % 10 = 2 AND i % 4 = 0 THEN 'offline' ELSE 'online' END),
                '2026-11-23T00:00:00.000Z'
            FROM c"""
        )
        conn.execute("COMMIT")
    conn.close()
    SqliteLedgerStore(db).close()  # recreates the dropped indexes
    t2 = time.perf_counter()
    return {"generate_members_s": round(t1 - t0, 2), "generate_events_s": round(t2 - t1, 2)}


def floor_scan(db: Path) -> float:
    conn = sqlite3.connect(db)
    t = time.perf_counter()
    conn.execute("SELECT count(*) FROM events").fetchone()
    took = time.perf_counter() - t
    conn.close()
    return took


def _reports(conn: sqlite3.Connection, program: object, base: float) -> dict[str, object]:
    t = time.perf_counter()
    refreshed = projection.refresh(conn)
    t_refresh = time.perf_counter() - t
    per: dict[str, float] = {}
    reports = {}
    for name, fn in figures.REPORTS.items():
        t1 = time.perf_counter()
        reports[name] = fn(conn, program, figures.Filters())  # type: ignore[arg-type]
        per[name] = round(time.perf_counter() - t1, 3)
    took = time.perf_counter() - t
    return {
        "seconds": round(took, 3),
        "floor_count_s": round(base, 3),
        "ratio": round(took / base, 1) if base else None,
        "goal_s": 10,
        "reports": len(reports),
        "refresh_s": round(t_refresh, 3),
        "refreshed_events": refreshed["events"],
        "per_report_s": per,
        "liability": str(reports["liability"].headline["gross_liability"]),
        "repeat_rate": str(reports["repeat"].headline["repeat_rate"]),
        "avg_days_between_stays": str(reports["repeat"].headline["avg_days_between_stays"]),
    }


def _prepare(db: Path, keep: str | None, members: int, events: int) -> dict[str, object]:
    if keep is None:
        return generate(db, members, events)
    kept = Path(keep)
    stamp = kept.with_suffix(".size")
    want = f"{members} {events}"
    out: dict[str, object] = {}
    if not kept.exists() or not stamp.exists() or stamp.read_text() != want:
        for p in (kept, Path(f"{kept}-wal"), Path(f"{kept}-shm")):
            p.unlink(missing_ok=True)
        out |= generate(kept, members, events)
        stamp.write_text(want)
    else:
        out["generated"] = "reused " + str(kept)
    t = time.perf_counter()
    shutil.copyfile(kept, db)
    out["copy_s"] = round(time.perf_counter() - t, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--dir", help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--keep", help="generated ledger kept here and reused (each run works on a copy)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        db = Path(tmp) / "ledger.db"
        out: dict[str, object] = {"members": args.members, "events": args.events}
        out |= _prepare(db, args.keep, args.members, args.events)
        program = default_program()

        conn = projection.connect(db)
        base = floor_scan(db)
        t = time.perf_counter()
        filled = projection.refresh(conn)
        took = time.perf_counter() - t
        out["projection_fill"] = {
            "seconds": round(took, 2),
            "events": filled["events"],
            "changes": filled["changes"],
            "floor_count_s": round(base, 3),
            "ratio": round(took / base, 1) if base else None,
        }

        base = floor_scan(db)
        out["reports"] = _reports(conn, program, base)

        sink = RecordingGateway()
        job = CampaignJob(db, db, parse_config(CAMPAIGNS), gateways={"email": sink, "sms": sink})
        base = floor_scan(db)
        t = time.perf_counter()
        result = job.run_daily(NOW)
        took = time.perf_counter() - t
        job.close()
        out["campaign_job"] = {
            "seconds": round(took, 2),
            "floor_count_s": round(base, 3),
            "ratio": round(took / base, 1) if base else None,
            "goal_s": 60,
            "claimed": result["claimed"],
            "delivered": result["delivered"],
            "bonus_events": result["bonus_events"],
            "uncertain_open": result["uncertain_open"],
            "phases_s": result.get("timings"),
        }
        base = floor_scan(db)
        out["reports_after_campaigns"] = _reports(conn, program, base)
        conn.close()
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
