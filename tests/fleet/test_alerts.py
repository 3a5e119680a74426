"""Each alert rule fires once while its condition holds and clears once when it stops;
alert mail goes through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from staypoint.central.fleet.alerts import RULES, AlertManager, MemorySink, SmtpSettings, SmtpSink
from staypoint.central.fleet.state import FleetConfig, FleetState
from tests.fleet.sim import SimNode

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = FleetConfig(period_s=30)

Bad = Callable[[SimNode], None]
# For each rule: how to make a healthy node break it.
BREAK: dict[str, Bad] = {
    "outbox": lambda n: setattr(n, "outbox_depth", 12) or setattr(n, "oldest_pending_s", 16 * 60),
    "replica": lambda n: setattr(n, "staleness_s", int(0.85 * n.max_staleness_s)),
    "litestream": lambda n: setattr(n, "litestream_lag_s", 6 * 60),
    "paper": lambda n: setattr(n, "paper", "paper_out"),
    "disk": lambda n: setattr(n, "disk_free_pct", 7.5),
    "clock": lambda n: setattr(n, "skew_s", 181),
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def feed(state: FleetState, node: SimNode, at: datetime) -> None:
    assert state.ingest(f"sp/v1/node/{node.node}/health", json.dumps(node.doc(at)).encode(), at)


@pytest.mark.parametrize("rule", [r for r in RULES if r != "offline"])
def test_rule_fires_once_and_clears(rule: str) -> None:
    state, sink, clock = FleetState(CONFIG), MemorySink(), Clock()
    alerts = AlertManager(state, [sink])
    node = SimNode("rule-01", "SHA")
    feed(state, node, clock.now)
    assert alerts.evaluate(clock.now) == []
    BREAK[rule](node)
    for _ in range(3):  # it keeps holding for three heartbeats: one alert, not three
        feed(state, node, clock.tick(30))
        alerts.evaluate(clock.now)
    fired = [e for e in sink.recent() if e.kind == "fired"]
    assert [(e.alert.rule, e.alert.node) for e in fired] == [(rule, "rule-01")]
    assert fired[0].property == "SHA"
    healthy = SimNode("rule-01", "SHA")
    feed(state, healthy, clock.tick(30))
    events = alerts.evaluate(clock.now)
    assert [(e.kind, e.alert.rule) for e in events] == [("cleared", rule)]
    assert alerts.evaluate(clock.tick(1)) == []


def test_offline_by_will_and_by_silence_fire_after_five_minutes_and_clear() -> None:
    state, sink, clock = FleetState(CONFIG), MemorySink(), Clock()
    alerts = AlertManager(state, [sink])
    willed, silent = SimNode("will-01", "SHA"), SimNode("quiet-01", "SHA")
    for n in (willed, silent):
        feed(state, n, clock.now)
    state.ingest("sp/v1/node/will-01/status", b'{"state":"offline","session":1}', clock.tick(1))
    assert state.nodes["will-01"].state(clock.now, CONFIG) == "offline"
    # A heartbeat of that same, dead session arriving after its Will changes nothing.
    assert not state.ingest(
        "sp/v1/node/will-01/health", json.dumps(willed.doc(clock.now)).encode(), clock.now
    )
    assert state.nodes["will-01"].state(clock.now, CONFIG) == "offline"
    assert state.nodes["quiet-01"].state(clock.tick(91), CONFIG) == "stale"  # three missed beats
    assert alerts.evaluate(clock.tick(200)) == []  # dark, but not yet 5 minutes
    fired = alerts.evaluate(clock.tick(60))
    assert sorted(e.alert.node for e in fired if e.alert.rule == "offline") == ["quiet-01", "will-01"]
    assert alerts.evaluate(clock.tick(60)) == []
    state.ingest("sp/v1/node/will-01/status", b'{"state":"online","session":2}', clock.now)
    feed(state, silent, clock.now)
    cleared = alerts.evaluate(clock.tick(1))
    assert sorted((e.kind, e.alert.node) for e in cleared) == [
        ("cleared", "quiet-01"),
        ("cleared", "will-01"),
    ]


def test_malformed_messages_are_dropped_and_counted() -> None:
    state = FleetState(CONFIG)
    assert not state.ingest("sp/v1/node/x/health", b"not json", T0)
    assert not state.ingest("sp/v1/node/x/status", b'{"state":"sideways","session":1}', T0)
    assert not state.ingest("sp/v1/node/x/events", b"{}", T0)
    assert not state.ingest("sp/v1/node/x/health", b"[1,2]", T0)
    assert sum(state.dropped.values()) == 4
    assert state.nodes.get("x") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = _free_port()  # port=0 does not work with aiosmtpd's Controller
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, received
    controller.stop()


def test_alert_mail_fired_and_cleared(smtp_server: tuple[int, list[Any]]) -> None:
    port, received = smtp_server
    mail = SmtpSink(SmtpSettings("127.0.0.1", port, "fleet@staypoint.test", ("ops@staypoint.test",)))
    state, clock = FleetState(CONFIG), Clock()
    alerts = AlertManager(state, [mail])
    node = SimNode("mail-01", "SHA", paper="paper_out")
    feed(state, node, clock.now)
    alerts.evaluate(clock.now)
    feed(state, SimNode("mail-01", "SHA"), clock.tick(30))
    alerts.evaluate(clock.now)
    assert mail.flush(10)
    mail.close()
    assert mail.sent == 2 and mail.failed == 0
    subjects = [e.content.decode().split("Subject: ")[1].splitlines()[0] for e in received]
    assert subjects[0].startswith("[staypoint] FIRING paper mail-01 (SHA)")
    assert subjects[1].startswith("[staypoint] cleared paper mail-01")
    assert received[0].rcpt_tos == ["ops@staypoint.test"]
