"""SIGKILL of the agent mid-batch, and a broker restart with queued batches: nothing lost or doubled."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.loyalty.program import Outlet
from tests.mqtt_fixtures import FleetPKI, MosquittoBroker
from tests.sync.conftest import PIN, Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]


def _agent_process(fleet: Fleet, node_id: str, tmp: Path) -> subprocess.Popen[bytes]:
    tls = fleet.broker.client_tls(node_id)
    conf = tmp / f"{node_id}.toml"
    conf.write_text(
        f'[node]\ndb = "{fleet.directory / (node_id + ".db")}"\n'
        f'[mqtt]\nhost = "{fleet.broker.host}"\nport = {fleet.broker.port}\n'
        f'ca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'
        "[sync]\nbatch_events = 25\nwindow_batches = 2\nbackoff_max = 1.0\n"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "staypoint.edge.sync.cli", "sync", "run", "--config", str(conf)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"{node_id}.log", "ab"),
    )


@pytest.fixture
def fresh_mosquitto(pki: FleetPKI, tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private broker that logs every PUBLISH it receives: the test waits for the agent's
    batches to reach it instead of sleeping."""
    broker = MosquittoBroker(
        pki, tmp_path / "mosquitto", log_types=("error", "warning", "notice", "information", "debug")
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _batches_received(broker: MosquittoBroker, node_id: str) -> int:
    """Event batches the broker has received from ``node_id`` so far (debug log lines)."""
    pattern = rf"Received PUBLISH from {node_id} \(d\d, q1, r\d, m\d+, 'sp/v1/node/{node_id}/events'"
    return len(re.findall(pattern, broker.log_text()))


@pytest.mark.parametrize("broker_stop", ["sigterm", "sigkill"])
def test_agent_sigkill_mid_batch_and_broker_restart_lose_and_double_nothing(
    fresh_mosquitto: MosquittoBroker,
    fleet_factory: Callable[[MosquittoBroker], Fleet],
    tmp_path: Path,
    broker_stop: str,
) -> None:
    """SIGTERM: the broker saves its queue and hands it over. SIGKILL: the broker saves only
    every 1,000 changes, so the queued batches (and head office's session) are gone; the
    agent's outbox sends them again after its reconnect. Either way: each event once."""
    fleet = fleet_factory(fresh_mosquitto)
    fleet.start_office()
    node = fleet.add_node("sha-lobby-01", start=False)
    member = node.service.enrol("Katherine Johnson", PIN, now()).number
    total = 1 + 1500
    for i in range(total - 1):
        node.service.post_stay(member, f"K-{i}", now(), nights=0, revenue={Outlet.FNB: Decimal("2")})
    store = fleet.ledger.store

    proc = _agent_process(fleet, "sha-lobby-01", tmp_path)
    try:
        wait_until(lambda: store.event_count() >= 200, 30, "some batches applied")
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: batches in flight, some acked, some not
        proc.wait(5)
        applied = store.event_count()
        assert 0 < applied < total

        # Head office goes away; the restarted agent's batches queue at the broker for it...
        assert fleet.office is not None
        fleet.office.stop()
        saves = fresh_mosquitto.log_text().count("Saving in-memory database")
        sent = _batches_received(fresh_mosquitto, "sha-lobby-01")
        proc = _agent_process(fleet, "sha-lobby-01", tmp_path)
        # A full window (2 batches) from the new process reaches the broker, unacked.
        wait_until(
            lambda: _batches_received(fresh_mosquitto, "sha-lobby-01") >= sent + 2,
            30,
            "the restarted agent's batches at the broker",
        )
        # ...and the broker restarts with them queued (SIGTERM: it saves its database), or
        # dies with them (SIGKILL: nothing saved since the last 1,000 changes).
        if broker_stop == "sigterm":
            fresh_mosquitto.restart()
        else:
            # The premise: no save since head office left, so its queue dies with the broker.
            assert fresh_mosquitto.log_text().count("Saving in-memory database") == saves
            fresh_mosquitto.kill()
            fresh_mosquitto.start()
        fleet.start_office()
        wait_until(lambda: store.event_count() == total, 60, "every event at head office")
        wait_until(lambda: node.service.status(now())["outbox_depth"] == 0, 30, "every row acked")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    # A barrier instead of a pause: everything the agent sent reached the broker before it
    # exited, so once head office has applied (and acked) a later event from another node,
    # it has seen every resend too.
    other = fleet.add_node("sha-lobby-02")
    other.service.enrol("Dorothy Vaughan", PIN, now())
    wait_until(lambda: other.service.status(now())["outbox_depth"] == 0, 30, "the barrier event acked")
    assert store.event_count() == total + 1  # nothing doubled by the resends
    central = fleet.ledger.member(member)
    assert central is not None and central["points"] == (total - 1) * 10
    assert not [a for a in store.alarms() if a["kind"] == "conflicting_body"]
