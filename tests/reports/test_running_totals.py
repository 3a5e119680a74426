"""The fast path (per-member figures and running totals kept by the projection) against the
detail path (the fact tables, as a dated filter reads them), before and after more events
arrive - a void of a member's first stay among them - and incrementally by cursor."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

from staypoint.central.ledger import Ledger
from staypoint.central.reports import figures as fig
from staypoint.central.reports import projection
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.program import default_program
from tests.reports.test_reports import A, B, C, Feed, _stay, build_chain

# Compared figure by figure (campaigns has no send log here; growth has no fast path).
NAMES = [
    "active",
    "repeat",
    "revenue_share",
    "spend_by_tier",
    "points",
    "redemptions",
    "feedback",
    "exposure",
]
EVERYTHING = fig.Filters(start=date(1900, 1, 1))  # a date filter: the detail path, same data


def _both(conn: sqlite3.Connection) -> tuple[dict[str, fig.Report], dict[str, fig.Report]]:
    projection.refresh(conn)
    program = default_program()
    fast = {n: fig.REPORTS[n](conn, program, fig.Filters()) for n in NAMES}
    slow = {n: fig.REPORTS[n](conn, program, EVERYTHING) for n in NAMES}
    return fast, slow


def _same(fast: dict[str, fig.Report], slow: dict[str, fig.Report]) -> None:
    for n in NAMES:
        assert fast[n].rows == slow[n].rows, n
        assert fast[n].headline == slow[n].headline, n


def test_running_totals_match_the_facts_through_voids_and_new_events(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    build_chain(db)
    conn = projection.connect(db)
    fast, slow = _both(conn)
    _same(fast, slow)
    assert fast["repeat"].headline["avg_days_between_stays"] == 30

    # More events after the first fill: C's first stay voided, two new stays, feedback.
    first_c, body = conn.execute(
        "SELECT id, body FROM events WHERE type = 'stay.posted' AND member = ? ORDER BY rowid LIMIT 1", (C,)
    ).fetchone()
    ledger = Ledger(SqliteLedgerStore(db))
    # A node voids only its own property's stays: n2 is a board of the property that posted it.
    ledger.register_node("n2", "00" * 32, json.loads(body)["data"]["property"])
    feed = Feed(ledger, "n2")
    at = datetime(2025, 6, 10, 10, 0, tzinfo=UTC)
    feed("stay.voided", C, at.strftime("%Y-%m-%dT%H:%M:%S"), {"stay": first_c, "points": 3000, "reason": "x"})
    _stay(feed, B, "BJS", "2025-06-01", 2, "210.00")
    _stay(feed, A, "SHA", "2025-06-11", 1, "90.00", "10.00")
    feed(
        "feedback.recorded",
        B,
        "2025-06-04T10:00:00",
        {"stars": 4, "tags": [], "context": "dashboard", "property": "BJS"},
    )
    ledger.store.close()
    assert projection.refresh(conn)["events"] == 4  # incremental: only what arrived
    fast, slow = _both(conn)
    _same(fast, slow)
    rep = fast["repeat"].headline
    # A: 03-01, 03-21, 06-11 (gaps 20, 82); B: 03-05, 06-01 (88); C: 04-09, 05-19 (40).
    assert rep["members_with_stays"] == 3 and rep["repeat_members"] == 3
    assert rep["avg_days_between_stays"] == round((20 + 82 + 88 + 40) / 4, 1)
    conn.close()


def test_liability_table_prints_each_figure_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "ledger.db"
    build_chain(db)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from staypoint.cli.main import main; main()",
            "report",
            "liability",
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    ).stdout
    for key in (
        "outstanding_points",
        "point_value",
        "gross_liability",
        "breakage_rate",
        "expected_liability",
    ):
        assert out.count(key) == 1, out
    assert "28.75" in out and "19.17" in out
    assert "currency:" not in out  # already in the title
