"""Head office's replica digest: a node that differs from it resyncs by itself and says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from staypoint.central.store import LedgerStore
from staypoint.edge import sync_store
from staypoint.edge.sync.agent import SyncAgent
from staypoint.loyalty.program import Outlet
from tests.mqtt_fixtures import ClientFactory, MosquittoBroker, publish, state, subscribe, unique_client_id
from tests.sync.conftest import PIN, Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures", "tests.pg_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_both_stores_give_the_digest_at_one_version(store: LedgerStore) -> None:
    assert store.digest() == (0, 0, 0)
    with store.transaction():
        docs = [{"number": "M1", "points": 1200, "blocked": False}, {"number": "M2", "points": -50}]
        store.put_members(docs)
        for doc in docs:
            store.append_change("member", str(doc["number"]), doc)
        store.append_change("deny", "M2", {"member": "M2", "blocked": True})
    assert store.digest() == (3, 2, 1150)  # an overdrawn member counts below zero


def test_a_node_whose_replica_differs_from_the_digest_resyncs_by_itself(
    fresh_mosquitto: MosquittoBroker,
    fleet_factory: Callable[[MosquittoBroker], Fleet],
    mqtt_client: ClientFactory,
) -> None:
    fleet = fleet_factory(fresh_mosquitto)
    office = fleet.start_office()
    office.digest_seconds = 0.5  # the fixture's office; its ticker reads this every tick
    watch = mqtt_client(fresh_mosquitto, "head-office", unique_client_id("watch"))
    assert subscribe(watch, "sp/v1/node/sha-lobby-01/health") < 128
    assert subscribe(watch, "sp/v1/fleet/digest") < 128
    a = fleet.add_node("sha-lobby-01", health_interval=0.2)
    agent = a.agent
    assert agent is not None
    member = a.service.enrol("Katherine Johnson", PIN, now()).number
    a.service.post_stay(member, "D-1", now(), nights=2, revenue={Outlet.ROOM: Decimal("400")})
    fleet.settle()
    wait_until(lambda: agent.digest_ok is True, message="the node to match a digest")
    assert agent.stats["digest_mismatches"] == 0
    central = fleet.ledger.member(member)
    assert central is not None and a.points(member) == central["points"]

    # Behind the agent's back: a replica that no longer says what head office says.
    with a.service.replica.write():
        a.service.replica.conn.execute("UPDATE members SET points = points + 1 WHERE number = ?", (member,))
    assert a.points(member) == central["points"] + 1
    snapshots = agent.stats["snapshots"]
    # Any new version makes head office publish a new digest, which the node holds itself to.
    a.service.enrol("Dorothy Vaughan", PIN, now())
    fleet.settle()
    wait_until(lambda: agent.stats["self_resyncs"] == 1, message="the node to resync by itself")
    wait_until(
        lambda: agent.stats["snapshots"] > snapshots and agent.digest_ok is True,
        message="the snapshot to land and match the digest",
    )
    assert agent.stats["digest_mismatches"] == 1
    assert a.points(member) == central["points"]  # head office's record again

    def said_so() -> bool:
        docs = [json.loads(m.payload) for m in state(watch).messages.all("sp/v1/node/sha-lobby-01/health")]
        return any(
            d.get("digest_ok") is True and d.get("digest_mismatches") == 1 and d.get("last_self_resync")
            for d in docs
        )

    wait_until(said_so, message="the health document to say so")
    retained = state(watch).messages.all("sp/v1/fleet/digest")[-1]
    body = json.loads(retained.payload)
    assert body["v"] == 1 and body["members"] == 2 and body["version"] == fleet.ledger.store.latest_version()

    # A malformed digest is dropped and counted, and changes nothing.
    dropped = agent.dropped["wrong_type"]
    for bad in (
        {"v": 1, "version": "7", "members": 2, "points": 0},
        {"v": 1, "version": 2**53, "members": 2, "points": 0},
        {"v": 1, "version": 1, "members": -1, "points": 0},
        {"v": 1, "version": 1, "members": True, "points": 0},
    ):
        assert publish(watch, "sp/v1/fleet/digest", json.dumps(bad)) in (0, 16)
    wait_until(lambda: agent.dropped["wrong_type"] >= dropped + 4, message="the agent to count the drops")
    assert agent.digest_ok is True and agent.stats["self_resyncs"] == 1


def test_the_node_compares_only_at_the_digests_version_with_nothing_pending(
    fresh_mosquitto: MosquittoBroker,
    fleet_factory: Callable[[MosquittoBroker], Fleet],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = fleet_factory(fresh_mosquitto)
    node = fleet.add_node("sha-lobby-01", start=False)
    at = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
    agent = SyncAgent(node.service, node.config, clock=lambda: at)  # never connected
    sent: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        agent.client, "publish", lambda topic, payload, **kw: sent.append((topic, json.loads(payload)))
    )
    try:
        node.service.enrol("Mary Jackson", PIN, now())  # one member, and an outbox row not acknowledged
        with agent.replica.write():
            sync_store.set_applied_version(agent.replica.conn, 40)
        wrong = {"v": 1, "version": 40, "members": 5, "points": 999}

        agent._on_digest(wrong)  # an unacknowledged row: its event may not be folded in yet
        with agent.replica.write():
            agent.replica.conn.execute("UPDATE outbox SET acked_at = 'x'")
        agent._on_digest({**wrong, "version": 41})  # not at the digest's version
        assert agent.stats["digest_checks"] == 0 and agent.digest_ok is None and not sent

        agent._on_digest({"v": 1, "version": 40, "members": 1, "points": 0})
        assert agent.digest_ok is True and agent.stats["digest_checks"] == 1

        agent._on_digest(wrong)
        assert agent.digest_ok is False and agent.stats["digest_mismatches"] == 1
        assert sent == [("sp/v1/node/sha-lobby-01/resync", {"from": 0, "session": sent[0][1]["session"]})]
        assert agent.last_self_resync == "2027-03-01T09:30:00.000Z"
        # Still different after its resync: counted, but the next snapshot waits (backoff).
        agent._resync = None
        agent._on_digest(wrong)
        assert agent.stats["digest_mismatches"] == 2 and agent.stats["self_resyncs"] == 1 and len(sent) == 1
    finally:
        agent.replica.close()
