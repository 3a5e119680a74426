"""Head office on the broker: ingest, acks, fan-out, resync answers, authorisation responder.

Topics (docs/sync.md, Topics; the contract: docs/architecture.md):
    in   sp/v1/node/{node}/events         batches of events (QoS 1)
    out  sp/v1/node/{node}/ack            {"epoch", "hw"}, retained, after the commit
    out  sp/v1/node/{node}/resend         {"epoch", "from"}: a gap, send again from here
    out  sp/v1/fleet/changes              {"from", "to", "changes"}: fan-out
    in   sp/v1/node/{node}/resync         {"from", "session"}
    out  sp/v1/node/{node}/changes        resync parts (delta or snapshot, checksummed); under
                                          partial replicas also the node's own fan-out
                                          {"from", "to", "held": true, "changes"} (only what
                                          it holds) and {"release": [members]} (holds ended)
    in   sp/v1/node/{node}/auth/request   MQTT 5 request (response topic + correlation data):
                                          {"kind": "points", "member", "points", "reward"} or
                                          {"kind": "value", "member", "amount"} (stored value)
                                          or {"kind": "first_pin", "member", "code", "pin_hash"}
                                          (an imported member's first PIN: node_first_pin.py)
                                          or {"kind": "member", "card_hash" | "number"} (a
                                          partial replica fetching a member it does not hold)
    out  sp/v1/node/{node}/auth/response  {"ok", "hold", "expires", "reason"}
                                          (first_pin: {"ok", "member"} or {"ok", "reason", "code"};
                                          member: {"ok": true, "member": record} or {"ok": false})
    out  sp/v1/fleet/digest               {"version", "members", "points"}, retained, from the ticker

Event batches are handed from paho's network thread to one ingest thread, which applies
everything queued (up to ``GROUP_BATCHES`` batches, any nodes, arrival order) in ONE ledger
transaction, and only after that commit publishes the acks and sends the broker's PUBACKs
(``manual_ack``): a head office killed mid-apply gets every uncommitted batch again, and a
busy head office pays one fsync per group instead of one per batch. Other messages are
handled, and acknowledged, in the network thread. Snapshots go out from a worker thread
with a bounded publish window so the network thread keeps serving everyone else.

Several processes (PostgreSQL; docs/scale.md, Several ingest processes): with
``MqttSettings.share_group`` each subscribes to resync and auth requests through MQTT 5 shared
subscriptions (``$share/<group>/sp/v1/node/+/resync``, ``.../auth/request``): the broker hands
each to ONE of them, round robin, and any of them can answer any node. Event batches are
sharded (``shards``, a ``leader.PgShards``): every process subscribes to all of them without
``$share``, and drops, before any JSON is parsed, the batches of nodes whose shard it does not
own; so one node's batches are applied by one process, in the order the node sent them. A
shard changes hands only after its old owner's ingest thread has applied what it had queued
for it (``_drain``); a node whose shard has no owner for a moment gets no ack and sends again
(on the next batch's gap, or after its ack timeout). Without ``shards`` the batches are
shared round robin too, so one node's batches reach different processes: a batch that
arrives ahead of its predecessor (being applied by another process) is then parked and
retried for up to ``PARK_SECONDS`` before a resend is asked for. Either way the ledger keeps
it safe (``Ledger.ingest_many``: a stream's high-water re-read under that node's lock), so a
batch is applied once whoever gets it. Only the leader (``leader.PgLeadership``) fans out,
publishes the digest, expires holds and runs the daily jobs: one publisher of
``sp/v1/fleet/changes``, so the nodes see it in version order.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from staypoint.central.leader import DRAIN_SECONDS, AlwaysLeader, Leadership, PgShards
from staypoint.central.ledger import Ledger, dumps
from staypoint.central.store import Change, StoreUnavailable
from staypoint.mqtt_tls import no_nagle, use_fleet_tls

if TYPE_CHECKING:
    from staypoint.central.node_first_pin import NodeFirstPins

log = logging.getLogger("staypoint.central")

MAX_PAYLOAD = 256 * 1024  # the broker's message_size_limit; anything larger is dropped
CHUNK_BYTES = 96 * 1024  # resync / fan-out parts: well under any broker's packet limit
SNAPSHOT_WINDOW = 16  # snapshot parts in flight before waiting for PUBACKs
GROUP_BATCHES = 32  # node batches applied in one ledger transaction at most
MAX_INGEST_THREADS = 16  # the PostgreSQL store's pool holds 16 connections
PARK_SECONDS = 1.0  # shared ingest: a batch ahead of its stream waits this long for the gap to fill
PARK_POLL = 0.01  # ... retried this often when nothing new arrives
SCOPES_SECONDS = 5.0  # partial replicas: the fleet's scopes (registrations, the mode) re-read this often
RELEASE_SECONDS = 60.0  # ... and ended holds looked for this often, by the leader
JOBS_DAY_COUNTER = "serve_jobs_day"  # counters: the UTC day (ordinal) the leader last ran the jobs


@dataclass(frozen=True)
class MqttSettings:
    """How head office reaches the broker (TLS with its own client certificate).

    ``port`` is the broker's head-office listener, where client ids are free: each
    head-office process needs one of its own, starting with ``head-office``.
    """

    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    client_id: str = "head-office"
    session_expiry: int = 7 * 24 * 3600
    keepalive: int = 30
    # Set: one of several processes, on MQTT 5 shared subscriptions ``$share/<group>/...``,
    # with a clean session that ends with the connection (a dead process's share of the
    # messages goes to the others at once; what it had in flight the nodes send again).
    share_group: str | None = None


def now_utc() -> datetime:
    return datetime.now(UTC)


def chunk_changes(
    changes: Iterable[Change], limit: int = CHUNK_BYTES, wires: dict[int, bytes] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Changes in parts whose JSON array stays under ``limit`` bytes: (the part's last version,
    the array's bytes). Each change is encoded once and the parts are spliced from those bytes
    (a bootstrap's million members are serialised once, not once to measure and once to send);
    ``wires`` shares the encodings by version between calls (one fan-out's nodes)."""
    part: list[bytes] = []
    size = last = 0
    for change in changes:
        wire = wires.get(change.version) if wires is not None else None
        if wire is None:
            wire = dumps(change.to_wire())
            if wires is not None:
                wires[change.version] = wire
        if part and size + len(wire) + 1 > limit:
            yield last, b"[" + b",".join(part) + b"]"
            part, size = [], 0
        part.append(wire)
        size += len(wire) + 1
        last = change.version
    if part:
        yield last, b"[" + b",".join(part) + b"]"


