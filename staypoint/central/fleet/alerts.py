"""Alert rules over the fleet state; each alert fires once and clears once.

Rules (docs/head-office.md, Alerts; thresholds in :class:`~staypoint.central.fleet.state.FleetConfig`):

============== =====================================================================
``offline``     offline (Will) or silent (stale) for more than 5 minutes
``outbox``      the oldest unacknowledged event is older than 15 minutes
``replica``     replica staleness past 80 % of the node's offline limit
``litestream``  backup lag over 5 minutes
``paper``       a printer reports paper out
``disk``        less than 10 % disk free
``clock``       node clock more than 2 minutes off head office's
``crl``         a CRL the broker checks expires within 30 days (:mod:`.expiry`)
``cert``        a node's certificate expires within 30 days (:mod:`.expiry`)
============== =====================================================================

:meth:`AlertManager.evaluate` compares what holds now with what was active and returns
only the transitions (``fired`` / ``cleared``), which go to every sink: the log, the
dashboard's in-memory list, and e-mail when SMTP is configured. Evaluating twice in a row
with nothing changed sends nothing.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

from staypoint.central.fleet.state import FleetConfig, FleetState, NodeView

__all__ = [
    "ALL_RULES",
    "EXPIRY_RULES",
    "RULES",
    "SEVERITY",
    "Alert",
    "AlertEvent",
    "AlertManager",
    "LogSink",
    "MemorySink",
    "SmtpSink",
    "conditions",
]

log = logging.getLogger("staypoint.fleet.alerts")

RULES = ("offline", "outbox", "replica", "litestream", "paper", "disk", "clock")
"""The rules over a node's heartbeats (:func:`conditions`)."""
EXPIRY_RULES = ("crl", "cert")
"""The rules over files at head office (:mod:`.expiry`), evaluated as sources."""
ALL_RULES = RULES + EXPIRY_RULES
SEVERITY = {
    "offline": "critical",
    "outbox": "warning",
    "replica": "critical",  # at 100 % of the offline limit, offline redemptions stop
    "litestream": "warning",
    "paper": "warning",
    "disk": "warning",
    "clock": "warning",
    "crl": "critical",  # past nextUpdate the broker refuses every client
    "cert": "warning",
}
"""Each rule's severity (the ``severity`` label of ``staypoint_alerts_active``)."""


@dataclass(frozen=True)
class Alert:
    """A condition that holds for a node: rule, node, and a line a person reads."""

    rule: str
    node: str
    message: str


@dataclass(frozen=True)
class AlertEvent:
    """A transition: an alert ``fired`` or ``cleared`` at ``at``."""

    kind: str
    alert: Alert
    at: datetime
    property: str = ""

    def line(self) -> str:
        """One log / mail subject line."""
        verb = "FIRING" if self.kind == "fired" else "cleared"
        return f"{verb} {self.alert.rule} {self.alert.node} ({self.property}): {self.alert.message}"


