"""A change fanned out while a node's resync is still arriving is applied, not lost.

Head office reads a resync answer in one thread and fans out new changes from another,
so a change committed just after the answer was read can reach the node before the
answer's last part. Here a test client holding head office's certificate plays that
interleaving exactly: read the answer, commit a change, fan it out, then send the answer
(encoded by head office's own ``resync_parts``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest

import staypoint.edge.sync.agent as agent_module
from staypoint.central.ledger import Ledger
from staypoint.central.seed import seed_docs
from staypoint.central.server import resync_parts
from tests.mqtt_fixtures import ClientFactory, MosquittoBroker, publish, state, subscribe, unique_client_id
from tests.sync.conftest import Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def read_answer(ledger: Ledger, session: str, from_version: int) -> tuple[int, list[bytes]]:
    """What head office's resync worker reads under its lock: the version and the messages."""
    mode, to, rows = ledger.resync(from_version)
    return to, list(resync_parts(session, mode, from_version, to, rows))


def send_answer(office: mqtt.Client, parts: list[bytes]) -> None:
    for payload in parts:
        assert publish(office, "sp/v1/node/sha-lobby-01/changes", payload) in (0, 16)


@pytest.mark.parametrize("held_max", [agent_module.HELD_CHANGES_MAX, 0], ids=["held", "over-the-bound"])
def test_a_change_fanned_out_during_a_resync_is_applied_after_it(
    fresh_mosquitto: MosquittoBroker,
    fleet_factory: Callable[[MosquittoBroker], Fleet],
    mqtt_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    held_max: int,
) -> None:
    monkeypatch.setattr(agent_module, "HELD_CHANGES_MAX", held_max)
    fleet = fleet_factory(fresh_mosquitto)
    office = mqtt_client(fresh_mosquitto, "head-office", unique_client_id("ho"), clean_start=True)
    assert subscribe(office, "sp/v1/node/+/resync") == 1
    node = fleet.add_node("sha-lobby-01")
    [request] = state(office).messages.wait_for(1)
    session = json.loads(request.payload)["session"]

    # The answer is read first (up to the current version) ...
    answered_to, answer = read_answer(fleet.ledger, session, 0)
    # ... then a new member is committed and fanned out before the answer goes out.
    program = fleet.ledger.program()
    assert program is not None
    doc = seed_docs(program, 1, now())[0]
    fleet.ledger.import_members([doc])
    fresh = fleet.ledger.store.changes_since(answered_to, 100)
    assert fresh
    latest = fresh[-1].version
    fan_out = {"v": 1, "from": answered_to, "to": latest, "changes": [c.to_wire() for c in fresh]}
    assert publish(office, "sp/v1/fleet/changes", json.dumps(fan_out)) in (0, 16)
    send_answer(office, answer)

    agent = node.agent
    assert agent is not None
    if held_max == 0:
        # Nothing could be held: the node asks again from where the answer left it.
        [_, again] = state(office).messages.wait_for(2)
        second = json.loads(again.payload)
        assert second["from"] == answered_to
        send_answer(office, read_answer(fleet.ledger, second["session"], answered_to)[1])
    wait_until(lambda: agent.applied_version() >= latest, 10, "the node to apply the change")
    assert node.service.replica.member(doc["number"]) is not None
    assert agent.stats["resyncs"] == (1 if held_max else 2)
