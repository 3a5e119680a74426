"""The node's heartbeat: the health document (docs/head-office.md), published every period.

:func:`build_health` is pure: it assembles the document from the node service's
``status(now)``, the devices' ``status()`` (anything with ``kind``, ``driver``,
``state`` and ``detail``: this module imports no kiosk code), disk free, Litestream lag,
software version and uptime. :class:`HeartbeatPublisher` publishes it on
``sp/v1/node/{node}/health`` every ``period`` on a paho client it is given.

The retained ``status`` with its Last Will and session counter belong to the connection
that owns the node's identity: the sync agent already publishes them (``agent.py``
``_connect`` / ``_on_connect``), so this module does not repeat them. It shares the agent's
client (paho's ``publish`` is thread-safe) and stamps the agent's session number, so head
office can drop a heartbeat from a connection older than the newest birth it saw.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DeviceRecord",
    "HeartbeatPublisher",
    "build_health",
    "disk_free_pct",
    "health_topic",
    "litestream_lag_s",
    "read_devices",
]

DEFAULT_PERIOD = 30.0


class DeviceLike(Protocol):
    """What the heartbeat reads of a device status (``kiosk.hardware.status.DeviceStatus``)."""

    @property
    def kind(self) -> str: ...
    @property
    def driver(self) -> str: ...
    @property
    def state(self) -> Any: ...
    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class DeviceRecord:
    """A device status read back from the kiosk's ``devices.json`` (see :func:`read_devices`)."""

    kind: str
    driver: str
    state: str
    detail: str = ""


def read_devices(path: Path, *, max_age_s: float = 120.0, now: float | None = None) -> list[DeviceRecord]:
    """Device states the kiosk process last wrote to ``path``; ``offline`` ones if too old.

    The devices belong to the kiosk process and the heartbeat to the sync agent's, so the
    kiosk writes ``{"at": <unix time>, "devices": {"printer": {"driver", "state",
    "detail"}, ...}}`` (temp + rename) and this reads it. A file older than ``max_age_s``
    means the kiosk itself is not updating it: every device is then reported ``offline``
    with that reason, never as the last good state. No file: an empty list.
    """
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(raw, dict) or not isinstance(raw.get("devices"), dict):
        return []
    at = raw.get("at")
    fresh = isinstance(at, int | float) and (now if now is not None else time.time()) - at <= max_age_s
    out = []
    for kind, dev in sorted(raw["devices"].items()):
        if not isinstance(dev, dict):
            continue
        state = str(dev.get("state", "offline")) if fresh else "offline"
        detail = str(dev.get("detail", "")) if fresh else "kiosk not reporting"
        out.append(DeviceRecord(str(kind), str(dev.get("driver", "")), state, detail))
    return out


def health_topic(node: str) -> str:
    """``sp/v1/node/{node}/health``."""
    return f"sp/v1/node/{node}/health"


def disk_free_pct(path: Path) -> float:
    """Free space on the file system holding ``path``, in percent (what a user may use)."""
    usage = shutil.disk_usage(path)
    return round(100.0 * usage.free / usage.total, 2) if usage.total else 0.0


def litestream_lag_s(db: Path, replica_dir: Path | None) -> float | None:
    """How far a ``file://`` Litestream backup trails the replica, in seconds; None if unknown.

    Compares the newest change of the replica (its file or its WAL) with the newest file in
    the backup folder. For S3 / SFTP backups there is no folder to look at: None, and
    head office shows "unknown" rather than a made-up figure.
    """
    if replica_dir is None or not replica_dir.exists():
        return None
    changed = max(
        (p.stat().st_mtime for p in (db, db.with_name(db.name + "-wal")) if p.exists()),
        default=None,
    )
    if changed is None:
        return None
    newest = max((p.stat().st_mtime for p in replica_dir.rglob("*") if p.is_file()), default=None)
    if newest is None:
        return None
    return round(max(0.0, changed - newest), 1)


def _age_s(iso: Any, now: datetime) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (now - at).total_seconds())


