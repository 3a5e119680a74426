"""The ledger fails over: Patroni promotes the synchronous standby while a node's backlog drains.

Two PostgreSQL 15 members and one etcd on loopback (tests/patroni_fixtures.py), head office as a
user starts it (``central serve --store`` naming both members, real Mosquitto with TLS), a node
sending a backlog. The primary's machine dies mid-ingest (its Patroni and its postmaster
SIGKILLed); the standby is promoted; head office notices the broken connection, reconnects to
the new primary and applies the interrupted group again. Nothing is lost or doubled, every
outbox row is acked once, head office keeps running, and the node sees only a pause.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from staypoint.central import pg
from staypoint.central.ledger import Ledger
from staypoint.central.store_pg import PgLedgerStore
from staypoint.loyalty.events import points_delta
from staypoint.loyalty.program import Outlet, default_program_text
from tests.mqtt_fixtures import MosquittoBroker, office_command
from tests.patroni_fixtures import PatroniCluster, require_patroni
from tests.sync.conftest import PIN, Fleet, now
from tests.waits import wait_until, while_running

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
BACKLOG = 3000


def _office(broker: MosquittoBroker, url: str, log: Path) -> subprocess.Popen[bytes]:
    argv = office_command(broker, Path("unused"))
    at = argv.index("--db")
    argv[at : at + 2] = ["--store", url]  # the ledger as an operator names it: both members
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


def _count(url: str) -> int | None:
    """Events in the ledger, read from whichever member takes writes now (None: none does)."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


