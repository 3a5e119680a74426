"""The fleet as head office sees it: one :class:`NodeView` per node, fed by MQTT messages.

Inputs (docs/head-office.md, Status and health messages):
    sp/v1/node/{node}/status   retained ``{"state": "online"|"offline", "session": n}``;
                               ``offline`` is also the node's Last Will. A status whose
                               session is older than the newest seen is a late Will of an
                               earlier connection and is ignored.
    sp/v1/node/{node}/health   the heartbeat document, every ``period_s`` (30 s).

A node is ``online`` (birth seen or heartbeats arriving), ``offline`` (its Will or its
own goodbye), ``stale`` (online but silent for ``missed_beats`` heartbeat periods), or
``unknown`` (heard of, never heard from). Time comes from a clock argument, so the state
machine is tested without sleeping.

Everything from the broker is validated here: a malformed message is counted in
``dropped`` and changes nothing.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from staypoint.central.fleet.rollup import FleetAggregates, Rollup

__all__ = [
    "DEVICE_KINDS",
    "STATES",
    "FleetConfig",
    "FleetState",
    "HealthSample",
    "NodeView",
    "in_trouble",
    "parse_topic",
]

DEVICE_KINDS = ("reader", "pinpad", "printer")
STATES = ("online", "stale", "offline", "unknown")
MAX_PAYLOAD = 64 * 1024  # a health document is ~1 KiB; anything huge is not one
HISTORY = 40  # recent heartbeats kept per node, for the detail view


@dataclass(frozen=True)
class FleetConfig:
    """Periods and alert thresholds (seconds unless named otherwise)."""

    period_s: float = 30.0
    missed_beats: int = 3
    offline_alert_s: float = 300.0
    outbox_alert_s: float = 900.0
    staleness_fraction: float = 0.8  # of the node's own offline limit (max_staleness_s)
    default_max_staleness_s: float = 24 * 3600.0
    litestream_alert_s: float = 300.0
    disk_min_pct: float = 10.0
    skew_max_s: float = 120.0

    @property
    def stale_after_s(self) -> float:
        """Silence after which an online node is stale: three missed heartbeats."""
        return self.period_s * self.missed_beats


def _num(doc: Mapping[str, Any], key: str) -> float | None:
    value: Any = doc.get(key)
    kind = type(value)  # exact types: bool is not a number here, and json makes no subclasses
    if kind is float:
        # JSON allows Infinity and NaN (Python's parser does): neither is a measurement, and
        # either would poison a fleet-wide max or an int() conversion. (x - x is nan for both.)
        return float(value) if value - value == 0.0 else None
    if kind is int:
        try:
            return float(value)
        except OverflowError:  # an integer past 1e308
            return None
    return None


def _parse_at(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


@dataclass(frozen=True)
class HealthSample:
    """One heartbeat, reduced to what the fleet view, alerts and metrics use."""

    received: datetime
    sent: datetime | None
    outbox_depth: int | None
    oldest_pending_s: float | None
    applied_version: int | None
    staleness_s: float | None
    max_staleness_s: float | None
    litestream_lag_s: float | None
    disk_free_pct: float | None
    devices: dict[str, dict[str, str]]
    version: str
    program_version: int | None
    uptime_s: float | None
    property: str | None

    # builtins.property: the field named "property" above shadows the decorator for mypy.
    @builtins.property
    def skew_s(self) -> float | None:
        """Node clock minus head office clock at receipt (transit time is negligible)."""
        return None if self.sent is None else (self.sent - self.received).total_seconds()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], received: datetime) -> HealthSample:
        """Validate a health document; unknown or wrong-typed fields become None."""
        devices: dict[str, dict[str, str]] = {}
        raw_devices = doc.get("devices")
        if isinstance(raw_devices, Mapping):
            for kind, dev in raw_devices.items():
                if isinstance(kind, str) and isinstance(dev, Mapping):
                    devices[kind[:16]] = {
                        "driver": str(dev.get("driver", ""))[:16],
                        "state": str(dev.get("state", "unknown"))[:16],
                        "detail": str(dev.get("detail", ""))[:80],
                    }
        depth = _num(doc, "outbox_depth")
        applied = _num(doc, "applied_version")
        program = _num(doc, "program_version")
        prop = doc.get("property")
        return cls(
            received=received,
            sent=_parse_at(doc.get("at")),
            outbox_depth=int(depth) if depth is not None else None,
            oldest_pending_s=_num(doc, "oldest_pending_s"),
            applied_version=int(applied) if applied is not None else None,
            staleness_s=_num(doc, "staleness_s"),
            max_staleness_s=_num(doc, "max_staleness_s"),
            litestream_lag_s=_num(doc, "litestream_lag_s"),
            disk_free_pct=_num(doc, "disk_free_pct"),
            devices=devices,
            version=str(doc.get("version", ""))[:32],
            program_version=int(program) if program is not None else None,
            uptime_s=_num(doc, "uptime_s"),
            property=str(prop)[:32] if isinstance(prop, str) else None,
        )


@dataclass
class NodeView:
    """Everything head office knows about one node."""

    node: str
    property: str = ""
    status: str = "unknown"  # from the status topic: online / offline / unknown
    session: int = -1
    status_at: datetime | None = None
    last_seen: datetime | None = None
    last: HealthSample | None = None
    heartbeats: int = 0
    history: deque[HealthSample] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def state(self, now: datetime, config: FleetConfig) -> str:
        """online / stale / offline / unknown at ``now``."""
        if self.status == "offline":
            return "offline"
        heard = self.heard_at()
        if heard is None:
            return "unknown"
        if (now - heard).total_seconds() > config.stale_after_s:
            return "stale"
        return "online"

    def heard_at(self) -> datetime | None:
        """The last sign of life: a heartbeat, or a birth message (``online`` status)."""
        seen = self.last_seen
        birth = self.status_at if self.status == "online" else None
        if birth is None:
            return seen
        return birth if seen is None or birth > seen else seen

    def copy(self) -> NodeView:
        """A copy that later messages do not change (its history included)."""
        return NodeView(
            self.node,
            self.property,
            self.status,
            self.session,
            self.status_at,
            self.last_seen,
            self.last,
            self.heartbeats,
            deque(self.history, maxlen=HISTORY),
        )

    def dark_since(self, now: datetime, config: FleetConfig) -> datetime | None:
        """Since when head office has not heard from a node that is offline or stale."""
        state = self.state(now, config)
        if state not in ("offline", "stale"):
            return None
        # Dark since the last sign of life, not since the Will: a node that went silent and
        # whose Will came later has been dark all along (one alert, not silent-then-Will).
        heard = self.heard_at()
        return heard if heard is not None else self.status_at


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``sp/v1/node/{node}/{leaf}`` → ``(node, leaf)`` for status and health; else None."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[:3] != ["sp", "v1", "node"] or parts[4] not in ("status", "health"):
        return None
    node = parts[3]
    if not node or len(node) > 64:
        return None
    return node, parts[4]


class FleetState:
    """Thread-safe map of node → :class:`NodeView` (paho thread writes, others read).

    Readers at fleet scale (100,000 nodes: /metrics, the /fleet/nodes API, alerts, the
    dashboard) use :meth:`views` and :meth:`select`, which hand out the live views without
    copying them; :meth:`snapshot` and :meth:`get` copy, for a reader that keeps them. The
    order by property then node is kept in a cached index, rebuilt only when a node is
    added or changes property, so a page of the API is a slice, not a sort.
    """

    def __init__(
        self, config: FleetConfig | None = None, *, properties: Mapping[str, str] | None = None
    ) -> None:
        self.config = config or FleetConfig()
        self.nodes: dict[str, NodeView] = {}
        self.dropped: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.rollup: Rollup = Rollup()
        self._order: list[NodeView] | None = None
        self._by_property: dict[str, list[NodeView]] = {}
        for node, prop in (properties or {}).items():
            self.nodes[node] = NodeView(node, prop)
            self.rollup.put(self.nodes[node])

    def _view(self, node: str) -> NodeView:
        view = self.nodes.get(node)
        if view is None:
            view = self.nodes[node] = NodeView(node)
            self._order = None
        return view

    def ingest(self, topic: str, payload: bytes, now: datetime) -> bool:
        """Apply one message; False (and counted in ``dropped``) when it is not valid."""
        where = parse_topic(topic)
        if where is None:
            self.dropped["topic"] += 1
            return False
        if len(payload) > MAX_PAYLOAD:
            self.dropped["size"] += 1
            return False
        if not payload:
            return False  # a retained message being cleared
        try:
            doc = orjson.loads(payload)  # a quarter of json's cost, 100,000 times a period
        except orjson.JSONDecodeError:
            try:  # what orjson refuses and json reads (NaN, an integer past 64 bits) is judged
                doc = json.loads(payload)  # field by field below, not dropped whole
            except ValueError:
                self.dropped["json"] += 1
                return False
        if not isinstance(doc, dict):
            self.dropped["json"] += 1
            return False
        node, leaf = where
        with self.lock:
            if leaf == "status":
                return self._status(node, doc, now)
            return self._health(node, doc, now)

    def _status(self, node: str, doc: Mapping[str, Any], now: datetime) -> bool:
        state, session = doc.get("state"), doc.get("session")
        if state not in ("online", "offline") or isinstance(session, bool) or not isinstance(session, int):
            self.dropped["status"] += 1
            return False
        view = self._view(node)
        if session < view.session:
            self.dropped["late_status"] += 1  # a late Will of an older connection
            return False
        if session == view.session and state == view.status:
            return True  # a retained repeat (e.g. after our own reconnect)
        view.session, view.status, view.status_at = session, state, now
        self.rollup.put(view)
        self.received["status"] += 1
        return True

    def _health(self, node: str, doc: Mapping[str, Any], now: datetime) -> bool:
        view = self._view(node)
        sample = HealthSample.from_doc(doc, now)
        session = doc.get("session")
        if isinstance(session, int) and not isinstance(session, bool):
            if session < view.session or (session == view.session and view.status == "offline"):
                # From a connection already declared dead (its Will came first): a newer
                # session, by birth or heartbeat, is the only way back to online.
                self.dropped["late_health"] += 1
                return False
            if session > view.session or view.status != "online":
                # A heartbeat from a newer connection is as good as its birth message.
                view.session, view.status, view.status_at = session, "online", now
        elif view.status != "online":
            view.status, view.status_at = "online", now
        if sample.property and sample.property != view.property:
            view.property = sample.property
            self._order = None
        view.last, view.last_seen = sample, now
        view.history.append(sample)
        view.heartbeats += 1
        self.rollup.put(view)
        self.received["health"] += 1
        return True

    def snapshot(self) -> list[NodeView]:
        """A copy of every node's view, sorted by property then node."""
        with self.lock:
            views = [v.copy() for v in self.nodes.values()]
        return sorted(views, key=lambda v: (v.property, v.node))

    def aggregates(self, now: datetime) -> FleetAggregates:
        """The fleet's figures for /metrics, from the incrementally kept :class:`Rollup`."""
        with self.lock:
            return self.rollup.aggregates(now, self.config)

    def clear(self) -> None:
        """Forget every node (the bench's fresh start)."""
        with self.lock:
            self.nodes.clear()
            self.rollup = Rollup()
            self._order = None

    def views(self) -> list[NodeView]:
        """The live views, unordered and uncopied: read them, never change them."""
        with self.lock:
            return list(self.nodes.values())

    def get(self, node: str) -> NodeView | None:
        """A copy of one node's view, or None when it was never heard of."""
        with self.lock:
            view = self.nodes.get(node)
            return view.copy() if view is not None else None

    def _ordered(self) -> tuple[list[NodeView], dict[str, list[NodeView]]]:
        with self.lock:
            if self._order is None:
                order = sorted(self.nodes.values(), key=lambda v: (v.property, v.node))
                by_property: dict[str, list[NodeView]] = {}
                for v in order:
                    by_property.setdefault(v.property.lower(), []).append(v)
                self._order, self._by_property = order, by_property
            return self._order, self._by_property

    def select(
        self,
        now: datetime,
        *,
        state: str | None = None,
        property: str | None = None,
        property_contains: str | None = None,
        where: Callable[[NodeView], bool] | None = None,
    ) -> list[NodeView]:
        """The live views passing every filter given, by property then node.

        ``property`` is one property's code (any case, from the index: the cost is that
        property's nodes); ``property_contains`` a part of it (the dashboard's box);
        ``state`` one of online / stale / offline / unknown at ``now``; ``where`` anything else.
        """
        order, by_property = self._ordered()
        views = by_property.get(property.lower(), []) if property is not None else order
        if property_contains:
            part = property_contains.lower()
            views = [v for v in views if part in v.property.lower()]
        if state is not None:
            config = self.config
            views = [v for v in views if v.state(now, config) == state]
        if where is not None:
            views = [v for v in views if where(v)]
        return views

    def counts(self, now: datetime) -> dict[str, int]:
        """How many nodes are in each state."""
        out = dict.fromkeys(STATES, 0)
        with self.lock:
            for view in self.nodes.values():
                out[view.state(now, self.config)] += 1
        return out


def in_trouble(view: NodeView, now: datetime, state: FleetState, alerting: Container[str]) -> bool:
    """Not online, a device not ok, or an active alert (the dashboard's ``t`` too)."""
    if view.state(now, state.config) != "online":
        return True
    if view.last is not None and any(d["state"] != "ok" for d in view.last.devices.values()):
        return True
    return view.node in alerting


def utcnow() -> datetime:
    """The wall clock, UTC (the default clock everywhere in the fleet package)."""
    return datetime.now(UTC)


def summarise(views: Iterable[NodeView], now: datetime, config: FleetConfig) -> list[dict[str, Any]]:
    """JSON rows for ``staypoint fleet status --json``."""
    rows = []
    for v in views:
        last = v.last
        rows.append(
            {
                "node": v.node,
                "property": v.property,
                "state": v.state(now, config),
                "last_heartbeat": v.last_seen.isoformat() if v.last_seen else None,
                "outbox_depth": last.outbox_depth if last else None,
                "oldest_pending_s": last.oldest_pending_s if last else None,
                "version": last.version if last else None,
                "program_version": last.program_version if last else None,
                "devices": {k: d["state"] for k, d in last.devices.items()} if last else {},
            }
        )
    return rows
