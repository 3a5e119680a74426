"""The fleet's aggregates, kept up to date as each message is applied (for /metrics).

A scrape at 100,000 nodes cannot afford a pass over every node's view (~9 µs each on a
loaded 2-core machine: about a second). So :class:`FleetState` hands every changed view to
:meth:`Rollup.put`, which replaces that node's *contribution*:

- counts and sums (nodes by status per property, outbox depth, devices by state,
  heartbeats) are adjusted by the difference, O(1);
- maxima and minima (oldest unacknowledged event, backup lag, applied version) live in
  heaps with lazy deletion: each update pushes the node's new value (an unchanged value
  pushes nothing), and a top entry that is no longer some node's current value is popped
  when read. A heap
  is rebuilt from the current values when it holds twice as many entries as nodes, so its
  size stays bounded and each push costs O(log n) amortised;
- what depends on the time of the scrape (online versus stale, heartbeat ages) comes from
  one pass over a flat map node → (last heard, property) of floats: ~0.3 µs a node.

:func:`staypoint.central.fleet.metrics.aggregate` computes the same figures from the views
directly; a test holds the two equal over random message sequences.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from staypoint.central.fleet.state import FleetConfig, NodeView

# The same as staypoint.central.fleet.state's (which imports this module).
STATES = ("online", "stale", "offline", "unknown")
DEVICE_KINDS = ("reader", "pinpad", "printer")

__all__ = [
    "AGE_BUCKETS",
    "DEVICE_STATES",
    "QUANTILES",
    "FleetAggregates",
    "PropertyAggregate",
    "Rollup",
    "contribution",
]

AGE_BUCKETS = (5.0, 15.0, 30.0, 60.0, 90.0, 120.0, 300.0, 900.0, 3600.0, 86400.0)
"""Upper bounds (seconds) of the heartbeat-age histogram; +Inf follows."""
QUANTILES = (0.5, 0.9, 0.99, 1.0)
DEVICE_STATES = ("ok", "missing", "paper_out", "offline", "unknown")
"""Device states counted by name; anything else a node reports is counted as ``other``."""
_KNOWN_DEVICES = frozenset(DEVICE_KINDS)
_KNOWN_DEVICE_STATES = frozenset(DEVICE_STATES)

# The extremes kept per property (a max is stored negated: heapq is a min-heap)...
OLDEST, LAG, APPLIED_MIN = 0, 1, 2
# ...and fleet-wide (the least disk free and the largest clock skew are the alerts' business:
# each more heap costs every heartbeat a push).
APPLIED_MAX = 3


@dataclass
class PropertyAggregate:
    """One property's figures (heartbeat fields over its nodes that are not offline)."""

    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    outbox_depth: int = 0
    outbox_oldest_s: float = 0.0
    min_applied: int | None = None
    litestream_lag_s: float = 0.0


@dataclass
class FleetAggregates:
    """Everything /metrics shows about the nodes."""

    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    properties: dict[str, PropertyAggregate] = field(default_factory=dict)
    age_buckets: list[int] = field(default_factory=lambda: [0] * (len(AGE_BUCKETS) + 1))
    age_sum: float = 0.0
    age_quantiles: dict[float, float] = field(default_factory=lambda: dict.fromkeys(QUANTILES, 0.0))
    heartbeats: int = 0
    max_applied: int | None = None
    devices: dict[tuple[str, str], int] = field(default_factory=dict)

    def version_lag(self, agg: PropertyAggregate | None = None) -> int:
        """Change-log versions the furthest-behind replica (of a property) trails the newest."""
        if agg is not None:
            low = agg.min_applied
        else:
            lows = [p.min_applied for p in self.properties.values() if p.min_applied is not None]
            low = min(lows) if lows else None
        if self.max_applied is None or low is None:
            return 0
        return self.max_applied - low

    def comparable(self) -> dict[str, object]:
        """The figures as plain data, ages rounded (tests compare two ways of computing them)."""
        return {
            "states": self.states,
            "properties": {p: vars(a) for p, a in sorted(self.properties.items())},
            "buckets": self.age_buckets,
            "age_sum": round(self.age_sum, 3),
            "quantiles": {q: round(v, 6) for q, v in self.age_quantiles.items()},
            "heartbeats": self.heartbeats,
            "max_applied": self.max_applied,
            "devices": dict(sorted(self.devices.items())),
        }


