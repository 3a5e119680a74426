"""Simulated nodes for fleet tests and the bench: few MQTT connections carrying many nodes.

Heartbeats of many nodes may share one connection (head office's identity may write any
node's topics); a node whose *Last Will* matters gets a connection of its own, under its
own certificate, exactly like a real sync agent.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from staypoint.edge.sync.heartbeat import build_health, health_topic
from tests.mqtt_fixtures import MosquittoBroker, Will, make_client, unique_client_id


@dataclass
class Device:
    kind: str
    driver: str
    state: str
    detail: str = ""


@dataclass
class SimNode:
    """What one simulated node reports; tests change the fields to cause alerts."""

    node: str
    property: str
    outbox_depth: int = 0
    oldest_pending_s: float = 0.0
    staleness_s: int = 5
    max_staleness_s: float = 24 * 3600
    litestream_lag_s: float | None = 1.0
    disk_free_pct: float = 60.0
    paper: str = "ok"
    skew_s: float = 0.0
    silent: bool = False
    session: int = 1

    def doc(self, now: datetime) -> dict[str, Any]:
        from datetime import timedelta

        oldest = (now - timedelta(seconds=self.oldest_pending_s)).isoformat() if self.outbox_depth else None
        status = {
            "node": self.node,
            "property": self.property,
            "outbox_depth": self.outbox_depth,
            "oldest_pending": oldest,
            "staleness_s": self.staleness_s,
            "program_version": 3,
            "epoch": 1,
        }
        devices = [
            Device("reader", "pcsc", "ok"),
            Device("pinpad", "serial", "ok"),
            Device("printer", "escpos", self.paper),
        ]
        return build_health(
            status,
            now=now + timedelta(seconds=self.skew_s),
            devices=devices,
            session=self.session,
            applied_version=100,
            disk_free=self.disk_free_pct,
            litestream_lag=self.litestream_lag_s,
            version="0.1.0",
            uptime_s=3600,
            max_staleness_s=self.max_staleness_s,
        )


@dataclass
class Carrier:
    """One connection publishing the heartbeats of many nodes every ``period``."""

    client: mqtt.Client
    nodes: list[SimNode]
    period: float
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def beat(self) -> None:
        now = datetime.now(UTC)
        for n in self.nodes:
            if not n.silent:
                self.client.publish(health_topic(n.node), json.dumps(n.doc(now)).encode(), qos=0)
                self.sent += 1

    def start(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self.beat()
                self._stop.wait(self.period)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def own_connection(broker: MosquittoBroker, node: SimNode) -> mqtt.Client:
    """A node's own connection: its certificate, its retained birth, its Last Will."""
    will = Will(
        f"sp/v1/node/{node.node}/status",
        json.dumps({"state": "offline", "session": node.session, "node": node.node}).encode(),
    )
    client = make_client(broker, node.node, node.node, will=will)
    client.publish(
        f"sp/v1/node/{node.node}/status",
        json.dumps({"state": "online", "session": node.session, "node": node.node}).encode(),
        qos=1,
        retain=True,
    )
    return client


def crash(client: mqtt.Client) -> None:
    """Drop the connection without DISCONNECT, as a board losing power does: the Will fires."""
    sock = client.socket()
    client.loop_stop()
    if isinstance(sock, socket.socket):
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def carrier_client(broker: MosquittoBroker) -> mqtt.Client:
    """A head-office-identity connection for carrying many simulated nodes' heartbeats."""
    return make_client(broker, "head-office", unique_client_id("sim"))


Factory = Callable[..., mqtt.Client]
