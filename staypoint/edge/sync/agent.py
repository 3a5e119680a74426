"""The node's sync agent: outbox upstream, changes downstream, online authorisation, status.

One thread owns the MQTT connection and the agent's own replica connection; every MQTT
callback runs on it (``client.loop()`` is called here, never ``loop_start``), so the
agent's state needs no locks. Other threads (the kiosk asking for an authorisation) talk to
it through a queue.

Guarantees (docs/architecture.md: the event contract; docs/sync.md: how it is kept):
- An outbox row is marked done only by head office's cumulative ack ``{"epoch", "hw"}``,
  which head office publishes after its commit; a PUBACK means nothing here.
- Batches are ordered, QoS 1, within a bounded window of unacknowledged batches; a
  reconnect, a resend request or an ack timeout rewinds to the first unacknowledged row.
  Head office skips what it already has, so a resend is harmless.
- Changes are applied in version order; a gap (or a new node) asks for a resync; a resync
  answer (delta or snapshot) is checked part by part and only its last part moves the
  applied version.
- At head office's digest version, with every row acknowledged, the replica's member count
  and points sum must equal the digest's; a replica that differs resyncs by snapshot itself.
- Anything malformed from the broker is dropped and counted; nothing stops the loop.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import queue
import random
import sqlite3
import ssl
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from staypoint.edge import sync_store
from staypoint.edge.replica import Replica
from staypoint.edge.service import AuthorisationDenied, Hold, NodeService
from staypoint.loyalty.events import iso
from staypoint.loyalty.program import ProgramError, parse_program
from staypoint.mqtt_tls import no_nagle, use_fleet_tls

log = logging.getLogger("staypoint.sync")

MAX_PAYLOAD = 256 * 1024  # the broker's message size limit: anything bigger is dropped
MAX_VERSION = 2**53 - 1  # change-log versions: what every store and JSON reader holds
ACK_FLUSH_SECONDS = 0.1  # an ack is written to the outbox within this, or with the next write
# Fan-out changes kept while a resync runs (a fleet makes a few parts a second; a 1M-member
# snapshot takes ~12 s). Counted in changes, not parts, so a Pi's memory stays bounded
# (~10 MB) whatever the part size; past it the agent resyncs again once this one is done.
HELD_CHANGES_MAX = 20_000
# A replica that still differs after resyncing by itself (say a row head office never had,
# which a snapshot does not remove) must not pull a snapshot on every digest: each further
# self-resync waits this long, doubling up to the cap, until a digest matches again.
SELF_RESYNC_BACKOFF = 300.0
SELF_RESYNC_BACKOFF_MAX = 6 * 3600.0


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SyncConfig:
    """Where the broker is, who this node is, and the agent's pacing."""

    node_id: str
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    batch_events: int = 500
    batch_bytes: int = 96 * 1024  # well under the broker's 256 KiB message limit
    # Unacknowledged batches in flight: enough that head office always has a full group
    # (server.GROUP_BATCHES) queued while it commits the previous one, so neither the broker
    # nor head office idles and a group's member changes are coalesced over many batches.
    window_batches: int = 64
    ack_timeout: float = 10.0  # no ack progress for this long: send again from the ack
    auth_timeout: float = 2.0  # then the offline limits decide
    resync_timeout: float = 15.0
    session_expiry: int = 7 * 24 * 3600
    keepalive: int = 30
    backoff_min: float = 0.2
    backoff_max: float = 30.0
    health_interval: float = 30.0
    contact_interval: float = 5.0
    # The link's real state: every echo_interval the agent publishes a small message on its
    # own echo topic and reads it back through the broker; the link is "online" while
    # connected and the broker answered (CONNACK or an echo) within echo_interval +
    # echo_timeout. A quiet link stays online; a dead one shows within that, not at keep-alive.
    echo_interval: float = 5.0
    echo_timeout: float = 5.0
    # A quiet replica is confirmed current by asking head office (an empty resync answer
    # says "you are at my version") when nothing else has confirmed it for this long.
    current_interval: float = 60.0
    # The kiosk's and the desk's socket (default: <db>.agent.sock beside the replica), the
    # group that may use it besides the agent's own user, and further uids allowed.
    link_socket: Path | None = None
    link_group: str | None = None
    link_uids: tuple[int, ...] = ()
    # Where the kiosk writes its device states (default: devices.json beside the replica) and
    # the file:// backup folder whose age is the Litestream lag in the health document.
    devices_file: Path | None = None
    backup_dir: Path | None = None

    @property
    def client_id(self) -> str:
        return self.node_id


