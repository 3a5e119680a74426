"""Head office SIGKILLed while a node's backlog drains: restarted, nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.loyalty.events import points_delta
from staypoint.loyalty.program import Outlet
from tests.mqtt_fixtures import MosquittoBroker, office_command
from tests.sync.conftest import PIN, Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]


def _office_process(fleet: Fleet, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        office_command(fleet.broker, fleet.directory / "ledger.db"),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "office.log", "ab"),
    )


def test_head_office_sigkill_mid_apply_loses_and_doubles_nothing(
    fresh_mosquitto: MosquittoBroker, fleet_factory: Callable[[MosquittoBroker], Fleet], tmp_path: Path
) -> None:
    fleet = fleet_factory(fresh_mosquitto)
    node = fleet.add_node("sha-lobby-01", start=False, batch_events=40, window_batches=4, ack_timeout=2.0)
    members = [node.service.enrol(f"Ada Lovelace {i}", PIN, now()).number for i in range(3)]
    for i in range(1200):
        node.service.post_stay(members[i % 3], f"L-{i}", now(), nights=0, revenue={Outlet.FNB: Decimal("2")})
    total = 3 + 1200
    store = fleet.ledger.store  # a reader beside the head-office process (WAL)

    office = _office_process(fleet, tmp_path)
    try:
        fleet.start_agent(node)
        wait_until(lambda: store.event_count() >= 300, 60, "the backlog to start draining")
        os.kill(office.pid, signal.SIGKILL)  # mid-drain: a group in its transaction, acks unsent
        office.wait(5)
        applied = store.event_count()
        assert 0 < applied < total
        office = _office_process(fleet, tmp_path)
        wait_until(lambda: store.event_count() == total, 90, "every event at head office")
        wait_until(lambda: node.service.status(now())["outbox_depth"] == 0, 30, "every row acked")
    finally:
        office.send_signal(signal.SIGTERM)
        office.wait(10)

    assert store.event_count() == total  # nothing doubled
    outbox = node.service.replica.conn.execute("SELECT id, type, member, body FROM outbox").fetchall()
    ids = {str(row[0]) for row in store.conn.execute("SELECT id FROM events")}
    assert ids == {str(r[0]) for r in outbox}  # each event once, none missing
    for member in members:
        expected = sum(
            points_delta(str(kind), json.loads(body)["data"]) for _, kind, m, body in outbox if m == member
        )
        central = fleet.ledger.member(member)
        assert central is not None and central["points"] == expected
    assert not [a for a in store.alarms() if a["kind"] in ("conflicting_body", "duplicate_id")]
    assert node.agent is not None and node.agent.stats["events_acked"] == total
