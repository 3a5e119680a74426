"""Prometheus metrics for the fleet: per-node gauges, computed at scrape time.

A custom collector reads :class:`FleetState` when Prometheus scrapes, instead of updating
thousands of labelled gauges on every heartbeat: the monitor's per-message cost stays a
dict update, and a node that disappears from the state disappears from the metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from staypoint.central.fleet.alerts import ALL_RULES, AlertManager
from staypoint.central.fleet.state import STATES, FleetState, utcnow

__all__ = ["FleetCollector", "make_registry"]


class FleetCollector(Collector):
    """Yields the ``staypoint_node_*`` and ``staypoint_fleet_*`` families."""

    def __init__(
        self,
        state: FleetState,
        alerts: AlertManager | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.state = state
        self.alerts = alerts
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """One pass over a snapshot of the fleet."""
        now = self.clock()
        config = self.state.config
        labels = ["node", "property"]
        up = GaugeMetricFamily("staypoint_node_up", "1 when the node is online, else 0", labels=labels)
        state = GaugeMetricFamily(
            "staypoint_node_state", "1 for the node's current state", labels=[*labels, "state"]
        )
        age = GaugeMetricFamily(
            "staypoint_node_heartbeat_age_seconds", "seconds since the last heartbeat", labels=labels
        )
        depth = GaugeMetricFamily("staypoint_node_outbox_depth", "events not yet acknowledged", labels=labels)
        oldest = GaugeMetricFamily(
            "staypoint_node_outbox_oldest_seconds", "age of the oldest unacknowledged event", labels=labels
        )
        stale = GaugeMetricFamily(
            "staypoint_node_replica_staleness_seconds",
            "time since the node last reached head office",
            labels=labels,
        )
        lag = GaugeMetricFamily("staypoint_node_litestream_lag_seconds", "backup lag", labels=labels)
        disk = GaugeMetricFamily("staypoint_node_disk_free_ratio", "free disk, 0-1", labels=labels)
        skew = GaugeMetricFamily(
            "staypoint_node_clock_skew_seconds", "node clock minus head office's", labels=labels
        )
        applied = GaugeMetricFamily(
            "staypoint_node_applied_version", "change-log version the replica has applied", labels=labels
        )
        device = GaugeMetricFamily(
            "staypoint_node_device_ok", "1 when the device reports ok", labels=[*labels, "device", "state"]
        )
        beats = CounterMetricFamily("staypoint_node_heartbeats", "heartbeats received", labels=labels)
        fleet = GaugeMetricFamily("staypoint_fleet_nodes", "nodes by state", labels=["state"])
        counts = dict.fromkeys(STATES, 0)
        for view in self.state.snapshot():
            lv = [view.node, view.property]
            current = view.state(now, config)
            counts[current] += 1
            up.add_metric(lv, 1.0 if current == "online" else 0.0)
            for s in STATES:
                state.add_metric([*lv, s], 1.0 if s == current else 0.0)
            beats.add_metric(lv, float(view.heartbeats))
            if view.last_seen is not None:
                age.add_metric(lv, (now - view.last_seen).total_seconds())
            last = view.last
            if last is None:
                continue
            for family, value in (
                (depth, last.outbox_depth),
                (oldest, last.oldest_pending_s),
                (stale, last.staleness_s),
                (lag, last.litestream_lag_s),
                (disk, None if last.disk_free_pct is None else last.disk_free_pct / 100),
                (skew, last.skew_s),
                (applied, last.applied_version),
            ):
                if value is not None:
                    family.add_metric(lv, float(value))
            for kind, dev in sorted(last.devices.items()):
                device.add_metric([*lv, kind, dev["state"]], 1.0 if dev["state"] == "ok" else 0.0)
        for s, n in counts.items():
            fleet.add_metric([s], float(n))
        yield from (up, state, age, depth, oldest, stale, lag, disk, skew, applied, device, beats, fleet)
        if self.alerts is not None:
            active = GaugeMetricFamily("staypoint_alerts_active", "active alerts by rule", labels=["rule"])
            by_rule = dict.fromkeys(ALL_RULES, 0)
            for alert in self.alerts.active_for():
                by_rule[alert.rule] += 1
            for rule, n in by_rule.items():
                active.add_metric([rule], float(n))
            yield active
        dropped = CounterMetricFamily(
            "staypoint_fleet_dropped_messages", "malformed messages", labels=["reason"]
        )
        for reason, n in sorted(self.state.dropped.items()):
            dropped.add_metric([reason], float(n))
        yield dropped


def make_registry(state: FleetState, alerts: AlertManager | None = None) -> CollectorRegistry:
    """A registry holding only the fleet collector (no process metrics of the test runner)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(state, alerts))
    return registry
