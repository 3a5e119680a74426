"""The node's health document and its publisher, from a real node service."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from staypoint.central.fleet.state import FleetState, HealthSample
from staypoint.edge.service import NodeService
from staypoint.edge.sync.heartbeat import (
    HeartbeatPublisher,
    build_health,
    disk_free_pct,
    litestream_lag_s,
    process_uptime_s,
    read_devices,
)
from staypoint.kiosk.hardware.printer.sim import SimPrinter
from staypoint.kiosk.hardware.reader.sim import SimReader
from tests.waits import wait_until


def test_document_from_node_status(node: NodeService, now: datetime, tmp_path: Path) -> None:
    printer = SimPrinter()
    printer.paper_out = True
    node.enrol("Ana Example", "2580", now)  # one event waiting in the outbox
    doc = build_health(
        node.status(now + timedelta(minutes=20)),
        now=now + timedelta(minutes=20),
        devices=[SimReader().status(), printer.status()],
        session=4,
        applied_version=17,
        disk_free=disk_free_pct(tmp_path),
        litestream_lag=None,
        version="0.1.0",
        uptime_s=process_uptime_s(),
        max_staleness_s=86400,
    )
    assert doc["node"] == "sha-lobby-01" and doc["property"] == "SHA" and doc["session"] == 4
    assert doc["outbox_depth"] == 1 and doc["oldest_pending_s"] == 1200
    assert doc["staleness_s"] == 1200
    assert doc["devices"]["printer"] == {"driver": "sim", "state": "paper_out", "detail": "simulated"}
    assert 0 < doc["disk_free_pct"] <= 100 and doc["uptime_s"] >= 0
    # Head office reads back exactly what the node meant.
    sample = HealthSample.from_doc(json.loads(json.dumps(doc)), now + timedelta(minutes=20))
    assert sample.oldest_pending_s == 1200 and sample.devices["printer"]["state"] == "paper_out"
    assert sample.skew_s == 0


def test_litestream_lag_from_a_file_backup(tmp_path: Path) -> None:
    db, backup = tmp_path / "node.db", tmp_path / "backup"
    backup.mkdir()
    (backup / "ltx").write_bytes(b"x")
    db.write_bytes(b"y")
    t = time.time()
    os.utime(backup / "ltx", (t - 400, t - 400))
    os.utime(db, (t, t))
    assert 399 <= (litestream_lag_s(db, backup) or 0) <= 401
    assert litestream_lag_s(db, None) is None
    assert litestream_lag_s(db, tmp_path / "missing") is None


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any:
        self.sent.append((topic, payload, qos, retain))


def test_publisher_fixed_rate_schedule_on_an_injected_clock() -> None:
    """Five beats counted on a fake clock: each wait is what is left of the period after the
    build, a build slower than the period is caught up (no drift), a failing build is
    counted and still feeds the watchdog."""
    rec, beats, waits, at = Recorder(), [], [], [100.0]
    build_takes = iter([0.01, 0.12, 0.01, 0.01, 0.01])
    published_at: list[float] = []

    def build() -> dict[str, Any]:
        published_at.append(at[0])
        at[0] += next(build_takes)
        if len(published_at) == 4:
            raise OSError("disk gone for a moment")
        return {"beat": len(published_at)}

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        at[0] += seconds
        return len(waits) == 5  # stop() asked after the fifth beat

    pub = HeartbeatPublisher(
        rec,
        "sha-lobby-01",
        build,
        period=0.05,
        on_beat=lambda: beats.append(1),
        clock=lambda: at[0],
        wait=wait,
    )
    pub.run()
    assert published_at == pytest.approx([100.0, 100.05, 100.17, 100.18, 100.20])
    assert waits == pytest.approx([0.04, 0.0, 0.0, 0.01, 0.04])
    assert [json.loads(p)["beat"] for _, p, _, _ in rec.sent] == [1, 2, 3, 5]
    assert pub.sent == 4 and pub.errors == 1 and len(beats) == 5
    assert {(t, q, r) for t, _, q, r in rec.sent} == {("sp/v1/node/sha-lobby-01/health", 0, False)}
    assert pub.uptime_s == pytest.approx(0.25)
    state = FleetState()
    assert state.ingest(rec.sent[0][0], rec.sent[0][1], datetime.now(UTC))


def test_publisher_thread_beats_until_stopped() -> None:
    rec, beats = Recorder(), []
    pub = HeartbeatPublisher(
        rec,
        "sha-lobby-01",
        lambda: {"at": datetime.now(UTC).isoformat()},
        period=0.01,
        on_beat=lambda: beats.append(1),
    )
    pub.start()
    wait_until(lambda: len(beats) >= 3, 10, "three beats", interval=0.01)
    pub.stop()
    # Stopped means stopped: the thread has ended, nothing more can be published.
    assert pub._thread is not None and not pub._thread.is_alive()
    assert len(beats) >= 3 and len(beats) == len(rec.sent) == pub.sent


def test_device_file_from_the_kiosk(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    assert read_devices(path) == []
    body = {"at": 1000.0, "devices": {"printer": {"driver": "escpos", "state": "paper_out", "detail": ""}}}
    path.write_text(json.dumps(body))
    assert [(d.kind, d.state) for d in read_devices(path, now=1010)] == [("printer", "paper_out")]
    stale = read_devices(path, now=2000)
    assert [(d.kind, d.state, d.detail) for d in stale] == [("printer", "offline", "kiosk not reporting")]
    doc = build_health({"node": "n"}, now=datetime.now(UTC), devices=stale)
    assert doc["devices"]["printer"]["state"] == "offline"
