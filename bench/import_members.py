"""Member import: N generated CSV rows into a fresh SQLite ledger, against bare inserts.

    .venv/bin/python bench/import_members.py [--rows 1000000] [--batch 10000]

The import runs as ``staypoint central import members`` does (the CLI's ``main``, quiet, a
fresh ledger, side tables and profiles file, ``synchronous=FULL`` as in production, first-use
codes written), every row with an e-mail, a phone, a birth date and an opening balance. The
raw figure, in the same run: the very rows the import wrote (members, personal, events,
streams, changes, profiles, addresses, codes) inserted again with bare ``executemany`` into
fresh copies of the same tables, in transactions of the same size, ``synchronous=FULL``.
Prints JSON: rows/s, seconds, peak RSS, raw seconds and rows/s, and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from staypoint.central.ledger import Ledger
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.cli.main import main as staypoint
from staypoint.loyalty.program import default_program_text

TABLES = {  # file -> tables the import writes there
    "ledger.db": ("members", "personal", "events", "streams", "changes"),
    "profiles.db": ("profiles", "addresses"),
    "side.db": ("first_pin_codes", "side_counters"),
}


def generate(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("Guest ID,First Name,Last Name,E-mail,Mobile,Date of Birth,Language,Address,Points\n")
        for i in range(rows):
            f.write(
                f"PMS{i:08d},Guest{i % 997},Family{i % 1009},guest{i}@example.com,+44207{i:07d},"
                f"19{50 + i % 50}-{1 + i % 12:02d}-{1 + i % 28:02d},{'zh' if i % 5 == 0 else 'en'},"
                f"{i} High Street London,{(i * 37) % 50_000}\n"
            )


def raw_copy(src_dir: Path, dst_dir: Path, batch: int) -> tuple[float, int]:
    """Bare executemany of the rows the import wrote into empty copies of the same tables."""
    total, seconds = 0, 0.0
    for name, tables in TABLES.items():
        src = sqlite3.connect(src_dir / name)
        dst = sqlite3.connect(dst_dir / name, isolation_level=None)
        dst.execute("PRAGMA journal_mode = WAL")
        dst.execute("PRAGMA synchronous = FULL")
        for table in tables:
            (ddl,) = src.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
            dst.execute(ddl)
            for (idx,) in src.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type = 'index' AND sql IS NOT NULL",
                (table,),
            ).fetchall():
                dst.execute(idx)
        for table in tables:
            cur = src.execute(f"SELECT * FROM {table}")
            width = len(cur.description)
            sql = f"INSERT INTO {table} VALUES ({', '.join('?' * width)})"
            while chunk := cur.fetchmany(batch):
                t = time.perf_counter()
                dst.execute("BEGIN")
                dst.executemany(sql, chunk)
                dst.execute("COMMIT")
                seconds += time.perf_counter() - t
                total += len(chunk)
        src.close()
        dst.close()
    return seconds, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sp-import-") as tmp:
        d = Path(tmp)
        (d / "raw").mkdir()
        export = d / "export.csv"
        generate(export, args.rows)
        ledger = Ledger(SqliteLedgerStore(d / "ledger.db"))
        ledger.publish_program(default_program_text(), datetime.now(UTC))
        ledger.store.close()
        argv = [
            "central",
            "import",
            "members",
            str(export),
            "--store",
            f"sqlite://{d / 'ledger.db'}",
            "--side",
            f"sqlite://{d / 'side.db'}",
            "--profiles",
            str(d / "profiles.db"),
            "--codes",
            str(d / "codes.csv"),
            "--batch",
            str(args.batch),
            "--quiet",
            "--json",
        ]
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as said:
            rc = staypoint(argv)
        seconds = time.perf_counter() - t
        if rc != 0:
            sys.exit(f"import failed: {rc}")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as again:
            rerun_rc = staypoint([a for a in argv if a not in ("--codes", str(d / "codes.csv"))])
        rerun = time.perf_counter() - t
        raw_seconds, raw_rows = raw_copy(d, d / "raw", args.batch)
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "batch": args.batch,
                    "seconds": round(seconds, 2),
                    "rows_per_s": round(args.rows / seconds),
                    "peak_rss_mb": round(peak_mb, 1),
                    "rerun_seconds": round(rerun, 2),
                    "rerun_rc": rerun_rc,
                    "report": json.loads(said.getvalue()) | {"batches": None},
                    "rerun_imported": json.loads(again.getvalue())["imported"],
                    "raw_seconds": round(raw_seconds, 2),
                    "raw_table_rows": raw_rows,
                    "raw_rows_per_s": round(args.rows / raw_seconds),
                    "ratio": round(seconds / raw_seconds, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
