"""``python -m staypoint.central.campaigns --store URL [--profiles P] --config C --now ISO [--dry-run]``.

The same pass as ``staypoint central jobs``; a module entry point so tests and cron can
start job processes without the full CLI. ``--db PATH`` is kept as the SQLite form of ``--store``;
on a PostgreSQL ledger ``--profiles`` defaults to its own database.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from staypoint.central.campaigns.engine import run_daily
from staypoint.central.store import StoreConfigError, add_store_option, parse_store_url, store_url
from staypoint.loyalty.events import parse_iso


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m staypoint.central.campaigns")
    add_store_option(ap)
    ap.add_argument(
        "--profiles",
        help="the profiles: a SQLite file (may be the ledger file) or postgresql://... "
        "(default on a PostgreSQL ledger: its own database)",
    )
    ap.add_argument("--config", help="campaigns TOML")
    ap.add_argument("--now", required=True)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    try:
        url = parse_store_url(store_url(args)).canonical()
        report = run_daily(
            parse_iso(args.now),
            store=url,
            profiles=args.profiles,
            config_path=Path(args.config) if args.config else None,
            dry_run=args.dry_run,
        )
    except StoreConfigError as exc:
        print(f"staypoint: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
