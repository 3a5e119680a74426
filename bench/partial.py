"""Partial replicas: a node's bootstrap of its region's members out of a much larger programme,
and a member it does not hold fetched online, each against its raw limit in the same run.

    python bench/partial.py [--members 10000000] [--held-share 10] [--store pg] [--fetches 300]

Head office holds ``--members`` members (one in ``--held-share`` with a home property in
region CN, the rest elsewhere), loaded with head office stopped (a migration), then given their
home holds by ``central replicas assign``'s call. ``central serve`` runs in its own process
(SQLite ``synchronous=FULL``, or ``--store pg``: a private PostgreSQL with fsync and
synchronous_commit on). A new Shanghai node (region CN) bootstraps:

- ``bootstrap_s``, ``bootstrap_members_per_s``: the snapshot of its region, applied by its
  agent (the node's replica at its production durability);
- ``raw_node_insert_rows_per_s``: bare inserts of the same member rows into a SQLite file
  with the same durability, the node's limit; ``bootstrap_vs_raw_insert`` the ratio;
- ``fetch_ms`` (p50, p99): a member of another region fetched through the agent (the kiosk's
  path minus the socket), against ``echo_rtt_ms``, the same broker's round trip measured by the
  agent in the same run (``fetch_vs_echo_p50``).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sync import OfficeProcess, pct
from staypoint.central.ledger import Ledger
from staypoint.central.seed import seed_docs
from staypoint.central.store import LedgerStore
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge.service import NodeService
from staypoint.edge.sync.agent import SyncAgent, SyncConfig
from staypoint.loyalty.program import default_program_text
from tests.mqtt_fixtures import MosquittoBroker, _make_pki, office_command

PARTIAL = default_program_text().replace('mode = "full"', 'mode = "partial"')
ELSEWHERE = ("HKG", "SIN", "LON", "BER")  # homes outside region CN
CHUNK = 100_000


def now() -> datetime:
    return datetime.now(UTC)


def load(ledger: Ledger, members: int, share: int) -> tuple[float, list[str]]:
    """``members`` records, one in ``share`` at home in Shanghai; (seconds, some members elsewhere)."""
    program = ledger.program()
    assert program is not None
    elsewhere: list[str] = []
    started = time.perf_counter()
    for lo in range(0, members, CHUNK):
        docs = seed_docs(program, min(CHUNK, members - lo), now(), start=lo)
        for i, doc in enumerate(docs, lo):
            doc["home_property"] = "SHA" if i % share == 0 else ELSEWHERE[i % len(ELSEWHERE)]
            if i % share and len(elsewhere) < 5000:
                elsewhere.append(doc["number"])
        ledger.import_members(docs)
    return time.perf_counter() - started, elsewhere


def raw_insert(path: Path, rows: list[tuple[Any, ...]]) -> float:
    """Bare inserts of the node's member rows (same columns, same durability), rows/s."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        f"CREATE TABLE m ({', '.join(f'c{i}' for i in range(len(rows[0])))}, PRIMARY KEY (c0)) WITHOUT ROWID"
    )
    marks = ",".join("?" * len(rows[0]))
    started = time.perf_counter()
    for lo in range(0, len(rows), 5000):  # the agent's part size, roughly: one commit per part
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO m VALUES ({marks})", rows[lo : lo + 5000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=10_000_000)
    ap.add_argument(
        "--held-share", type=int, default=10, help="one member in this many is the node's region's"
    )
    ap.add_argument("--store", help="'pg': a private PostgreSQL with production durability (default SQLite)")
    ap.add_argument("--fetches", type=int, default=300)
    args = ap.parse_args()
    out: dict[str, Any] = {"members": args.members, "held_share": args.held_share}
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        pki = _make_pki(tmp / "pki")
        broker = MosquittoBroker(pki, tmp / "broker")
        broker.start()
        server = None
        office: OfficeProcess | None = None
        try:
            argv = office_command(broker, tmp / "ledger.db")
            store: LedgerStore
            if args.store == "pg":
                from staypoint.central import pg as pgmod
                from staypoint.central.store_pg import PgLedgerStore

                server = pgmod.PgServer(tmp / "pg", fsync=True).start()
                store = PgLedgerStore(server.url())
                at = argv.index("--db")
                argv[at : at + 2] = ["--store", server.url()]
                out["store"] = "private PostgreSQL (fsync, synchronous_commit on)"
            else:
                store = SqliteLedgerStore(tmp / "ledger.db")
                out["store"] = "SQLite (synchronous=FULL)"
            ledger = Ledger(store)
            ledger.publish_program(PARTIAL, now())
            seconds, elsewhere = load(ledger, args.members, args.held_share)
            out["ho_import_s"] = round(seconds, 1)
            started = time.perf_counter()
            holds, _ = ledger.assign_replicas()
            out["ho_assign_s"] = round(time.perf_counter() - started, 1)
            out["home_holds"] = holds

            node = NodeService.init_node(tmp / "node.db", "sha-lobby-01", "SHA", PARTIAL, now())
            ledger.register_node("sha-lobby-01", node.keys.public_hex(), "SHA")
            latest = ledger.store.latest_version()
            ledger.store.close()
            office = OfficeProcess(broker, tmp / "ledger.db", tmp / "office.log", argv)
            tls = pki.tls("sha-lobby-01")
            config = SyncConfig(
                "sha-lobby-01", broker.host, broker.port, tls.ca, tls.cert, tls.key, echo_interval=0.2
            )
            agent = SyncAgent(node, config)
            started = time.perf_counter()
            agent.start()
            deadline = time.monotonic() + 3600
            while agent.applied_version() < latest and time.monotonic() < deadline:
                time.sleep(0.1)
            out["bootstrap_s"] = round(time.perf_counter() - started, 1)
            held = node.replica.member_count()
            out["bootstrap_members"] = held
            out["bootstrap_members_per_s"] = round(held / out["bootstrap_s"])
            rows = node.replica.conn.execute("SELECT * FROM members").fetchall()
            out["raw_node_insert_rows_per_s"] = round(raw_insert(tmp / "raw.db", rows))
            out["bootstrap_vs_raw_insert"] = round(
                out["bootstrap_members_per_s"] / out["raw_node_insert_rows_per_s"], 3
            )
            del rows

            # A member of another region at the kiosk: one round trip through the agent.
            agent.echo_rtts.clear()
            times = []
            for number in elsewhere[: args.fetches]:
                t0 = time.perf_counter()
                found = agent.request_member(None, number, 5.0)
                times.append(1000 * (time.perf_counter() - t0))
                assert found is True, (number, found)
            echo = [1000 * x for x in agent.echo_rtts]
            out["fetches"] = len(times)
            out["fetch_ms"] = {"p50": round(pct(times, 0.5), 2), "p99": round(pct(times, 0.99), 2)}
            out["echo_rtt_ms"] = {
                "p50": round(statistics.median(echo), 2) if echo else None,
                "samples": len(echo),
            }
            if echo:
                out["fetch_vs_echo_p50"] = round(out["fetch_ms"]["p50"] / statistics.median(echo), 2)
            out["node_members_after_fetches"] = node.replica.member_count()
            out["agent_stats"] = {
                k: v for k, v in agent.stats.items() if k in ("members_fetched", "snapshots")
            }
            agent.stop()
            node.close()
        finally:
            if office is not None:
                office.stop()
            if server is not None:
                server.stop()
            broker.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
