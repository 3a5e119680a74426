"""Stored-value holds at head office, without a broker: what is available, expiry, settlement.

Every test takes ``store`` (tests/sync/conftest.py), so each runs on SQLite and PostgreSQL.
The broker-and-processes side is tests/sync/test_value_link.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store import LedgerStore
from staypoint.edge.service import AuthorisationDenied, Hold, NodeService, OfflineOnly, StaffProof
from staypoint.loyalty.program import default_program_text

pytest_plugins = ["tests.pg_fixtures"]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NODE = "sha-lobby-01"
SUP = StaffProof("sup", "Sup", "supervisor")


class InProcess:
    """The service's Authoriser asking the ledger directly: what the agent and ``central
    serve`` do over MQTT, without the broker."""

    def __init__(self, ledger: Ledger, node: str) -> None:
        self.ledger, self.node = ledger, node
        self.asked: list[str] = []

    def authorise(self, member: str, points: int, reward: str, now: datetime) -> Hold | None:
        return None

    def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None:
        self.asked.append(f"{amount:.2f}")
        decision = self.ledger.authorise_value(self.node, member, f"{amount:.2f}", now)
        if not decision.ok:
            raise AuthorisationDenied(decision.reason or "")
        assert decision.hold is not None
        return Hold(decision.hold)


def _wallet(tmp_path: Path, store: LedgerStore) -> tuple[Ledger, NodeService, str]:
    """A member with 500.00 of stored value, head office up to date."""
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW)
    node = NodeService.init_node(tmp_path / "n.db", NODE, "H1", default_program_text(), NOW)
    member = node.enrol("Ada L", "2580", NOW).number
    node.top_up(member, "500.00", NOW, SUP)
    _sync(ledger, node)
    return ledger, node, member


def _sync(ledger: Ledger, node: NodeService) -> None:
    bodies = [json.loads(b) for (b,) in node.replica.conn.execute("SELECT body FROM outbox ORDER BY seq")]
    ledger.ingest(NODE, bodies, NOW)


def test_a_value_hold_sets_money_aside_until_it_expires(tmp_path: Path, store: LedgerStore) -> None:
    ledger, _, member = _wallet(tmp_path, store)
    first = ledger.authorise_value(NODE, member, "300.00", NOW)
    assert first.ok and first.hold is not None
    held = store.hold(first.hold)
    assert held is not None
    assert (held.kind, held.amount, held.points, held.status) == ("value", "300.00", 0, "held")
    assert store.held_value(member) == Decimal("300.00") and store.held_points(member) == 0
    # Available is the balance less the open value holds: 200.00 left, not 500.00.
    second = ledger.authorise_value("sha-lobby-02", member, "250.00", NOW)
    assert not second.ok and second.reason == "not enough stored value"
    third = ledger.authorise_value("sha-lobby-02", member, "200.00", NOW)
    assert third.ok and store.held_value(member) == Decimal("500.00")
    assert not ledger.authorise_value(NODE, member, "0.01", NOW).ok
    # Amounts as the contract spells them, within the programme's money_per_event.
    for bad in ("1000000.01", "12.345", "NaN", "-5.00", "0"):
        refused = ledger.authorise_value(NODE, member, bad, NOW)
        assert not refused.ok and refused.reason and refused.reason.startswith("the amount is refused")
    assert not ledger.authorise_value(NODE, "0009999999", "1.00", NOW).ok  # unknown member
    # Unused holds expire like points holds, and the money is available again.
    assert ledger.expire_holds(NOW + ledger.hold_ttl - timedelta(seconds=1)) == 0
    assert ledger.expire_holds(NOW + ledger.hold_ttl) == 2
    assert store.hold(first.hold).status == "expired"  # type: ignore[union-attr]
    assert store.held_value(member) == 0
    assert ledger.authorise_value(NODE, member, "500.00", NOW + ledger.hold_ttl).ok
    assert store.counters()["value_holds_placed"] == 3


def test_a_blocked_wallet_is_refused(tmp_path: Path, store: LedgerStore) -> None:
    ledger, _, member = _wallet(tmp_path, store)
    doc = store.member(member)
    assert doc is not None
    with store.transaction():
        store.put_member({**doc, "blocked": True})
    refused = ledger.authorise_value(NODE, member, "10.00", NOW)
    assert not refused.ok and refused.reason and "paused" in refused.reason


def test_an_online_spend_names_its_hold_and_ingest_settles_it(tmp_path: Path, store: LedgerStore) -> None:
    ledger, node, member = _wallet(tmp_path, store)
    limits = node.program.offline
    assert limits.per_spend_value < Decimal("350.00")  # above the offline per-spend limit
    node.authoriser = InProcess(ledger, NODE)
    proof = node.verify_pin(member, "2580", NOW)
    assert node.spend(proof, "350.00", NOW) == Decimal("150.00")
    event = json.loads(node.replica.conn.execute("SELECT body FROM outbox ORDER BY seq DESC").fetchone()[0])
    assert event["type"] == "value.spent" and event["auth"] == "online"
    hold = event["data"]["hold"]
    assert isinstance(hold, str) and store.hold(hold).status == "held"  # type: ignore[union-attr]
    assert event["data"]["limits"] is None
    # Another node holds 100.00 first: head office has 50.00 available, the node's replica
    # still shows 150.00. Head office decides, and a "no" writes nothing at the node.
    assert ledger.authorise_value("sha-lobby-02", member, "100.00", NOW).ok
    with pytest.raises(AuthorisationDenied, match="not enough stored value"):
        node.spend(proof, "120.00", NOW)
    assert node.resolve_member(member).stored_value == "150.00"
    _sync(ledger, node)
    assert store.hold(hold).status == "settled"  # type: ignore[union-attr]
    assert store.held_value(member) == Decimal("100.00")  # the other node's, still open
    assert ledger.member(member)["stored_value"] == "150.00"  # type: ignore[index]
    assert not store.open_overdrafts() and not [a for a in store.alarms() if "hold" in a["kind"]]
    # The online payment counts against no offline limit: 350.00 held online, and offline
    # 100.00 more is within per_member_value_since_contact (300.00) all the same.
    assert limits.per_member_value_since_contact < Decimal("450.00")
    node.authoriser = OfflineOnly()
    assert node.spend(proof, "100.00", NOW) == Decimal("50.00")
    offline = json.loads(node.replica.conn.execute("SELECT body FROM outbox ORDER BY seq DESC").fetchone()[0])
    assert offline["auth"] == "offline" and offline["data"]["hold"] is None and offline["data"]["limits"]


def test_a_spend_naming_a_points_hold_is_alarmed(tmp_path: Path, store: LedgerStore) -> None:
    ledger, node, member = _wallet(tmp_path, store)
    wrong = ledger.authorise_value(NODE, member, "20.00", NOW)
    assert wrong.ok and wrong.hold is not None

    class Mismatched(InProcess):
        def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None:
            return Hold(str(wrong.hold))  # a hold for 20.00, named by a payment of 30.00

    node.authoriser = Mismatched(ledger, NODE)
    node.spend(node.verify_pin(member, "2580", NOW), "30.00", NOW)
    _sync(ledger, node)
    assert store.hold(str(wrong.hold)).status == "settled"  # type: ignore[union-attr]
    assert [a["kind"] for a in store.alarms()].count("hold_mismatch") == 1
    assert ledger.member(member)["stored_value"] == "470.00"  # type: ignore[index]
