"""API benchmark: dashboard read and stay post on a big ledger, SQLite and PostgreSQL; one JSON object.

    .venv/bin/python bench/api.py [--members 1000000] [--reads 3000] [--posts 1000] [--stores sqlite,pg]

For each store:
- members are loaded straight into the members table (as a migration would: SQLite
  executemany in one transaction, PostgreSQL COPY), the change log left out (it is not
  read by either request);
- ``dashboard``: GET /v1/me through the whole FastAPI stack in-process (ASGI test client:
  API key check, token check, member record, held points, recent events, vouchers);
- ``stay_post``: POST /v1/properties/SHA/stays of new folios (side-table transaction, one
  ``stay.posted`` event through ``Ledger.ingest``, folio row), one request at a time;
- ``raw``: the store's own single-row read (``member``) and single-row insert
  (``insert_event`` in its own transaction) rates, and each request's ratio to them.
Durability: SQLite synchronous=FULL (the ledger's default); PostgreSQL as started here,
fsync=off and synchronous_commit=off (a throw-away cluster) unless ``--pg-fsync``.
Goals: dashboard p99 < 20 ms, stay post p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from staypoint.central import pg
from staypoint.central.api.app import make_api
from staypoint.central.api.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.seed import SEED_PIN, seed_docs
from staypoint.central.store import StoredEvent
from staypoint.loyalty.events import iso, uuid7
from staypoint.loyalty.program import default_program, default_program_text

NOW = datetime.now(UTC).replace(microsecond=0)


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))]


def timed(n: int, fn: Callable[[int], Any]) -> dict[str, float]:
    lat: list[float] = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    return {
        "requests": n,
        "per_s": round(n / total, 1),
        "p50_ms": round(pct(lat, 0.50) * 1000, 2),
        "p99_ms": round(pct(lat, 0.99) * 1000, 2),
    }


def load_members(store: Any, count: int) -> float:
    program = default_program()
    t = time.perf_counter()
    for start in range(0, count, 50_000):
        docs = seed_docs(program, min(50_000, count - start), NOW, start=start)
        for d in docs:
            d["overdrawn"] = False
        if hasattr(store, "pool"):  # PostgreSQL: COPY
            buf = io.StringIO()
            for d in docs:
                buf.write(f"{d['number']}\t{json.dumps(d)}\t{d['points']}\tf\n".replace("\\", "\\\\"))
            with (
                store.pool.connection() as conn,
                conn.cursor() as cur,
                cur.copy("COPY members (number, doc, points, blocked) FROM STDIN") as copy,
            ):
                copy.write(buf.getvalue())
        else:
            with store.transaction():
                store.put_members(docs)
    return time.perf_counter() - t


def bench_store(
    kind: str, url: str, side_url: str, workdir: Path, members: int, reads: int, posts: int
) -> dict[str, Any]:
    store = pg.open_ledger_store(url)
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW - timedelta(days=1))
    load_s = load_members(store, members)
    side = SideStore(side_url)
    profiles = ProfileStore(workdir / f"{kind}-profiles.db")
    clock = {"now": NOW}
    app = make_api(ledger, profiles, side, token_key=b"b" * 32, clock=lambda: clock["now"])
    services = app.state.services
    client = TestClient(app)
    key = services.create_key("bench", ["member", "stays"], ["*"], NOW)
    numbers = [d["number"] for d in seed_docs(default_program(), 1, NOW, start=members // 2)]
    member = numbers[0]
    token = client.post(
        "/v1/members/login", json={"login": member, "pin": SEED_PIN}, headers={"X-API-Key": key}
    )
    headers = {"X-API-Key": key, "Authorization": f"Bearer {token.json()['token']}"}
    # Some history for the dashboard to read.
    day = NOW.date().isoformat()
    for i in range(5):
        client.post(
            "/v1/properties/SHA/stays",
            headers=headers,
            json={
                "folio": f"W-{i}",
                "member": member,
                "arrival": day,
                "departure": day,
                "revenue": {"fnb": "40"},
            },
        )

    def read(i: int) -> None:
        r = client.get("/v1/me", headers=headers)
        assert r.status_code == 200, r.text

    others = [d["number"] for d in seed_docs(default_program(), 200, NOW, start=1000)]

    def post(i: int) -> None:
        body = {
            "folio": f"B-{i}",
            "member": others[i % len(others)],
            "arrival": day,
            "departure": day,
            "revenue": {"fnb": "120.50"},
        }
        r = client.post("/v1/properties/SHA/stays", json=body, headers=headers)
        assert r.status_code == 200 and r.json()["result"] == "posted", r.text

    dash = timed(reads, read)
    stay = timed(posts, post)
    import random

    sample = [d["number"] for d in seed_docs(default_program(), 1, NOW, start=random.randrange(members))]
    raw_read = timed(reads, lambda i: store.member(sample[0]))

    def insert(i: int) -> None:
        with store.transaction():
            store.insert_event(StoredEvent(uuid7(NOW), "bench", 1, i + 1, "{}"), "bench", None, iso(NOW))

    raw_insert = timed(posts, insert)
    client.close()
    side.close()
    profiles.close()
    store.close()
    return {
        "members": members,
        "load_s": round(load_s, 1),
        "dashboard": dash,
        "stay_post": stay,
        "raw_member_read": raw_read,
        "raw_event_insert": raw_insert,
        "dashboard_vs_raw_read": round(dash["per_s"] / raw_read["per_s"], 4),
        "stay_post_vs_raw_insert": round(stay["per_s"] / raw_insert["per_s"], 4),
        "goals_met": {
            "dashboard_p99_under_20ms": dash["p99_ms"] < 20,
            "stay_post_p99_under_50ms": stay["p99_ms"] < 50,
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--reads", type=int, default=3000)
    ap.add_argument("--posts", type=int, default=1000)
    ap.add_argument("--stores", default="sqlite,pg")
    ap.add_argument("--pg-fsync", action="store_true", help="run PostgreSQL with fsync on")
    args = ap.parse_args()
    out: dict[str, Any] = {
        "bench": "api",
        "members": args.members,
        "durability": {
            "sqlite": "synchronous=FULL",
            "pg": "fsync=on" if args.pg_fsync else "fsync=off, synchronous_commit=off",
        },
    }
    with tempfile.TemporaryDirectory(prefix="sp-bench-") as tmp:
        work = Path(tmp)
        for kind in args.stores.split(","):
            if kind == "sqlite":
                out["sqlite"] = bench_store(
                    kind,
                    f"sqlite://{work / 'ledger.db'}",
                    f"sqlite://{work / 'side.db'}",
                    work,
                    args.members,
                    args.reads,
                    args.posts,
                )
            elif kind == "pg":
                server = pg.PgServer(work / "pg", fsync=args.pg_fsync).start()
                try:
                    url = server.create_database("bench")
                    out["pg"] = bench_store(kind, url, url, work, args.members, args.reads, args.posts)
                finally:
                    server.stop()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