def _mins(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def conditions(view: NodeView, now: datetime, config: FleetConfig) -> list[Alert]:
    """Every alert rule that holds for ``view`` at ``now``."""
    out: list[Alert] = []
    node = view.node
    dark = view.dark_since(now, config)
    if dark is not None and (now - dark).total_seconds() > config.offline_alert_s:
        how = "offline (Last Will)" if view.state(now, config) == "offline" else "silent"
        out.append(Alert("offline", node, f"{how} for {_mins((now - dark).total_seconds())}"))
    last = view.last
    if last is None or view.state(now, config) == "offline":
        # An offline node's last heartbeat is history: only "offline" speaks for it.
        return out
    if last.oldest_pending_s is not None and last.oldest_pending_s > config.outbox_alert_s:
        out.append(
            Alert(
                "outbox",
                node,
                f"oldest unacknowledged event {_mins(last.oldest_pending_s)} old "
                f"({last.outbox_depth} waiting)",
            )
        )
    limit = last.max_staleness_s or config.default_max_staleness_s
    if last.staleness_s is not None and last.staleness_s >= config.staleness_fraction * limit:
        out.append(
            Alert("replica", node, f"replica {_mins(last.staleness_s)} stale; offline limit {_mins(limit)}")
        )
    if last.litestream_lag_s is not None and last.litestream_lag_s > config.litestream_alert_s:
        out.append(Alert("litestream", node, f"backup {_mins(last.litestream_lag_s)} behind"))
    for kind, dev in sorted(last.devices.items()):
        if dev.get("state") == "paper_out":
            out.append(Alert("paper", node, f"{kind} out of paper"))
            break
    if last.disk_free_pct is not None and last.disk_free_pct < config.disk_min_pct:
        out.append(Alert("disk", node, f"{last.disk_free_pct:.1f} % disk free"))
    skew = last.skew_s
    if skew is not None and abs(skew) > config.skew_max_s:
        out.append(Alert("clock", node, f"clock {skew:+.0f} s off head office"))
    return out


class Sink(Protocol):
    """Where alert transitions go."""

    def send(self, event: AlertEvent) -> None: ...


class LogSink:
    """Alert transitions to the ``staypoint.fleet.alerts`` logger (warning / info)."""

    def send(self, event: AlertEvent) -> None:
        """Log one line."""
        (log.warning if event.kind == "fired" else log.info)("%s", event.line())


class MemorySink:
    """The last ``size`` transitions, for the dashboard."""

    def __init__(self, size: int = 500) -> None:
        self.events: deque[AlertEvent] = deque(maxlen=size)
        self._lock = threading.Lock()

    def send(self, event: AlertEvent) -> None:
        """Keep it."""
        with self._lock:
            self.events.append(event)

    def recent(self, node: str | None = None) -> list[AlertEvent]:
        """Newest last; only ``node``'s when given."""
        with self._lock:
            return [e for e in self.events if node is None or e.alert.node == node]


@dataclass(frozen=True)
class SmtpSettings:
    """Where alert mail goes."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0


class SmtpSink:
    """Mails each transition from a background thread, so a slow mail server never
    delays the monitor; a failed send is logged and counted, never retried forever."""

    def __init__(
        self, settings: SmtpSettings, *, connect: Callable[..., smtplib.SMTP] = smtplib.SMTP
    ) -> None:
        self.settings = settings
        self._connect = connect
        self._queue: queue.Queue[AlertEvent | None] = queue.Queue(maxsize=1000)
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="fleet-smtp", daemon=True)
        self._thread.start()

    def send(self, event: AlertEvent) -> None:
        """Queue the mail (dropped, and counted, when the queue is full)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.failed += 1

    def _message(self, event: AlertEvent) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(self.settings.recipients)
        msg["Subject"] = f"[staypoint] {event.line()}"
        msg.set_content(
            f"{event.line()}\n\nnode: {event.alert.node}\nproperty: {event.property}\n"
            f"rule: {event.alert.rule}\nat: {event.at.isoformat()}\n"
        )
        return msg

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            s = self.settings
            try:
                with self._connect(s.host, s.port, timeout=s.timeout) as smtp:
                    if s.starttls:
                        smtp.starttls()
                    if s.username:
                        smtp.login(s.username, s.password or "")
                    smtp.send_message(self._message(event))
                self.sent += 1
            except (OSError, smtplib.SMTPException) as err:
                self.failed += 1
                log.error("alert mail to %s:%s failed: %s", s.host, s.port, err)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued mails are handed over (tests, shutdown)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        """Stop the sender after what is queued."""
        self._queue.put(None)
        self._thread.join(5)


Source = Callable[[datetime], Iterable[tuple[Alert, str]]]
"""Conditions that do not come from heartbeats (CRL and certificate expiry): (alert, property)."""


class AlertManager:
    """Keeps the active alerts; :meth:`evaluate` emits only what changed."""

    def __init__(
        self, state: FleetState, sinks: Iterable[Sink] = (), *, sources: Iterable[Source] = ()
    ) -> None:
        self.state = state
        self.sinks = list(sinks)
        self.sources = list(sources)
        self._props: dict[tuple[str, str], str] = {}
        self.active: dict[tuple[str, str], Alert] = {}
        self.since: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()

    def evaluate(self, now: datetime) -> list[AlertEvent]:
        """Check every node against every rule; send and return the transitions."""
        # Live views in the cached order, not copies: 100,000 copies every tick cost more.
        views = self.state.select(now)
        holding: dict[tuple[str, str], tuple[Alert, str]] = {}
        for view in views:
            for alert in conditions(view, now, self.state.config):
                holding[(alert.rule, alert.node)] = (alert, view.property)
        for source in self.sources:
            try:
                for alert, prop in source(now):
                    holding[(alert.rule, alert.node)] = (alert, prop)
            except Exception:  # a broken source must not silence the heartbeat rules
                log.exception("alert source %r failed", source)
        props = {v.node: v.property for v in views}
        events: list[AlertEvent] = []
        with self._lock:
            for key, (alert, prop) in holding.items():
                if key not in self.active:
                    events.append(AlertEvent("fired", alert, now, prop))
                    self.since[key] = now
                self.active[key] = alert  # keep the newest wording ("offline for 9 min")
                self._props[key] = prop
            for key in [k for k in self.active if k not in holding]:
                alert = self.active.pop(key)
                self.since.pop(key, None)
                prop = self._props.pop(key, "")
                events.append(AlertEvent("cleared", alert, now, props.get(alert.node, prop)))
        for event in events:
            for sink in self.sinks:
                try:
                    sink.send(event)
                except Exception:  # one broken sink must not silence the others
                    log.exception("alert sink %r failed", sink)
        return events

    def counts(self) -> Counter[str]:
        """Active alerts per rule."""
        with self._lock:
            return Counter(rule for rule, _node in self.active)

    def by_node(self) -> Counter[str]:
        """Active alerts per node (one pass, for a list of many nodes)."""
        with self._lock:
            return Counter(node for _rule, node in self.active)

    def active_for(self, node: str | None = None) -> list[Alert]:
        """Active alerts (of one node), by rule order."""
        with self._lock:
            alerts = [a for a in self.active.values() if node is None or a.node == node]
        return sorted(alerts, key=lambda a: (a.node, ALL_RULES.index(a.rule)))
