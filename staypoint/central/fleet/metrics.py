"""Prometheus metrics for the fleet: fleet-wide and per-property aggregates, never per node.

At 10,000 nodes one series per node and field made a 13 MB, 3 s scrape; at 100,000 it
would pass any scrape timeout. So the series are bounded by what does not grow with the
fleet: states, alert rules, device kinds, histogram buckets, and properties (a property
has 8 series, whatever its number of nodes). Which node is behind is a question for the
dashboard and the ``/fleet/nodes`` API (:mod:`.http`), not for Prometheus.

The figures are kept up to date as messages arrive (:mod:`.rollup`): a scrape reads them
in O(properties) plus one pass over a flat map of last-heard times, instead of folding
100,000 views (about a second on a loaded 2-core machine). Heartbeat fields (outbox, lags)
are counted over the nodes that are not offline (stale ones included: their
last word stands): an offline node's last heartbeat is history, as for the alerts.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from staypoint.central.fleet.alerts import ALL_RULES, SEVERITY, AlertManager
from staypoint.central.fleet.expiry import ExpiryWatch
from staypoint.central.fleet.rollup import (
    AGE_BUCKETS,
    DEVICE_STATES,
    QUANTILES,
    FleetAggregates,
    PropertyAggregate,
)
from staypoint.central.fleet.state import DEVICE_KINDS, FleetConfig, FleetState, NodeView, utcnow

__all__ = [
    "FleetCollector",
    "aggregate",
    "make_registry",
]


def aggregate(views: Iterable[NodeView], now: datetime, config: FleetConfig) -> FleetAggregates:
    """The figures from the views, in one pass: the reference :class:`~.rollup.Rollup` is held to
    (tests), and ~9 µs a node on a loaded machine, which is why scrapes use the rollup."""
    out = FleetAggregates()
    props = out.properties
    known_devices = set(DEVICE_KINDS)
    known_states = set(DEVICE_STATES)
    high: list[int] = []
    ages: list[float] = []
    for view in views:
        out.heartbeats += view.heartbeats
        agg = props.get(view.property)
        if agg is None:
            agg = props[view.property] = PropertyAggregate()
        current = view.state(now, config)
        agg.states[current] += 1
        if current in ("offline", "unknown"):
            continue
        heard = view.heard_at()
        assert heard is not None
        age = (now - heard).total_seconds()
        ages.append(age)
        out.age_buckets[bisect.bisect_left(AGE_BUCKETS, age)] += 1
        last = view.last
        if last is None:
            continue
        if last.outbox_depth:
            agg.outbox_depth += last.outbox_depth
            if last.oldest_pending_s is not None:
                agg.outbox_oldest_s = max(agg.outbox_oldest_s, last.oldest_pending_s)
        if last.applied_version is not None:
            high.append(last.applied_version)
            if agg.min_applied is None or last.applied_version < agg.min_applied:
                agg.min_applied = last.applied_version
        if last.litestream_lag_s is not None:
            agg.litestream_lag_s = max(agg.litestream_lag_s, last.litestream_lag_s)
        for kind, dev in last.devices.items():
            if kind in known_devices:
                key = (kind, dev["state"] if dev["state"] in known_states else "other")
                out.devices[key] = out.devices.get(key, 0) + 1
    out.max_applied = max(high) if high else None
    ranked = sorted(ages)
    out.age_sum = sum(ranked)
    if ranked:
        out.age_quantiles = {q: ranked[min(len(ranked) - 1, int(q * len(ranked)))] for q in QUANTILES}
    for agg in props.values():
        for s, n in agg.states.items():
            out.states[s] += n
    return out


class FleetCollector(Collector):
    """Yields the ``staypoint_fleet_*``, ``staypoint_property_*`` and ``staypoint_alerts_*`` families."""

    def __init__(
        self,
        state: FleetState,
        alerts: AlertManager | None = None,
        clock: Callable[[], datetime] = utcnow,
        expiry: ExpiryWatch | None = None,
    ) -> None:
        self.state = state
        self.alerts = alerts
        self.clock = clock
        self.expiry = expiry

    def collect(self) -> Iterator[Metric]:
        """One pass over the live views, then a few series per property."""
        now = self.clock()
        agg = self.state.aggregates(now)
        yield from self._fleet(agg)
        yield from self._properties(agg)
        if self.alerts is not None:
            active = GaugeMetricFamily(
                "staypoint_alerts_active", "active alerts by rule and severity", labels=["rule", "severity"]
            )
            counts = self.alerts.counts()
            for rule in ALL_RULES:
                active.add_metric([rule, SEVERITY[rule]], float(counts.get(rule, 0)))
            yield active
        if self.expiry is not None:
            crl_days, cert_days = self.expiry.days_left(now)
            for name, days, what in (
                ("staypoint_fleet_crl_expiry_days_min", crl_days, "days to the nearest CRL nextUpdate"),
                (
                    "staypoint_fleet_cert_expiry_days_min",
                    cert_days,
                    "days to the nearest enrolled node's certificate expiry",
                ),
            ):
                if days is not None:
                    yield GaugeMetricFamily(name, what, value=days)
        received = CounterMetricFamily("staypoint_fleet_messages", "messages applied", labels=["kind"])
        for kind in ("status", "health"):
            received.add_metric([kind], float(self.state.received.get(kind, 0)))
        yield received
        dropped = CounterMetricFamily(
            "staypoint_fleet_dropped_messages", "malformed messages", labels=["reason"]
        )
        for reason, n in sorted(self.state.dropped.items()):
            dropped.add_metric([reason], float(n))
        yield dropped

    @staticmethod
    def _fleet(agg: FleetAggregates) -> Iterator[Metric]:
        fleet = GaugeMetricFamily("staypoint_fleet_nodes", "nodes by state", labels=["state"])
        for s, n in agg.states.items():
            fleet.add_metric([s], float(n))
        yield fleet
        yield GaugeMetricFamily(
            "staypoint_fleet_properties", "properties with nodes", value=len(agg.properties)
        )
        cumulative, buckets = 0, []
        for bound, n in zip((*AGE_BUCKETS, float("inf")), agg.age_buckets, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        yield GaugeHistogramMetricFamily(
            "staypoint_fleet_heartbeat_age_seconds",
            "seconds since each node's last heartbeat (nodes not offline)",
            buckets=buckets,
            gsum_value=agg.age_sum,
        )
        quant = GaugeMetricFamily(
            "staypoint_fleet_heartbeat_age_quantile_seconds",
            "heartbeat age at a quantile of the nodes not offline (1 = the oldest)",
            labels=["quantile"],
        )
        for q, value in agg.age_quantiles.items():
            quant.add_metric([str(q)], value)
        yield quant
        outbox = sum(p.outbox_depth for p in agg.properties.values())
        oldest = max((p.outbox_oldest_s for p in agg.properties.values()), default=0.0)
        lag = max((p.litestream_lag_s for p in agg.properties.values()), default=0.0)
        for name, what, value in (
            ("staypoint_fleet_outbox_depth", "events waiting in every node's outbox", outbox),
            ("staypoint_fleet_outbox_oldest_seconds_max", "age of the oldest unacknowledged event", oldest),
            (
                "staypoint_fleet_replica_version_lag_max",
                "change-log versions the furthest-behind replica trails the newest",
                agg.version_lag(),
            ),
            ("staypoint_fleet_litestream_lag_seconds_max", "the largest backup lag", lag),
        ):
            yield GaugeMetricFamily(name, what, value=float(value))
        devices = GaugeMetricFamily(
            "staypoint_fleet_devices", "nodes by device and its state", labels=["device", "state"]
        )
        for (kind, st), n in sorted(agg.devices.items()):
            devices.add_metric([kind, st], float(n))
        yield devices
        yield CounterMetricFamily(
            "staypoint_fleet_heartbeats", "heartbeats received from the nodes known now", value=agg.heartbeats
        )

    @staticmethod
    def _properties(agg: FleetAggregates) -> Iterator[Metric]:
        labels = ["property"]
        nodes = GaugeMetricFamily(
            "staypoint_property_nodes", "a property's nodes by state", labels=[*labels, "state"]
        )
        depth = GaugeMetricFamily(
            "staypoint_property_outbox_depth", "events waiting in the property's outboxes", labels=labels
        )
        oldest = GaugeMetricFamily(
            "staypoint_property_outbox_oldest_seconds_max",
            "the property's oldest unacknowledged event",
            labels=labels,
        )
        version = GaugeMetricFamily(
            "staypoint_property_replica_version_lag_max",
            "versions the property's furthest-behind replica trails the fleet's newest",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "staypoint_property_litestream_lag_seconds_max",
            "the property's largest backup lag",
            labels=labels,
        )
        for prop in sorted(agg.properties):
            p = agg.properties[prop]
            for s, n in p.states.items():
                nodes.add_metric([prop, s], float(n))
            depth.add_metric([prop], float(p.outbox_depth))
            oldest.add_metric([prop], p.outbox_oldest_s)
            version.add_metric([prop], float(agg.version_lag(p)))
            lag.add_metric([prop], p.litestream_lag_s)
        yield from (nodes, depth, oldest, version, lag)


def make_registry(
    state: FleetState,
    alerts: AlertManager | None = None,
    *,
    expiry: ExpiryWatch | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> CollectorRegistry:
    """A registry holding only the fleet collector (no process metrics of the test runner)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(state, alerts, clock, expiry))
    return registry
