"""The ledger without a broker: idempotence, gaps, conflicting bodies, jobs; the node's overlay rule.

Every test takes ``store`` or ``store_factory`` (tests/sync/conftest.py), so each runs on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import IngestResult, Ledger
from staypoint.central.store import LedgerStore
from staypoint.edge import sync_store
from staypoint.edge.service import NodeService
from staypoint.loyalty.program import Outlet, default_program_text

pytest_plugins = ["tests.pg_fixtures"]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _setup(tmp_path: Path, store: LedgerStore) -> tuple[Ledger, NodeService, list[dict[str, object]]]:
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW)
    node = NodeService.init_node(tmp_path / "n.db", "sha-lobby-01", "H1", default_program_text(), NOW)
    m = node.enrol("Ada L", "2580", NOW).number
    for i in range(3):
        node.post_stay(m, f"F{i}", NOW, nights=1, revenue={Outlet.ROOM: Decimal("100")})
    return ledger, node, [json.loads(e["body"]) for e in _bodies(node)]


def _bodies(node: NodeService) -> list[dict[str, str]]:
    return [{"body": b} for (b,) in node.replica.conn.execute("SELECT body FROM outbox ORDER BY seq")]


def test_ingest_is_idempotent_stops_at_gaps_and_rejects_conflicts(tmp_path: Path, store: LedgerStore) -> None:
    ledger, _, events = _setup(tmp_path, store)
    r = ledger.ingest("sha-lobby-01", [events[0], events[2]], NOW)  # seq 3 arrives before 2
    assert (r.applied, r.ack, r.resend_from) == (1, (1, 1), (1, 2))
    r = ledger.ingest("sha-lobby-01", events, NOW)  # the resend: 1 skipped, 2..4 applied
    assert (r.applied, r.skipped, r.ack) == (3, 1, (1, 4))
    r = ledger.ingest("sha-lobby-01", events, NOW)  # a duplicate batch changes nothing
    assert (r.applied, r.skipped, r.changes) == (0, 4, [])
    forged = dict(events[1], data=dict(events[1]["data"], points=99_999))  # type: ignore[arg-type]
    r = ledger.ingest("sha-lobby-01", [forged], NOW)
    assert r.rejected == 1 and ledger.store.alarms()[-1]["kind"] == "conflicting_body"
    member = ledger.member(str(events[0]["member"]))
    assert member is not None and member["points"] == 3000 and member["folded"] == {"sha-lobby-01:1": 4}
    # Garbage inside a valid batch is counted, never raised.
    r = ledger.ingest("sha-lobby-01", ["x", {"v": 1}], NOW)
    assert r.rejected == 2 and ledger.store.counters()["events_malformed"] == 2


def test_a_hold_sets_points_aside_until_it_expires(tmp_path: Path, store: LedgerStore) -> None:
    ledger, _, events = _setup(tmp_path, store)
    ledger.ingest("sha-lobby-01", events, NOW)
    member = str(events[0]["member"])
    program = ledger.program()
    reward = program.reward("LATE-CO") if program else None
    assert reward is not None and 3000 - reward.points < reward.points  # one fits, two do not
    first = ledger.authorise("sha-lobby-01", member, reward.points, reward.code, NOW)
    assert first.ok and first.hold is not None
    held = ledger.store.hold(first.hold)
    assert held is not None and (held.member, held.points, held.status) == (member, reward.points, "held")
    second = ledger.authorise("sha-lobby-02", member, reward.points, reward.code, NOW)
    assert not second.ok and second.reason == "not enough points"
    assert ledger.expire_holds(NOW + ledger.hold_ttl - timedelta(seconds=1)) == 0
    assert ledger.expire_holds(NOW + ledger.hold_ttl) == 1
    assert ledger.store.hold(first.hold).status == "expired"  # type: ignore[union-attr]
    assert ledger.authorise("sha-lobby-02", member, reward.points, reward.code, NOW + ledger.hold_ttl).ok


def test_stay_points_are_rechecked_with_the_loyalty_code(tmp_path: Path, store: LedgerStore) -> None:
    ledger, _, events = _setup(tmp_path, store)
    inflated = dict(events[1], data=dict(events[1]["data"], points=5000))  # type: ignore[arg-type]
    ledger.ingest("sha-lobby-01", [events[0], inflated], NOW)
    member = ledger.member(str(events[0]["member"]))
    assert member is not None and member["points"] == 1000  # head office's figure is booked
    assert any(a["kind"] == "points_mismatch" for a in ledger.store.alarms())


def test_shown_balance_never_double_counts_whatever_the_order(tmp_path: Path, store: LedgerStore) -> None:
    ledger, node, events = _setup(tmp_path, store)
    number = str(events[0]["member"])
    conn = node.replica.conn
    ranks = {t.code: t.rank for t in node.program.tiers}
    # Head office folded in only the first two events; the node has four.
    r = ledger.ingest("sha-lobby-01", events[:2], NOW)
    doc = next(c.body for c in r.changes if c.kind == "member")
    with node.replica.write():
        sync_store.apply_changes(conn, [{"kind": "member", "body": doc}], ranks)
    assert node.replica.member(number).points == 3000  # type: ignore[union-attr]
    # The ack arrives before the next record: still 3000, no double count.
    with node.replica.write():
        sync_store.mark_acked(conn, 1, 4, "now")
    r = ledger.ingest("sha-lobby-01", events, NOW)
    doc = next(c.body for c in r.changes if c.kind == "member")
    with node.replica.write():
        sync_store.apply_changes(conn, [{"kind": "member", "body": doc}], ranks)
    assert node.replica.member(number).points == 3000  # type: ignore[union-attr]
    assert sync_store.folded_marks(conn, number) == {1: 4}


def test_restore_starts_a_new_epoch_and_jobs_downgrade_one_tier(tmp_path: Path, store: LedgerStore) -> None:
    ledger, node, events = _setup(tmp_path, store)
    with node.replica.write():
        epoch = sync_store.start_new_epoch(node.replica.conn, NOW, rand=5)
    assert epoch == (int(NOW.timestamp() * 1000) << 10) | 5
    m = node.resolve_member(str(events[0]["member"])).number
    event = node.post_stay(m, "E2", NOW, nights=1, revenue={Outlet.ROOM: Decimal("10")}).event
    assert (event.epoch, event.seq) == (epoch, 1)
    ledger.ingest("sha-lobby-01", events, NOW)
    doc = ledger.member(m)
    assert doc is not None
    doc.update(tier="PLATINUM", qual_nights=3)
    with ledger.store.transaction():
        ledger.store.put_member(doc)
    counts = ledger.run_jobs(NOW + timedelta(days=60))  # a new calendar year
    assert counts["downgraded"] == 1 and ledger.member(m)["tier"] == "GOLD"  # type: ignore[index]
    counts = ledger.run_jobs(NOW + timedelta(days=365 * 3))
    assert counts["expired_points"] == 3000 and ledger.member(m)["points"] == 0  # type: ignore[index]


def test_one_group_decides_as_batch_by_batch_would(
    tmp_path: Path, store_factory: Callable[..., LedgerStore]
) -> None:
    """In ONE group: a repeated id from another node, a resend with another body, and a void of
    a stay applied earlier in the same group; the group decides as its batches one call each
    would (what the group reads in bulk at its start, it must see change as it goes)."""
    scratch = store_factory("scratch")
    _, _, events = _setup(tmp_path, scratch)
    stolen = dict(events[2], node="sha-lobby-02", seq=1)  # another node reusing an id
    forged = dict(events[1], data=dict(events[1]["data"], points=99_999))  # type: ignore[arg-type]
    void = dict(
        events[3],
        seq=5,
        id="0190f0a0-0000-7000-8000-000000000001",
        type="stay.voided",
        data={"stay": events[2]["id"], "points": 1000, "nights": 1},
    )
    group: list[tuple[str, list[object]]] = [
        ("sha-lobby-01", list(events)),
        ("sha-lobby-02", [stolen]),
        ("sha-lobby-01", [forged, void]),
    ]
    outcomes = []
    for name, one_call in (("grouped", True), ("batch_by_batch", False)):
        store = store_factory(name)
        ledger = Ledger(store)
        ledger.publish_program(default_program_text(), NOW)
        if one_call:
            results = ledger.ingest_many(group, NOW)  # type: ignore[arg-type]
        else:
            results = [ledger.ingest_many([batch], NOW)[0] for batch in group]  # type: ignore[list-item]
            results[-1].changes[:0] = [c for r in results[:-1] for c in r.changes]  # what was sent
        member = ledger.member(str(events[0]["member"]))
        assert member is not None
        outcomes.append(
            (
                [(r.applied, r.skipped, r.rejected, r.ack) for r in results],
                member["points"],
                member["folded"],
                sorted(a["kind"] for a in store.alarms()),
                store.event_count(),
                sorted({(c.kind, c.key) for c in results[-1].changes}),  # a group sends each key once
            )
        )
        # Nothing the group wrote is lost or doubled when the same group comes again.
        again = ledger.ingest_many(group, NOW)  # type: ignore[arg-type]
        assert sum(r.applied for r in again) == 0 and store.event_count() == outcomes[-1][4]
    assert outcomes[0] == outcomes[1]
    results, points, folded, alarms, count, _ = outcomes[0]
    assert results == [(4, 0, 0, (1, 4)), (0, 0, 1, (1, 1)), (1, 0, 1, (1, 5))]
    assert (points, folded, count) == (2000, {"sha-lobby-01:1": 5}, 5)
    assert alarms == ["conflicting_body", "duplicate_id"]


def test_a_revoked_nodes_batch_is_refused_and_alarmed(store: LedgerStore) -> None:
    from staypoint.loyalty.events import Event, iso, uuid7

    now = NOW
    ledger = Ledger(store, revoked={"sha-lobby-99"})
    ev = Event(
        "sha-lobby-99",
        1,
        1,
        uuid7(now),
        iso(now),
        "feedback.recorded",
        None,
        1,
        {"stars": 5, "tags": [], "context": "x"},
    )
    [result] = ledger.ingest_many([("sha-lobby-99", [ev.to_dict()])], now)
    assert result.rejected == 1 and result.applied == 0 and result.ack is None
    assert ledger.store.event_count() == 0
    assert ledger.store.counters()["events_from_revoked_nodes"] == 1
    assert [a["kind"] for a in ledger.store.alarms()] == ["revoked_node"]


def test_then_runs_in_the_batchs_transaction_and_commits_or_rolls_back_with_it(
    tmp_path: Path, store: LedgerStore
) -> None:
    ledger, _, events = _setup(tmp_path, store)
    seen: list[tuple[int, int]] = []

    def then(result: IngestResult) -> None:
        seen.append((result.applied, ledger.store.event_count()))
        ledger.store.bump_counter("then_ran")  # in the ledger's transaction

    def fails(result: IngestResult) -> None:
        ledger.store.bump_counter("then_ran")
        raise RuntimeError("the caller's own write failed")

    with pytest.raises(RuntimeError):
        ledger.ingest("sha-lobby-01", events[:2], NOW, then=fails)
    assert ledger.store.event_count() == 0 and ledger.store.counters().get("then_ran") is None
    assert ledger.store.streams() == []  # the batch went with it: nothing applied
    r = ledger.ingest("sha-lobby-01", events[:2], NOW, then=then)
    assert r.applied == 2 and seen == [(2, 2)]  # after the batch's writes, before the commit
    assert ledger.store.counters()["then_ran"] == 1 and ledger.store.event_count() == 2
