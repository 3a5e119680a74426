"""Bad input from the broker is dropped and counted on both sides; a new node bootstraps by snapshot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from staypoint.central.seed import seed_docs
from staypoint.loyalty.program import Outlet
from tests.mqtt_fixtures import ClientFactory, MosquittoBroker, MQTTConnectError, publish, unique_client_id
from tests.sync.conftest import PIN, Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_malformed_oversized_and_wrongly_typed_payloads_are_dropped_and_counted(
    fresh_mosquitto: MosquittoBroker,
    fleet_factory: Callable[[MosquittoBroker], Fleet],
    mqtt_client: ClientFactory,
) -> None:
    fleet = fleet_factory(fresh_mosquitto)
    office = fleet.start_office()
    a = fleet.add_node("sha-lobby-01")
    fleet.settle()
    assert a.agent is not None
    # A client holding node 02's certificate sends rubbish upstream.
    rogue = mqtt_client(fresh_mosquitto, "sha-lobby-02", unique_client_id("rogue"))
    up = "sp/v1/node/sha-lobby-02/events"
    assert publish(rogue, up, b"\xff\xfe not json") in (0, 16)
    assert publish(rogue, up, b"[1, 2, 3]") in (0, 16)
    assert publish(rogue, up, json.dumps({"events": "nope"})) in (0, 16)
    bad_event = {"v": 1, "node": "sha-lobby-02", "epoch": 1, "seq": "one", "id": "x", "type": "stay.posted"}
    assert publish(rogue, up, json.dumps({"events": [bad_event]})) in (0, 16)
    assert publish(rogue, "sp/v1/node/sha-lobby-02/resync", b'{"from": "zero"}') in (0, 16)
    # Over the broker's message limit: refused by the broker itself (never reaches anyone).
    # Mosquitto drops the connection on the packet's header, so paho may see no ack
    # (TimeoutError) or find its socket already closed (MQTTConnectError): both are refusals.
    try:
        assert publish(rogue, up, b"x" * (300 * 1024), timeout=2) not in (0, 16)
    except (TimeoutError, MQTTConnectError):
        wait_until(lambda: "oversize packet" in fresh_mosquitto.log_text(), 5, "the broker's refusal")
    # Head office's identity sends rubbish downstream to node 01.
    ho = mqtt_client(fresh_mosquitto, "head-office", unique_client_id("ho-rogue"))
    for topic, payload in [
        ("sp/v1/node/sha-lobby-01/ack", b'{"epoch": "1", "hw": 5}'),
        ("sp/v1/node/sha-lobby-01/changes", b"{not json"),
        ("sp/v1/node/sha-lobby-01/changes", json.dumps({"session": "stale", "part": 0}).encode()),
        ("sp/v1/fleet/changes", b'["a list"]'),
        (
            "sp/v1/fleet/changes",
            json.dumps({"from": 0, "to": 10**9, "changes": [{"kind": "member"}]}).encode(),
        ),
    ]:
        assert publish(ho, topic, payload) in (0, 16)
    wait_until(lambda: sum(office.dropped.values()) >= 4, 10, "head office to count the drops")
    wait_until(lambda: sum(a.agent.dropped.values()) >= 3, 10, "the agent to count the drops")  # type: ignore[union-attr]
    assert office.dropped["malformed"] >= 1 and office.dropped["wrong_type"] >= 2
    assert fleet.ledger.store.counters().get("events_malformed", 0) == 1
    # Both sides still work.
    member = a.service.enrol("Mary Jackson", PIN, now()).number
    a.service.post_stay(member, "OK-1", now(), nights=1, revenue={Outlet.ROOM: Decimal("100")})
    fleet.settle()  # the outbox empty means head office committed (and acked) both events
    assert fleet.ledger.member(member)["points"] == 1000  # type: ignore[index]


def test_new_node_bootstraps_by_snapshot_then_follows_changes(
    fresh_mosquitto: MosquittoBroker, fleet_factory: Callable[[MosquittoBroker], Fleet]
) -> None:
    fleet = fleet_factory(fresh_mosquitto)
    program = fleet.ledger.program()
    assert program is not None
    fleet.ledger.import_members(seed_docs(program, 100_000, now()))
    fleet.start_office()
    a = fleet.add_node("sha-lobby-01")
    started = time.monotonic()
    fleet.settle(timeout=60)
    took = time.monotonic() - started
    assert a.service.replica.member_count() == 100_000
    assert a.agent is not None and a.agent.stats["snapshots"] == 1
    # Then it follows changes made elsewhere.
    b = fleet.add_node("sha-lobby-02")
    fleet.settle(timeout=60)
    some = fleet.ledger.store.member_numbers()[1234]
    before = a.points(some)
    b.service.post_stay(some, "SNAP-1", now(), nights=1, revenue={Outlet.ROOM: Decimal("50")})
    fleet.settle()
    assert a.points(some) == before + 500
    print(f"bootstrap of 100,000 members: {took:.2f}s")