@dataclass
class _AuthCall:
    correlation: bytes
    payload: dict[str, Any]  # the request as head office reads it (kind points or value)
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None


@dataclass
class _Resync:
    session: str
    deadline: float
    parts: set[int] = field(default_factory=set)
    last: int | None = None
    # Fan-out that arrived while this session ran. Head office answers a resync from one
    # thread and fans out new changes from another, so a change committed after the answer
    # was read can arrive before the answer's last part: applying it then could go back in
    # time, dropping it would leave the node behind until the next change. A session that
    # is abandoned (reconnect, timeout) drops these: the next answer is read later.
    held: list[dict[str, Any]] = field(default_factory=list)
    held_changes: int = 0
    held_overflow: bool = False
    applied: int = 0  # changes of this answer applied so far (the progress callback's count)


#: ``progress(applied, done)``: after each part of a resync answer (a snapshot on bootstrap),
#: the changes applied so far in it, rising, and whether it is complete. The CLI draws a bar
#: from it; edge draws nothing.
ResyncProgress = Callable[[int, bool], None]


class SyncAgent:
    """The MQTT agent of one node. ``start()`` runs it in a thread; ``stop()`` ends it cleanly."""

    def __init__(
        self,
        service: NodeService,
        config: SyncConfig,
        *,
        clock: Callable[[], datetime] = now_utc,
        progress: ResyncProgress | None = None,
    ) -> None:
        self.service = service
        self.config = config
        self.clock = clock
        self.progress = progress
        self.node = config.node_id
        # The agent's own connection: its transactions never see the kiosk's half-done ones.
        self.replica = Replica(service.replica.path)
        self.dropped: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.online = threading.Event()  # CONNACK received, subscriptions sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loop_beat = time.monotonic()
        self.started = time.monotonic()
        self._calls: queue.Queue[_AuthCall] = queue.Queue()
        self._waiting: dict[bytes, _AuthCall] = {}
        self._sent: tuple[int, int] | None = None
        self._inflight: list[tuple[int, int]] = []
        self._sent_at: dict[tuple[int, int], float] = {}  # in-flight batch -> when it was published
        # Publish -> covering ack, per batch (seconds), the most recent ones: bench and health.
        self.latencies: deque[float] = deque(maxlen=20_000)
        self._progress_at = time.monotonic()
        self._resync: _Resync | None = None
        self._session = 0
        self._last_contact = 0.0
        self._last_health = 0.0
        self._tier_ranks: tuple[int, dict[str, int]] = (-1, {})
        self._unfolded = sync_store.UnfoldedCache()
        # Head office's newest cumulative ack not yet written to the outbox. Marking rows done
        # can wait a moment (the ack is retained and idempotent; a crash before the write only
        # costs a resend head office skips), so it rides along with the next write.
        self._ack_due: tuple[int, int] | None = None
        self._ack_flushed_at = time.monotonic()
        self._idle = threading.Event()
        self._digest: tuple[int, int, int] | None = None  # head office's (version, members, points)
        self.digest_ok: bool | None = None  # None: never at a digest's version with nothing pending
        self.last_self_resync: str | None = None
        self._self_resync_after = 0.0
        self._self_resync_backoff = 0.0
        # The link's real state (monotonic times): when the broker last answered us, and the
        # echoes in flight (their numbers), so a stray message on the topic proves nothing.
        self._answered = 0.0
        self._echo_sent = 0.0
        self._echo_n = 0
        self._echo_at = 0.0
        self._echoes: deque[int] = deque(maxlen=8)
        self.echo_rtts: deque[float] = deque(maxlen=1000)
        #: When the replica was last known to be head office's (the injected clock's time).
        self.known_current_at: datetime | None = None
        self.client = self._make_client()

    # -- topics -------------------------------------------------------------------------------

    def topic(self, leaf: str) -> str:
        return f"sp/v1/node/{self.node}/{leaf}"

    # -- lifecycle ----------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,  # our own loop reconnects, with backoff and jitter
        )
        use_fleet_tls(client, self.config.ca, self.config.cert, self.config.key)
        client.max_inflight_messages_set(max(20, self.config.window_batches * 2))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"sync-{self.node}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.replica.close()

    def run(self) -> None:
        """The agent's loop: connect with backoff + jitter, then serve until stopped."""
        backoff = self.config.backoff_min
        connected = False
        while not self._stop.is_set():
            # The process's systemd watchdog is fed only while this loop turns (see the CLI).
            self.loop_beat = time.monotonic()
            if not connected:
                try:
                    self._connect()
                    connected = True
                except (OSError, ssl.SSLError, ValueError) as exc:
                    log.info("broker unreachable (%s): retrying in ~%.1fs", exc, backoff)
                    self._fail_pending_calls()
                    self._stop.wait(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, self.config.backoff_max)
                    continue
            rc = self.client.loop(timeout=0.01)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                connected = False
                self.online.clear()
                self._last_contact = 0.0
                self._fail_pending_calls()
                with_jitter = backoff * random.uniform(0.5, 1.5)
                self._stop.wait(with_jitter)
                backoff = min(backoff * 2, self.config.backoff_max)
                continue
            if self.online.is_set():
                backoff = self.config.backoff_min
            try:
                self._tick()
            except Exception:  # never let one bad step end the agent
                log.exception("sync tick failed")
                self.dropped["tick_error"] += 1
        if self._ack_due is not None:
            with self.replica.write():
                self._flush_ack()
        if connected:
            self._say_offline()

    def _connect(self) -> None:
        with self.replica.write():
            self._session = sync_store.next_session(self.replica.conn)
        will = dumps({"state": "offline", "session": self._session, "node": self.node})
        self.client.will_set(self.topic("status"), will, qos=1, retain=True)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry
        # clean_start=False + an explicit expiry: paho 2.x would otherwise start clean on the
        # first connect of every process and the broker would forget what it queued for us.
        self.client.connect(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive,
            clean_start=False,
            properties=props,
        )

    def _say_offline(self) -> None:
        try:
            info = self.client.publish(
                self.topic("status"),
                dumps({"state": "offline", "session": self._session, "node": self.node}),
                qos=1,
                retain=True,
            )
            deadline = time.monotonic() + 2
            while not info.is_published() and time.monotonic() < deadline:
                self.client.loop(timeout=0.05)
            self.client.disconnect()
            self.client.loop(timeout=0.1)
        except (OSError, ValueError, RuntimeError):
            pass

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.warning("broker refused %s: %s", self.node, rc)
            return
        no_nagle(client)
        client.subscribe(
            [
                (self.topic("ack"), 1),
                (self.topic("resend"), 1),
                (self.topic("changes"), 1),
                (self.topic("auth/response"), 1),
                (self.topic("echo"), 0),
                ("sp/v1/fleet/changes", 1),
                ("sp/v1/fleet/digest", 1),
            ]
        )
        client.publish(
            self.topic("status"),
            dumps({"state": "online", "session": self._session, "node": self.node, "at": iso(self.clock())}),
            qos=1,
            retain=True,
        )
        # Whatever was in flight on the last connection may be gone: start from the ack.
        self._rewind()
        self._resync = None
        self._request_resync()
        self._answered = self._echo_sent = time.monotonic()  # the CONNACK is the broker's answer
        self._echoes.clear()
        self.online.set()
        self.stats["connects"] += 1

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.online.clear()
        self._last_contact = 0.0  # the first answer after a reconnect counts as contact at once

    # -- the tick: authorisations, the outbox, timeouts, health --------------------------------

    def _tick(self) -> None:
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            self._send_auth(call)
        if self._ack_due is not None and (
            not self._inflight or time.monotonic() - self._ack_flushed_at > ACK_FLUSH_SECONDS
        ):
            with self.replica.write():
                self._flush_ack()
        if not self.online.is_set():
            return
        self._pump()
        now = time.monotonic()
        if now - self._echo_sent >= self.config.echo_interval:
            self._send_echo(now)
        if self._resync is None and self._due_for_currency_check():
            self.stats["currency_checks"] += 1
            self._request_resync()
        if self._inflight and now - self._progress_at > self.config.ack_timeout:
            self.stats["ack_timeouts"] += 1
            self._rewind()
        if self._resync is not None and now > self._resync.deadline:
            self.stats["resync_timeouts"] += 1
            self._resync = None
            self._request_resync()
        if now - self._last_health > self.config.health_interval:
            self._last_health = now
            self._publish_health()
        if not self._inflight and self._resync is None:
            self._idle.set()
        else:
            self._idle.clear()

    def _rewind(self) -> None:
        self._sent = None
        self._inflight.clear()
        self._sent_at.clear()
        self._progress_at = time.monotonic()

    def _flush_ack(self) -> None:
        """Mark rows done up to the last ack received (inside the caller's write transaction)."""
        due, self._ack_due = self._ack_due, None
        self._ack_flushed_at = time.monotonic()
        if due is not None:
            marked = sync_store.mark_acked(self.replica.conn, due[0], due[1], iso(self.clock()))
            self.stats["events_acked"] += marked

    def _pump(self) -> None:
        """Send outbox batches until the window is full or the outbox is drained."""
        conn = self.replica.conn
        if self._sent is None and self._ack_due is not None:
            with self.replica.write():  # a rewind reads from the first row not marked done
                self._flush_ack()
        while len(self._inflight) < self.config.window_batches:
            epoch = sync_store.oldest_pending_epoch(conn)
            if epoch is None:
                return
            after = self._sent[1] if self._sent is not None and self._sent[0] == epoch else 0
            batch = sync_store.pending_batch(
                conn, epoch, after, limit=self.config.batch_events, max_bytes=self.config.batch_bytes
            )
            if not batch:
                return
            # The outbox bodies are canonical JSON already: splice, do not re-encode.
            payload = (
                '{"v":1,"node":' + json.dumps(self.node) + ',"events":[' + ",".join(e.body for e in batch)
            )
            info = self.client.publish(self.topic("events"), (payload + "]}").encode(), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            if not self._inflight:
                self._progress_at = time.monotonic()
            self._sent = (epoch, batch[-1].seq)
            self._inflight.append(self._sent)
            self._sent_at[self._sent] = time.monotonic()
            self.stats["batches_sent"] += 1
            self.stats["events_sent"] += len(batch)

    # -- incoming ---------------------------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if len(msg.payload) > MAX_PAYLOAD:
                self._drop("oversized")
                return
            try:
                body = orjson.loads(msg.payload)  # as head office: faster, and stricter
            except (UnicodeDecodeError, ValueError):
                self._drop("malformed")
                return
            if not isinstance(body, dict):
                self._drop("wrong_type")
                return
            topic = msg.topic
            if topic == self.topic("ack"):
                self._on_ack(body, bool(msg.retain))
            elif topic == self.topic("resend"):
                self._on_resend(body)
            elif topic == self.topic("changes"):
                self._contact()
                self._on_resync_part(body)
            elif topic == "sp/v1/fleet/changes":
                self._on_fleet_changes(body)
            elif topic == "sp/v1/fleet/digest":
                self._on_digest(body, bool(msg.retain))
            elif topic == self.topic("auth/response"):
                self._on_auth_response(body, msg)
            elif topic == self.topic("echo"):
                self._on_echo(body)
            else:
                self._drop("topic")
        except Exception:  # a bug must not stop the agent: count it, keep serving
            log.exception("failed on a message on %s", msg.topic)
            self._drop("error")

    @staticmethod
    def _int(body: Mapping[str, Any], key: str) -> int | None:
        value = body.get(key)
        return None if isinstance(value, bool) or not isinstance(value, int) else value

    def _on_ack(self, body: dict[str, Any], retained: bool) -> None:
        epoch, hw = self._int(body, "epoch"), self._int(body, "hw")
        if epoch is None or hw is None or epoch < 1 or hw < 0:
            self._drop("wrong_type")
            return
        if not retained:
            self._contact()
        if self._ack_due is None or (epoch, hw) > self._ack_due:
            if self._ack_due is not None and epoch != self._ack_due[0]:
                with self.replica.write():  # never drop an older epoch's ack on the floor
                    self._flush_ack()
            self._ack_due = (epoch, hw)
        before = len(self._inflight)
        now = time.monotonic()
        keep: list[tuple[int, int]] = []
        for key in self._inflight:
            if key[0] == epoch and key[1] <= hw:
                sent_at = self._sent_at.pop(key, None)
                if sent_at is not None:
                    self.latencies.append(now - sent_at)
            else:
                keep.append(key)
        self._inflight = keep
        if len(self._inflight) < before or not self._inflight:
            self._progress_at = now

    def _on_resend(self, body: dict[str, Any]) -> None:
        epoch, start = self._int(body, "epoch"), self._int(body, "from")
        if epoch is None or start is None or start < 1:
            self._drop("wrong_type")
            return
        self._contact()
        self.stats["resend_requests"] += 1
        self._inflight.clear()
        self._sent_at.clear()
        self._sent = (epoch, start - 1)
        self._progress_at = time.monotonic()

    def _tier_ranks_now(self) -> dict[str, int]:
        conn = self.replica.conn
        row = conn.execute("SELECT value FROM node_meta WHERE key = 'program_version'").fetchone()
        version = int(row[0]) if row else 0
        if version != self._tier_ranks[0]:
            doc = conn.execute("SELECT document FROM programs WHERE version = ?", (version,)).fetchone()
            ranks: dict[str, int] = {}
            if doc is not None:
                try:
                    ranks = {t.code: t.rank for t in parse_program(str(doc[0])).tiers}
                except ProgramError:
                    ranks = {}
            self._tier_ranks = (version, ranks)
        return self._tier_ranks[1]

    def _apply(self, changes: list[Any]) -> None:
        """Apply changes (caller's transaction); a malformed one is skipped and counted."""
        conn = self.replica.conn
        ranks = self._tier_ranks_now()
        try:
            conn.execute("SAVEPOINT changes")
            sync_store.apply_changes(conn, changes, ranks, self._unfolded)
            conn.execute("RELEASE changes")
            return
        except (sync_store.ChangeError, KeyError, ValueError, TypeError):
            conn.execute("ROLLBACK TO changes")
            conn.execute("RELEASE changes")
        for change in changes:  # the slow path: one by one, so one bad change costs only itself
            try:
                conn.execute("SAVEPOINT one")
                sync_store.apply_changes(conn, [change], ranks, self._unfolded)
                conn.execute("RELEASE one")
            except (sync_store.ChangeError, KeyError, ValueError, TypeError):
                conn.execute("ROLLBACK TO one")
                conn.execute("RELEASE one")
                self._drop("bad_change")

    def _on_fleet_changes(self, body: dict[str, Any]) -> None:
        start, to, changes = self._int(body, "from"), self._int(body, "to"), body.get("changes")
        if start is None or to is None or not isinstance(changes, list) or start > to:
            self._drop("wrong_type")
            return
        # A part carries changes in rising version order inside (from, to], the last one at
        # ``to`` (a contiguous run, or a collapsed delta: the latest change per key). One
        # that does not add up would move the applied version past changes never seen (the
        # node would then ignore every real change): dropped, counted.
        versions: list[int] = [
            c["version"] for c in changes if isinstance(c, dict) and type(c.get("version")) is int
        ]
        if (
            not versions
            or len(versions) != len(changes)
            or versions[-1] != to
            or any(not start < v <= to for v in versions)
            or any(a >= b for a, b in itertools.pairwise(versions))
            or to > MAX_VERSION
        ):
            self._drop("bad_range")
            return
        rs = self._resync
        if rs is not None:
            if rs.held_changes + len(changes) <= HELD_CHANGES_MAX:
                rs.held.append(body)
                rs.held_changes += len(changes)
            else:
                rs.held_overflow = True
            return
        with self.replica.write():
            self._flush_ack()
            applied = sync_store.applied_version(self.replica.conn)
            if to <= applied:
                return
            if start > applied:
                gap = True
            else:
                gap = False
                fresh = [c for c in changes if isinstance(c, dict) and self._int(c, "version") is not None]
                fresh = [c for c in fresh if c["version"] > applied]
                fresh.sort(key=lambda c: int(c["version"]))
                self._apply(fresh)
                sync_store.set_applied_version(self.replica.conn, to)
                self.stats["changes_applied"] += len(fresh)
        if not gap:
            self._contact()  # head office just fanned out, and the replica is at its version
        if gap:
            self.stats["gaps"] += 1
            self._request_resync()

    def _request_resync(self, from_version: int | None = None) -> None:
        """Ask for what was missed since the applied version (or from ``from_version``: 0 is a
        snapshot, head office's whole state)."""
        if self._resync is not None:
            return
        start = sync_store.applied_version(self.replica.conn) if from_version is None else from_version
        session = uuid.uuid4().hex
        self._resync = _Resync(session, time.monotonic() + self.config.resync_timeout)
        self.client.publish(self.topic("resync"), dumps({"from": start, "session": session}), qos=1)
        self.stats["resyncs"] += 1

    def _on_digest(self, body: dict[str, Any], retained: bool = True) -> None:
        version, members, points = (self._int(body, k) for k in ("version", "members", "points"))
        # Points may sum below zero (overdrafts are recorded, not refused); the rest may not.
        if (
            version is None
            or members is None
            or points is None
            or not 0 <= version <= MAX_VERSION
            or not 0 <= members <= MAX_VERSION
            or not -MAX_VERSION <= points <= MAX_VERSION
        ):
            self._drop("wrong_type")
            return
        self._digest = (version, members, points)
        if not retained and version == sync_store.applied_version(self.replica.conn):
            self._contact()  # a fresh digest at our version: head office is up and we are current
        self._check_digest()

    def _check_digest(self) -> None:
        """Hold the replica against head office's last digest, when the two must be equal."""
        if self._digest is None or self._resync is not None:
            return
        version, members, points = self._digest
        if self._ack_due is not None:
            with self.replica.write():
                self._flush_ack()
        with self.replica.read():
            conn = self.replica.conn
            # Only at the digest's version with every row acknowledged is a member row exactly
            # head office's record (head office publishes the digest of V before the ack of any
            # event committed after V); anywhere else own unfolded events or changes not yet
            # applied make the sums differ honestly.
            if sync_store.applied_version(conn) != version or sync_store.outbox_depth(conn):
                return
            mine = sync_store.replica_digest(conn)
        self.stats["digest_checks"] += 1
        if mine == (members, points):
            self.digest_ok = True
            self._self_resync_after = self._self_resync_backoff = 0.0
            return
        self.digest_ok = False
        self.stats["digest_mismatches"] += 1
        now = time.monotonic()
        resync = now >= self._self_resync_after
        then = (
            "resyncing from a snapshot"
            if resync
            else f"next self-resync in {self._self_resync_after - now:.0f}s"
        )
        log.warning(
            "replica differs from head office at version %d: %d members / %d points here, %d / %d there: %s",
            *(version, *mine, members, points, then),
        )
        if resync:
            self._self_resync_backoff = min(
                max(2 * self._self_resync_backoff, SELF_RESYNC_BACKOFF), SELF_RESYNC_BACKOFF_MAX
            )
            self._self_resync_after = now + self._self_resync_backoff
            self.last_self_resync = iso(self.clock())
            self.stats["self_resyncs"] += 1
            self._request_resync(from_version=0)

    def _on_resync_part(self, body: dict[str, Any]) -> None:
        rs = self._resync
        if rs is None or body.get("session") != rs.session:
            self._drop("stale_resync")
            return
        part, to, data, digest = (
            self._int(body, "part"),
            self._int(body, "to"),
            body.get("data"),
            body.get("sha256"),
        )
        if part is None or to is None or not isinstance(data, str) or not isinstance(digest, str):
            self._drop("wrong_type")
            return
        if hashlib.sha256(data.encode()).hexdigest() != digest:
            self._drop("checksum")
            return
        try:
            changes = orjson.loads(data)
        except ValueError:
            self._drop("malformed")
            return
        if not isinstance(changes, list):
            self._drop("wrong_type")
            return
        versions = [c.get("version") if isinstance(c, dict) else None for c in changes]
        if not all(type(v) is int and 0 <= v <= to for v in versions) or to > MAX_VERSION:
            self._drop("bad_range")  # a part that claims to end before its own changes
            return
        rs.deadline = time.monotonic() + self.config.resync_timeout
        with self.replica.write():
            if part not in rs.parts:
                self._apply(changes)
                self.stats["resync_changes"] += len(changes)
                rs.applied += len(changes)
            rs.parts.add(part)
            if body.get("last") is True:
                rs.last = part
            done = rs.last is not None and rs.parts >= set(range(rs.last + 1))
            if done:
                sync_store.set_applied_version(self.replica.conn, to)
                self._resync = None
                self.stats["resyncs_done"] += 1
                if body.get("mode") == "snapshot":
                    self.stats["snapshots"] += 1
        if body.get("mode") == "snapshot" and (done or part % 50 == 0):
            log.info("snapshot: %d changes applied%s", rs.applied, " (complete)" if done else "")
        if self.progress is not None:
            try:
                self.progress(rs.applied, done)
            except Exception:  # a display's fault must never stop the replica
                log.exception("resync progress callback failed")
        if done:
            # Head office answered at its version: the replica is current as of now, whatever
            # the rate limit on contact says (a currency check must always land).
            self._contact(force=True)
            self._release_held(rs)
            self._check_digest()  # a retained digest met during the resync, or the self-resync's own

    def _release_held(self, rs: _Resync) -> None:
        """Apply the fan-out held during a finished resync: what the answer covered is
        skipped by version, a gap asks for another resync (which holds the rest again)."""
        for body in sorted(rs.held, key=lambda b: (b["from"], b["to"])):  # validated on arrival
            self._on_fleet_changes(body)
            self.stats["held_parts_released"] += 1
        if rs.held_overflow:
            self._request_resync()  # some fan-out was forgotten: ask for what it carried

    # -- contact -------------------------------------------------------------------------------

    def _contact(self, *, force: bool = False) -> None:
        """Head office answered and the replica is known current: the staleness clock and the
        offline counters start again (rate-limited, as it writes the replica)."""
        now = time.monotonic()
        if not force and now - self._last_contact < self.config.contact_interval:
            return
        self._last_contact = now
        at = self.clock()
        self.service.record_contact(at)
        self.known_current_at = at

    def _due_for_currency_check(self) -> bool:
        """True when nothing has confirmed the replica for ``current_interval`` (injected clock)."""
        if self.known_current_at is None:
            return False  # the resync sent on connect confirms it first
        age = (self.clock() - self.known_current_at).total_seconds()
        return age >= self.config.current_interval

    # -- the link's real state ------------------------------------------------------------------

    def _send_echo(self, now: float) -> None:
        self._echo_sent = now
        self._echo_n += 1
        self._echoes.append(self._echo_n)
        self._echo_at = now
        self.client.publish(self.topic("echo"), dumps({"n": self._echo_n}), qos=0)

    def _on_echo(self, body: dict[str, Any]) -> None:
        n = self._int(body, "n")
        if n is None or n not in self._echoes:
            self._drop("stale_echo")
            return
        now = time.monotonic()
        self._answered = now
        if n == self._echo_n:
            self.echo_rtts.append(now - self._echo_at)

    def link_online(self) -> bool:
        """Connected, and the broker answered within echo_interval + echo_timeout."""
        if not self.online.is_set():
            return False
        return time.monotonic() - self._answered <= self.config.echo_interval + self.config.echo_timeout

    def link_state(self) -> dict[str, Any]:
        """What the kiosk shows (any thread): the real connection, not the age of a message."""
        connected = self.online.is_set()
        answered = round(time.monotonic() - self._answered, 3) if connected else None
        current = self.known_current_at
        return {
            "online": self.link_online(),
            "connected": connected,
            "answered_s": answered,
            "known_current_at": iso(current) if current is not None else None,
            "session": self._session,
        }

    # -- online authorisation -------------------------------------------------------------------

    def request_authorisation(self, member: str, points: int, reward: str, timeout: float) -> Hold | None:
        """Ask head office for a hold on points for a redemption (from any thread). None: no
        answer in time; raises when it says no."""
        return self._ask_office(
            {"kind": "points", "member": member, "points": points, "reward": reward}, timeout
        )

    def request_value_authorisation(self, member: str, amount: Decimal, timeout: float) -> Hold | None:
        """Ask head office for a hold on stored value for a payment, the same way."""
        return self._ask_office({"kind": "value", "member": member, "amount": f"{amount:.2f}"}, timeout)

    def _ask_office(self, payload: dict[str, Any], timeout: float) -> Hold | None:
        if not self.link_online():
            return None  # no wait when the link is known down: the offline limits decide now
        call = _AuthCall(uuid.uuid4().bytes, payload)
        self._calls.put(call)
        if not call.done.wait(timeout) or call.answer is None:
            self._waiting.pop(call.correlation, None)
            self.stats["auth_timeouts"] += 1
            return None
        answer = call.answer
        if answer.get("ok") is True and isinstance(answer.get("hold"), str):
            return Hold(str(answer["hold"]))
        reason = answer.get("reason")
        raise AuthorisationDenied(reason if isinstance(reason, str) else "head office declined")

    def _send_auth(self, call: _AuthCall) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.topic("auth/response")
        props.CorrelationData = call.correlation
        self._waiting[call.correlation] = call
        info = self.client.publish(self.topic("auth/request"), dumps(call.payload), qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._waiting.pop(call.correlation, None)
            call.done.set()

    def _on_auth_response(self, body: dict[str, Any], msg: mqtt.MQTTMessage) -> None:
        correlation = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        call = self._waiting.pop(bytes(correlation), None) if correlation is not None else None
        if call is None:
            self._drop("stale_auth")  # answered after the kiosk gave up: the hold just expires
            return
        self._contact()
        call.answer = body
        call.done.set()

    def _fail_pending_calls(self) -> None:
        for call in list(self._waiting.values()):
            call.done.set()
        self._waiting.clear()
        while True:
            try:
                self._calls.get_nowait().done.set()
            except queue.Empty:
                return

    # -- health -----------------------------------------------------------------------------------

    def _publish_health(self) -> None:
        """The health document of the design (every health_interval, QoS 0, not retained)."""
        from staypoint import __version__
        from staypoint.edge.sync import heartbeat

        now = self.clock()
        db = self.replica.path
        program = self.service.program
        doc = heartbeat.build_health(
            self.service.status(now),
            now=now,
            devices=heartbeat.read_devices(self.config.devices_file or db.with_name("devices.json")),
            session=self._session,
            applied_version=sync_store.applied_version(self.replica.conn),
            disk_free=heartbeat.disk_free_pct(db.parent),
            litestream_lag=heartbeat.litestream_lag_s(db, self.config.backup_dir),
            version=__version__,
            uptime_s=time.monotonic() - self.started,
            max_staleness_s=program.offline.max_staleness_hours * 3600,
        )
        doc["dropped"] = dict(self.dropped)
        doc["digest_ok"] = self.digest_ok
        doc["digest_mismatches"] = self.stats["digest_mismatches"]
        doc["last_self_resync"] = self.last_self_resync
        self.client.publish(self.topic("health"), dumps(doc), qos=0)

    # -- for tests and the CLI ----------------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """True once connected with nothing in flight, an empty outbox and no resync running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.online.is_set() and self._idle.is_set() and self.pending() == 0:
                return True
            time.sleep(0.05)
        return False

    def _peek(self) -> sqlite3.Connection:
        # Another thread's questions get a connection of their own: never the agent's, which
        # may be half-way through a transaction.
        return sqlite3.connect(self.replica.path, timeout=10)

    def pending(self) -> int:
        conn = self._peek()
        try:
            return sync_store.outbox_depth(conn)
        finally:
            conn.close()

    def applied_version(self) -> int:
        conn = self._peek()
        try:
            return sync_store.applied_version(conn)
        finally:
            conn.close()


class MqttAuthoriser:
    """The service's ``Authoriser`` over MQTT 5 request/response, with a short timeout.

    None (head office unreachable, or silent past the timeout) lets the offline limits
    decide; a refusal from head office raises ``AuthorisationDenied`` with its reason.
    """

    def __init__(self, agent: SyncAgent | None = None, timeout: float = 2.0) -> None:
        self.agent = agent
        self.timeout = timeout

    def authorise(self, member: str, points: int, reward: str, now: datetime) -> Hold | None:
        if self.agent is None:
            return None
        return self.agent.request_authorisation(member, points, reward, self.timeout)

    def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None:
        if self.agent is None:
            return None
        return self.agent.request_value_authorisation(member, amount, self.timeout)


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