@dataclass(frozen=True)
class Contribution:
    """What one node adds to the aggregates."""

    property: str
    kind: str  # offline / unknown / alive (online or stale: decided at scrape time)
    heard: float  # POSIX seconds, alive only
    heartbeats: int
    depth: int
    values: tuple[float | None, ...]  # indexed by OLDEST .. APPLIED_MAX
    devices: tuple[tuple[str, str], ...]


def contribution(view: NodeView) -> Contribution:
    """A node's share, from its view."""
    if view.status == "offline":
        kind = "offline"
        heard = None
    else:
        heard = view.heard_at()
        kind = "unknown" if heard is None else "alive"
    last = view.last
    if kind != "alive" or last is None:
        return Contribution(
            view.property, kind, heard.timestamp() if heard else 0.0, view.heartbeats, 0, (None,) * 4, ()
        )
    assert heard is not None
    depth = last.outbox_depth or 0
    oldest = last.oldest_pending_s if depth and last.oldest_pending_s is not None else None
    applied = None if last.applied_version is None else float(last.applied_version)
    devices = tuple(
        (k, d["state"] if d["state"] in _KNOWN_DEVICE_STATES else "other")
        for k, d in last.devices.items()
        if k in _KNOWN_DEVICES
    )
    return Contribution(
        view.property,
        kind,
        heard.timestamp(),
        view.heartbeats,
        depth,
        (
            oldest,
            last.litestream_lag_s,
            applied,
            applied,
        ),
        devices,
    )


_SIGN = (-1.0, -1.0, 1.0, -1.0)  # max → negated


@dataclass
class _Prop:
    offline: int = 0
    unknown: int = 0
    alive: int = 0
    depth: int = 0
    nodes: set[str] = field(default_factory=set)
    heaps: tuple[list[tuple[float, str]], ...] = field(default_factory=lambda: ([], [], []))


