"""API benchmark: the API as a user runs it, against a trivial endpoint of the same app; one JSON object.

    .venv/bin/python bench/api.py [--members 1000000] [--stores sqlite,pg] [--seconds 5]
                                  [--connections 8] [--core 0]

For each store (SQLite with ``synchronous=FULL``, the ledger's default; PostgreSQL 15 with
production durability: ``fsync=on, synchronous_commit=on, full_page_writes=on``):

- members are loaded straight into the members table (as a migration would: SQLite
  executemany in one transaction, PostgreSQL COPY), the change log left out (it is not
  read by either request), and an API key is created;
- the API is started as its unit starts it (``staypoint central api --store ... --side ...
  --profiles ... --secrets ... --host 127.0.0.1 --port P``: uvicorn, one worker process),
  pinned to one core with ``taskset -c CORE``; the load generator is ``wrk`` (Debian's, in
  ``scripts/bootstrap``) in its own process, pinned to another core;
- measured in the same run, each for ``--seconds`` after a 1 s warm-up:
  ``ping``: ``GET /v1/ping``, the trivial endpoint of the same app (the same middleware, API
  key check and thread hop as every route, no data); ``dashboard``: ``GET /v1/me`` with the
  key and a member token (member record, held points, recent events, vouchers);
  ``stay_post``: ``POST /v1/properties/SHA/stays`` of new folios with an ``Idempotency-Key``
  each, as a booking engine or property system sends them (idempotency claim, the folio's
  side-table lock and old row, ``stay.posted`` through ``Ledger.ingest`` with the folio row in
  the same commit, posts at the same moment grouped on PostgreSQL, answer kept);
- each at ``--connections`` concurrent connections (``throughput``: req/s, p50, p99) and
  at one connection (``latency``: p50, p99 of one request at a time), each with the API
  process's own CPU per request (``api_cpu_ms_per_request``, from ``/proc``) and the share of
  its core that kept busy (``api_core_busy``: req/s x CPU per request); the ratios of the
  dashboard's and the stay post's req/s to ping's (goal ≥ 0.3), and the one-minute load
  average when each was taken (two shared cores: compare ratios within one run);
- ``raw``: the store's own single-row read (``member``) and single-row insert
  (``insert_event`` in its own transaction) in-process, for scale.
Goals: dashboard p99 < 20 ms, stay post p99 < 50 ms (one connection).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from staypoint.central import pg
from staypoint.central.application import keys
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.seed import SEED_PIN, seed_docs
from staypoint.central.store import StoredEvent
from staypoint.loyalty.events import iso, uuid7
from staypoint.loyalty.program import default_program, default_program_text

NOW = datetime.now(UTC).replace(microsecond=0)

DONE_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"errors": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


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
        "p50_ms": round(pct(lat, 0.50) * 1000, 3),
        "p99_ms": round(pct(lat, 0.99) * 1000, 3),
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


def prepare(url: str, side_url: str, members: int, samples: int) -> dict[str, Any]:
    """Load the ledger, publish the programme, make the key; the raw single-row figures."""
    store = pg.open_ledger_store(url)
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW - timedelta(days=1))
    load_s = load_members(store, members)
    side = SideStore(side_url)
    key = keys.create_key(side, "bench", ["member", "stays"], ["*"], NOW)
    side.close()
    sample = [d["number"] for d in seed_docs(default_program(), 1, NOW, start=random.randrange(members))]
    raw_read = timed(samples, lambda i: store.member(sample[0]))

    def insert(i: int) -> None:
        with store.transaction():
            store.insert_event(StoredEvent(uuid7(NOW), "bench", 1, i + 1, "{}"), "bench", None, iso(NOW))

    raw_insert = timed(max(200, samples // 5), insert)
    store.close()
    return {
        "load_s": round(load_s, 1),
        "key": key,
        "raw_member_read": raw_read,
        "raw_event_insert": raw_insert,
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, headers: dict[str, str], body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={**headers, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def pinned(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []


def start_api(
    store_url: str, side_url: str, work: Path, kind: str, core: int | None
) -> tuple[subprocess.Popen[bytes], str, Any]:
    port = free_port()
    exe = Path(sys.executable).with_name("staypoint")
    cmd = [
        *pinned(core),
        str(exe) if exe.exists() else "staypoint",
        "central",
        "api",
        "--store",
        store_url,
        "--side",
        side_url,
        "--profiles",
        str(work / f"{kind}-profiles.db"),
        "--secrets",
        str(work / f"{kind}-secrets"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = (work / f"{kind}-api.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            http("GET", base + "/health", {})
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = (work / f"{kind}-api.log").read_text()[-2000:]
                raise SystemExit(f"the API did not start: {log_text}") from None
            time.sleep(0.1)
    return proc, base, log


def wrk(
    base: str, path: str, script: str, seconds: float, connections: int, core: int | None, work: Path
) -> dict[str, Any]:
    lua = work / "wrk.lua"
    lua.write_text(script + DONE_LUA)
    load = os.getloadavg()[0]
    cmd = [
        *pinned(core),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        base + path,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    r = json.loads(line.removeprefix("WRKJSON "))
    return {
        "requests": r["requests"],
        "per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": round(r["p50_us"] / 1000, 2),
        "p99_ms": round(r["p99_us"] / 1000, 2),
        "errors": r["errors"] + r["non_2xx"],
        "load_avg_1m": round(load, 2),
    }


def lua_get(headers: dict[str, str]) -> str:
    h = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
    return f'request = function() return wrk.format("GET", nil, {{{h}}}) end\n'


def lua_stays(key: str, members: list[str], prefix: str, day: str) -> str:
    listed = ", ".join(f'"{m}"' for m in members)
    return f"""