def test_primary_dies_mid_ingest_standby_takes_over_nothing_lost_or_doubled(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    require_patroni()
    # Not under tmp_path: every pytest session that starts (another checkout's, a colleague's on
    # this machine) resets pytest's per-user temp root to 0700, and the members, running as the
    # postgres user, then lose their own data folders mid-test (Patroni stops both servers).
    where = Path(tempfile.mkdtemp(prefix="sp-patroni-"))
    request.addfinalizer(lambda: pg.remove_tree(where))
    cluster = PatroniCluster(where)
    request.addfinalizer(cluster.stop)
    t0 = time.monotonic()
    try:
        cluster.start(timeout=60)
    except AssertionError as err:  # a timeout: add what the members logged
        raise AssertionError(f"{err}\n{cluster.log_tail()}") from None
    bootstrap_s = time.monotonic() - t0
    url = cluster.create_database("staypoint")
    first = cluster.leader()
    assert first is not None
    with psycopg.connect(url) as conn:  # head office's commits wait for the standby
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert conn.execute("SELECT sync_state FROM pg_stat_replication").fetchall() == [("sync",)]

    ledger = Ledger(PgLedgerStore(url, min_size=1, max_size=4))
    ledger.publish_program(default_program_text(), now())
    fleet = Fleet(fresh_mosquitto, tmp_path, ledger)
    request.addfinalizer(fleet.close)
    node = fleet.add_node("sha-lobby-01", start=False, batch_events=20, window_batches=2, ack_timeout=5.0)
    members = [node.service.enrol(f"Ada Lovelace {i}", PIN, now()).number for i in range(3)]
    for i in range(BACKLOG):
        node.service.post_stay(members[i % 3], f"L-{i}", now(), nights=0, revenue={Outlet.FNB: Decimal("2")})
    total = 3 + BACKLOG

    log = tmp_path / "office.log"
    started_at = time.monotonic()
    office = _office(fresh_mosquitto, url, log)

    def serving(condition: Callable[[], object]) -> Callable[[], object]:
        return while_running(office, condition, "central serve", log)  # its exit ends the wait, with its log

    try:
        # The node only once head office is subscribed: a batch sent before is dropped by the broker
        # (no subscriber yet) and costs the node an ack timeout. central serve says this line once
        # the broker has granted its subscriptions; it exits by itself after --connect-timeout
        # (30 s) without them, which ends this wait, so the budget is that plus its start-up.
        said = "head office serving"
        wait_until(serving(lambda: said in log.read_text(errors="replace")), 45, "central serve to subscribe")
        ready_s = time.monotonic() - started_at
        agent = fleet.start_agent(node)
        # 500 events are 25 batches of 20, two in flight: a few seconds' work even on a loaded
        # machine; the budget leaves room for several ack timeouts (5 s) of batches lost meanwhile.
        wait_until(serving(lambda: (_count(url) or 0) >= 500), 60, "the backlog to start draining")
        draining_s = time.monotonic() - started_at - ready_s
        connects = agent.stats["connects"]
        applied = _count(url) or 0
        killed_at = time.monotonic()
        old = cluster.kill_leader()  # mid-drain: a group in its transaction or waiting on its commit
        assert applied < total, "drained before the failover"
        # The standby is promoted once the dead leader's key expires (ttl 10 s, docs/scale.md) and
        # the store finds it within a second of that; it gives up only after 120 s (failover_seconds).
        # Each budget below is a few times what its step takes on a loaded machine, and under that.
        new = cluster.wait_leader(other_than=old, timeout=45)
        promoted_s = time.monotonic() - killed_at
        readings: list[int] = []

        def writable() -> bool:  # the promoted member takes connections (and writes)
            n = _count(url)
            readings.extend([] if n is None else [n])
            return n is not None

        wait_until(serving(writable), 30, "the new primary to take connections")
        at_promotion = readings[-1]
        assert at_promotion < total, "drained before the new primary took over"

        def resumed() -> bool:
            n = _count(url)
            return n is not None and n > at_promotion

        wait_until(serving(resumed), 45, "ingest to resume on the new primary")
        resumed_s = time.monotonic() - killed_at
        wait_until(serving(lambda: _count(url) == total), 60, "every event at head office")
        wait_until(serving(lambda: node.service.status(now())["outbox_depth"] == 0), 30, "every row acked")
        drained_s = time.monotonic() - killed_at
        assert office.poll() is None, "central serve died in the failover"
    finally:
        office.send_signal(signal.SIGTERM)
        office.wait(15)
    text = log.read_text(errors="replace")
    print(
        f"\nfailover: cluster up {bootstrap_s:.1f} s; central serve subscribed after {ready_s:.1f} s; 500 "
        f"events applied {draining_s:.1f} s after the node started; killed {old.name} (primary) with "
        f"{applied} of {total} applied; {new.name} promoted after {promoted_s:.1f} s, ingest resumed after "
        f"{resumed_s:.1f} s, backlog drained after {drained_s:.1f} s"
    )
    failovers = [line for line in text.splitlines() if "ledger failover:" in line]
    assert len(failovers) == 1, text[-4000:]  # one line per failover, naming the new primary
    assert f":{new.pg_port}" in failovers[0]
    assert "ingest of" not in text, text[-4000:]  # no group given up, none tried one by one

    store = ledger.store
    assert isinstance(store, PgLedgerStore)
    store.pool.check()  # this reader's pooled connections went to the old primary
    assert store.event_count() == total  # nothing doubled
    outbox = node.service.replica.conn.execute("SELECT id, type, member, body FROM outbox").fetchall()
    with psycopg.connect(url) as conn:
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM events")}
    assert ids == {str(r[0]) for r in outbox}  # each event once, none missing
    for member in members:
        expected = sum(
            points_delta(str(kind), json.loads(body)["data"]) for _, kind, m, body in outbox if m == member
        )
        central = ledger.member(member)
        assert central is not None and central["points"] == expected
    assert not [a for a in store.alarms() if a["kind"] in ("conflicting_body", "duplicate_id")]
    # The node saw a pause: the broker stayed up, so it never lost its connection; each row acked once.
    assert agent.stats["connects"] == connects
    assert agent.stats["events_acked"] == total
