"""Harness for sync tests: head office + nodes in-process against a real Mosquitto."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.server import HeadOffice, MqttSettings
from staypoint.central.store import LedgerStore
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge.service import NodeService, PinProof
from staypoint.edge.sync.agent import MqttAuthoriser, SyncAgent, SyncConfig
from staypoint.loyalty.program import default_program_text
from tests.mqtt_fixtures import MosquittoBroker
from tests.waits import wait_until

PIN = "2580"


@pytest.fixture(autouse=True)
def _sync_logs_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """A failing sync test shows the agents' and head office's reconnects and resyncs."""
    caplog.set_level(logging.INFO, logger="staypoint")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Node:
    service: NodeService
    agent: SyncAgent | None
    config: SyncConfig

    def proof(self, member: str) -> PinProof:
        return self.service.verify_pin(member, PIN, now())

    def points(self, member: str) -> int:
        row = self.service.replica.member(member)
        assert row is not None, f"{member} not on {self.service.node_id}"
        return row.points


@dataclass
class Fleet:
    broker: MosquittoBroker
    directory: Path
    ledger: Ledger
    office: HeadOffice | None = None
    nodes: dict[str, Node] = field(default_factory=dict)

    def start_office(self) -> HeadOffice:
        tls = self.broker.client_tls("head-office")
        office = HeadOffice(
            self.ledger,
            MqttSettings(self.broker.host, self.broker.office_port, tls.ca, tls.cert, tls.key),
            tick_seconds=0.5,
        )
        office.start()
        self.office = office
        return office

    def config(self, node_id: str, **kw: object) -> SyncConfig:
        tls = self.broker.client_tls(node_id)
        return SyncConfig(node_id, self.broker.host, self.broker.port, tls.ca, tls.cert, tls.key, **kw)  # type: ignore[arg-type]

    def add_node(self, node_id: str, *, start: bool = True, **kw: object) -> Node:
        db = self.directory / f"{node_id}.db"
        service = NodeService.init_node(db, node_id, f"HOTEL-{node_id[-2:]}", default_program_text(), now())
        self.ledger.register_node(node_id, service.keys.public_hex())
        config = self.config(node_id, **kw)
        node = Node(service, None, config)
        if start:
            self.start_agent(node)
        self.nodes[node_id] = node
        return node

    def start_agent(self, node: Node) -> SyncAgent:
        agent = SyncAgent(node.service, node.config)
        node.service.authoriser = MqttAuthoriser(agent, timeout=node.config.auth_timeout)
        agent.start()
        node.agent = agent
        return agent

    def stop_agent(self, node: Node) -> None:
        if node.agent is not None:
            node.agent.stop()
            node.agent = None

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every outbox is drained and every node has applied the latest version."""

        def done() -> bool:
            latest = self.ledger.store.latest_version()
            return all(
                n.agent is not None and n.agent.pending() == 0 and n.agent.applied_version() >= latest
                for n in self.nodes.values()
            )

        wait_until(done, timeout, lambda: f"the fleet to settle\n{self.describe()}")

    def describe(self) -> str:
        """Where each side stands: what a settle timeout needs to be diagnosed."""
        lines = [f"head office: latest version {self.ledger.store.latest_version()}"]
        if self.office is not None:
            lines.append(f"  dropped {dict(self.office.dropped)}")
        for name, n in self.nodes.items():
            if n.agent is None:
                lines.append(f"{name}: no agent")
                continue
            lines.append(
                f"{name}: online={n.agent.online.is_set()} pending={n.agent.pending()} "
                f"applied={n.agent.applied_version()} stats={dict(n.agent.stats)} "
                f"dropped={dict(n.agent.dropped)}"
            )
        lines.append("broker log (tail):")
        lines.extend(self.broker.log_text().splitlines()[-25:])
        return "\n".join(lines)

    def close(self) -> None:
        for node in self.nodes.values():
            self.stop_agent(node)
            node.service.close()
        if self.office is not None:
            self.office.stop()
        self.ledger.store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., LedgerStore]]:
    """Makes empty ledger stores of one kind, once on SQLite and once on PostgreSQL (the test
    module loads ``tests.pg_fixtures``): a test taking it, or ``store``, runs on both.

    ``make(name)`` gives a new store each call (a file ``{name}.db``, or a database of its
    own on the test's PostgreSQL server); all are closed (and dropped) at teardown.
    """
    made: list[Any] = []
    urls: list[str] = []

    def make(name: str = "ledger") -> LedgerStore:
        s: Any
        if request.param == "sqlite":
            s = SqliteLedgerStore(tmp_path / f"{name}.db")
        else:
            from staypoint.central.store_pg import PgLedgerStore

            urls.append(request.getfixturevalue("pg_server").create_database())
            s = PgLedgerStore(urls[-1])
        made.append(s)
        return s  # type: ignore[no-any-return]

    try:
        yield make
    finally:
        for s in made:
            s.close()
        if urls:
            server = request.getfixturevalue("pg_server")
            for url in urls:
                server.drop_database(url)


@pytest.fixture
def store(store_factory: Callable[..., LedgerStore]) -> LedgerStore:
    """An empty ledger store, once on SQLite and once on PostgreSQL (see ``store_factory``)."""
    return store_factory()


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Callable[[MosquittoBroker], Fleet]]:
    made: list[Fleet] = []

    def make(broker: MosquittoBroker) -> Fleet:
        store = SqliteLedgerStore(tmp_path / "ledger.db", synchronous="NORMAL")
        ledger = Ledger(store)
        ledger.publish_program(default_program_text(), now())
        fleet = Fleet(broker, tmp_path, ledger)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()