local n = 0
local members = {{{listed}}}
request = function()
  n = n + 1
  local body = string.format(
    '{{"folio": "{prefix}-%d", "member": "%s", "arrival": "{day}", "departure": "{day}", '
    .. '"revenue": {{"fnb": "120.50"}}}}', n, members[(n % #members) + 1])
  return wrk.format("POST", nil, {{["X-API-Key"] = "{key}", ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "{prefix}-" .. n}}, body)
end
"""


def bench_store(
    kind: str,
    url: str,
    side_url: str,
    work: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    prep = prepare(url, side_url, args.members, args.raw_samples)
    key = prep.pop("key")
    server_core = args.core
    client_core = None if args.core is None else (args.core + 1) % (os.cpu_count() or 1)
    proc, base, log = start_api(url, side_url, work, kind, server_core)
    try:
        member = seed_docs(default_program(), 1, NOW, start=args.members // 2)[0]["number"]
        token = http(
            "POST", base + "/v1/members/login", {"X-API-Key": key}, {"login": member, "pin": SEED_PIN}
        )
        member_headers = {"X-API-Key": key, "Authorization": f"Bearer {token['token']}"}
        day = NOW.date().isoformat()
        for i in range(5):  # some history for the dashboard to read
            body = {
                "folio": f"W-{i}",
                "member": member,
                "arrival": day,
                "departure": day,
                "revenue": {"fnb": "40"},
            }
            http("POST", base + "/v1/properties/SHA/stays", {"X-API-Key": key}, body)
        others = [
            d["number"] for d in seed_docs(default_program(), 200, NOW, start=min(1000, args.members // 4))
        ]
        probe = http(
            "POST",
            base + "/v1/properties/SHA/stays",
            {"X-API-Key": key, "Idempotency-Key": "probe"},
            {"folio": "P-1", "member": others[0], "arrival": day, "departure": day, "revenue": {"fnb": "1"}},
        )
        assert probe["result"] == "posted", probe
        targets = {
            "ping": ("/v1/ping", lambda run: lua_get({"X-API-Key": key})),
            "dashboard": ("/v1/me", lambda run: lua_get(member_headers)),
            "stay_post": ("/v1/properties/SHA/stays", lambda run: lua_stays(key, others, f"B{run}", day)),
        }
        result: dict[str, Any] = {"members": args.members, "load_s": prep["load_s"]}
        run = 0
        for mode, conns, seconds in (
            ("throughput", args.connections, args.seconds),
            ("latency", 1, args.seconds),
        ):
            block: dict[str, Any] = {"connections": conns}
            for name, (path, script) in targets.items():
                run += 1
                wrk(base, path, script(f"w{run}"), 1, conns, client_core, work)  # warm-up
                run += 1
                cpu_before = process_cpu_s(proc.pid)
                block[name] = wrk(base, path, script(run), seconds, conns, client_core, work)
                # The API's own CPU per request (its /proc counters): steadier than req/s on a
                # shared machine, and what says whether a route is bound by its core.
                block[name]["api_cpu_ms_per_request"] = round(
                    (process_cpu_s(proc.pid) - cpu_before) / max(1, block[name]["requests"]) * 1000, 3
                )
                # The share of its one core the API kept busy: near 1, the figure is the core's
                # throughput; well under, the requests were waiting (on a commit) and it is not.
                block[name]["api_core_busy"] = round(
                    block[name]["per_s"] * block[name]["api_cpu_ms_per_request"] / 1000, 2
                )
                assert block[name]["errors"] == 0, (
                    name,
                    block[name],
                    (work / f"{kind}-api.log").read_text()[-3000:],
                )
            block["dashboard_vs_ping"] = round(block["dashboard"]["per_s"] / block["ping"]["per_s"], 3)
            block["stay_post_vs_ping"] = round(block["stay_post"]["per_s"] / block["ping"]["per_s"], 3)
            result[mode] = block
        lat = result["latency"]
        thr = result["throughput"]
        result["raw_member_read"] = prep["raw_member_read"]
        result["raw_event_insert"] = prep["raw_event_insert"]
        result["goals_met"] = {
            "dashboard_vs_ping_at_least_0.3": thr["dashboard_vs_ping"] >= 0.3,
            "stay_post_vs_ping_at_least_0.3": thr["stay_post_vs_ping"] >= 0.3,
            "dashboard_p99_under_20ms": lat["dashboard"]["p99_ms"] < 20,
            "stay_post_p99_under_50ms": lat["stay_post"]["p99_ms"] < 50,
        }
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--stores", default="sqlite,pg")
    ap.add_argument("--seconds", type=float, default=5.0, help="per endpoint and mode, after a 1 s warm-up")
    # Throughput is the rate of a saturated core. A stay post waits for its durable commit (one
    # fsync per group of posts), so at 4 connections the API's core idled 6-12 % of the time on
    # PostgreSQL while ping's did not: the figure was latency-bound. At 8 all three keep the core
    # busy (api_core_busy, printed with each figure, says so or not).
    ap.add_argument("--connections", type=int, default=8, help="concurrent connections (throughput mode)")
    ap.add_argument(
        "--core", type=int, default=0, help="the API's core (taskset); the load generator's is the next"
    )
    ap.add_argument("--no-pin", action="store_true", help="do not pin the API or wrk to cores")
    ap.add_argument("--raw-samples", type=int, default=3000)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, databases)")
    args = ap.parse_args()
    if args.no_pin:
        args.core = None
    if not shutil.which("wrk"):
        raise SystemExit("bench/api.py needs wrk (Debian package wrk; scripts/bootstrap installs it)")
    out: dict[str, Any] = {
        "bench": "api",
        "members": args.members,
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "durability": {
            "sqlite": "synchronous=FULL (WAL)",
            "pg": "fsync=on, synchronous_commit=on, full_page_writes=on",
        },
        "server": "staypoint central api (uvicorn, 1 worker)"
        + (f", taskset -c {args.core}" if args.core is not None else ""),
        "load_generator": "wrk -t1"
        + (f", taskset -c {(args.core + 1) % (os.cpu_count() or 1)}" if args.core is not None else ""),
    }
    with tempfile.TemporaryDirectory(prefix="sp-bench-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for kind in args.stores.split(","):
            if kind == "sqlite":
                out["sqlite"] = bench_store(
                    kind, f"sqlite://{work / 'ledger.db'}", f"sqlite://{work / 'side.db'}", work, args
                )
            elif kind == "pg":
                server = pg.PgServer(work / "pg", fsync=True).start()
                try:
                    url = server.create_database("bench")
                    out["pg"] = bench_store(kind, url, url, work, args)
                finally:
                    server.stop()
            print(json.dumps({kind: out.get(kind)}), file=sys.stderr)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
