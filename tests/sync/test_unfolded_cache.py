"""The node's cached overlay (prefix sums of its unfolded events) equals the row-by-row replay."""

from __future__ import annotations

import json
import random
import sqlite3
from typing import Any

from staypoint.edge import sync_store

RANKS = {"MEMBER": 0, "SILVER": 1, "GOLD": 2}


def _outbox() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE outbox (epoch INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, "
        "member TEXT, body TEXT NOT NULL, acked_at TEXT, PRIMARY KEY (epoch, seq))"
    )
    conn.execute("CREATE INDEX outbox_member ON outbox (member, epoch, seq)")
    return conn


def _event(rng: random.Random, voids: bool) -> tuple[str, dict[str, Any]]:
    kinds = ["stay.posted", "points.redeemed", "value.topped_up", "value.spent", "card.bound"]
    kind = rng.choice(kinds + (["stay.voided"] if voids else []))
    if kind == "stay.posted":
        pts = rng.randint(0, 900)
        tier = rng.choice(["MEMBER", "SILVER", "GOLD", "UNKNOWN"])
        data = {"points": pts, "nights": rng.randint(0, 3), "qualifying_points": pts, "tier_after": tier}
        return kind, data
    if kind == "stay.voided":
        return kind, {"points": rng.randint(0, 900), "nights": rng.randint(0, 3)}
    if kind == "points.redeemed":
        return kind, {"points": rng.randint(100, 2000)}
    if kind.startswith("value."):
        return kind, {"amount": f"{rng.randint(1, 9999) / 100:.2f}"}
    return kind, {"card_hash": "x"}


def _doc(member: str, rng: random.Random) -> dict[str, Any]:
    return {
        "number": member,
        "points": rng.randint(0, 5000),
        "stored_value": "12.34",
        "qual_nights": rng.randint(0, 3),
        "qual_points": rng.randint(0, 500),
        "tier": rng.choice(["MEMBER", "SILVER"]),
    }


def test_cached_overlay_matches_replay_across_epochs_new_rows_and_voids() -> None:
    for round_ in range(40):
        rng = random.Random(round_)
        conn = _outbox()
        cache = sync_store.UnfoldedCache()
        members = ["7000000001", "7000000002", "7000000003"]
        epoch, seq = 1, 0
        written: dict[int, int] = {}
        folded = {m: {} for m in members}  # type: dict[str, dict[int, int]]
        voids = round_ % 3 == 0
        for _step in range(60):
            # The kiosk writes a few events (sometimes after a restore: a new epoch).
            if rng.random() < 0.05:
                epoch, seq = epoch + 1, 0
            for _ in range(rng.randint(0, 4)):
                seq += 1
                kind, data = _event(rng, voids)
                conn.execute(
                    "INSERT INTO outbox (epoch, seq, type, member, body) VALUES (?, ?, ?, ?, ?)",
                    (epoch, seq, kind, rng.choice(members), json.dumps({"data": data})),
                )
                written[epoch] = seq
            # Head office folds some more of the stream, in epoch order.
            member = rng.choice(members)
            marks = folded[member]
            for e in sorted(written):
                if marks.get(e, 0) < written[e]:
                    marks[e] = rng.randint(marks.get(e, 0), written[e])
                    if marks[e] < written[e]:
                        break
            doc = _doc(member, rng)
            expected, got = dict(doc), dict(doc)
            sync_store._overlay(conn, expected, dict(marks), RANKS)
            cache.refresh(conn)  # as apply_members does, once per set of records
            cache.overlay(conn, got, dict(marks), RANKS)
            assert got == expected, (round_, _step, member, marks)
        assert len(cache) <= len(members)
