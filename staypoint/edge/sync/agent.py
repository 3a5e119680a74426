"""The node's sync agent: outbox upstream, changes downstream, online authorisation, status.

One thread owns the MQTT connection and the agent's own replica connection; every MQTT
callback runs on it (``client.loop()`` is called here, never ``loop_start``), so the
agent's state needs no locks. Other threads (the kiosk asking for an authorisation) talk to
it through a queue.

``SyncAgent`` owns the client, the thread and the connection's life, and routes each message
to the part that handles it: ``upstream`` (the outbox, acks, resends), ``downstream``
(fan-out, resync sessions, the digest) and ``authorisation`` (holds asked of head office,
the link's real state by echo). The guarantees each part keeps are in its module's
docstring (docs/architecture.md: the event contract; docs/sync.md: how it is kept).
Anything malformed from the broker is dropped and counted; nothing stops the loop.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
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
from staypoint.edge.agent_link import FIRST_PIN_TIMEOUT_S
from staypoint.edge.replica import Replica
from staypoint.edge.service import FirstPinAnswer, Hold, NodeService
from staypoint.edge.sync.authorisation import Authorisation
from staypoint.edge.sync.context import MAX_PAYLOAD, MAX_VERSION, AgentContext, dumps
from staypoint.edge.sync.downstream import HELD_CHANGES_MAX, Downstream, ResyncProgress, ResyncSession
from staypoint.edge.sync.upstream import Upstream
from staypoint.loyalty.events import iso
from staypoint.mqtt_tls import no_nagle, use_fleet_tls

__all__ = [
    "HELD_CHANGES_MAX",
    "MAX_PAYLOAD",
    "MAX_VERSION",
    "MqttAuthoriser",
    "ResyncProgress",
    "SyncAgent",
    "SyncConfig",
    "dumps",
    "now_utc",
]

log = logging.getLogger("staypoint.sync")

# The fuzz tests build a resync session by this name.
_Resync = ResyncSession


def now_utc() -> datetime:
    """The wall clock, in UTC (the agent's default clock)."""
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
        self.node = config.node_id
        # The agent's own connection: its transactions never see the kiosk's half-done ones.
        self.replica = Replica(service.replica.path)
        self.ctx = ctx = AgentContext(service, config, self.replica, clock)
        self.dropped = ctx.dropped
        self.stats = ctx.stats
        self.online = ctx.online
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loop_beat = time.monotonic()
        self.started = time.monotonic()
        self._last_health = 0.0
        self._idle = threading.Event()
        self.upstream = Upstream(ctx)
        # Read here, from this module, so a test can lower the bound for the agents it makes.
        self.downstream = Downstream(ctx, self.upstream, held_max=HELD_CHANGES_MAX, progress=progress)
        self.authorisation = Authorisation(ctx)
        # A member fetched online (partial replicas) goes into the replica on this thread,
        # before the kiosk that asked is told it is there.
        self.authorisation.store_member = self.downstream.store_fetched
        self.latencies: deque[float] = self.upstream.latencies
        self.echo_rtts: deque[float] = self.authorisation.echo_rtts
        self.link_online = self.authorisation.link_online
        self.link_state = self.authorisation.link_state
        self.request_authorisation = self.authorisation.request_authorisation
        self.request_value_authorisation = self.authorisation.request_value_authorisation
        self.request_first_pin = self.authorisation.request_first_pin
        self.request_member = self.authorisation.request_member
        self._on_digest = self.downstream.on_digest
        self._on_fleet_changes = self.downstream.on_fleet_changes
        self._on_resync_part = self.downstream.on_resync_part
        self.client = self._make_client()

    # -- what the parts keep, as the CLI, the health document and the tests read it ----------------

    @property
    def client(self) -> mqtt.Client:
        """The agent's one MQTT client (shared with the heartbeat, whose publishes are thread-safe)."""
        return self.ctx.client

    @client.setter
    def client(self, client: mqtt.Client) -> None:
        self.ctx.client = client

    @property
    def progress(self) -> ResyncProgress | None:
        """Called after each part of a resync answer (the CLI's bar); None: nothing drawn."""
        return self.downstream.progress

    @progress.setter
    def progress(self, progress: ResyncProgress | None) -> None:
        self.downstream.progress = progress

    @property
    def known_current_at(self) -> datetime | None:
        """When the replica was last known to be head office's (the injected clock's time)."""
        return self.ctx.known_current_at

    @property
    def digest_ok(self) -> bool | None:
        """Whether the replica matched head office's digest (None: never compared yet)."""
        return self.downstream.digest_ok

    @property
    def last_self_resync(self) -> str | None:
        """When the replica last resynced by itself because it differed from the digest."""
        return self.downstream.last_self_resync

    @property
    def _resync(self) -> ResyncSession | None:
        return self.downstream.resync

    @_resync.setter
    def _resync(self, session: ResyncSession | None) -> None:
        self.downstream.resync = session

    # -- topics -------------------------------------------------------------------------------

    def topic(self, leaf: str) -> str:
        """This node's topic ``sp/v1/node/<id>/<leaf>``."""
        return self.ctx.topic(leaf)

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
        """Run the agent in a thread of its own."""
        self._thread = threading.Thread(target=self.run, name=f"sync-{self.node}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop (a last ack written, an offline status said) and close the replica."""
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
                    self.authorisation.fail_pending_calls()
                    self._stop.wait(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, self.config.backoff_max)
                    continue
            rc = self.client.loop(timeout=0.01)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                connected = False
                self.online.clear()
                self.ctx.last_contact = 0.0
                self.authorisation.fail_pending_calls()
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
        if self.upstream.ack_due is not None:
            with self.replica.write():
                self.upstream.flush_ack()
        if connected:
            self._say_offline()

    def _connect(self) -> None:
        with self.replica.write():
            self.ctx.session = sync_store.next_session(self.replica.conn)
        will = dumps({"state": "offline", "session": self.ctx.session, "node": self.node})
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
                dumps({"state": "offline", "session": self.ctx.session, "node": self.node}),
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
        status = {"state": "online", "session": self.ctx.session, "node": self.node, "at": iso(self.clock())}
        client.publish(self.topic("status"), dumps(status), qos=1, retain=True)
        # Whatever was in flight on the last connection may be gone: start from the ack.
        self.upstream.rewind()
        self.downstream.resync = None
        self.downstream.request_resync()
        self.authorisation.on_connect()
        self.online.set()
        self.stats["connects"] += 1

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.online.clear()
        self.ctx.last_contact = 0.0  # the first answer after a reconnect counts as contact at once

    # -- the tick: authorisations, the outbox, timeouts, health --------------------------------

    def _tick(self) -> None:
        self.authorisation.send_queued()
        self.upstream.flush_ack_if_due()
        if not self.online.is_set():
            return
        self.upstream.pump()
        now = time.monotonic()
        self.authorisation.echo_if_due(now)
        self.downstream.check_currency()
        self.upstream.check_ack_timeout(now)
        self.downstream.check_resync_timeout(now)
        if now - self._last_health > self.config.health_interval:
            self._last_health = now
            self._publish_health()
        if not self.upstream.inflight and self.downstream.resync is None:
            self._idle.set()
        else:
            self._idle.clear()

    # -- incoming: each topic to its part ---------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if len(msg.payload) > MAX_PAYLOAD:
                self.ctx.drop("oversized")
                return
            try:
                body = orjson.loads(msg.payload)  # as head office: faster, and stricter
            except (UnicodeDecodeError, ValueError):
                self.ctx.drop("malformed")
                return
            if not isinstance(body, dict):
                self.ctx.drop("wrong_type")
                return
            topic = msg.topic
            if topic == self.topic("ack"):
                self.upstream.on_ack(body, bool(msg.retain))
            elif topic == self.topic("resend"):
                self.upstream.on_resend(body)
            elif topic == self.topic("changes"):
                self.ctx.contact()
                self.downstream.on_node_changes(body)
            elif topic == "sp/v1/fleet/changes":
                self.downstream.on_fleet_changes(body)
            elif topic == "sp/v1/fleet/digest":
                self.downstream.on_digest(body, bool(msg.retain))
            elif topic == self.topic("auth/response"):
                self.authorisation.on_auth_response(body, msg)
            elif topic == self.topic("echo"):
                self.authorisation.on_echo(body)
            else:
                self.ctx.drop("topic")
        except Exception:  # a bug must not stop the agent: count it, keep serving
            log.exception("failed on a message on %s", msg.topic)
            self.ctx.drop("error")

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
            session=self.ctx.session,
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
        """Outbox rows not yet acknowledged (from any thread)."""
        conn = self._peek()
        try:
            return sync_store.outbox_depth(conn)
        finally:
            conn.close()

    def applied_version(self) -> int:
        """The change-log version the replica has applied (from any thread)."""
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

    def fetch_member(self, card_hash: str | None, number: str | None) -> bool | None:
        """A partial replica's member fetched into the replica (by card hash or number)."""
        if self.agent is None:
            return None
        return self.agent.request_member(card_hash, number, self.timeout)

    def ask_first_pin(self, member: str, code: str, pin_hash: str) -> FirstPinAnswer | None:
        """An imported member's first PIN (the node service's ``FirstPinChannel``)."""
        if self.agent is None:
            return None
        return self.agent.request_first_pin(member, code, pin_hash, max(self.timeout, FIRST_PIN_TIMEOUT_S))
