"""Two ``central serve`` processes on one PostgreSQL ledger, shared subscriptions, real Mosquitto
(TLS): two nodes' backlogs drain while the leader is SIGKILLed. Nothing lost, nothing doubled,
every outbox row acked, the leader's role moves and fan-out still reaches the nodes.
On SQLite a second ``central serve`` on the same ledger is refused in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store_pg import PgLedgerStore
from staypoint.loyalty.events import points_delta
from staypoint.loyalty.program import Outlet, default_program_text
from tests.mqtt_fixtures import MosquittoBroker, office_command
from tests.sync.conftest import PIN, Fleet, Node, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures", "tests.pg_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
LEADS = "this process leads"


def _serve_argv(broker: MosquittoBroker, store: str, tmp: Path) -> list[str]:
    """Head office's argv as a user gives it (office_command), on ``--store postgresql://...``."""
    argv = office_command(broker, tmp / "unused.db")
    at = argv.index("--db")
    argv[at : at + 2] = ["--store", store]
    return argv


class Office:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as err:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def leads(self) -> bool:
        return LEADS in self.text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def pg_fleet(fresh_mosquitto: MosquittoBroker, pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    ledger = Ledger(PgLedgerStore(pg_url))
    ledger.publish_program(default_program_text(), now())
    fleet = Fleet(fresh_mosquitto, tmp_path, ledger)
    try:
        yield fleet
    finally:
        fleet.close()


def _backlog(node: Node, stays: int) -> list[str]:
    members = [node.service.enrol(f"Ada Lovelace {i}", PIN, now()).number for i in range(3)]
    for i in range(stays):
        node.service.post_stay(members[i % 3], f"F-{i}", now(), nights=0, revenue={Outlet.FNB: Decimal("2")})
    return members


def test_two_ingest_processes_sigkill_the_leader_loses_and_doubles_nothing(
    pg_fleet: Fleet, pg_url: str, tmp_path: Path
) -> None:
    fleet = pg_fleet
    store = fleet.ledger.store
    nodes = [
        fleet.add_node(n, start=False, batch_events=40, window_batches=4, ack_timeout=2.0)
        for n in ("sha-lobby-01", "sha-lobby-02")
    ]
    members = {n.service.node_id: _backlog(n, 700) for n in nodes}
    total = sum(3 + 700 for _ in nodes)
    before = store.event_count()

    argv = _serve_argv(fleet.broker, pg_url, tmp_path)
    offices = [Office(argv, tmp_path / f"office-{i}.log") for i in range(2)]
    try:
        for _ in offices:  # both on the shared subscription before any node sends
            fleet.broker.wait_subscribed("head-office-", "$share/ingest/sp/v1/node/+/events", 20)
        wait_until(lambda: sum(o.leads() for o in offices) == 1, 20, "one leader")
        for node in nodes:
            fleet.start_agent(node)
        wait_until(lambda: store.event_count() - before >= 400, 60, "the backlogs to start draining")
        leader = next(o for o in offices if o.leads())
        follower = next(o for o in offices if o is not leader)
        os.kill(leader.proc.pid, signal.SIGKILL)  # mid-drain: a group in its transaction, acks unsent
        leader.proc.wait(5)
        assert store.event_count() - before < total, "the kill came too late to be mid-run"
        wait_until(follower.leads, 15, "the follower to take the leader's lock")
        wait_until(lambda: store.event_count() - before == total, 60, "every event at head office")
        fleet.settle(30)  # every row acked, every node at the ledger's tip: fan-out from the new leader

        # Fan-out after the takeover reaches the nodes as fan-out, not by a resync.
        resyncs = [n.agent.stats["resyncs"] for n in nodes if n.agent is not None]
        fleet.ledger.register_node("sha-probe-01", nodes[0].service.keys.public_hex())  # a change
        latest = store.latest_version()
        wait_until(
            lambda: all(n.agent is not None and n.agent.applied_version() >= latest for n in nodes),
            15,
            "the new leader's fan-out at every node",
        )
        assert [n.agent.stats["resyncs"] for n in nodes if n.agent is not None] == resyncs
        assert follower.proc.poll() is None
    finally:
        for office in offices:
            office.stop()

    assert store.event_count() - before == total  # nothing doubled
    ledger_ids = {str(r[0]) for r in store._all("SELECT id FROM events WHERE node LIKE 'sha-lobby-%%'")}
    outbox_ids: set[str] = set()
    for node in nodes:
        conn = node.service.replica.conn
        rows = conn.execute("SELECT id, type, member, body, acked_at FROM outbox").fetchall()
        assert all(r[4] is not None for r in rows), "an outbox row never acked"
        outbox_ids |= {str(r[0]) for r in rows}
        for m in members[node.service.node_id]:
            expected = sum(points_delta(str(k), json.loads(b)["data"]) for _, k, mm, b, _ in rows if mm == m)
            central = fleet.ledger.member(m)
            assert central is not None and central["points"] == expected
        assert node.agent is not None and node.agent.stats["events_acked"] == len(rows)
    assert ledger_ids == outbox_ids  # each event once, none missing
    assert not [a for a in store.alarms() if a["kind"] in ("conflicting_body", "duplicate_id")]


def test_a_second_serve_on_one_sqlite_ledger_is_refused(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    db = tmp_path / "ledger.db"
    first = Office(office_command(fresh_mosquitto, db), tmp_path / "first.log")
    try:
        wait_until(lambda: "head office serving" in first.text(), 30, "the first head office")
        second = subprocess.run(
            office_command(fresh_mosquitto, db), cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert lines[-1].startswith("staypoint: another central serve (pid ")
        assert "only one process may serve" in lines[-1]
        assert first.proc.poll() is None  # the first one serves on
    finally:
        first.stop()
