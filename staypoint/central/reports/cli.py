"""``staypoint report NAME [--from --to --property --tier] [--format table|csv|json|html]``.

Also ``staypoint report import-totals FILE.csv`` (the properties' monthly totals) and
``staypoint central demo-data`` lives in ``register_demo``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, tzinfo
from pathlib import Path
from typing import Any

from staypoint.central.reports import figures as fig
from staypoint.central.reports import projection
from staypoint.central.reports.render import render
from staypoint.central.store import add_store_option
from staypoint.loyalty.program import Program, default_program, parse_program
from staypoint.progress import add_quiet_option

NAMES = [*fig.REPORTS, "all"]


def _program(url: str) -> Program:
    from staypoint.central.store import open_ledger_store

    store = open_ledger_store(url, must_exist=True)
    try:
        v = store.latest_program_version()
        text = store.program(v) if v is not None else None
    finally:
        store.close()
    return parse_program(text, f"programme v{v}") if text else default_program()


def report_figures(
    db: Path | str,
    names: list[str] | None = None,
    *,
    start: date | None = None,
    end: date | None = None,
    property: str | None = None,
    tier: str | None = None,
    cache: Path | None = None,
    tz: tzinfo | None = None,
) -> dict[str, fig.Report]:
    """The figures as data (for the console's reports screen and the API).

    ``db`` is a store URL (``sqlite:///...``, ``postgresql://...``) or a SQLite path; on
    PostgreSQL the projection lives in the report cache ``cache`` (see ``projection.connect_store``).
    """
    url = str(db)
    program = _program(url)
    conn = projection.connect_store(url, cache=cache)
    try:
        return fig.figures(conn, program, names, fig.Filters(start, end, property, tier, tz))
    finally:
        conn.close()


def _day(text: str | None, flag: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"staypoint: {flag} {text!r} is not a day (YYYY-MM-DD)") from None


def _zone(name: str | None) -> tzinfo | None:
    from staypoint.localtime import ZoneError, zone

    if not name:
        return None
    try:
        return zone(name)
    except ZoneError as exc:
        raise SystemExit(f"staypoint: --tz: {exc}") from None


def cmd_report(args: argparse.Namespace) -> None:
    from staypoint.central.store import StoreConfigError, store_url

    cache = Path(args.cache) if args.cache else None
    try:
        url = store_url(args)
        if args.name == "import-totals":
            if not args.file:
                raise SystemExit("staypoint: report import-totals needs --file totals.csv")
            try:
                text = Path(args.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SystemExit(f"staypoint: cannot read {args.file}: {exc}") from None
            conn = projection.connect_store(url, cache=cache)
            try:
                n = projection.import_property_revenue(conn, text)
            except ValueError as exc:
                raise SystemExit(f"staypoint: {args.file}: {exc}") from None
            finally:
                conn.close()
            print(f"imported {n} property totals")
            return
        names = None if args.name == "all" else [args.name]
        reports = report_figures(
            url,
            names,
            start=_day(args.date_from, "--from"),
            end=_day(args.date_to, "--to"),
            property=args.property,
            tier=args.tier,
            cache=cache,
            tz=_zone(args.tz),
        )
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    scope = ", ".join(
        f"{k} {v}"
        for k, v in (
            ("from", args.date_from),
            ("to", args.date_to),
            ("property", args.property),
            ("tier", args.tier),
            ("days in", args.tz),
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
    add_store_option(p)
    p.add_argument(
        "--cache",
        help="with a PostgreSQL ledger: the report projection's SQLite file "
        "(default ~/.cache/staypoint/reports-*.db)",
    )
    p.add_argument("--from", dest="date_from", help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", help="day after the last, YYYY-MM-DD")
    p.add_argument(
        "--tz",
        metavar="ZONE",
        help="--from/--to are local days in this zone, e.g. Asia/Shanghai (default: UTC days)",
    )
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
    add_quiet_option(p)
    p.set_defaults(fn=demo_data.cmd_demo_data)
