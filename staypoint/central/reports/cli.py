"""``staypoint report NAME [--from --to --property --tier] [--format table|csv|json|html]``.

Also ``staypoint report import-totals FILE.csv`` (the properties' monthly totals) and
``staypoint central demo-data`` lives in ``register_demo``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

from staypoint.central.reports import figures as fig
from staypoint.central.reports import projection
from staypoint.central.reports.render import render
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.program import Program, default_program, parse_program

NAMES = [*fig.REPORTS, "all"]


def _program(db: Path) -> Program:
    store = SqliteLedgerStore(db)
    try:
        v = store.latest_program_version()
        text = store.program(v) if v is not None else None
    finally:
        store.close()
    return parse_program(text, f"programme v{v}") if text else default_program()


def report_figures(
    db: Path,
    names: list[str] | None = None,
    *,
    start: date | None = None,
    end: date | None = None,
    property: str | None = None,
    tier: str | None = None,
) -> dict[str, fig.Report]:
    """The figures as data (for the console's reports screen and the API)."""
    program = _program(db)
    conn = projection.connect(db)
    try:
        return fig.figures(conn, program, names, fig.Filters(start, end, property, tier))
    finally:
        conn.close()


def cmd_report(args: argparse.Namespace) -> None:
    db = Path(args.db)
    if args.name == "import-totals":
        if not args.file:
            raise SystemExit("staypoint report import-totals --file totals.csv")
        conn = projection.connect(db)
        n = projection.import_property_revenue(conn, Path(args.file).read_text(encoding="utf-8"))
        conn.close()
        print(f"imported {n} property totals")
        return
    names = None if args.name == "all" else [args.name]
    reports = report_figures(
        db,
        names,
        start=date.fromisoformat(args.date_from) if args.date_from else None,
        end=date.fromisoformat(args.date_to) if args.date_to else None,
        property=args.property,
        tier=args.tier,
    )
    scope = ", ".join(
        f"{k} {v}"
        for k, v in (
            ("from", args.date_from),
            ("to", args.date_to),
            ("property", args.property),
            ("tier", args.tier),
        )
        if v
    )
    text = render(
        reports, args.format, **({"subtitle": scope or "all data"} if args.format == "html" else {})
    )
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def register(sub: Any) -> None:
    """Add ``report NAME`` to the top-level subparsers."""
    p = sub.add_parser("report", help="head-office reports (growth, liability, campaigns...)")
    p.add_argument("name", choices=[*NAMES, "import-totals"])
    p.add_argument("--db", required=True, help="the ledger file")
    p.add_argument("--from", dest="date_from", help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", help="day after the last, YYYY-MM-DD")
    p.add_argument("--property")
    p.add_argument("--tier")
    p.add_argument("--format", choices=["table", "csv", "json", "html"], default="table")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.add_argument("--file", help="import-totals: CSV property,month,revenue")
    p.set_defaults(fn=cmd_report)


def register_demo(central_sub: Any) -> None:
    """Add ``demo-data`` under ``staypoint central`` (pass the central subparsers)."""
    from staypoint.central import demo_data

    p = central_sub.add_parser("demo-data", help="generate a chain's worth of demo data")
    p.add_argument("--db", required=True, help="the ledger file to fill (created)")
    p.add_argument("--profiles", help="profiles file (default: the ledger file)")
    p.add_argument("--members", type=int, default=2000)
    p.add_argument("--years", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--now", help="ISO time the data ends at (default 2026-11-23)")
    p.set_defaults(fn=demo_data.cmd_demo_data)