def build_health(
    status: Mapping[str, Any],
    *,
    now: datetime,
    devices: Iterable[DeviceLike] = (),
    session: int | None = None,
    applied_version: int | None = None,
    disk_free: float | None = None,
    litestream_lag: float | None = None,
    version: str = "",
    uptime_s: float | None = None,
    max_staleness_s: float | None = None,
) -> dict[str, Any]:
    """The health document (docs/head-office.md, Status and health messages) from
    ``NodeService.status(now)`` and the rest."""
    doc: dict[str, Any] = {
        "v": 1,
        "node": status.get("node"),
        "property": status.get("property"),
        "at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "outbox_depth": status.get("outbox_depth"),
        "oldest_pending_s": _age_s(status.get("oldest_pending"), now) or 0.0,
        "applied_version": applied_version,
        "staleness_s": status.get("staleness_s"),
        "max_staleness_s": max_staleness_s,
        "program_version": status.get("program_version"),
        "epoch": status.get("epoch"),
        "litestream_lag_s": litestream_lag,
        "disk_free_pct": disk_free,
        "devices": {
            str(d.kind): {
                "driver": str(d.driver),
                "state": str(getattr(d.state, "value", d.state)),
                "detail": d.detail,
            }
            for d in devices
        },
        "version": version,
        "uptime_s": None if uptime_s is None else round(uptime_s, 1),
    }
    if session is not None:
        doc["session"] = session
    return doc


class Publisher(Protocol):
    """The part of a paho client the heartbeat uses."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any: ...


class HeartbeatPublisher:
    """Publishes ``build()`` on the node's health topic every ``period`` seconds.

    QoS 0, not retained: a heartbeat missed is reported by its absence (head office marks
    the node stale after three), and an old one must never be replayed as if current.
    ``on_beat`` runs after each publish: the agent's process feeds its systemd watchdog
    there (``staypoint.edge.sync.sdnotify.watchdog_ping``), so a hung heartbeat loop
    gets the service restarted.

    ``clock`` (monotonic seconds) and ``wait`` (block up to the given seconds; true once
    ``stop()`` was asked) are injected by tests so the schedule is counted, not timed.
    """

    def __init__(
        self,
        client: Publisher,
        node: str,
        build: Callable[[], Mapping[str, Any]],
        *,
        period: float = DEFAULT_PERIOD,
        on_beat: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.client = client
        self.node = node
        self.build = build
        self.period = period
        self.on_beat = on_beat
        self.sent = 0
        self.errors = 0
        self.clock = clock
        self.started = clock()
        self._stop = threading.Event()
        self._wait = wait if wait is not None else self._stop.wait
        self._thread: threading.Thread | None = None

    @property
    def uptime_s(self) -> float:
        """Seconds since this publisher (i.e. the node's agent process) started."""
        return self.clock() - self.started

    def publish_once(self) -> None:
        """Build and publish one heartbeat now."""
        payload = json.dumps(self.build(), separators=(",", ":")).encode()
        self.client.publish(health_topic(self.node), payload, qos=0, retain=False)
        self.sent += 1

    def run(self) -> None:
        """Publish every ``period`` until ``stop()``, in the calling thread (``start()``
        runs this on a daemon thread)."""
        next_at = self.clock()
        while not self._stop.is_set():
            try:
                self.publish_once()
            except Exception:  # a bad reading this time must not end the heartbeat
                self.errors += 1
            if self.on_beat is not None:
                self.on_beat()
            # Fixed-rate schedule: a slow build does not make the period drift.
            next_at += self.period
            if self._wait(max(0.0, next_at - self.clock())):
                break

    def start(self) -> None:
        """Start publishing on a daemon thread."""
        self._thread = threading.Thread(target=self.run, name=f"heartbeat-{self.node}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def process_uptime_s() -> float:
    """Seconds since this process started (from /proc; 0.0 where unavailable)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            boot_uptime = float(fh.read().split()[0])
        return max(0.0, boot_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
