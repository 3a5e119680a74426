"""The event contract at head office, on both ledger stores: bounds, quarantine, rights, debts.

Each case is one an attacker or two offline nodes produced before the contract was written
once (issue 12): head office booked whatever a node said, and one poison event stopped the
whole ingest group behind it.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store import LedgerStore
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge import sync_store
from staypoint.edge.service import BadInput, NodeError, OfflineLimitReached, StaffProof
from staypoint.loyalty.program import Outlet, default_program_text
from tests.sync.nodes import NOW, Node

pytest_plugins = ["tests.pg_fixtures"]

CLERK = StaffProof("s1", "Sam", "supervisor")


def _ledger(store: LedgerStore) -> Ledger:
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW)
    return ledger


def _member_with_stays(node: Node, nights: int = 2) -> str:
    m = node.svc.enrol("Ada L", "2580", NOW).number
    node.svc.post_stay(m, "F1", NOW, nights=nights, revenue={Outlet.ROOM: Decimal("300")})
    return m


def test_a_poison_event_is_quarantined_and_stops_nothing(store: LedgerStore, tmp_path: Path) -> None:
    ledger = _ledger(store)
    a, b = Node(tmp_path, "sha-lobby-01", "SHA", 1), Node(tmp_path, "bkk-lobby-01", "BKK", 2)
    ma, mb = _member_with_stays(a), _member_with_stays(b)
    ledger.ingest_many([(a.node, a.pending()), (b.node, b.pending())], NOW)
    before = ledger.member(ma)
    assert before is not None
    poison = [
        a.forge("points.adjusted", ma, {"points": 2**62, "reason": "x", "staff": "s"}),
        a.forge(
            "stay.posted",
            ma,
            {
                "folio": "F9",
                "property": "SHA",
                "arrival": "2026-11-01",
                "departure": "2026-11-02",
                "nights": 10**9,
                "revenue": {},
                "points": 0,
            },
        ),
        a.forge(
            "stay.posted",
            ma,
            {
                "folio": "F8",
                "property": "SHA",
                "arrival": "1026-01-01",
                "departure": "1026-01-02",
                "nights": 1,
                "revenue": {"room": "100.00"},
                "points": 1000,
            },
        ),
        a.forge(
            "stay.posted",
            ma,
            {
                "folio": "F7",
                "property": "SHA",
                "arrival": "2026-11-01",
                "departure": "2026-11-02",
                "nights": 1,
                "revenue": {"room": "1e12"},
                "points": 1,
            },
        ),
        a.forge("value.topped_up", ma, {"amount": "NaN", "currency": "EUR", "staff": "s"}),
        a.forge("points.adjusted", ma, {"points": 5, "reason": "x"}, at=NOW + timedelta(days=400)),
    ]
    a.svc.adjust(ma, 100, "goodwill", NOW, CLERK)  # a real event behind the poison
    b.svc.adjust(mb, 50, "goodwill", NOW, CLERK)  # another node's stream in the same group
    results = ledger.ingest_many([(a.node, poison + a.pending()), (b.node, b.pending())], NOW)
    assert [(r.applied, r.rejected, r.ack) for r in results] == [(1, 6, (1, 9)), (1, 0, (1, 3))]
    after = ledger.member(ma)
    assert after is not None and after["points"] == before["points"] + 100
    assert after["qual_nights"] == before["qual_nights"] and after["stored_value"] == "0.00"
    assert after["folded"][f"{a.node}:1"] == 9  # folded as nothing: the node stops showing them
    assert ledger.member(mb)["points"] > 0  # type: ignore[index]
    listed = store.quarantined()
    assert [q["seq"] for q in listed] == [3, 4, 5, 6, 7, 8]
    assert {q["kind"] for q in listed} == {"out_of_bounds"}
    assert "nights 1000000000 is outside 0..365" in listed[1]["reason"]
    assert any(a_["kind"] == "quarantined" for a_ in store.alarms())
    quarantine = [c for c in results[-1].changes if c.kind == "quarantine"]
    assert [c.body["seq"] for c in quarantine] == [3, 4, 5, 6, 7, 8]
    # The same batch again: skipped, never a conflicting body.
    again = ledger.ingest(a.node, poison, NOW)
    assert (again.applied, again.skipped, again.rejected) == (0, 6, 0)
    # The node marks its rows for the staff status screen.
    with a.svc.replica.write():
        sync_store.apply_changes(a.svc.replica.conn, [c.to_wire() for c in results[-1].changes], {})
    status = a.svc.status(NOW)
    assert status["rejected_total"] == 6 and [r["seq"] for r in status["rejected"]] == [8, 7, 6]
    assert "points" in status["rejected"][0]["reason"] or "outside" in status["rejected"][0]["reason"]


def test_a_node_voids_only_its_own_propertys_stays_and_blocks_no_one(
    store: LedgerStore, tmp_path: Path
) -> None:
    ledger = _ledger(store)
    a, b = Node(tmp_path, "sha-lobby-01", "SHA", 1), Node(tmp_path, "bkk-lobby-01", "BKK", 2)
    ledger.register_node(a.node, "00" * 32, "SHA")
    ledger.register_node(b.node, "00" * 32, "BKK")
    m = _member_with_stays(a)
    ledger.ingest(a.node, a.pending(), NOW)
    stay_id = next(iter(store.member_events(m, 1)))
    stay = json.loads(stay_id)
    void = b.forge(
        "stay.voided",
        m,
        {"folio": "F1", "stay": stay["id"], "points": 5000, "nights": 2, "reason": "x", "staff": "s"},
    )
    r = ledger.ingest(b.node, [void], NOW)
    assert r.rejected == 1 and store.quarantined()[-1]["kind"] == "not_permitted"
    member = ledger.member(m)
    assert member is not None and member["points"] == stay["data"]["points"] and not member["blocked"]
    # A second board of the same property may void it.
    a2 = Node(tmp_path, "sha-lobby-02", "SHA", 3)
    ledger.register_node(a2.node, "00" * 32, "SHA")
    r = ledger.ingest(a2.node, [a2.forge("stay.voided", m, dict(void["data"]))], NOW)
    assert r.applied == 1 and ledger.member(m)["points"] == 0  # type: ignore[index]
    # The first board, offline, voids it too: its points come back once, not twice.
    r = ledger.ingest(a.node, [a.forge("stay.voided", m, dict(void["data"]))], NOW)
    assert r.rejected == 1 and store.quarantined()[-1]["kind"] == "bad_void"
    member = ledger.member(m)
    assert member is not None and member["points"] == 0 and member["qual_nights"] == 0


def test_offline_crossings_end_as_written_down_debts(store: LedgerStore, tmp_path: Path) -> None:
    """Two offline nodes: stored value spent twice, a voucher used twice, a used voucher voided."""
    ledger = _ledger(store)
    a, b = Node(tmp_path, "sha-lobby-01", "SHA", 1), Node(tmp_path, "sha-lobby-02", "SHA", 2)
    m = _member_with_stays(a, nights=3)
    a.svc.top_up(m, "80.00", NOW, CLERK)
    a.svc.record_contact(NOW)
    redemption = a.svc.redeem(a.svc.verify_pin(m, "2580", NOW), "LATE-CO", NOW, online=False)
    changes = ledger.register_node(a.node, a.svc.keys.public_hex(), "SHA")
    changes += ledger.ingest(a.node, a.pending(), NOW).changes
    with b.svc.replica.write():  # node b hears of the member and the voucher, then both go offline
        sync_store.apply_changes(b.svc.replica.conn, [c.to_wire() for c in changes], {})
    a.svc.spend(a.svc.verify_pin(m, "2580", NOW), "60.00", NOW)
    b.svc.spend(b.svc.verify_pin(m, "2580", NOW), "60.00", NOW)
    a.svc.use_voucher(redemption.voucher, NOW, CLERK)
    b.svc.use_voucher(redemption.voucher, NOW, CLERK)
    ledger.ingest_many([(a.node, a.pending()), (b.node, b.pending())], NOW)
    member = ledger.member(m)
    assert member is not None and member["stored_value"] == "-40.00" and member["blocked"]
    debts = {d["kind"] for d in store.open_overdrafts()}
    assert {"value_overdraft", "voucher_reused"} <= debts
    alarms = {a_["kind"] for a_ in store.alarms()}
    assert {"value_overdraft", "voucher_reused"} <= alarms
    # A used voucher voided at another node gives no points back.
    points = member["points"]
    void = b.forge(
        "voucher.voided",
        m,
        {"voucher": redemption.voucher.replace("-", ""), "points": 2500, "reason": "x", "staff": "s"},
    )
    r = ledger.ingest(b.node, [void], NOW)
    assert r.rejected == 1 and ledger.member(m)["points"] == points  # type: ignore[index]
    # The second use was paid for in points: 500 - 2,500. Settled both ways, the block lifts.
    assert points == 500 - 2500
    a.svc.top_up(m, "100.00", NOW, CLERK)
    ledger.ingest(a.node, a.pending(), NOW)
    assert ledger.member(m)["blocked"]  # type: ignore[index]  # money settled, points still owed
    a.svc.adjust(m, 2000, "settled at the desk", NOW, CLERK)
    ledger.ingest(a.node, a.pending(), NOW)
    member = ledger.member(m)
    assert member is not None and member["stored_value"] == "60.00" and member["points"] == 0
    assert not member["blocked"] and store.open_overdrafts() == []


def test_the_node_refuses_out_of_bounds_values_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    node = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    m = _member_with_stays(node)
    depth, points = node.svc.replica.outbox_depth(), node.svc.summary(m, NOW).points
    with pytest.raises(BadInput, match=r"refused: departure 1026-01-03 is outside 2000-01-01") as exc:
        node.svc.post_stay(
            m, "F2", NOW, nights=2, arrival=date(1026, 1, 1), revenue={Outlet.ROOM: Decimal("100")}
        )
    assert "\n" not in str(exc.value)
    with pytest.raises(NodeError):  # the role's ceiling or the bound: refused either way
        node.svc.adjust(m, 2**62, "typo", NOW, CLERK)
    assert node.svc.replica.outbox_depth() == depth and node.svc.summary(m, NOW).points == points


def test_a_fan_out_whose_range_does_not_add_up_is_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One message with ``to`` = 1,000,000 used to set the node's applied version there."""
    from staypoint.edge.sync import agent as agent_module
    from staypoint.edge.sync.agent import SyncAgent, SyncConfig

    # The handler's rule, without a broker: no TLS files are needed to build the client.
    monkeypatch.setattr(agent_module, "use_fleet_tls", lambda *a, **k: None)

    node = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    agent = SyncAgent(node.svc, SyncConfig("sha-lobby-01", "127.0.0.1", 1, tmp_path, tmp_path, tmp_path))
    m = _member_with_stays(node)
    doc = {"kind": "deny", "key": m, "body": {"member": m, "blocked": False}}
    try:
        agent._on_fleet_changes({"from": 0, "to": 1_000_000, "changes": [dict(doc, version=1)]})
        agent._on_fleet_changes({"from": 0, "to": 2, "changes": [dict(doc, version=2), dict(doc, version=1)]})
        assert agent.dropped["bad_range"] == 2
        assert sync_store.applied_version(agent.replica.conn) == 0
        agent._on_fleet_changes({"from": 0, "to": 1, "changes": [dict(doc, version=1)]})
        assert agent.dropped["bad_range"] == 2 and sync_store.applied_version(agent.replica.conn) == 1
        # A collapsed delta (the latest change per key) is a valid step.
        agent._on_fleet_changes({"from": 1, "to": 4, "changes": [dict(doc, version=2), dict(doc, version=4)]})
        assert agent.dropped["bad_range"] == 2 and sync_store.applied_version(agent.replica.conn) == 4
    finally:
        agent.replica.close()


