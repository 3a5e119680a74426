"""Sync benchmark against one real Mosquitto (TLS, the fleet's ACL): prints one JSON object.

    .venv/bin/python bench/sync.py [--members 1000000] [--backlog 100000] [--raw 3000] [--raw-events 20000]

Processes: as in production, head office (``staypoint central serve``) runs in its OWN process
and the node agent in this one; the raw figure likewise has its subscriber in its own process
and the publisher in this one. So both figures cross the same process boundaries.

Figures:
- raw_qos1_msgs_per_s: paho QoS 1 publish -> subscribe through the same broker, the same
  payload size as a real batch, the same TLS and MQTT 5, with the node's window
  (``SyncConfig.window_batches``) of messages published but not yet delivered: throughput,
  not stop-and-wait. Measured before and after the e2e drain (the machine is shared);
  ``raw_qos1_msgs_per_s`` is their mean. raw_ceiling_events_per_s: that x events per batch
  (the transport's byte limit in events); e2e_vs_raw_batch: e2e events/s over it;
- raw_qos1_event_msgs_per_s: the same for messages the size of ONE event (its outbox body,
  ``event_payload_bytes``): the transport's rate if each event travelled alone;
  e2e_vs_raw_event: e2e events/s over it (the ratio the README reports; docs/sync.md says
  why both are printed);
- raw_sqlite_insert_rows_per_s: the same events' rows into the ledger's own ``events``
  table (schema, indexes, synchronous=FULL) in the ingest thread's group size, nothing
  else: the fastest a durable ledger on this SQLite could go; ho_apply_vs_raw_sqlite and
  raw_sqlite_vs_raw_batch compare it with head office's apply and with the batch ceiling;
- e2e: a node's outbox -> head office's commit -> the ack back at the node, for a backlog
  of ``--backlog`` events after a reconnect (events/s, batches/s, drain seconds), and the
  publish -> ack latency of each batch during the drain (``e2e_batch_latency_ms``, which
  includes waiting in the window) and of single batches on an idle system
  (``idle_batch_latency_ms``);
- cpu_ms_per_1k_events: CPU seconds per 1,000 events of each process (the node / publisher
  process, head office's / the subscriber's process read from /proc/<pid>/stat, the broker),
  the figures that the other load on a shared machine disturbs least;
- inprocess (``--inprocess-backlog N``, off by default): the old arrangement for comparison
  (head office, agent and both raw clients in this one process, one GIL);
- ho_apply_events_per_s: head office's ingest alone (no broker), one member, batches of 500;
  ho_apply_grouped_events_per_s: the same over 1,000 members in groups of
  ``server.GROUP_BATCHES`` batches of a real batch's size (what the ingest thread does);
- bootstrap_s: a new node receiving ``--members`` members by snapshot (members loaded with
  head office stopped, then served by a fresh head-office process).
The ledger runs with synchronous=FULL (an ack promises durability); the node replica too.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from staypoint.central.leader import shard_of
from staypoint.central.ledger import Ledger
from staypoint.central.seed import seed_docs
from staypoint.central.server import GROUP_BATCHES, HeadOffice, MqttSettings
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge.service import NodeService
from staypoint.edge.sync.agent import SyncAgent, SyncConfig
from staypoint.gc_tuning import tuned_for_throughput
from staypoint.loyalty.events import Event, iso, uuid7
from staypoint.loyalty.program import default_program_text
from staypoint.mqtt_tls import use_fleet_tls
from tests.mqtt_fixtures import FleetPKI, MosquittoBroker, _make_pki, close, make_client, office_command

REPO = Path(__file__).resolve().parents[1]
EVENTS_PER_BATCH = 246  # the synthetic events that fill one 96 KiB batch


def now() -> datetime:
    return datetime.now(UTC)


def synthetic_backlog(service: NodeService, members: list[str], count: int) -> int:
    """``count`` valid stay.posted events straight into the outbox (posting them one by one
    through the service would measure the kiosk, not sync). Returns the payload size of a
    full batch."""
    at = now()
    conn = service.replica.conn
    start = int(service.replica.meta("last_seq") or 0)
    rows = []
    for i in range(count):
        member = members[i % len(members)]
        seq = start + 1 + i
        ev = Event(
            node=service.node_id,
            epoch=1,
            seq=seq,
            id=uuid7(at),
            at=iso(at),
            type="stay.posted",
            member=member,
            program=1,
            data={
                "folio": f"B-{seq}",
                "property": service.property,
                "arrival": at.date().isoformat(),
                "departure": at.date().isoformat(),
                "nights": 0,
                "revenue": {"fnb": "2.00"},
                "points": 10,
                "qualifying_points": 10,
                "tier": "MEMBER",
                "tier_after": "MEMBER",
                "promotions": [],
            },
        )
        rows.append((1, seq, ev.id, ev.type, member, ev.at, ev.to_json()))
    with service.replica.write():
        conn.executemany(
            "INSERT INTO outbox (epoch, seq, id, type, member, at, body) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
        )
        service.replica.set_meta("last_seq", start + count)
    size = 40
    for r in rows[:500]:
        if size + len(r[6]) + 1 > SyncConfig.batch_bytes:
            break
        size += len(r[6]) + 1
    return size


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of a process and its live children (a PostgreSQL server and its backends)."""
    if pid is None:
        return 0.0
    total = proc_cpu(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += proc_cpu(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def proc_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of another process so far, 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def publisher(broker: MosquittoBroker, identity: str, client_id: str, *, inflight: int) -> mqtt.Client:
    """A paho client set up as the agent's is (MQTT 5, TLS, its in-flight limit), loop running."""
    files = broker.client_tls(identity)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    use_fleet_tls(client, files.ca, files.cert, files.key)
    client.max_inflight_messages_set(inflight)
    up = threading.Event()
    client.on_connect = lambda *_: up.set()
    client.connect(broker.host, broker.port_for(identity), keepalive=30, clean_start=True)
    client.loop_start()
    if not up.wait(10):
        raise RuntimeError("raw publisher could not connect")
    return client


RAW_TOPIC = "sp/v1/node/sha-lobby-02/bench"


def raw_subscriber_main(argv: list[str]) -> None:
    """``--raw-sub HOST PORT CA CERT KEY``: the raw figure's subscriber in its own process, set
    up as head office's client is (MQTT 5, TLS, QoS 1). It writes one byte to stdout per
    message received (the publisher's window is released from that), ``R`` once subscribed."""
    host, port, ca, cert, key = argv
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-raw-sub", protocol=MQTTProtocolVersion.MQTTv5
    )
    use_fleet_tls(client, ca, cert, key)
    client.max_inflight_messages_set(100)
    out = sys.stdout.buffer
    subscribed = threading.Event()

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe(RAW_TOPIC, 1)

    def on_message(*_: Any) -> None:
        out.write(b".")
        out.flush()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect(host, int(port), keepalive=30, clean_start=True)
    client.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("raw subscriber could not subscribe")
    out.write(b"R")
    out.flush()
    sys.stdin.read()  # until the bench closes our stdin
    client.disconnect()
    client.loop_stop()


def raw_transport(
    broker: MosquittoBroker, size: int, count: int, window: int, *, separate: bool = True
) -> dict[str, float]:
    """QoS 1 messages/s from a node's identity to head office's, ``size`` bytes each, with at
    most ``window`` messages published and not yet delivered (the agent's window). With
    ``separate`` the subscriber runs in its own process (as head office does), else in this one."""
    cond = threading.Condition()
    received = [0]
    child: subprocess.Popen[bytes] | None = None
    sub: mqtt.Client | None = None

    def got(n: int) -> None:
        with cond:
            received[0] += n
            cond.notify_all()

    if separate:
        tls = broker.client_tls("head-office")
        child = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--raw-sub",
                broker.host,
                str(broker.office_port),
                str(tls.ca),
                str(tls.cert),
                str(tls.key),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        if child.stdout.read(1) != b"R":
            raise RuntimeError("raw subscriber did not start")
        stream = child.stdout

        def reader() -> None:
            while chunk := stream.read1(4096):
                got(len(chunk))

        threading.Thread(target=reader, daemon=True).start()
    else:
        sub = make_client(broker, "head-office", "bench-raw-sub", clean_start=True)
        sub.on_message = lambda *_: got(1)
        sub.subscribe(RAW_TOPIC, 1)
        time.sleep(0.3)
    pub = publisher(broker, "sha-lobby-02", "bench-raw-pub", inflight=max(20, window * 2))  # as the agent
    payload = b"x" * size
    child_pid = child.pid if child is not None else None
    cpu, broker_cpu, sub_cpu = time.process_time(), proc_cpu(broker.pid), proc_cpu(child_pid)
    started = time.perf_counter()
    for sent in range(count):
        with cond:
            while sent - received[0] >= window:
                cond.wait(5)
        pub.publish(RAW_TOPIC, payload, qos=1)
    with cond:
        cond.wait_for(lambda: received[0] >= count, 300)
    took = time.perf_counter() - started
    cpu, broker_cpu = time.process_time() - cpu, proc_cpu(broker.pid) - broker_cpu
    sub_cpu = proc_cpu(child_pid) - sub_cpu
    pub.disconnect()
    pub.loop_stop()
    if child is not None:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
    if sub is not None:
        close(sub)
    return {
        "msgs_per_s": count / took,
        "cpu_ms_per_msg": 1000
        * cpu
        / count,  # this process: the publisher (+ the subscriber if not separate)
        "sub_cpu_ms_per_msg": 1000 * sub_cpu / count,
        "broker_cpu_ms_per_msg": 1000 * broker_cpu / count,
    }


class OfficeProcess:
    """``staypoint central serve`` in its own process, as in production (and test_office_kill)."""

    def __init__(self, broker: MosquittoBroker, db: Path, log: Path, argv: list[str] | None = None) -> None:
        self.log = log
        mark = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                argv or office_command(broker, db),
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 30
        while b"head office serving" not in log.read_bytes()[mark:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("head office did not start: " + log.read_text()[-2000:])
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def drain(
    node: NodeService,
    config: SyncConfig,
    backlog: int,
    office_pid: int | None,
    broker: MosquittoBroker,
) -> tuple[SyncAgent, float, dict[str, float]]:
    """Start the agent on a waiting backlog ("after a reconnect") and time it to the last ack.
    Returns the running agent, the seconds, and CPU seconds of this process, the office
    process (when separate) and the broker."""
    agent = SyncAgent(node, config)
    cpu, office_cpu, broker_cpu = time.process_time(), proc_cpu(office_pid), proc_cpu(broker.pid)
    started = time.perf_counter()
    agent.start()
    deadline = time.monotonic() + 600
    # The agent's own count of acknowledged events: a dict read. (Polling the outbox with
    # count(*) every 20 ms cost this process a sixth of its CPU and competed with the agent
    # for the GIL.) The outbox is checked once at the end.
    while agent.stats["events_acked"] < backlog and time.monotonic() < deadline:
        time.sleep(0.02)
    took = time.perf_counter() - started
    cpus = {
        "self": time.process_time() - cpu,
        "office": proc_cpu(office_pid) - office_cpu,
        "broker": proc_cpu(broker.pid) - broker_cpu,
    }
    if agent.pending():
        raise RuntimeError(f"drain did not finish: {agent.pending()} pending")
    return agent, took, cpus


def mean_rate(out: dict[str, Any], prefix: str, runs: tuple[dict[str, float], ...]) -> None:
    """``<prefix>_msgs_per_s_before_after`` and their mean ``<prefix>_msgs_per_s`` into ``out``."""
    out[f"{prefix}_msgs_per_s_before_after"] = [round(r["msgs_per_s"], 1) for r in runs]
    out[f"{prefix}_msgs_per_s"] = round(sum(r["msgs_per_s"] for r in runs) / len(runs), 1)


def per_1k(seconds: float, events: int) -> float:
    return round(1e6 * seconds / events, 1)


def commit_ms(path: Path, count: int = 40) -> float:
    """Median time of one small synchronous=FULL WAL commit on this disk (the fsync price)."""
    store = SqliteLedgerStore(path)
    took = []
    for i in range(count):
        started = time.perf_counter()
        with store.transaction():
            store.bump_counter("bench", i)
        took.append(1000 * (time.perf_counter() - started))
    store.close()
    return round(pct(took, 0.5), 2)


def grouped_setup(
    tmp: Path, count: int
) -> tuple[Ledger, NodeService, list[dict[str, Any]], list[tuple[str, list[dict[str, Any]]]]]:
    """A ledger with the programme and 1,000 members, a node whose outbox holds ``count``
    stays over them, and those stays as head office receives them: batches of a real batch's
    size. Returns (ledger, node, the members' records, the batches)."""
    ledger = Ledger(SqliteLedgerStore(tmp / "grouped.db"))
    ledger.publish_program(default_program_text(), now())
    program = ledger.program()
    assert program is not None
    spread = seed_docs(program, 1000, now(), start=7_000_000)
    ledger.import_members(spread)
    node = NodeService.init_node(tmp / "g.db", "sha-lobby-08", "H8", default_program_text(), now())
    synthetic_backlog(node, [d["number"] for d in spread], count)
    bodies = [json.loads(b) for (b,) in node.replica.conn.execute("SELECT body FROM outbox ORDER BY seq")]
    per = EVENTS_PER_BATCH
    return ledger, node, spread, [("sha-lobby-08", bodies[i : i + per]) for i in range(0, len(bodies), per)]


def ingest_groups(ledger: Ledger, batches: list[tuple[str, list[dict[str, Any]]]]) -> float:
    """Seconds for ``batches`` through ``Ledger.ingest_many``, ``GROUP_BATCHES`` per group, as
    the ingest thread groups them (the caller sets the collector, as ``central serve`` does)."""
    started = time.perf_counter()
    for i in range(0, len(batches), GROUP_BATCHES):
        ledger.ingest_many(batches[i : i + GROUP_BATCHES], now())
    return time.perf_counter() - started


def grouped_apply(tmp: Path, count: int) -> int:
    """Head office's ingest alone as the ingest thread runs it: ``count`` events over 1,000
    members, batches of a real batch's size, ``GROUP_BATCHES`` batches per transaction."""
    ledger, node, _, batches = grouped_setup(tmp, count)
    with tuned_for_throughput():  # as central serve runs; the rest of the bench with the defaults
        rate = round(sum(len(b) for _, b in batches) / ingest_groups(ledger, batches))
    ledger.store.close()
    node.close()
    return rate


def raw_sqlite_insert(path: Path, node: NodeService) -> float:
    """Rows/s of the ledger's own events table (same schema, indexes and synchronous=FULL)
    for ``node``'s outbox rows, inserted as they are in groups as big as the ingest thread's,
    one commit each: no validation, no re-pricing, no member records. No ledger that stores
    each event durably in this SQLite goes faster; head office's apply is compared with it."""
    store = SqliteLedgerStore(path)
    rows = [
        (str(i), str(n), int(e), int(q), str(t), m, str(b), "2026-11-25T00:00:00.000Z")
        for i, n, e, q, t, m, b in node.replica.conn.execute(
            "SELECT json_extract(body, '$.id'), json_extract(body, '$.node'), epoch, seq, type, member, "
            "body FROM outbox ORDER BY epoch, seq"
        )
    ]
    group = GROUP_BATCHES * EVENTS_PER_BATCH
    started = time.perf_counter()
    for i in range(0, len(rows), group):
        with store.transaction():
            store.insert_events(rows[i : i + group])
    rate = len(rows) / (time.perf_counter() - started)
    store.close()
    return rate


def event_payload_bytes(node: NodeService) -> int:
    """The mean size of one event as it travels (its outbox body)."""
    (size,) = node.replica.conn.execute("SELECT avg(length(CAST(body AS BLOB))) FROM outbox").fetchone()
    return round(float(size))


def prepare_ledger(path: Path) -> tuple[Ledger, list[str]]:
    """A ledger with the programme and 1,000 members (a backlog spread over them, as a day
    offline at a busy property would be)."""
    ledger = Ledger(SqliteLedgerStore(path))
    ledger.publish_program(default_program_text(), now())
    program = ledger.program()
    assert program is not None
    spread = seed_docs(program, 1000, now(), start=5_000_000)
    ledger.import_members(spread)
    return ledger, [d["number"] for d in spread]


def node_with_backlog(
    tmp: Path, broker: MosquittoBroker, pki: FleetPKI, node_id: str, members: list[str], backlog: int
) -> tuple[NodeService, SyncConfig, int]:
    """A node bootstrapped from head office (which must be serving), then ``backlog`` events
    written to its outbox with the agent stopped. Returns the node, its agent config and the
    payload size of a full batch."""
    node = NodeService.init_node(tmp / f"{node_id}.db", node_id, "H1", default_program_text(), now())
    ntls = pki.tls(node_id)
    config = SyncConfig(node_id, broker.host, broker.port, ntls.ca, ntls.cert, ntls.key)
    agent = SyncAgent(node, config)
    agent.start()
    assert agent.wait_idle(60)
    agent.stop()
    return node, config, synthetic_backlog(node, members, backlog)


def inprocess_figures(
    tmp: Path, broker: MosquittoBroker, pki: FleetPKI, backlog: int, raw: int
) -> dict[str, Any]:
    """The old arrangement, for comparison: head office, the node agent and both raw clients
    in this one process (one GIL), a smaller backlog."""
    ledger, members = prepare_ledger(tmp / "ledger-inproc.db")
    tls = pki.tls("head-office")
    office = HeadOffice(ledger, MqttSettings(broker.host, broker.office_port, tls.ca, tls.cert, tls.key))
    office.start()
    try:
        node, config, size = node_with_backlog(tmp, broker, pki, "sha-lobby-03", members, backlog)
        raw_r = raw_transport(broker, size, raw, config.window_batches, separate=False)
        agent, took, cpus = drain(node, config, backlog, None, broker)
        batches = agent.stats["batches_sent"]
        agent.stop()
        node.close()
    finally:
        office.stop()
        ledger.store.close()
    per_batch = backlog / max(1, batches)
    e2e = backlog / took
    return {
        "backlog": backlog,
        "e2e_events_per_s": round(e2e),
        "raw_qos1_msgs_per_s": round(raw_r["msgs_per_s"], 1),
        "raw_ceiling_events_per_s": round(raw_r["msgs_per_s"] * per_batch),
        "e2e_vs_raw_batch": round(e2e / (raw_r["msgs_per_s"] * per_batch), 3),
        "cpu_ms_per_1k_events": {"e2e_process": per_1k(cpus["self"], backlog)},
    }


# -- PostgreSQL, one or more ingest processes (issue 15 item 1) ----------------------------------


def pg_durability(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {
            k: str(conn.execute(f"SHOW {k}").fetchone()[0])  # type: ignore[index]
            for k in ("fsync", "synchronous_commit", "full_page_writes", "wal_level")
        }


def raw_pg_insert(url: str, rows: list[tuple[Any, ...]]) -> dict[str, float]:
    """Rows/s of bare inserts of the same rows into the ledger's own ``events`` table (same
    schema and indexes, the server's durability), one commit per ingest-sized group: by
    ``executemany`` and by ``COPY``. No validation, re-pricing or member records."""
    from staypoint.central.store_pg import PgLedgerStore

    group = GROUP_BATCHES * EVENTS_PER_BATCH
    out: dict[str, float] = {}
    for how in ("executemany", "copy"):
        store = PgLedgerStore(url)
        store._exec("TRUNCATE events")
        started = time.perf_counter()
        for i in range(0, len(rows), group):
            chunk = rows[i : i + group]
            if how == "executemany":
                with store.transaction():
                    store.insert_events(chunk)  # type: ignore[arg-type]
            else:
                with store.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                    cols = "id, node, epoch, seq, type, member, body, applied_at"
                    with cur.copy(f"COPY events ({cols}) FROM STDIN") as copy:
                        for row in chunk:
                            copy.write_row(row)
        out[how] = len(rows) / (time.perf_counter() - started)
        store._exec("TRUNCATE events")
        store.close()
    return out


def _pg_database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = server_url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")


SHARES_LOGGED = re.compile(r"ingest shards: this process ingests (\d+) of (\d+) \([^)]*\): (\S+)")
STOPPED_LOGGED = re.compile(r"head office stopped: handled (\{.*\}); dropped")


def _owned_shards(log: Path, mark: int) -> set[int] | None:
    """The shards an office's log last said it ingests (since ``mark``), or None before it said."""
    found = SHARES_LOGGED.findall(log.read_bytes()[mark:].decode(errors="replace"))
    if not found:
        return None
    shards: set[int] = set()
    for part in found[-1][2].split(","):
        if part != "none":
            lo, _, hi = part.partition("-")
            shards.update(range(int(lo), int(hi or lo) + 1))
    return shards


def _balanced_nodes(
    offices: list[tuple[Path, int]], count: int, prefix: str, shards: int
) -> tuple[list[str], list[set[int]]]:
    """Wait until the offices have shared the shards out, then pick ``count`` node ids whose
    shards fall evenly among them (a fleet of thousands splits so by itself; 8 nodes need not)."""
    deadline = time.monotonic() + 60
    while True:
        owned = [_owned_shards(log, mark) for log, mark in offices]
        share = -(-shards // len(offices))
        if (
            all(o is not None and share - 1 <= len(o) <= share for o in owned)
            and sum(len(o or ()) for o in owned) == shards
        ):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the offices did not share the shards out: {owned}")
        time.sleep(0.1)
    sets = [o or set() for o in owned]
    per = [0] * len(offices)
    picked: list[str] = []
    k = 0
    while len(picked) < count:
        k += 1
        name = f"{prefix}-{k:03d}"
        at = next(i for i, o in enumerate(sets) if shard_of(name, shards) in o)
        if per[at] < -(-count // len(offices)):
            per[at] += 1
            picked.append(name)
    return picked, sets


def pg_sharded(args: argparse.Namespace, tmp: Path, pki: FleetPKI, broker: MosquittoBroker) -> dict[str, Any]:
    """e2e events/s with ``--ingest-processes`` serve processes on one PostgreSQL ledger, the
    nodes' agents in this process, against bare inserts and raw MQTT in the same run.

    ``--repeat R`` runs the list R times, interleaved (1, 2, 1, 2, ...), so each count's figure
    has neighbours measured under the same load: the medians, and each round's ratio to that
    round's one-process figure, are reported. Each node's stays are for members of its own
    (a hotel's guests), unless ``--shared-members``: then every node's stays are spread over
    the same 1,000 members and two processes' groups lock the same member records."""
    from staypoint.central import pg as pgmod
    from staypoint.central.store_pg import PgLedgerStore

    server: pgmod.PgServer | None = None
    url = args.store
    if url == "pg":  # a private server with production durability (fsync, synchronous_commit on)
        server = pgmod.PgServer(tmp / "pg", fsync=True).start()
        url = server.url()
    out: dict[str, Any] = {
        "store": "private PostgreSQL 15" if server else url,
        "durability": pg_durability(url),
    }
    per_node = args.backlog // args.nodes
    # Each (processes, threads per process) in turn; named "2" (processes) when one thread count
    # is asked for, else "2x1" (processes x threads).
    configs = [
        (n, t, str(n) if len(args.ingest_threads) == 1 else f"{n}x{t}")
        for n in args.ingest_processes
        for t in args.ingest_threads
    ]
    runs: dict[str, list[dict[str, Any]]] = {key: [] for _, _, key in configs}
    rounds: list[dict[str, int]] = []
    rows_for_raw: list[tuple[Any, ...]] = []
    batch_size = event_size = window = 0
    try:
        for rnd in range(args.repeat):
            rounds.append({})
            for n, threads, key in configs:
                db = _pg_database(url, f"bench_{rnd}_{n}_{os.urandom(4).hex()}")
                ledger = Ledger(PgLedgerStore(db))
                ledger.publish_program(default_program_text(), now())
                program = ledger.program()
                assert program is not None
                spread = seed_docs(program, 1000, now(), start=5_000_000)
                ledger.import_members(spread)
                members = [d["number"] for d in spread]
                ledger.store.close()
                argv = office_command(broker, tmp / "unused.db")
                at = argv.index("--db")
                argv[at : at + 2] = [
                    "--store",
                    db,
                    "--shards",
                    str(args.shards),
                    "--ingest-threads",
                    str(threads),
                ]
                logs = [tmp / f"office-{rnd}-{n}x{threads}-{i}.log" for i in range(n)]
                marks = [log.stat().st_size if log.exists() else 0 for log in logs]
                offices = [OfficeProcess(broker, tmp / "unused.db", log, argv) for log in logs]
                try:
                    # Node ids of this run's own (the broker keeps the last run's retained acks),
                    # split evenly between the processes' shards.
                    if args.shards:
                        node_ids, owned = _balanced_nodes(
                            list(zip(logs, marks, strict=True)),
                            args.nodes,
                            f"sha-r{rnd}p{n}t{threads}",
                            args.shards,
                        )
                    else:
                        node_ids, owned = [f"sha-r{rnd}p{n}t{threads}-{i:03d}" for i in range(args.nodes)], []
                    nodes = []
                    for k, nid in enumerate(node_ids):
                        node = NodeService.init_node(
                            tmp / f"{nid}.db", nid, "H1", default_program_text(), now()
                        )
                        ntls = pki.tls(nid)
                        config = SyncConfig(nid, broker.host, broker.port, ntls.ca, ntls.cert, ntls.key)
                        agent = SyncAgent(node, config)
                        agent.start()
                        assert agent.wait_idle(60)
                        agent.stop()
                        guests = members if args.shared_members else members[k :: len(node_ids)]
                        batch_size = synthetic_backlog(node, guests, per_node)
                        nodes.append((node, config))
                    window = nodes[0][1].window_batches
                    if not rows_for_raw:
                        event_size = event_payload_bytes(nodes[0][0])
                        for node, _ in nodes:
                            rows_for_raw += [
                                (
                                    str(i),
                                    str(nn),
                                    int(e),
                                    int(q),
                                    str(t),
                                    m,
                                    str(b),
                                    "2026-11-25T00:00:00.000Z",
                                )
                                for i, nn, e, q, t, m, b in node.replica.conn.execute(
                                    "SELECT json_extract(body, '$.id'), json_extract(body, '$.node'), epoch, "
                                    "seq, type, member, body FROM outbox ORDER BY epoch, seq"
                                )
                            ]
                    cpu0 = [proc_cpu(o.pid) for o in offices]
                    postmaster = (
                        int((server.data / "postmaster.pid").read_text().split()[0]) if server else None
                    )
                    others0 = (time.process_time(), proc_cpu(broker.pid), tree_cpu(postmaster))
                    load = os.getloadavg()[0]
                    agents = [SyncAgent(node, config) for node, config in nodes]
                    started = time.perf_counter()
                    for a in agents:
                        a.start()
                    deadline = time.monotonic() + 600
                    while (
                        any(a.stats["events_acked"] < per_node for a in agents)
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.02)
                    took = time.perf_counter() - started
                    office_cpu = sum(proc_cpu(o.pid) - c for o, c in zip(offices, cpu0, strict=True))
                    others = (time.process_time(), proc_cpu(broker.pid), tree_cpu(postmaster))
                    total = per_node * len(agents)
                    check = PgLedgerStore(db, min_size=1, max_size=1)
                    applied = check.event_count()
                    check.close()
                    run = {
                        "round": rnd,
                        "e2e_events_per_s": round(total / took),
                        "drain_s": round(took, 2),
                        "load_1m": round(load, 1),
                        "ledger_events": applied,
                        "resend_requests": sum(a.stats["resend_requests"] for a in agents),
                        "ack_timeouts": sum(a.stats["ack_timeouts"] for a in agents),
                        "resent_events": sum(a.stats["events_sent"] for a in agents) - total,
                        "office_cpu_ms_per_1k_events": per_1k(office_cpu, total),
                        # This process is the nodes' agents; the server's figure is its backends'.
                        "agents_broker_pg_cpu_ms_per_1k_events": [
                            per_1k(b - a, total) for a, b in zip(others0, others, strict=True)
                        ],
                        "shards_owned": [len(o) for o in owned],
                    }
                    for a in agents:
                        a.stop()
                    for node, _ in nodes:
                        node.close()
                finally:
                    for o in offices:
                        o.stop()
                # What each office applied and counted, from the line it logs as it stops.
                stats = []
                for log, mark in zip(logs, marks, strict=True):
                    found = STOPPED_LOGGED.findall(log.read_bytes()[mark:].decode(errors="replace"))
                    stats.append(ast.literal_eval(found[-1]) if found else {})
                run["office_batches"] = [st.get("events", 0) for st in stats]
                run["office_parked"] = sum(st.get("events_parked", 0) for st in stats)
                run["office_resend_requests"] = sum(st.get("resend_requests", 0) for st in stats)
                runs[key].append(run)
                rounds[-1][key] = run["e2e_events_per_s"]
        raw_db = _pg_database(url, f"bench_raw_{os.urandom(4).hex()}")
        raw = raw_pg_insert(raw_db, rows_for_raw)
        raw_batch = raw_transport(broker, batch_size, args.raw, window)
        raw_event = raw_transport(broker, event_size, args.raw_events, window)
    finally:
        if server is not None:
            server.stop()
    out["backlog"] = per_node * args.nodes
    out["nodes"] = args.nodes
    out["shards"] = args.shards
    out["members"] = "1,000 shared by every node" if args.shared_members else "1,000, each node its own"
    out["runs"] = runs
    out["raw_pg_executemany_rows_per_s"] = round(raw["executemany"])
    out["raw_pg_copy_rows_per_s"] = round(raw["copy"])
    out["raw_qos1_batch_msgs_per_s"] = round(raw_batch["msgs_per_s"], 1)
    out["raw_ceiling_events_per_s"] = round(raw_batch["msgs_per_s"] * EVENTS_PER_BATCH)
    out["raw_qos1_event_msgs_per_s"] = round(raw_event["msgs_per_s"], 1)
    medians = {n: statistics.median(r["e2e_events_per_s"] for r in rs) for n, rs in runs.items()}
    out["median_e2e_events_per_s"] = {n: round(m) for n, m in medians.items()}
    for n, m in medians.items():
        out.setdefault("median_vs_raw", {})[n] = {
            "executemany": round(m / raw["executemany"], 3),
            "copy": round(m / raw["copy"], 3),
            "event_msgs": round(m / raw_event["msgs_per_s"], 2),
        }
    first = configs[0][2]  # scaling against the first configuration (one process, one thread)
    if len(runs) > 1:
        out["scaling_of_medians"] = {n: round(m / medians[first], 2) for n, m in medians.items()}
        out["scaling_per_round"] = {
            n: [round(r[n] / r[first], 2) for r in rounds if n in r and first in r]
            for n in runs
            if n != first
        }
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--raw-sub":
        raw_subscriber_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--raw", type=int, default=3000, help="messages for the raw transport figure")
    ap.add_argument(
        "--raw-events", type=int, default=20_000, help="event-sized messages for the per-event raw figure"
    )
    ap.add_argument("--idle", type=int, default=30, help="single batches for the idle latency figure")
    ap.add_argument(
        "--inprocess-backlog",
        type=int,
        default=0,
        help="backlog of the old one-process figure (0, the default: skip)",
    )
    ap.add_argument(
        "--store",
        help="postgresql://... (a server: the bench makes its own databases there) or 'pg' (a private "
        "PostgreSQL with fsync and synchronous_commit on): the sharded-ingest figures instead",
    )
    ap.add_argument(
        "--ingest-processes",
        type=int,
        nargs="+",
        default=[1, 2],
        help="with --store: serve processes per run",
    )
    ap.add_argument(
        "--ingest-threads",
        type=int,
        nargs="+",
        default=[1],
        help="with --store: central serve --ingest-threads, each in turn with each process count",
    )
    ap.add_argument("--nodes", type=int, default=8, help="with --store: nodes sending the backlog")
    ap.add_argument("--repeat", type=int, default=1, help="with --store: rounds of --ingest-processes")
    ap.add_argument(
        "--shards", type=int, default=64, help="with --store: central serve --shards (0: round robin)"
    )
    ap.add_argument(
        "--shared-members",
        action="store_true",
        help="with --store: every node's stays over the same 1,000 members (default: each node its own)",
    )
    args = ap.parse_args()
    if args.store:
        with tempfile.TemporaryDirectory() as tmp_:
            tmp = Path(tmp_)
            pki = _make_pki(tmp / "pki")
            broker = MosquittoBroker(pki, tmp / "broker")
            broker.start()
            try:
                print(json.dumps(pg_sharded(args, tmp, pki, broker)))
            finally:
                broker.stop()
        return
    out: dict[str, Any] = {"members": args.members, "backlog": args.backlog}
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        pki = _make_pki(tmp / "pki")
        broker = MosquittoBroker(pki, tmp / "broker")
        broker.start()
        office: OfficeProcess | None = None
        try:
            # -- head office alone (this process, no broker) -----------------------------------
            ledger = Ledger(SqliteLedgerStore(tmp / "apply.db"))
            ledger.publish_program(default_program_text(), now())
            n0 = NodeService.init_node(tmp / "n0.db", "sha-lobby-09", "H9", default_program_text(), now())
            m0 = n0.enrol("Bench Mark", "2580", now()).number
            synthetic_backlog(n0, [m0], 20_000)
            bodies = [
                json.loads(b) for (b,) in n0.replica.conn.execute("SELECT body FROM outbox ORDER BY seq")
            ]
            started = time.perf_counter()
            for i in range(0, len(bodies), 500):
                ledger.ingest("sha-lobby-09", bodies[i : i + 500], now())
            out["ho_apply_events_per_s"] = round(len(bodies) / (time.perf_counter() - started))
            ledger.store.close()
            n0.close()
            out["ho_apply_grouped_events_per_s"] = grouped_apply(tmp, 20_000)
            out["commit_ms_p50"] = commit_ms(tmp / "fsync.db")

            # -- end to end: head office in its own process, the node agent in this one -------
            ledger, members = prepare_ledger(tmp / "ledger.db")
            program = ledger.program()
            assert program is not None
            ledger.store.close()
            office = OfficeProcess(broker, tmp / "ledger.db", tmp / "office.log")
            node, config, batch_size = node_with_backlog(
                tmp, broker, pki, "sha-lobby-01", members, args.backlog
            )
            out["batch_payload_bytes"] = batch_size
            out["event_payload_bytes"] = event_size = event_payload_bytes(node)
            out["window_batches"] = config.window_batches
            out["raw_sqlite_insert_rows_per_s"] = round(raw_sqlite_insert(tmp / "raw-insert.db", node))
            raw_before = raw_transport(broker, batch_size, args.raw, config.window_batches)
            raw_ev_before = raw_transport(broker, event_size, args.raw_events, config.window_batches)
            agent, drain_s, cpus = drain(node, config, args.backlog, office.pid, broker)
            out["backlog_drain_s"] = round(drain_s, 2)
            out["e2e_events_per_s"] = round(args.backlog / drain_s)
            out["e2e_batches_per_s"] = round(agent.stats["batches_sent"] / drain_s, 1)
            lat = [1000 * x for x in agent.latencies]
            out["e2e_batch_latency_ms"] = {"p50": round(pct(lat, 0.5)), "p99": round(pct(lat, 0.99))}
            out["cpu_ms_per_1k_events"] = {
                "e2e_node_process": per_1k(cpus["self"], args.backlog),
                "e2e_office_process": per_1k(cpus["office"], args.backlog),
                "e2e_broker": per_1k(cpus["broker"], args.backlog),
            }
            out["resent_events"] = agent.stats["events_sent"] - args.backlog
            reader = SqliteLedgerStore(tmp / "ledger.db")  # a reader beside head office (WAL)
            out["ho_events"] = reader.event_count()
            reader.close()
            out["agent_stats"] = dict(agent.stats)
            drained_batches = agent.stats["batches_sent"]
            # One batch at a time on an idle system: what a single batch costs end to end.
            agent.latencies.clear()
            deadline = time.monotonic() + 600
            for _ in range(args.idle):
                synthetic_backlog(node, members, EVENTS_PER_BATCH)
                while agent.pending() and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(0.05)
            lat = [1000 * x for x in agent.latencies]
            out["idle_batch_latency_ms"] = {"p50": round(pct(lat, 0.5)), "p99": round(pct(lat, 0.99))}
            agent.stop()

            raw_after = raw_transport(broker, batch_size, args.raw, config.window_batches)
            raw_ev_after = raw_transport(broker, event_size, args.raw_events, config.window_batches)
            raws = (raw_before, raw_after)
            mean_rate(out, "raw_qos1", raws)
            # Per batch: the same payload size both ways, so the transport's ceiling in events/s
            # is raw msgs/s x events per batch, and e2e / ceiling equals e2e batches/s / raw
            # msgs/s (the transport's byte limit; docs/sync.md says why it is not the goal's).
            per_batch = args.backlog / max(1, drained_batches)
            out["events_per_batch"] = round(per_batch, 1)
            out["raw_ceiling_events_per_s"] = round(out["raw_qos1_msgs_per_s"] * per_batch)
            out["e2e_vs_raw_batch"] = round(out["e2e_events_per_s"] / out["raw_ceiling_events_per_s"], 3)
            # The transport's rate for messages the size of one event: what the node would get
            # publishing each event as it is, and what the goal's ratio is read against.
            mean_rate(out, "raw_qos1_event", (raw_ev_before, raw_ev_after))
            out["e2e_vs_raw_event"] = round(out["e2e_events_per_s"] / out["raw_qos1_event_msgs_per_s"], 2)
            out["ho_apply_vs_raw_sqlite"] = round(
                out["ho_apply_grouped_events_per_s"] / out["raw_sqlite_insert_rows_per_s"], 3
            )
            out["raw_sqlite_vs_raw_batch"] = round(
                out["raw_sqlite_insert_rows_per_s"] / out["raw_ceiling_events_per_s"], 3
            )
            for key, name in (
                ("cpu_ms_per_msg", "raw_publisher_process"),
                ("sub_cpu_ms_per_msg", "raw_subscriber_process"),
                ("broker_cpu_ms_per_msg", "raw_broker"),
            ):
                out["cpu_ms_per_1k_events"][name] = round(1000 * sum(r[key] for r in raws) / 2 / per_batch, 1)

            # -- bootstrap -------------------------------------------------------------------
            # The members are loaded with head office stopped (a migration), then a new node
            # bootstraps from the serving head office.
            office.stop()
            office = None
            ledger = Ledger(SqliteLedgerStore(tmp / "ledger.db"))
            started = time.perf_counter()
            for lo in range(0, args.members, 100_000):
                ledger.import_members(seed_docs(program, min(100_000, args.members - lo), now(), start=lo))
            out["ho_import_members_s"] = round(time.perf_counter() - started, 1)
            latest = ledger.store.latest_version()
            ledger.store.close()
            office = OfficeProcess(broker, tmp / "ledger.db", tmp / "office.log")
            fresh = NodeService.init_node(tmp / "new.db", "sha-lobby-02", "H2", default_program_text(), now())
            ftls = pki.tls("sha-lobby-02")
            fagent = SyncAgent(
                fresh, SyncConfig("sha-lobby-02", broker.host, broker.port, ftls.ca, ftls.cert, ftls.key)
            )
            started = time.perf_counter()
            fagent.start()
            deadline = time.monotonic() + 900
            while fagent.applied_version() < latest and time.monotonic() < deadline:
                time.sleep(0.1)
            out["bootstrap_s"] = round(time.perf_counter() - started, 1)
            out["bootstrap_members"] = fresh.replica.member_count()  # + the 1,000 above
            fagent.stop()
            office.stop()
            office = None
            # -- the old arrangement, last (its offline node's session would queue the fan-out of
            # everything after it in the broker): everything in this process
            if args.inprocess_backlog:
                out["inprocess"] = inprocess_figures(
                    tmp, broker, pki, args.inprocess_backlog, max(300, args.raw // 3)
                )

        finally:
            if office is not None:
                office.stop()
            broker.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
