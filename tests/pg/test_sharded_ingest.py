"""Two ``central serve`` processes on one PostgreSQL ledger, sharded ingest, real Mosquitto
(TLS): two nodes' backlogs drain while the leader is SIGKILLed. Nothing lost, nothing doubled,
every outbox row acked, the leader's role and the dead one's shards move, and fan-out still
reaches the nodes. In a normal run each node's batches are applied by one process, in order:
nothing parked, no resend asked for, no ack timeout. On SQLite a second ``central serve`` on
the same ledger is refused in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from staypoint.central.leader import PgLeadership, PgShards, ShardCountMismatch, shard_of
from staypoint.central.ledger import Ledger
from staypoint.central.server import HeadOffice, MqttSettings
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
SHARES = re.compile(r"ingest shards: this process ingests (\d+) of 64")


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

    def shards(self) -> int:
        """How many ingest shards it said it holds last (0 before it said)."""
        found = SHARES.findall(self.text())
        return int(found[-1]) if found else 0

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
        # Both subscribed and the shards shared out before any node sends: sha-lobby-01 is in
        # shard 3, sha-lobby-02 in 32, so each process applies one node's batches.
        wait_until(lambda: len(_subscribed(fleet, "sp/v1/node/+/events")) == 2, 20, "both subscribed")
        wait_until(lambda: [o.shards() for o in offices] == [32, 32], 30, "32 shards each")
        assert [shard_of(n.service.node_id, 64) for n in nodes] == [3, 32]
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
        wait_until(lambda: follower.shards() == 64, 15, "the follower to take the dead one's shards")
        wait_until(lambda: store.event_count() - before == total, 60, "every event at head office")
        fleet.settle(30)  # every row acked, every node at the ledger's tip: fan-out from the new leader

        # Fan-out after the takeover reaches the nodes as fan-out, not by a resync.
        resyncs = _resyncs(nodes)
        fleet.ledger.register_node("sha-probe-01", nodes[0].service.keys.public_hex())  # a change
        _fanned_out(nodes, store.latest_version(), resyncs, 15, "the new leader's fan-out at every node")
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


def _office_settings(fleet: Fleet, name: str, share_group: str | None = None) -> MqttSettings:
    """An in-process head office's broker settings, with head office's certificate and a client
    id of its own (``name`` and a random suffix)."""
    tls = fleet.broker.client_tls("head-office")
    return MqttSettings(
        fleet.broker.host,
        fleet.broker.office_port,
        tls.ca,
        tls.cert,
        tls.key,
        client_id=f"{name}-{uuid.uuid4().hex[:6]}",
        share_group=share_group,
    )


def _resyncs(nodes: list[Node]) -> list[int]:
    return [n.agent.stats["resyncs"] for n in nodes if n.agent is not None]


def _fanned_out(nodes: list[Node], latest: int, resyncs: list[int], timeout: float, what: str) -> None:
    """Every node at ``latest`` or past it, by fan-out alone: no resync since ``resyncs``."""
    wait_until(
        lambda: all(n.agent is not None and n.agent.applied_version() >= latest for n in nodes), timeout, what
    )
    assert _resyncs(nodes) == resyncs


def _subscribed(fleet: Fleet, topic: str) -> set[str]:
    """Head-office client ids the broker logged subscribing to ``topic`` (the filter exactly)."""
    pattern = rf"(?:^|: )(head-office\S*) \d {re.escape(topic)}$"
    return set(re.findall(pattern, fleet.broker.log_text(), re.MULTILINE))


def _recording(ledger: Ledger, log: list[tuple[str, str, int]]) -> None:
    """Note (thread, node, first seq) of every batch ``ledger`` is given to apply, in order."""
    original = ledger.ingest_many

    def record(batches: Any, at: Any, **kw: Any) -> Any:
        name = threading.current_thread().name
        for node, events in batches:
            log.append((name, node, int(events[0]["seq"])))
        return original(batches, at, **kw)

    ledger.ingest_many = record  # type: ignore[method-assign]


def _node_ids(count: int, low: bool) -> list[str]:
    """Node ids whose shard is in the lower half (0-31: the first office's) or the upper one."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        i += 1
        name = f"sha-bar-{i:02d}"
        if (shard_of(name, 64) < 32) == low:
            out.append(name)
    return out


def test_each_nodes_batches_are_applied_by_one_process_in_order(
    pg_fleet: Fleet, pg_url: str, tmp_path: Path
) -> None:
    """Two head offices (in this process, each with its own ledger connections, shards and
    MQTT client) share six nodes' backlogs: each node's batches are applied by the one office
    that owns its shard, in the order the node sent them, and nothing is parked, resent or
    timed out; each office drops the other's batches unparsed."""
    fleet = pg_fleet
    store = fleet.ledger.store
    names = _node_ids(3, low=True) + _node_ids(3, low=False)
    # The ack timeout is wide: this test is about who applies what, in which order. Two offices,
    # six agents and PostgreSQL at production durability in one loaded test worker can stall
    # a group's commit past 5 s, and the node's resend (correct, and skipped by the ledger)
    # would read here as a batch given twice.
    nodes = [
        fleet.add_node(n, start=False, batch_events=25, window_batches=4, ack_timeout=20.0) for n in names
    ]
    stays = 120
    for node in nodes:
        _backlog(node, stays)
    before = store.event_count()
    applied: list[list[tuple[str, str, int]]] = [[], []]
    parts: list[tuple[HeadOffice, PgShards, PgLeadership, Ledger]] = []
    try:
        for i in range(2):
            ledger = Ledger(PgLedgerStore(pg_url))
            shards = PgShards(pg_url, 64, poll=0.2).start()
            if i == 0:
                assert shards.wait_owned(64, 10)  # alone: every shard
            leadership = PgLeadership(pg_url, poll=0.2).start()
            settings = _office_settings(fleet, f"head-office-test-{i}", share_group="ingest")
            office = HeadOffice(ledger, settings, tick_seconds=0.5, leader=leadership, shards=shards)
            _recording(ledger, applied[i])
            office.start()
            parts.append((office, shards, leadership, ledger))
        first, second = parts[0][1], parts[1][1]
        wait_until(lambda: len(first.owned) == 32 and len(second.owned) == 32, 20, "32 shards each")
        assert first.owned == frozenset(range(32))  # the first one kept the lower half
        for node in nodes:
            fleet.start_agent(node)
        wait_until(lambda: store.event_count() - before == len(nodes) * (3 + stays), 90, "every event")
        fleet.settle(30)
    finally:
        for office, shards, leadership, ledger in parts:
            office.stop()
            shards.stop()
            leadership.stop()
            ledger.store.close()

    by_node: dict[str, set[int]] = {}
    for i, log in enumerate(applied):
        for _, node, _ in log:
            by_node.setdefault(node, set()).add(i)
    assert by_node == {n: {0} for n in names[:3]} | {n: {1} for n in names[3:]}
    # A batch given twice is a node's resend (its ack timeout), a resend asked for, or the
    # store's retry after a transient error: the counters say which.
    why = "; ".join(
        [f"office {i}: {dict(o.handled)}, dropped {dict(o.dropped)}" for i, (o, *_) in enumerate(parts)]
        + [f"{n.config.node_id}: {dict(n.agent.stats) if n.agent else None}" for n in nodes]
    )
    for log in applied:
        for name in names:
            seqs = [seq for _, node, seq in log if node == name]
            assert seqs == sorted(set(seqs)), f"{name}'s batches out of order or twice: {seqs} ({why})"
    for office, *_ in parts:
        assert office.handled["events_parked"] == 0
        assert office.handled["resend_requests"] == 0
        assert office.handled["events_other_shard"] > 0  # the other's, dropped before parsing
        assert not office.dropped
    for node in nodes:
        assert node.agent is not None
        assert node.agent.stats["resend_requests"] == 0 and node.agent.stats["ack_timeouts"] == 0
    assert store.event_count() - before == len(nodes) * (3 + stays)


def test_shards_move_to_who_is_left_and_a_different_count_is_refused(pg_url: str) -> None:
    first = PgShards(pg_url, 64, poll=0.1).start()
    second: PgShards | None = None
    try:
        assert first.owned == frozenset(range(64))
        with pytest.raises(ShardCountMismatch, match="--shards 64"):
            PgShards(pg_url, 32, poll=0.1).start()
        second = PgShards(pg_url, 64, poll=0.1).start()
        wait_until(lambda: len(first.owned) == 32 and len(second.owned) == 32, 10, "32 each")
        assert first.owned | second.owned == frozenset(range(64))
        first.stop()  # its session ends: its shards are free
        wait_until(lambda: len(second.owned) == 64, 10, "the one left to take all 64")
    finally:
        first.stop()
        if second is not None:
            second.stop()


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
    assert "Traceback" not in second.stderr
    threads = subprocess.run(
        [*office_command(fresh_mosquitto, db), "--ingest-threads", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert threads.returncode != 0 and "Traceback" not in threads.stderr
    assert threads.stderr.strip().splitlines()[-1] == (
        "staypoint: --ingest-threads: more than one needs PostgreSQL (SQLite: one writer)"
    )


def test_two_ingest_threads_in_one_process_apply_each_node_in_order_and_fan_out_in_order(
    pg_fleet: Fleet, pg_url: str
) -> None:
    """One head office, two ingest threads (``--ingest-threads 2``, PostgreSQL's default), six
    nodes: each node's batches are applied by one thread, in the order sent, and both threads
    apply; every event once, every row acked, and the fan-out of both threads' changes reaches
    every node in version order (no gap, so no resync)."""
    fleet = pg_fleet
    store = fleet.ledger.store
    names = [f"sha-duo-{i:02d}" for i in range(6)]
    nodes = [
        fleet.add_node(n, start=False, batch_events=25, window_batches=4, ack_timeout=20.0) for n in names
    ]
    stays = 120
    guests = [_backlog(node, stays)[0] for node in nodes]
    before = store.event_count()
    applied: list[tuple[str, str, int]] = []
    ledger = Ledger(PgLedgerStore(pg_url))
    settings = _office_settings(fleet, "head-office-duo")
    office = HeadOffice(ledger, settings, tick_seconds=0.5, ingest_threads=2)
    _recording(ledger, applied)
    resyncs: list[int] = []
    try:
        office.start()
        for node in nodes:
            fleet.start_agent(node)
        # The nodes' first resync (on connecting) is over before their backlogs drain.
        wait_until(lambda: store.event_count() - before == len(nodes) * (3 + stays), 90, "every event")
        fleet.settle(30)
        resyncs = _resyncs(nodes)
        # Two threads' worth of changes more, then each node at the tip by fan-out alone.
        latest_before = store.latest_version()
        for node, guest in zip(nodes[:2], guests, strict=False):
            node.service.post_stay(guest, "F-last", now(), nights=0, revenue={Outlet.FNB: Decimal("2")})
        wait_until(lambda: store.latest_version() >= latest_before + 2, 30, "the last two stays booked")
        _fanned_out(nodes, store.latest_version(), resyncs, 20, "the fan-out at every node")
        handled, dropped = dict(office.handled), dict(office.dropped)
    finally:
        office.stop()
        ledger.store.close()

    lanes: dict[str, set[str]] = {}
    for thread, node, _ in applied:
        lanes.setdefault(node, set()).add(thread)
    assert all(len(t) == 1 for t in lanes.values()), lanes  # one thread per node
    assert len({t for ts in lanes.values() for t in ts}) == 2  # both threads applied
    for name in names:
        seqs = [seq for _, node, seq in applied if node == name]
        assert seqs == sorted(set(seqs)), f"{name}'s batches out of order or twice: {seqs}"
    assert handled.get("resend_requests", 0) == 0 and not dropped
    assert store.event_count() - before == len(nodes) * (3 + stays) + 2  # nothing doubled
    for node in nodes:
        assert node.agent is not None and node.agent.stats["ack_timeouts"] == 0
        rows = node.service.replica.conn.execute("SELECT acked_at FROM outbox").fetchall()
        assert all(r[0] is not None for r in rows), "an outbox row never acked"