def _first_key(events: list[Any]) -> tuple[int, int]:
    """A batch's first (epoch, seq), for ordering; anything malformed sorts first (it is dropped)."""
    first = events[0] if events else None
    if isinstance(first, dict):
        epoch, seq = first.get("epoch"), first.get("seq")
        if isinstance(epoch, int) and isinstance(seq, int):
            return (epoch, seq)
    return (0, 0)


def resync_parts(
    session: str, mode: str, from_version: int, to: int, changes: Iterable[Change]
) -> Iterator[bytes]:
    """The messages answering one resync session: checksummed parts, the last one marked.

    An empty answer is still one (empty, last) part: it is what moves the node's version.
    """
    parts = (array for _, array in chunk_changes(changes))
    current = next(parts, b"[]")
    index = 0
    while True:
        following = next(parts, None)
        yield dumps(
            {
                "v": 1,
                "session": session,
                "mode": mode,
                "from": from_version if mode == "delta" else 0,
                "to": to,
                "part": index,
                "last": following is None,
                "sha256": hashlib.sha256(current).hexdigest(),
                "data": current.decode(),
            }
        )
        if following is None:
            return
        current, index = following, index + 1


class HeadOffice:
    """The head-office MQTT service around one ``Ledger``."""

    def __init__(
        self,
        ledger: Ledger,
        settings: MqttSettings,
        *,
        clock: Callable[[], datetime] = now_utc,
        tick_seconds: float = 2.0,
        digest_seconds: float = 30.0,
        leader: Leadership | None = None,
        shards: PgShards | None = None,
        jobs_at: dtime | None = None,
        first_pins: NodeFirstPins | None = None,
        ingest_threads: int = 1,
    ) -> None:
        if not 1 <= ingest_threads <= MAX_INGEST_THREADS:
            raise ValueError(f"ingest threads: 1..{MAX_INGEST_THREADS}, not {ingest_threads}")
        self.ledger = ledger
        # Imported members' first PINs asked at a kiosk (None: refused, "not offered here").
        self.first_pins = first_pins
        self.settings = settings
        self.shared = settings.share_group is not None
        # Sharded ingest: the batches of the nodes in our shards only, each node's in order.
        self.shards = shards if self.shared else None
        self.round_robin = self.shared and self.shards is None  # batches shared: park, sort
        self._route = threading.Lock()  # a batch's shard check and its queueing, vs a release
        self._queued = 0  # batches queued for the ingest threads so far (under _route)
        # Several ingest threads (PostgreSQL only: ``ingest_threads``), each with its own queue
        # and its own connection's transactions; a node's batches always go to the same one.
        self.ingest_threads = ingest_threads
        self._settled = [0] * ingest_threads  # ... and applied or given up, per thread (PUBACKed)
        if self.shards is not None:
            self.shards.on_release = self._drain
        self.leader: Leadership = leader if leader is not None else AlwaysLeader()
        self.jobs_at = jobs_at
        self._was_leader = False
        # A follower's reading of the ledger's tip, one per tick: what the leader has surely
        # fanned out by now (its ticker catches up every tick), where to resume on a takeover.
        self._tips: deque[int] = deque(maxlen=3)
        # Shared ingest: batches ahead of their stream, (node, events, mid, qos, parked at),
        # one list per ingest thread.
        self._parked: list[list[tuple[str, list[Any], int, int, float | None]]] = [
            [] for _ in range(ingest_threads)
        ]
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.digest_seconds = digest_seconds
        self._digest_version = -1
        self._digest_at = float("-inf")
        self.dropped: Counter[str] = Counter()
        self.handled: Counter[str] = Counter()
        self._tally = threading.Lock()  # the ingest threads' counts (one key, several threads)
        # One behind the ledger's tip: the first tick fans out the newest change again, so a
        # node that stayed connected while head office was down (a programme given to
        # ``central serve --program``, changes written by ``central jobs`` meanwhile) learns
        # of it within one tick: it applies it, or sees the gap and resyncs.
        self._published_version = max(0, ledger.store.latest_version() - 1)
        self._lock = threading.Lock()  # one ledger operation at a time (network thread vs ticker)
        # Partial replicas: each node's scopes (None: every node holds every member), when read.
        self._scopes: dict[str, frozenset[str]] | None = None
        self._scopes_at = float("-inf")
        self._released_at = float("-inf")
        self._work: queue.Queue[tuple[str, str, int] | None] = queue.Queue()
        # (node, events, mid, qos) waiting for an ingest thread; PUBACK only after the commit.
        self._batches: list[queue.Queue[tuple[str, list[Any], int, int] | None]] = [
            queue.Queue() for _ in range(ingest_threads)
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Set once the broker has granted the subscriptions (SUBACK), not at CONNACK: a batch a
        # node sends between the two has no subscriber yet and the broker drops it, so start()
        # returns (and the CLI says "head office serving") only then.
        self.connected = threading.Event()
        self._subscribe_mid: int | None = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,  # a batch's PUBACK leaves after the ledger commit, from the ingester
        )
        use_fleet_tls(client, settings.ca, settings.cert, settings.key)
        client.reconnect_delay_set(1, 10)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0 if self.shared else self.settings.session_expiry
        # clean_start=False: paho would otherwise start clean on every process start and
        # the batches queued for us while we were down would be thrown away. Shared (sharded
        # too): a session of our own would keep taking a dead process's turn of the messages,
        # or keep its batches for nobody; the nodes send them again to whoever owns them now.
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=self.shared,
            properties=props,
        )
        self.client.loop_start()
        threads = [
            threading.Thread(target=self._worker, name="head-office-_worker", daemon=True),
            threading.Thread(target=self._ticker, name="head-office-_ticker", daemon=True),
        ] + [
            threading.Thread(
                target=self._ingester, args=(lane,), name=f"head-office-_ingester-{lane}", daemon=True
            )
            for lane in range(self.ingest_threads)
        ]
        for t in threads:
            t.start()
            self._threads.append(t)
        if not self.connected.wait(timeout):
            raise TimeoutError("head office could not connect to the broker")

    def stop(self) -> None:
        self._stop.set()
        self._work.put(None)
        for batches in self._batches:
            batches.put(None)
        for t in self._threads:
            t.join(5)
        self.client.disconnect()
        self.client.loop_stop()
        log.info("head office stopped: handled %s; dropped %s", dict(self.handled), dict(self.dropped))

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.warning("broker refused head office: %s", rc)
            return
        no_nagle(client)  # an authorisation's answer leaves at once, not after a delayed ACK
        # Subscribe here, not once at start: a session lost by the broker comes back whole.
        # Shared: each message to one process of the group (auth requests too: one hold).
        # Sharded: every batch to every process, each keeping its own shards' (_on_message).
        share = f"$share/{self.settings.share_group}/" if self.shared else ""
        _, self._subscribe_mid = client.subscribe(
            [
                (("" if self.shards is not None else share) + "sp/v1/node/+/events", 1),
                (share + "sp/v1/node/+/resync", 1),
                (share + "sp/v1/node/+/auth/request", 1),
            ]
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in codes if code.is_failure]
        if refused:  # served all the same: what was granted still works
            log.warning("broker refused some of head office's subscriptions: %s", ", ".join(refused))
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.connected.clear()

    # -- incoming --------------------------------------------------------------------------------

    def _drop(self, reason: str, topic: str) -> None:
        self.dropped[reason] += 1
        log.warning("dropped a message on %s: %s", topic, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Nothing that arrives may stop the service: every path ends in handled or dropped.
        # Every message is acknowledged here, after its handling, except an event batch
        # queued for the ingester, which acknowledges it after the commit.
        queued = False
        try:
            parts = msg.topic.split("/")
            if len(parts) < 5 or parts[:3] != ["sp", "v1", "node"]:
                self._drop("topic", msg.topic)
                return
            node, kind = parts[3], "/".join(parts[4:])
            if kind == "events" and self.shards is not None and not self.shards.owns(node):
                self.handled["events_other_shard"] += 1  # another process's to apply: not even parsed
                return
            if len(msg.payload) > MAX_PAYLOAD:
                self._drop("oversized", msg.topic)
                return
            try:
                # orjson: the same JSON at half the cost, and stricter (no NaN, no lone
                # surrogates, whole numbers past 64 bits become floats and fail validation).
                body = orjson.loads(msg.payload)
            except (UnicodeDecodeError, ValueError):
                self._drop("malformed", msg.topic)
                return
            if not isinstance(body, dict):
                self._drop("wrong_type", msg.topic)
                return
            if kind == "events":
                events = body.get("events")
                if not isinstance(events, list):
                    self._drop("wrong_type", msg.topic)
                    return
                with self._route:  # a shard let go meanwhile: its owner-to-be will have it again
                    if self.shards is not None and not self.shards.owns(node):
                        self.handled["events_other_shard"] += 1
                        return
                    self._batches[self._lane(node)].put((node, events, msg.mid, msg.qos))
                    self._queued += 1
                queued = True
                return
            with self._lock:
                if kind == "resync":
                    self._resync(node, body)
                elif kind == "auth/request":
                    self._auth(node, body, msg)
                else:
                    self._drop("topic", msg.topic)
                    return
            self.handled[kind] += 1
        except Exception:  # a bug must not take head office down: log, count, go on
            log.exception("failed on a message on %s", msg.topic)
            self.dropped["error"] += 1
        finally:
            if not queued:
                client.ack(msg.mid, msg.qos)

    def _lane(self, node: str) -> int:
        """The ingest thread of ``node``'s batches: always the same one, so they apply in order."""
        return zlib.crc32(node.encode()) % self.ingest_threads

    def _ingester(self, lane: int = 0) -> None:
        """Apply queued batches a group at a time: one commit, then acks, fan-out and PUBACKs."""
        batches = self._batches[lane]
        while True:
            # Parked batches (shared ingest: ahead of their stream) go first, with what is new.
            group: list[tuple[str, list[Any], int, int, float | None]] = list(self._parked[lane])
            self._parked[lane] = []
            item: tuple[str, list[Any], int, int] | None
            try:
                item = batches.get(timeout=PARK_POLL) if group else batches.get()
            except queue.Empty:
                item = ("", [], -1, -1)  # nothing new: retry the parked batches alone
            if item is None or self._stop.is_set():
                return
            if item[2] >= 0:
                group.append((*item, None))
            limit = len(group) + GROUP_BATCHES - 1
            while len(group) < limit:
                try:
                    more = batches.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    batches.put(None)
                    break
                group.append((*more, None))
            if self.round_robin:
                # One node's batches come from both processes' queues: in seq order per node,
                # a group applies as much of each stream as it holds.
                group.sort(key=lambda g: (g[0], _first_key(g[1])))
            done: list[tuple[str, list[Any], int, int, float | None]] = []
            try:
                results = self._apply([(node, events) for node, events, *_ in group])
                done = self._settle(group, results, lane)
            except StoreUnavailable:  # logged by the store; the nodes send again after their ack timeout
                with self._tally:
                    self.dropped["store_unavailable"] += len(group)
                done = list(group)
            except Exception:
                log.exception("ingest of %d batches failed: trying them one by one", len(group))
                for entry in group:
                    node, events = entry[0], entry[1]
                    try:
                        results = self._apply([(node, events)])
                        done.extend(self._settle([entry], results, lane, park=False))
                    except Exception:  # the node sends it again after its ack timeout
                        log.exception("ingest of a batch from %s failed", node)
                        with self._tally:
                            self.dropped["error"] += 1
                        done.append(entry)
            for _, _, mid, qos, _ in done:
                self.client.ack(mid, qos)
            self._settled[lane] += len(done)  # this thread's alone: no lock

    def _settle(
        self,
        group: list[tuple[str, list[Any], int, int, float | None]],
        results: list[Any],
        lane: int,
        *,
        park: bool = True,
    ) -> list[tuple[str, list[Any], int, int, float | None]]:
        """After a group's commit: ask for resends, park what may yet fill; what may be PUBACKed.

        Alone or sharded, a gap is real at once: the batches of one node arrive in order on
        one connection, so the missing one was lost. Shared round robin, it is usually the batch
        before, in the other process's group right now: wait up to ``PARK_SECONDS`` for it.
        """
        now = time.monotonic()
        done: list[tuple[str, list[Any], int, int, float | None]] = []
        parked: list[tuple[str, list[Any], int, int, float | None]] = []
        resend: dict[str, tuple[int, int]] = {}
        for entry, result in zip(group, results, strict=True):
            node, events, mid, qos, since = entry
            if result.resend_from is None:
                done.append(entry)
            elif park and self.round_robin and (since is None or now - since < PARK_SECONDS):
                parked.append((node, events, mid, qos, now if since is None else since))
            else:
                resend.setdefault(node, result.resend_from)
                done.append(entry)
        for node, (epoch, seq) in resend.items():
            self.client.publish(f"sp/v1/node/{node}/resend", dumps({"epoch": epoch, "from": seq}), qos=1)
        counts = Counter(
            events=len(done), events_parked=len(parked), resend_requests=len(resend), groups=int(park)
        )
        with self._tally:  # several ingest threads count into the same keys
            self.handled.update(+counts)  # the counts above zero only, as ``+= 1`` made them
        # A node asked to resend sends everything from there again: its parked batches go.
        for entry in parked:
            if entry[0] in resend:
                done.append(entry)
            else:
                self._parked[lane].append(entry)
        return done

    def _drain(self, shards: frozenset[int]) -> None:
        """``PgShards.on_release``: ``shards`` are no longer ours (new batches of theirs are
        dropped); return once the ingest thread has applied what was queued before, so their
        next owner starts where we stopped (or after ``DRAIN_SECONDS``: the ledger keeps a
        late batch safe all the same, and its node is asked to send again)."""
        with self._route:  # a batch being queued under the old shards is in the count
            mark = self._queued
        deadline = time.monotonic() + DRAIN_SECONDS
        while sum(self._settled) < mark and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.005)
        self.handled["shards_released"] += len(shards)

    def _apply(self, batches: list[tuple[str, list[Any]]]) -> list[Any]:
        """``_events`` under the lock, run again by the store after a database failover (a lost
        connection, the primary promoting: ``LedgerStore.retrying``). Nothing is published
        before a commit, and a commit whose outcome was unknown is applied again with its
        events skipped as duplicates, so a retry loses and doubles nothing. The lock is let go
        between tries: the network thread keeps answering (and the broker keeps us) meanwhile.

        Several ingest threads (PostgreSQL): the transaction runs outside the lock, on this
        thread's own connection, beside the others' (the store lets groups of different nodes
        overlap and hands out their versions in commit order: ``ingest_transaction``); one
        thread alone waits on PostgreSQL's round trips and fsync most of the time. Only the
        acks and the fan-out after the commit take the lock."""

        def once() -> list[Any]:
            if self.ingest_threads == 1:
                with self._lock:
                    return self._published(self.ledger.ingest_many(batches, self.clock()))
            results = self.ledger.ingest_many(batches, self.clock())
            with self._lock:
                return self._published(results)

        return self.ledger.store.retrying(once, "ingest")

    def _published(self, results: list[Any]) -> list[Any]:
        """Under ``_lock``, after a group's commit: its acks and (the leader) its fan-out;
        resends are the caller's. Returns ``results``."""
        acks: dict[str, tuple[int, int]] = {}
        for result in results:
            if result.rejected:
                self.dropped["events_rejected"] += result.rejected
            if result.ack is not None:
                acks[result.node] = result.ack
        # Only now, after the commit, may the nodes learn that these rows are safe.
        for node, (epoch, hw) in acks.items():
            self.client.publish(
                f"sp/v1/node/{node}/ack", dumps({"epoch": epoch, "hw": hw}), qos=1, retain=True
            )
        self._publish_changes(sorted((c for r in results for c in r.changes), key=lambda c: c.version))
        return results

    def _publish_changes(self, fan: list[Change]) -> None:
        """Under ``_lock``: changes just committed, fanned out now by the leader (in version order)."""
        if not fan or not self.leader.is_leader():
            return  # the leader's ticker fans these changes out: one publisher, in order
        # Another ingest thread committed after us and published first: its catch-up sent ours.
        fan = [c for c in fan if c.version > self._published_version]
        if not fan:
            return
        if fan[0].version - 1 > self._published_version:
            # Another process (jobs, the console, a programme published) wrote since the last
            # fan-out: one step from what the nodes have covers both, and nothing waits a tick.
            self._catch_up()
            fan = [c for c in fan if c.version > self._published_version]
        self._fan_out(fan)

    def _fan_out(self, changes: list[Change]) -> None:
        """Publish contiguous changes as ``{"from", "to", "changes"}`` parts."""
        if not changes:
            return
        fleet = self._scopes_for(changes)
        if fleet is not None:
            self._fan_out_held(fleet, changes[0].version - 1, changes[-1].version, changes)
            self._published_version = max(self._published_version, changes[-1].version)
            return
        start = changes[0].version - 1
        for last, array in chunk_changes(changes):
            self._publish_part(start, last, array)
            start = last
        self._published_version = max(self._published_version, changes[-1].version)

    def _publish_part(self, start: int, last: int, array: bytes) -> None:
        """One step (start, last] of the fleet's changes: ``{"v", "from", "to", "changes"}``."""
        head = b'{"v":1,"from":%d,"to":%d,"changes":' % (start, last)
        self.client.publish("sp/v1/fleet/changes", head + array + b"}", qos=1)

    # -- partial replicas: each node its own fan-out (loyalty/replicas.py) ------------------------

    def _fleet_scopes(self) -> dict[str, frozenset[str]] | None:
        """Each node's scopes under partial replicas (re-read every ``SCOPES_SECONDS``); None
        while every node holds every member (then the fan-out is one fleet-wide message)."""
        now = time.monotonic()
        if now - self._scopes_at >= SCOPES_SECONDS:
            self._scopes = self.ledger.fleet_scopes()
            self._scopes_at = now
        return self._scopes

    def _scopes_for(self, changes: list[Change]) -> dict[str, frozenset[str]] | None:
        """The scopes to fan ``changes`` out by. A programme among them may switch the mode:
        the scopes are read again, and if either side of the switch is partial the whole run
        goes out node by node (a partial node ignores the fleet topic, so the programme that
        turns it full must reach it on its own; a full node takes its own topic too)."""
        if not any(c.kind == "program" for c in changes):
            return self._fleet_scopes()
        before = self._scopes
        self._scopes_at = float("-inf")
        after = self._fleet_scopes()
        return after if after is not None else before

    def _fan_out_held(
        self, fleet: dict[str, frozenset[str]], start: int, end: int, changes: list[Change]
    ) -> None:
        """Send each node its share of the changes in (start, end] on its own topic.

        A part says ``held``: it carries every change of (from, to] that the node holds, and
        may carry none (it still moves the node's version). Each change is encoded once, for
        all the nodes that get it."""
        shares = self.ledger.held(changes, fleet)
        wires: dict[int, bytes] = {}
        for node, share in shares.items():
            parts = list(chunk_changes(share, wires=wires)) or [(end, b"[]")]
            first = start
            for i, (last, array) in enumerate(parts):
                to = end if i == len(parts) - 1 else last  # the last part covers the rest
                self._publish_held(node, first, to, array)
                first = last
        self.handled["held_fan_out"] += len(shares)

    def _publish_held(self, node: str, first: int, last: int, array: bytes) -> None:
        head = b'{"v":1,"from":%d,"to":%d,"held":true,"changes":' % (first, last)
        self.client.publish(f"sp/v1/node/{node}/changes", head + array + b"}", qos=1)

    def _release_replicas(self) -> None:
        """Under ``_lock``, the leader: tell each node the members whose holds there ended."""
        now = time.monotonic()
        if now - self._released_at < RELEASE_SECONDS or self._fleet_scopes() is None:
            return
        self._released_at = now
        for node, members in self.ledger.release_replicas(self.clock()).items():
            for i in range(0, len(members), 2000):
                body = {"v": 1, "release": members[i : i + 2000]}
                self.client.publish(f"sp/v1/node/{node}/changes", dumps(body), qos=1)
            self.handled["replica_releases"] += len(members)

    def _fetch(self, node: str, body: dict[str, Any], response_topic: str, out: Properties) -> None:
        """Under ``_lock``: a member a partial node does not hold, by card hash or number; the
        record itself is the answer (and the member is held at the node's property from now)."""
        card, number = body.get("card_hash"), body.get("number")
        if isinstance(card, str) and 0 < len(card) <= 128 and number is None:
            doc = self.ledger.fetch_member(node, self.clock(), card_hash=card)
        elif isinstance(number, str) and 0 < len(number) <= 32 and card is None:
            doc = self.ledger.fetch_member(node, self.clock(), number=number)
        else:
            self._drop("wrong_type", f"sp/v1/node/{node}/auth/request")
            return
        self.handled["member_fetches"] += 1
        answer: dict[str, Any] = {"ok": True, "member": doc} if doc is not None else {"ok": False}
        self.client.publish(response_topic, dumps(answer), qos=1, properties=out)

    def _resync(self, node: str, body: dict[str, Any]) -> None:
        from_version, session = body.get("from"), body.get("session")
        if (
            isinstance(from_version, bool)
            or not isinstance(from_version, int)
            or not isinstance(session, str)
        ):
            self._drop("wrong_type", f"sp/v1/node/{node}/resync")
            return
        if len(session) > 64:
            self._drop("wrong_type", f"sp/v1/node/{node}/resync")
            return
        self._work.put((node, session, from_version))

    def _auth(self, node: str, body: dict[str, Any], msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        # Answer only on the asking node's own topic: a request must not make head office
        # publish anywhere else.
        if response_topic != f"sp/v1/node/{node}/auth/response" or correlation is None:
            self._drop("auth_no_response_topic", msg.topic)
            return
        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        out.CorrelationData = correlation
        if body.get("kind") == "first_pin":  # not a hold: a one-time code and a pin.set event
            self._first_pin(node, body, response_topic, out)
            return
        if body.get("kind") == "member":  # not a hold: a partial replica's member, fetched
            self._fetch(node, body, response_topic, out)
            return
        # kind: "points" (a redemption; absent from a node of before stored-value holds) or
        # "value" (a stored-value payment: amount is the contract's decimal string).
        kind, member = body.get("kind", "points"), body.get("member")
        points, reward, amount = body.get("points"), body.get("reward"), body.get("amount")
        if kind == "value" and isinstance(member, str) and isinstance(amount, str) and len(amount) <= 32:
            decision = self.ledger.authorise_value(node, member, amount, self.clock())
        elif (
            kind == "points"
            and isinstance(member, str)
            and isinstance(reward, str)
            and not isinstance(points, bool)
            and isinstance(points, int)
            and points > 0
        ):
            decision = self.ledger.authorise(node, member, points, reward, self.clock())
        else:
            self._drop("wrong_type", msg.topic)
            return
        self.client.publish(response_topic, dumps(decision.to_wire()), qos=1, properties=out)

    def _first_pin(self, node: str, body: dict[str, Any], response_topic: str, out: Properties) -> None:
        """Under ``_lock``: an imported member's first PIN, asked at a kiosk (node_first_pin.py).
        The member's new record goes out first, then the answer, both at once."""
        if self.first_pins is None:
            answer: dict[str, Any] = {
                "ok": False,
                "reason": "head office does not set first PINs here yet: please ask at the desk",
                "code": "not_offered",
            }
            changes: list[Change] = []
        else:
            answer, changes = self.first_pins.answer(node, body, self.clock())
        self._publish_changes(changes)
        self.client.publish(response_topic, dumps(answer), qos=1, properties=out)

    # -- background ------------------------------------------------------------------------------

    def _ticker(self) -> None:
        """The leader: expire holds, run the daily jobs, publish changes written by other
        processes (``central jobs``, the followers) and the digest. A follower notes the tip."""
        while not self._stop.wait(self.tick_seconds):
            try:
                if not self.leader.is_leader():
                    self._was_leader = False
                    self._tips.append(self.ledger.store.latest_version())
                    continue
                with self._lock:
                    if not self._was_leader:
                        self._take_over()
                    self.ledger.expire_holds(self.clock())
                    self._release_replicas()
                    self._daily_jobs()
                    latest = self._catch_up()
                    self._publish_digest(latest)
            except Exception:
                log.exception("tick failed")

    def _take_over(self) -> None:
        """Just became the leader: resume fan-out from where the old one surely was.

        Under ``_lock``. A follower's oldest tip reading (two ticks back) was fanned out by the
        old leader's ticker; the first catch-up sends from there, so a node sees an overlap it
        skips, never a gap (or, past a dead leader's last ticks, a gap it resyncs over).
        """
        self._was_leader = True
        if self._tips:
            self._published_version = min(self._tips)
        self._digest_version = -1
        self.handled["leader_takeovers"] += 1
        log.info("leading from version %d", self._published_version)

    def _daily_jobs(self) -> None:
        """``central serve --jobs-at HH:MM``: the ledger's jobs once per UTC day, by the leader.

        Under ``_lock``. The day is recorded in the ledger (counter ``serve_jobs_day``), so a
        new leader does not run them again the same day; the jobs are idempotent, so a leader
        killed between the jobs and the record only costs a second, empty run.
        """
        if self.jobs_at is None:
            return
        now = self.clock()
        if now.time() < self.jobs_at:
            return
        today = now.date().toordinal()
        done = self.ledger.store.counters().get(JOBS_DAY_COUNTER, 0)
        if done >= today:
            return
        counts = self.ledger.run_jobs(now)
        with self.ledger.store.transaction():
            done = self.ledger.store.counters().get(JOBS_DAY_COUNTER, 0)
            if done < today:
                self.ledger.store.bump_counter(JOBS_DAY_COUNTER, today - done)
        self.handled["daily_jobs"] += 1
        log.info("daily jobs as of %s: %s", now.isoformat(), counts)

    def _catch_up(self) -> int:
        """Fan out what the ledger holds past the last version published; the latest version.

        Under ``_lock`` (the caller's). Whoever wrote it (this process or another: ``central
        jobs``, the console's programme editor, ``central serve --program``), every connected
        node hears of it in this call. A collapsed delta (latest per key) from -> to is a valid
        step for any node at ``from``; each part is its own step, ending at its last version,
        so a node never counts a part it has not seen as applied. More than one delta holds
        goes out as the tip alone: every node behind it sees the gap and resyncs.
        """
        latest = self.ledger.store.latest_version()
        if latest <= self._published_version or not self.connected.is_set():
            return latest
        start = self._published_version
        changes = self.ledger.store.changes_since(start, 2000)
        if changes is None:
            start = latest - 1
            changes = self.ledger.store.changes_since(start, 1) or []
        fleet = self._scopes_for(changes)
        if fleet is not None:
            self._fan_out_held(fleet, start, latest, changes)
            self._published_version = latest
            return latest
        for last, array in chunk_changes(changes):
            self._publish_part(start, last, array)
            start = last
        self._published_version = latest
        return latest

    def _publish_digest(self, latest: int) -> None:
        """The replica's digest at one version, for the nodes to check themselves against.

        Under ``_lock`` (the caller's), as acks and fan-out are: a node then sees the digest of
        version V before the ack of any event committed after V, so a node at V with every row
        acknowledged has none of its own events unfolded and must match it exactly.
        """
        now = time.monotonic()
        # An unchanged version tells the nodes nothing new (the digest is retained): no scan.
        if (
            not self.connected.is_set()
            or latest == self._digest_version
            or now - self._digest_at < self.digest_seconds
        ):
            return
        if not self.shared and self.ingest_threads == 1:
            self._digest_once(now)
            return
        # Other processes (other ingest threads) ack what they commit, outside our lock: inside
        # the writer's lock no one commits until the broker has the digest, so no ack of an event
        # after V reaches a node before it.
        with self.ledger.store.transaction():
            info = self._digest_once(now)
            if info is not None:
                info.wait_for_publish(5)

    def _digest_once(self, now: float) -> mqtt.MQTTMessageInfo | None:
        version, members, points = self.ledger.store.digest()
        if version > self._published_version:
            return None  # another process wrote since the fan-out: no node can be there yet
        self._digest_at = now
        self._digest_version = version
        body = {"v": 1, "version": version, "members": members, "points": points}
        info = self.client.publish("sp/v1/fleet/digest", dumps(body), qos=1, retain=True)
        self.handled["digests"] += 1
        return info

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None or self._stop.is_set():
                return
            node, session, from_version = item
            try:
                self._answer_resync(node, session, from_version)
            except Exception:
                log.exception("resync for %s failed", node)

    def _answer_resync(self, node: str, session: str, from_version: int) -> None:
        with self._lock:
            mode, to, changes = self.ledger.resync(from_version, self.ledger.node_scopes(node))
            if mode == "delta":
                changes = list(changes)  # read now, under the lock, from the writer's view
        topic = f"sp/v1/node/{node}/changes"
        pending: list[mqtt.MQTTMessageInfo] = []
        sent = 0
        for payload in resync_parts(session, mode, from_version, to, changes):
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("resync for %s aborted: %s", node, mqtt.error_string(info.rc))
                return
            sent += 1
            pending.append(info)
            if len(pending) >= SNAPSHOT_WINDOW:
                oldest = pending.pop(0)
                deadline = time.monotonic() + 30
                while not oldest.is_published() and time.monotonic() < deadline and not self._stop.is_set():
                    time.sleep(0.002)
                if not oldest.is_published():
                    log.warning("resync for %s stalled; the node will ask again", node)
                    return
        self.handled["resync_parts"] += sent
