"""Random payloads to the MQTT message handlers at both ends, called directly with fake
messages: head office's ``HeadOffice._on_message`` (and its ingester, for event batches) and
the node agent's ``SyncAgent._on_message``. Nothing raises, no message takes the catch-all
"error" path (that would be a bug counted, not a drop), and noise is one counted drop."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from staypoint.central.ledger import Ledger
from staypoint.central.server import HeadOffice, MqttSettings
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge import sync_store
from staypoint.edge.service import NodeService, StaffProof
from staypoint.edge.sync import agent as agent_mod
from staypoint.edge.sync.agent import SyncAgent, SyncConfig
from staypoint.loyalty.program import Outlet, default_program_text
from tests.fuzz.strategies import fuzz_settings, json_value, mutated_json

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NODE = "sha-lobby-01"
SUPERVISOR = StaffProof("sup-1", "Sup One", "supervisor")


@dataclass
class FakeInfo:
    rc: int = 0

    def is_published(self) -> bool:
        return True


@dataclass
class FakeClient:
    """What the handlers call on paho's client: publish and (head office) manual acks."""

    published: list[tuple[str, bytes]] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def publish(
        self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False, **kw: Any
    ) -> FakeInfo:
        self.published.append((topic, payload if isinstance(payload, bytes) else str(payload).encode()))
        return FakeInfo()

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


@dataclass
class FakeProperties:
    ResponseTopic: str | None = None
    CorrelationData: bytes | None = None


@dataclass
class FakeMessage:
    topic: str
    payload: bytes
    mid: int = 1
    qos: int = 1
    retain: bool = False
    properties: FakeProperties | None = None


@dataclass
class Ends:
    office: HeadOffice
    office_client: FakeClient
    agent: SyncAgent
    events: list[dict[str, Any]]
    changes: list[dict[str, Any]]


@pytest.fixture(scope="module")
def ends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ends]:
    folder = tmp_path_factory.mktemp("fuzzmqtt")
    service = NodeService.init_node(
        folder / "node.db", NODE, "SHA", default_program_text(), NOW, member_blocks=[42]
    )
    member = service.enrol("Ada One", "2580", NOW, staff=SUPERVISOR).number
    service.post_stay(member, "F1", NOW, nights=2, revenue={Outlet.ROOM: "300.00"}, staff=SUPERVISOR)
    epoch = sync_store.oldest_pending_epoch(service.replica.conn)
    assert epoch is not None
    batch = sync_store.pending_batch(service.replica.conn, epoch, 0, limit=50, max_bytes=96 * 1024)
    events = [json.loads(e.body) for e in batch]

    ledger = Ledger(SqliteLedgerStore(folder / "ledger.db"))
    ledger.publish_program(default_program_text(), NOW)
    ledger.register_node(NODE, service.keys.public_hex(), "SHA")
    ledger.ingest_many([(NODE, events)], NOW)  # so the fan-out has real member changes to mutate
    changes = [c.to_wire() for c in ledger.store.changes_since(0, 1000) or []]

    pem = folder / "none.pem"
    # No broker and no certificates: only the handlers run, so paho's TLS set-up is skipped.
    with mock.patch("staypoint.central.server.use_fleet_tls"), mock.patch.object(agent_mod, "use_fleet_tls"):
        office = HeadOffice(ledger, MqttSettings("localhost", 8883, pem, pem, pem), clock=lambda: NOW)
        agent = SyncAgent(service, SyncConfig(NODE, "localhost", 8883, pem, pem, pem), clock=lambda: NOW)
    office_client, agent.client = FakeClient(), FakeClient()  # type: ignore[assignment]
    office.client = office_client  # type: ignore[assignment]
    yield Ends(office, office_client, agent, events, changes)
    agent.replica.close()
    service.close()
    ledger.store.close()


noise = st.one_of(
    st.binary(max_size=200),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"{", b"null", b"[]", b'{"a":NaN}', b"\xff\xfe", b'"\\ud800"', b"1" * 5000]),
    st.integers(256 * 1024 - 2, 256 * 1024 + 10).map(lambda n: b"{" + b" " * n + b"}"),
)


def _total(counter: Counter[str]) -> int:
    return sum(counter.values())


@st.composite
def office_messages(draw: st.DrawFn, e: Ends) -> tuple[FakeMessage, bool]:
    """A message to head office, and whether it is noise (must be one counted drop)."""
    node = draw(st.sampled_from([NODE, NODE, "other-node", "", "+", "#", "a/b"]))
    kind = draw(st.sampled_from(["events", "events", "resync", "auth/request", "health", "x/y"]))
    topic = draw(
        st.sampled_from([f"sp/v1/node/{node}/{kind}"] * 5 + ["sp/v1/node", "sp/v2/node/x/events", ""])
    )
    props = None
    if draw(st.booleans()):
        props = FakeProperties(
            draw(st.sampled_from([f"sp/v1/node/{node}/auth/response", "sp/v1/fleet/changes", None])),
            draw(st.sampled_from([b"c1", None])),
        )
    if draw(st.integers(0, 2)) == 0:
        return FakeMessage(topic, draw(noise), mid=draw(st.integers(1, 65535)), properties=props), True
    if kind == "events":
        events = draw(st.lists(st.sampled_from(e.events).flatmap(mutated_json) | json_value, max_size=4))
        if draw(st.booleans()):
            events = [*e.events, *events]  # real ones too: a re-sent batch
        body: Any = {"v": 1, "node": node, "events": events}
    elif kind == "resync":
        body = draw(mutated_json({"from": 0, "session": uuid.uuid4().hex}))
    else:
        body = draw(
            mutated_json({"member": e.events[0].get("member") or "", "points": 2500, "reward": "LATE-CO"})
        )
    return FakeMessage(topic, json.dumps(body).encode(), properties=props), False


