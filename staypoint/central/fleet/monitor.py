"""The fleet monitor: subscribes to every node's status and health, keeps :class:`FleetState`,
evaluates alerts on a timer, and serves ``/metrics`` and the ``/fleet/nodes`` API (:mod:`.web`).

One paho network thread ingests (each message is a JSON parse and a dict update, no I/O),
one ticker thread evaluates alert rules every ``tick_s``; the dashboard and the metrics
collector read snapshots. Head office's own connection uses a persistent session
(``clean_start=False`` with an expiry) so retained statuses and queued messages survive
a monitor restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from staypoint.central.fleet.alerts import AlertManager, LogSink, MemorySink, Sink
from staypoint.central.fleet.expiry import ExpiryWatch
from staypoint.central.fleet.metrics import make_registry
from staypoint.central.fleet.state import FleetConfig, FleetState, utcnow
from staypoint.central.fleet.web import FleetHttpServer, make_app
from staypoint.mqtt_tls import use_fleet_tls

__all__ = ["FleetMonitor", "MonitorSettings"]

log = logging.getLogger("staypoint.fleet")


@dataclass(frozen=True)
class MonitorSettings:
    """How the monitor reaches the broker (as head office)."""

    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    client_id: str = "head-office-fleet"
    session_expiry: int = 3600


class FleetMonitor:
    """Broker → :class:`FleetState` → alerts, metrics and the dashboard."""

    def __init__(
        self,
        settings: MonitorSettings,
        config: FleetConfig | None = None,
        *,
        sinks: list[Sink] | None = None,
        tick_s: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
        expiry: ExpiryWatch | None = None,
    ) -> None:
        self.settings = settings
        self.state = FleetState(config)
        self.memory = MemorySink()
        self.expiry = expiry
        self.alerts = AlertManager(
            self.state,
            [LogSink(), self.memory, *(sinks or [])],
            sources=[expiry.conditions] if expiry is not None else [],
        )
        self.tick_s = tick_s
        self.clock = clock
        self.client = self._make_client()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._ticker: threading.Thread | None = None
        self._http: FleetHttpServer | None = None

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        use_fleet_tls(client, s.ca, s.cert, s.key)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: self._ready.set()
        return client

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe, start the alert ticker."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry
        self.client.connect(
            self.settings.host, self.settings.port, keepalive=30, clean_start=False, properties=props
        )
        self.client.loop_start()
        if not self._ready.wait(timeout):
            self.client.loop_stop()
            raise TimeoutError(f"fleet monitor: no subscription on {self.settings.host}:{self.settings.port}")
        self._ticker = threading.Thread(target=self._tick_loop, name="fleet-alerts", daemon=True)
        self._ticker.start()

    def serve_metrics(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` and ``/fleet/nodes`` on ``addr:port`` (0: any free port); return the port."""
        registry = make_registry(self.state, self.alerts, expiry=self.expiry, clock=self.clock)
        app = make_app(self.state, registry, self.alerts, self.memory, self.clock)
        self._http = FleetHttpServer(app, port, addr)
        return self._http.port

    def stop(self) -> None:
        """Stop everything this monitor started."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5)
        self.client.disconnect()
        self.client.loop_stop()
        if self._http is not None:
            self._http.shutdown()

    # -- MQTT ---------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("fleet monitor refused by the broker: %s", rc)
            return
        # Subscribed here, not once after connect, so a reconnect restores them.
        client.subscribe([("sp/v1/node/+/status", 1), ("sp/v1/node/+/health", 0)])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.state.ingest(msg.topic, bytes(msg.payload), self.clock())
        except Exception:  # a bug on one message must not stop the monitor
            log.exception("fleet monitor failed on %s", msg.topic)
            self.state.dropped["error"] += 1

    # -- alerts -------------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.alerts.evaluate(self.clock())
            except Exception:
                log.exception("alert evaluation failed")

    def wait_for(self, predicate: Callable[[FleetState], bool], timeout: float) -> bool:
        """Poll ``predicate(state)`` until true or ``timeout`` (tests and the bench)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.state):
                return True
            time.sleep(0.02)
        return predicate(self.state)