def test_stored_value_has_offline_limits_like_points(tmp_path: Path) -> None:
    node = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    m = _member_with_stays(node)
    node.svc.top_up(m, "500.00", NOW, CLERK)
    node.svc.top_up(m, "500.00", NOW, CLERK)
    proof = node.svc.verify_pin(m, "2580", NOW)
    with pytest.raises(OfflineLimitReached, match=r"one payment from stored value can be at most 200.00"):
        node.svc.spend(proof, "250.00", NOW)
    assert node.svc.spend(proof, "150.00", NOW) == Decimal("850.00")
    with pytest.raises(OfflineLimitReached, match=r"up to 300.00 from stored value in all"):
        node.svc.spend(proof, "160.00", NOW)
    node.svc.record_contact(NOW + timedelta(minutes=1))  # head office reached: the count starts again
    assert node.svc.spend(proof, "160.00", NOW + timedelta(minutes=2)) == Decimal("690.00")


def test_head_office_staff_list_and_acknowledge_quarantine_from_the_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "ledger.db"
    ledger = _ledger(SqliteLedgerStore(db))
    node = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    m = _member_with_stays(node)
    forged = node.forge("points.adjusted", m, {"points": 2**62, "reason": "x"})
    ledger.ingest(node.node, [*_all_outbox(node), forged], NOW)
    ledger.store.close()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "staypoint.cli.main", "central", "quarantine", "--db", str(db), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    listed = run("--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["quarantined"]
    assert [(r["node"], r["member"], r["seq"]) for r in rows] == [("sha-lobby-01", m, 3)]
    assert run("--ack", forged["id"], "--by", "clara").stdout.strip() == f"acknowledged {forged['id']}"
    assert json.loads(run("--json").stdout)["quarantined"] == []
    again = run("--ack", forged["id"])
    assert again.returncode != 0 and again.stderr.strip().count("\n") == 0 and "no open" in again.stderr


def _all_outbox(node: Node) -> list[dict[str, Any]]:
    rows = node.svc.replica.conn.execute("SELECT body FROM outbox WHERE seq < 3 ORDER BY seq")
    return [json.loads(b) for (b,) in rows]