@fuzz_settings(150)
@given(data=st.data())
def test_head_office_handler_counts_every_bad_message_and_never_raises(
    ends: Ends, data: st.DataObject
) -> None:
    office = ends.office
    msg, is_noise = data.draw(office_messages(ends))
    before = _total(office.dropped) + _total(office.handled)
    office._on_message(office.client, None, msg)  # type: ignore[arg-type]
    if office._batches[0].qsize():
        office._batches[0].put(None)  # the ingester's own loop: one group, then it stops
        office._ingester()
        office._stop.clear()
    assert office.dropped["error"] == 0, "a message took the catch-all path: see the log"
    assert _total(office.dropped) + _total(office.handled) > before, "a message went unaccounted"
    if is_noise:
        queued = (
            msg.topic.endswith("/events") and office.handled["events"] > 0 and _total(office.dropped) == 0
        )
        assert not queued
    assert msg.mid in ends.office_client.acked  # every message is acknowledged, after its handling


@st.composite
def numbered_changes(draw: st.DrawFn, e: Ends, applied: int) -> list[Any]:
    """Real fan-out changes (some with garbled fields, some replaced by noise), numbered on
    from the node's applied version as head office would number them."""
    out: list[Any] = []
    for i, change in enumerate(draw(st.lists(st.sampled_from(e.changes), min_size=1, max_size=4))):
        how = draw(st.sampled_from(["as is", "mutated", "mutated", "noise"]))
        if how == "noise":
            out.append(draw(json_value))
            continue
        c = {**change, "version": applied + i + 1}
        if how == "mutated":
            c = draw(mutated_json(c))
            if isinstance(c.get("body"), dict) and draw(st.booleans()):
                c["body"] = draw(mutated_json(c["body"]))
        out.append(c)
    return out


@st.composite
def agent_messages(draw: st.DrawFn, e: Ends) -> tuple[FakeMessage, bool]:
    a = e.agent
    leaf = draw(st.sampled_from(["ack", "resend", "changes", "fleet", "auth/response", "health", "other"]))
    topic = "sp/v1/fleet/changes" if leaf == "fleet" else a.topic(leaf)
    if draw(st.integers(0, 9)) == 0:
        topic = draw(st.sampled_from(["sp/v1/node/other/ack", "", "sp/v1/fleet", "#"]))
    props = FakeProperties(None, draw(st.sampled_from([b"c1", None]))) if draw(st.booleans()) else None
    if draw(st.integers(0, 2)) == 0:
        return FakeMessage(topic, draw(noise), retain=draw(st.booleans()), properties=props), True
    applied = sync_store.applied_version(a.replica.conn)
    if leaf == "ack":
        body: Any = draw(mutated_json({"epoch": 1, "hw": 2}))
    elif leaf == "resend":
        body = draw(mutated_json({"epoch": 1, "from": 1}))
    elif leaf == "fleet":
        changes = draw(numbered_changes(e, applied))
        to = applied + len(changes)  # each change's number, noise or not, as numbered_changes gave it
        body = {"v": 1, "from": applied, "to": to, "changes": changes}
        if draw(st.integers(0, 3)) == 0:
            body = draw(mutated_json(body))
    elif leaf == "changes":
        session = uuid.uuid4().hex
        if draw(st.integers(0, 3)):
            a._resync = agent_mod._Resync(session, time.monotonic() + 60)
        changes = draw(numbered_changes(e, applied))
        text = json.dumps(changes)
        digest = hashlib.sha256(text.encode()).hexdigest()
        part = {
            "v": 1,
            "session": session,
            "mode": "delta",
            "from": applied,
            "to": applied + len(changes) + 1,
        }
        body = part | {"part": 0, "last": True, "sha256": digest, "data": text}
        if draw(st.integers(0, 3)) == 0:
            body = draw(mutated_json(body))
    else:
        body = draw(mutated_json({"ok": True, "hold": "h1", "expires": "2026-11-23T10:05:00Z"}))
    return FakeMessage(topic, json.dumps(body).encode(), properties=props), False


@fuzz_settings(150)
@given(data=st.data())
def test_node_agent_handler_counts_every_bad_message_and_never_raises(
    ends: Ends, data: st.DataObject
) -> None:
    a = ends.agent
    msg, is_noise = data.draw(agent_messages(ends))
    before = _total(a.dropped)
    a._on_message(a.client, None, msg)  # type: ignore[arg-type]
    a._resync = None  # a session a test opened must not hold the next example's fan-out
    assert a.dropped["error"] == 0, "a message took the catch-all path: see the log"
    if is_noise:
        assert _total(a.dropped) == before + 1, (msg.topic, msg.payload[:80], dict(a.dropped))
