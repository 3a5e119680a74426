"""Partial replicas on the real parts: each node holds its region's members, fetches anyone
else online in one round trip, and says so plainly when it cannot.

Mosquitto with the fleet's TLS and ACL, ``central serve`` in its own process (as production
runs it) over a ledger whose programme has ``[replicas] mode = "partial"``, nodes with their
sync agents in Shanghai (region CN) and London (region EU), a Beijing node (CN) bootstrapped
later, and London's kiosk on a second NodeService over the same replica, asking through the
agent's socket as the kiosk's own process does.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.cli.main import main
from staypoint.edge.agent_link import AgentLink
from staypoint.edge.operations.core import OFFLINE_UNKNOWN
from staypoint.edge.service import NodeService, UnknownCard
from staypoint.edge.sync.link import LinkServer
from staypoint.kiosk.app import Devices, make_app
from staypoint.kiosk.hardware.printer.sim import SimPrinter
from staypoint.kiosk.hardware.reader.sim import SimReader
from staypoint.kiosk.screens.attract import AttractScreen
from staypoint.loyalty.program import Outlet, default_program_text
from tests.kiosk.helpers import settle, text_of
from tests.kiosk.helpers import wait_until as wait_in_app
from tests.mqtt_fixtures import MosquittoBroker, office_command
from tests.sync.conftest import Fleet, Node
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
ECHO = {"echo_interval": 0.5, "echo_timeout": 1.0, "keepalive": 5, "auth_timeout": 2.0}
CARD_KEY = bytes(range(32))  # the fleet's card key: every node hashes a card the same way
PARTIAL = default_program_text().replace('mode = "full"', 'mode = "partial"')
ADA, BOB, CY = "04A1A1A1", "04B2B2B2", "04C3C3C3"  # card UIDs


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Chain:
    fleet: Fleet
    office: subprocess.Popen[bytes]
    office_log: Path
    tmp: Path

    def tail(self) -> str:
        return "\n".join(self.office_log.read_text(errors="replace").splitlines()[-30:])

    def add_node(self, node_id: str, prop: str) -> Node:
        service = NodeService.init_node(
            self.tmp / f"{node_id}.db", node_id, prop, PARTIAL, now(), card_key=CARD_KEY
        )
        self.fleet.ledger.register_node(node_id, service.keys.public_hex(), prop)
        node = Node(service, None, self.fleet.config(node_id, **ECHO))
        self.fleet.nodes[node_id] = node
        self.fleet.start_agent(node)
        return node

    def caught_up(self, node: Node) -> None:
        """Wait until the node has applied head office's latest version and sent everything."""
        ledger = self.fleet.ledger

        def done() -> bool:
            agent = node.agent
            return (
                agent is not None
                and agent.pending() == 0
                and agent.applied_version() >= ledger.store.latest_version()
            )

        wait_until(
            done, 60, lambda: f"{node.service.node_id} caught up\n{self.fleet.describe()}\n{self.tail()}"
        )


@contextlib.contextmanager
def serving(broker: MosquittoBroker, tmp: Path, program_text: str) -> Iterator[Chain]:
    """A ledger holding ``program_text`` and ``central serve`` over it, in its own process."""
    ledger = Ledger(SqliteLedgerStore(tmp / "ledger.db", synchronous="NORMAL"))
    ledger.publish_program(program_text, now())
    fleet = Fleet(broker, tmp, ledger)
    log = tmp / "office.log"
    with open(log, "ab") as out:
        office = subprocess.Popen(
            office_command(broker, tmp / "ledger.db"), cwd=REPO, stdout=subprocess.DEVNULL, stderr=out
        )
    made = Chain(fleet, office, log, tmp)
    try:
        wait_until(lambda: "head office serving" in log.read_text(errors="replace"), 30, made.tail)
        yield made
    finally:
        if office.poll() is None:
            office.send_signal(signal.SIGTERM)
            office.wait(10)
        fleet.close()


@pytest.fixture
def chain(fresh_mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Chain]:
    with serving(fresh_mosquitto, tmp_path, PARTIAL) as made:
        yield made


def has(node: Node, number: str) -> bool:
    return node.service.replica.member(number) is not None


