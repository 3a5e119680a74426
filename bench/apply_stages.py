"""Where head office's apply spends its time per event, against a bare insert of the same row.

    .venv/bin/python bench/apply_stages.py [--events 20000] [--runs 3]

In one process and one run, over ``bench/sync.py``'s synthetic stays (1,000 members, batches of
a real batch's size, ``server.GROUP_BATCHES`` batches per transaction, ``central serve``'s
collector settings):

- ``apply_us``: one event through ``Ledger.ingest_many`` on SQLite ``synchronous=FULL``;
- ``bare_insert_us``: one row of the same events into the ledger's own ``events`` table, same
  group size and durability, nothing else (``bench/sync.py``'s ``raw_sqlite_insert``, the
  baseline ``bench/sync.py`` reports);
- ``bare_same_rows_us``: every row the apply wrote, per event: the event, its stay, the
  group's member records and their change-log entries, the stream's high-water, written by the
  store's own bulk methods into a fresh ledger holding the same members, group by group, one
  commit each (what the apply writes, with none of its reads or Python);
- ``stages_us``: the contract's Python per event, each stage alone over the same events:
  ``parse`` (``event_from_dict``), ``bounds`` (``bounds.check_event``), ``fold`` (``fold.apply``,
  the re-pricing included), ``body`` (the canonical body that is stored and compared);
- ``rest_us``: ``apply_us`` less the stages (the group's reads and writes, the member records,
  the change log, the loop);
- ``ratio``: bare / apply (issue 15 asked for 0.5); ``ratio_same_rows``: bare_same_rows / apply;
  ``ratio_without_stages``: bare / apply if the four stages cost nothing, the most any cut of
  them could give.

Each figure is the median of ``--runs``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sync import EVENTS_PER_BATCH, grouped_setup, ingest_groups, now, raw_sqlite_insert
from staypoint.central.server import GROUP_BATCHES
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.gc_tuning import tuned_for_throughput
from staypoint.loyalty import bounds, fold
from staypoint.loyalty.events import Event, event_from_dict


class _NoRefs:
    """A stay's fold looks nothing up; the bench's events are stays only."""

    def stay(self, event_id: str) -> fold.StayRef | None:
        return None

    def voucher(self, code: str) -> Mapping[str, Any] | None:
        return None

    def node_property(self, node: str) -> str | None:
        return None

    def office(self, node: str) -> bool:
        return False

    def member_record(self, number: str) -> Mapping[str, Any] | None:
        return None


def _per_event(fn: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) / count * 1e6


def bare_same_rows(ledger: SqliteLedgerStore, path: Path, members: list[dict[str, Any]], group: int) -> float:
    """Seconds to write every row ``ledger`` holds from the apply into a fresh store (see the
    module): group by group in applied order, one commit each."""
    conn = ledger.conn
    events = [
        (str(i), str(n), int(e), int(q), str(t), m, str(b), str(a))
        for i, n, e, q, t, m, b, a in conn.execute(
            "SELECT id, node, epoch, seq, type, member, body, applied_at FROM events ORDER BY rowid"
        )
    ]
    stays = {str(e): (str(e), str(m), int(p), int(n)) for e, m, p, n in conn.execute("SELECT * FROM stays")}
    docs = {str(n): json.loads(d) for n, d in conn.execute("SELECT number, doc FROM members")}
    store = SqliteLedgerStore(path)
    with store.transaction():
        store.put_members(members)
    started = time.perf_counter()
    for i in range(0, len(events), group):
        rows = events[i : i + group]
        touched = sorted({str(r[5]) for r in rows})
        with store.transaction():
            store.insert_events(rows)
            store.put_stays([stays[r[0]] for r in rows])
            store.set_high_water(rows[-1][1], rows[-1][2], rows[-1][3])
            store.put_members_logged([docs[m] for m in touched])
    took = time.perf_counter() - started
    store.close()
    return took


def one_run(tmp: Path, count: int) -> dict[str, float]:
    """Every figure of one run, in µs per event (or per row)."""
    ledger, node, spread, batches = grouped_setup(tmp, count)
    program = ledger.program()
    assert program is not None
    bodies = [body for _, batch in batches for body in batch]
    at = now()
    with tuned_for_throughput():
        events: list[Event] = []
        parse = _per_event(lambda: events.extend(event_from_dict(b) for b in bodies), count)
        check = _per_event(lambda: [bounds.check_event(ev, program.bounds, at) for ev in events], count)
        docs = {d["number"]: copy.deepcopy(d) for d in spread}
        refs = _NoRefs()
        folded = _per_event(
            lambda: [fold.apply(docs[str(ev.member)], ev, program, refs) for ev in events], count
        )
        body = _per_event(lambda: [ev.to_json() for ev in events], count)
        apply = ingest_groups(ledger, batches) / count * 1e6
    bare = 1e6 / raw_sqlite_insert(tmp / "bare.db", node)
    assert isinstance(ledger.store, SqliteLedgerStore)
    same_rows = bare_same_rows(ledger.store, tmp / "same.db", spread, GROUP_BATCHES * EVENTS_PER_BATCH)
    same_rows_us = same_rows / count * 1e6
    ledger.store.close()
    node.close()
    stages = parse + check + folded + body
    return {
        "apply_us": apply,
        "bare_insert_us": bare,
        "bare_same_rows_us": same_rows_us,
        "parse": parse,
        "bounds": check,
        "fold": folded,
        "body": body,
        "rest_us": apply - stages,
        "ratio": bare / apply,
        "ratio_same_rows": same_rows_us / apply,
        "ratio_without_stages": bare / max(apply - stages, bare),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(Path(tmp), args.events))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    r2 = {k: round(v, 3 if k.startswith("ratio") else 2) for k, v in med.items()}
    out = {
        "events": args.events,
        "runs": args.runs,
        "apply_us": r2["apply_us"],
        "bare_insert_us": r2["bare_insert_us"],
        "bare_same_rows_us": r2["bare_same_rows_us"],
        "stages_us": {k: r2[k] for k in ("parse", "bounds", "fold", "body")},
        "rest_us": r2["rest_us"],
        "ratio": r2["ratio"],
        "ratio_same_rows": r2["ratio_same_rows"],
        "ratio_without_stages": r2["ratio_without_stages"],
        "goal_ratio_at_least_0.5": med["ratio"] >= 0.5,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