class Rollup:
    """The aggregates of every node's current :class:`Contribution` (callers hold the state's lock)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Contribution] = {}
        self.props: dict[str, _Prop] = {}
        # node → (last heard, property), in the order of last heard: each put re-inserts at
        # the end, and the clock moves forward; a put that breaks the order (a clock set
        # back, a test's clock) marks it for one sort at the next scrape.
        self.heard: dict[str, tuple[float, str]] = {}
        self._in_order = True
        self._newest = float("-inf")
        self.heartbeats = 0
        self.devices: Counter[tuple[str, str]] = Counter()
        self.fleet_heaps: tuple[list[tuple[float, str]], ...] = ([],)

    def put(self, view: NodeView) -> None:
        """Replace ``view.node``'s contribution by the one its view gives now."""
        new = contribution(view)
        node = view.node
        old = self.nodes.get(node)
        if old is not None:
            self._remove(node, old)
        self.nodes[node] = new
        prop = self.props.get(new.property)
        if prop is None:
            prop = self.props[new.property] = _Prop()
        prop.nodes.add(node)
        self.heartbeats += new.heartbeats
        if new.kind == "offline":
            prop.offline += 1
            return
        if new.kind == "unknown":
            prop.unknown += 1
            return
        prop.alive += 1
        prop.depth += new.depth
        self.heard[node] = (new.heard, new.property)
        if new.heard >= self._newest:
            self._newest = new.heard
        else:
            self._in_order = False
        for dev in new.devices:
            self.devices[dev] += 1
        kept = old is not None and old.kind == "alive" and old.property == new.property
        for i, value in enumerate(new.values):
            if value is None or (kept and old.values[i] == value):  # type: ignore[union-attr]
                continue  # its entry in the heap is still valid
            if i < APPLIED_MAX:
                self._push(prop.heaps[i], _SIGN[i] * value, node, len(prop.nodes), i, new.property)
            else:
                self._push(
                    self.fleet_heaps[i - APPLIED_MAX], _SIGN[i] * value, node, len(self.nodes), i, None
                )

    def _remove(self, node: str, old: Contribution) -> None:
        prop = self.props[old.property]
        self.heartbeats -= old.heartbeats
        if old.kind == "offline":
            prop.offline -= 1
        elif old.kind == "unknown":
            prop.unknown -= 1
        else:
            prop.alive -= 1
            prop.depth -= old.depth
            del self.heard[node]
            for dev in old.devices:
                self.devices[dev] -= 1
                if not self.devices[dev]:
                    del self.devices[dev]
        prop.nodes.discard(node)
        if not prop.nodes:
            del self.props[old.property]
        # Heap entries are not touched: they are dropped when found stale at the top.

    def _valid(self, entry: tuple[float, str], i: int, prop: str | None) -> bool:
        """Is ``entry`` of heap ``i`` (of ``prop``, None: fleet-wide) still a node's current value?"""
        key, node = entry
        c = self.nodes.get(node)
        if c is None or c.kind != "alive" or (prop is not None and c.property != prop):
            return False
        value = c.values[i]
        return value is not None and _SIGN[i] * value == key

    def _push(
        self, heap: list[tuple[float, str]], key: float, node: str, live: int, i: int, prop: str | None
    ) -> None:
        heapq.heappush(heap, (key, node))
        if len(heap) > 2 * live + 64:
            heap[:] = list({e for e in heap if self._valid(e, i, prop)})
            heapq.heapify(heap)

    def _top(self, heap: list[tuple[float, str]], i: int, prop: str | None) -> float | None:
        while heap and not self._valid(heap[0], i, prop):
            heapq.heappop(heap)
        return _SIGN[i] * heap[0][0] if heap else None

    def aggregates(self, now: datetime, config: FleetConfig) -> FleetAggregates:
        """The figures at ``now``: O(properties) plus one pass over the alive nodes' floats."""
        out = FleetAggregates(heartbeats=self.heartbeats, devices=dict(self.devices))
        now_ts = now.timestamp()
        stale_after = config.stale_after_s
        if not self._in_order:
            self.heard = dict(sorted(self.heard.items(), key=lambda item: item[1][0]))
            self._in_order = True
        entries = list(self.heard.values())
        times = [t for t, _ in entries]  # ascending: the oldest heard first
        n = len(times)
        # Stale: heard before now - stale_after; only those are looked at one by one.
        stale = Counter(prop for _, prop in entries[: bisect.bisect_left(times, now_ts - stale_after)])
        # Age <= bound  <=>  heard >= now - bound: cumulative counts by bisection.
        cumulative = [n - bisect.bisect_left(times, now_ts - bound) for bound in AGE_BUCKETS] + [n]
        out.age_buckets = [c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative)]
        out.age_sum = n * now_ts - math.fsum(times)
        if n:
            out.age_quantiles = {q: now_ts - times[n - 1 - min(n - 1, int(q * n))] for q in QUANTILES}
        for name, p in self.props.items():
            agg = PropertyAggregate(outbox_depth=p.depth)
            n_stale = stale.get(name, 0)
            agg.states.update(online=p.alive - n_stale, stale=n_stale, offline=p.offline, unknown=p.unknown)
            oldest = self._top(p.heaps[OLDEST], OLDEST, name)
            lag = self._top(p.heaps[LAG], LAG, name)
            low = self._top(p.heaps[APPLIED_MIN], APPLIED_MIN, name)
            agg.outbox_oldest_s = max(0.0, oldest or 0.0)
            agg.litestream_lag_s = max(0.0, lag or 0.0)
            agg.min_applied = None if low is None else int(low)
            out.properties[name] = agg
            for s, n in agg.states.items():
                out.states[s] += n
        high = self._top(self.fleet_heaps[0], APPLIED_MAX, None)
        out.max_applied = None if high is None else int(high)
        return out