async def test_each_node_holds_its_region_and_fetches_anyone_else_in_one_round_trip(chain: Chain) -> None:
    shanghai = chain.add_node("sha-lobby-01", "SHA")
    london = chain.add_node("lon-lobby-01", "LON")
    ada = shanghai.service.enrol("Ada Lin", "2580", now(), card_uid=ADA).number
    cy = shanghai.service.enrol("Cy Wu", "2580", now(), card_uid=CY).number
    bob = london.service.enrol("Bob Ray", "2580", now(), card_uid=BOB).number
    for node in (shanghai, london):
        chain.caught_up(node)

    # Each node was sent its own region's members only (head office's fan-out, filtered).
    assert (has(shanghai, ada), has(shanghai, cy), has(shanghai, bob)) == (True, True, False)
    assert (has(london, bob), has(london, ada), has(london, cy)) == (True, False, False)

    # A new Beijing node bootstraps from a snapshot of region CN: Ada and Cy, not Bob.
    beijing = chain.add_node("bjs-lobby-01", "BJS")
    chain.caught_up(beijing)
    assert (has(beijing, ada), has(beijing, cy), has(beijing, bob)) == (True, True, False)

    # London's kiosk: Ada's card is not in the replica; one round trip brings her record.
    link = LinkServer(london.agent, chain.tmp / "lon.sock")
    link.start()
    client = AgentLink(link.path, timeout=2.0)
    kiosk = NodeService.open(london.service.replica.path, authoriser=client)
    try:
        wait_until(lambda: client.status().online, 15, "London's agent link online")
        started = time.monotonic()
        row = kiosk.member_by_card(ADA)
        fetch_s = time.monotonic() - started
        assert row.number == ada
        assert london.agent.stats["members_fetched"] == 1
        assert kiosk.member_by_card(ADA).number == ada  # cached: no second question
        assert london.agent.stats["members_fetched"] == 1
        assert fetch_s < 2.0, fetch_s  # one round trip, well inside the kiosk's wait
        with pytest.raises(UnknownCard, match="not registered"):
            kiosk.member_by_card("04FFFFFF")  # head office has no such card either

        # Ada stays in Shanghai: her new balance now reaches London too (held there, fetched).
        shanghai.service.post_stay(ada, "F-1", now(), nights=2, revenue={Outlet.ROOM: Decimal("300")})
        points = shanghai.service.replica.member(ada).points  # type: ignore[union-attr]
        assert points > 0
        wait_until(
            lambda: london.service.replica.member(ada).points == points,  # type: ignore[union-attr]
            60,
            lambda: f"Ada's stay at London\n{chain.fleet.describe()}",
        )
        chain.caught_up(shanghai)
        assert not has(shanghai, bob)  # and Bob's records never went to Shanghai

        # Head office down: an unknown card at London's kiosk gets a plain answer, and the
        # guest can still join here.
        chain.office.send_signal(signal.SIGTERM)
        chain.office.wait(10)
        # (The broker still answers, so the agent asks and waits its auth_timeout for nobody.)
        devices = Devices(reader=SimReader(), pinpad=None, printer=SimPrinter())
        app = make_app(kiosk, devices, now, 30.0, offers_rotate_s=0, health_interval_s=0, link=client)
        async with app.run_test(size=(100, 30)) as pilot:
            assert isinstance(devices.reader, SimReader)
            devices.reader.tap(uid=CY)
            await wait_in_app(
                pilot, lambda: OFFLINE_UNKNOWN in text_of(app, "#attract-message"), "the offline message"
            )
            await settle(pilot)
            assert isinstance(app.screen, AttractScreen)
        joined = kiosk.enrol("Cy Wu", "2580", now())
        assert kiosk.replica.member(joined.number) is not None
    finally:
        kiosk.close()
        link.stop()


def test_a_full_chain_turned_partial_by_publishing_and_an_arrival_brought_in_by_the_feed(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The operator's path (docs/scale.md): ``central publish`` of the programme with
    ``mode = "partial"`` while head office serves; each node resyncs what it now holds and
    forgets the rest; ``central replicas arrivals`` brings an arriving guest to their hotel."""
    with serving(fresh_mosquitto, tmp_path, default_program_text()) as chain:
        fleet, ledger = chain.fleet, chain.fleet.ledger
        nodes = {}
        for node_id, prop in (("sha-lobby-01", "SHA"), ("lon-lobby-01", "LON")):
            service = NodeService.init_node(
                tmp_path / f"{node_id}.db", node_id, prop, default_program_text(), now(), card_key=CARD_KEY
            )
            ledger.register_node(node_id, service.keys.public_hex(), prop)
            nodes[prop] = fleet.nodes[node_id] = Node(service, None, fleet.config(node_id, **ECHO))
            fleet.start_agent(nodes[prop])
        shanghai, london = nodes["SHA"], nodes["LON"]
        ada = shanghai.service.enrol("Ada Lin", "2580", now(), card_uid=ADA).number
        bob = london.service.enrol("Bob Ray", "2580", now(), card_uid=BOB).number
        for node in (shanghai, london):
            chain.caught_up(node)
        assert has(london, ada) and has(shanghai, bob)  # full replicas: everyone everywhere

        partial = tmp_path / "chain.toml"
        partial.write_text(PARTIAL.replace("version = 1\n", "version = 2\n", 1), encoding="utf-8")
        assert (
            main(["central", "publish", "--store", f"sqlite:///{tmp_path / 'ledger.db'}", str(partial)]) == 0
        )
        wait_until(
            lambda: not has(london, ada) and not has(shanghai, bob),
            60,
            lambda: f"each node to forget the other region\n{fleet.describe()}\n{chain.tail()}",
        )
        assert has(london, bob) and has(shanghai, ada)
        assert london.agent is not None and london.agent.stats["members_released"] == 1

        # The property system: Ada arrives in London on Friday. Her record is there before her.
        feed = tmp_path / "arrivals.csv"
        feed.write_text(f"member,arrival\n{ada},{now().date().isoformat()}\n", encoding="utf-8")
        store = f"sqlite:///{tmp_path / 'ledger.db'}"
        assert main(["central", "replicas", "arrivals", "--store", store, "LON", str(feed)]) == 0
        wait_until(lambda: has(london, ada), 60, lambda: f"Ada at London\n{fleet.describe()}\n{chain.tail()}")
        assert not has(shanghai, bob)
