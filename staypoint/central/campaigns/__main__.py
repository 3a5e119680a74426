"""``python -m staypoint.central.campaigns --db L --profiles P --config C --now ISO [--dry-run]``.

The same pass as ``staypoint central jobs``; a module entry point so tests and cron can
start job processes without the full CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from staypoint.central.campaigns.engine import run_daily
from staypoint.loyalty.events import parse_iso


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m staypoint.central.campaigns")
    ap.add_argument("--db", required=True, help="the ledger file")
    ap.add_argument("--profiles", required=True, help="the profiles file (may be the ledger file)")
    ap.add_argument("--config", help="campaigns TOML")
    ap.add_argument("--now", required=True)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    report = run_daily(
        parse_iso(args.now),
        ledger_db=Path(args.db),
        profiles_db=Path(args.profiles),
        config_path=Path(args.config) if args.config else None,
        dry_run=args.dry_run,
    )
    print(json.dumps(report, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
