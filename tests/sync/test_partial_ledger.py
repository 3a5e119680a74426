"""Partial replicas at head office, without a broker: who holds whom, and what each node is sent.

Members enrol at real node services (their events ingested as a node's batch would be), under
a programme whose ``[replicas] mode`` is partial. Every test takes ``store``, so each runs on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store import LedgerStore
from staypoint.edge import sync_store
from staypoint.edge.service import NodeService
from staypoint.loyalty.program import Outlet, ProgramError, default_program_text, parse_program

pytest_plugins = ["tests.pg_fixtures"]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CARD_KEY = bytes(range(32))
NODES = {"sha-lobby-01": "SHA", "bjs-lobby-01": "BJS", "lon-lobby-01": "LON"}


def partial_text(version: int = 1) -> str:
    text = default_program_text().replace('mode = "full"', 'mode = "partial"')
    return text.replace("version = 1\n", f"version = {version}\n", 1)


class Chain:
    """Head office and three nodes (Shanghai and Beijing in region CN, London in EU)."""

    def __init__(self, tmp_path: Path, store: LedgerStore, text: str) -> None:
        self.ledger = Ledger(store)
        self.ledger.publish_program(text, NOW)
        self.nodes: dict[str, NodeService] = {}
        for node, prop in NODES.items():
            service = NodeService.init_node(tmp_path / f"{node}.db", node, prop, text, NOW, card_key=CARD_KEY)
            self.ledger.register_node(node, service.keys.public_hex(), prop)
            self.nodes[node] = service
        self.sent: dict[str, int] = dict.fromkeys(NODES, 0)

    def enrol(self, node: str, name: str, card: str) -> str:
        return self.nodes[node].enrol(name, "2580", NOW, card_uid=card).number

    def upload(self, node: str) -> None:
        """The node's new outbox rows, ingested as its agent's batch would be."""
        conn = self.nodes[node].replica.conn
        rows = conn.execute(
            "SELECT body FROM outbox WHERE seq > ? ORDER BY seq", (self.sent[node],)
        ).fetchall()
        result = self.ledger.ingest(node, [json.loads(b) for (b,) in rows], NOW)
        assert result.rejected == 0, result
        self.sent[node] += len(rows)

    def close(self) -> None:
        for service in self.nodes.values():
            service.close()


@pytest.fixture
def chain(tmp_path: Path, store: LedgerStore) -> Chain:
    made = Chain(tmp_path, store, partial_text())
    yield made  # type: ignore[misc]
    made.close()


def held_members(ledger: Ledger, node: str) -> set[str]:
    scopes = ledger.node_scopes(node)
    assert scopes is not None
    _, _, rows = ledger.resync(0, scopes)
    return {c.key for c in rows if c.kind == "member"}


def test_each_node_is_sent_its_regions_members_and_everything_that_is_not_a_members(chain: Chain) -> None:
    ada = chain.enrol("sha-lobby-01", "Ada L", "04A1")
    bob = chain.enrol("lon-lobby-01", "Bob R", "04B2")
    chain.upload("sha-lobby-01")
    chain.upload("lon-lobby-01")
    ledger = chain.ledger

    # Home holds: Shanghai's member in region CN, London's in EU.
    assert ledger.node_scopes("bjs-lobby-01") == frozenset({"p:BJS", "r:CN"})
    assert held_members(ledger, "sha-lobby-01") == {ada}
    assert held_members(ledger, "bjs-lobby-01") == {ada}
    assert held_members(ledger, "lon-lobby-01") == {bob}

    # The fan-out of a group: each node's share, in version order, node keys to everyone.
    changes = ledger.store.changes_since(0, 1000)
    assert changes is not None
    fleet = ledger.fleet_scopes()
    assert fleet is not None and set(fleet) == set(NODES)
    shares = ledger.held(changes, fleet)
    members = {n: [c.key for c in share if c.kind == "member"] for n, share in shares.items()}
    assert members == {"sha-lobby-01": [ada], "bjs-lobby-01": [ada], "lon-lobby-01": [bob]}
    for share in shares.values():
        assert {c.key for c in share if c.kind == "node_key"} == set(NODES)
        assert [c.version for c in share] == sorted(c.version for c in share)

    # A delta resync is filtered the same way.
    mode, _, delta = ledger.resync(1, ledger.node_scopes("lon-lobby-01"))
    assert mode == "delta" and [c.key for c in delta if c.kind == "member"] == [bob]


def test_a_member_fetched_by_card_is_held_there_and_a_stay_holds_a_guest_at_the_property(
    chain: Chain,
) -> None:
    ada = chain.enrol("sha-lobby-01", "Ada L", "04A1")
    chain.upload("sha-lobby-01")
    ledger = chain.ledger
    london = chain.nodes["lon-lobby-01"]

    # At the London kiosk: an unknown card is fetched by its keyed hash, the record comes back
    # whole, and London holds Ada from now on (so her next change is sent there).
    doc = ledger.fetch_member("lon-lobby-01", NOW, card_hash=london.keys.card_hash("04A1"))
    assert doc is not None and doc["number"] == ada and doc["home_property"] == "SHA"
    assert ada in held_members(ledger, "lon-lobby-01")
    assert ledger.fetch_member("lon-lobby-01", NOW, card_hash=london.keys.card_hash("04FF")) is None
    assert ledger.fetch_member("lon-lobby-01", NOW, number="7000000000") is None

    # Bob enrols in London (region EU) and stays in Shanghai, whose kiosk fetched him first:
    # Shanghai holds him for stay_days after the stay, Beijing not at all.
    bob = chain.enrol("lon-lobby-01", "Bob R", "04B2")
    chain.upload("lon-lobby-01")
    shanghai = chain.nodes["sha-lobby-01"]
    record = ledger.fetch_member("sha-lobby-01", NOW, number=bob)
    assert record is not None
    with shanghai.replica.write():
        sync_store.apply_members(shanghai.replica.conn, "sha-lobby-01", [record], {})
    shanghai.post_stay(bob, "F-1", NOW, nights=2, revenue={Outlet.ROOM: Decimal("200")})
    chain.upload("sha-lobby-01")
    holds = ledger.store.replica_scopes([bob, ada])
    assert holds == {bob: {"r:EU", "p:SHA"}, ada: {"r:CN", "p:LON"}}
    assert bob not in held_members(ledger, "bjs-lobby-01")

    # Holds end: the fetched one after fetched_days, the stay's after stay_days. A node is told
    # only of members it holds for no other reason (Ada stays in CN's nodes for good).
    assert ledger.release_replicas(NOW + timedelta(days=89)) == {}
    released = ledger.release_replicas(NOW + timedelta(days=91))
    assert released == {"lon-lobby-01": [ada]}
    assert ada not in held_members(ledger, "lon-lobby-01")
    assert ledger.release_replicas(NOW + timedelta(days=366)) == {"sha-lobby-01": [bob]}
    assert held_members(ledger, "sha-lobby-01") == {ada}


def test_arrivals_hold_a_guest_at_the_property_and_send_the_record_again(chain: Chain) -> None:
    ada = chain.enrol("sha-lobby-01", "Ada L", "04A1")
    chain.upload("sha-lobby-01")
    ledger = chain.ledger
    before = ledger.store.latest_version()
    changes = ledger.hold_arrivals("LON", [(ada, date(2026, 12, 1)), ("7000000000", date(2026, 12, 1))], NOW)
    # The unknown number is skipped; Ada's record is logged again, so the fan-out sends it to
    # London, which now holds her until 14 days after the arrival.
    assert [(c.kind, c.key) for c in changes] == [("member", ada)]
    assert changes[0].version == before + 1
    fleet = ledger.fleet_scopes()
    assert fleet is not None
    assert [c.key for c in ledger.held(changes, fleet)["lon-lobby-01"]] == [ada]
    assert ledger.release_replicas(datetime(2026, 12, 14, tzinfo=UTC)) == {}
    assert ledger.release_replicas(datetime(2026, 12, 16, tzinfo=UTC)) == {"lon-lobby-01": [ada]}
    # The feed's bounds: the last day (no overflow of its hold's end), and long past, refuse the
    # whole batch, and nothing of it is kept.
    before = ledger.store.latest_version()
    for day in (date.max, date(2025, 1, 1)):
        with pytest.raises(ValueError, match="arrival"):
            ledger.hold_arrivals("LON", [(ada, date(2026, 12, 1)), (ada, day)], NOW)
    assert ledger.store.latest_version() == before


def test_publishing_a_partial_programme_gives_every_member_a_home_and_finds_their_cards(
    tmp_path: Path, store: LedgerStore
) -> None:
    chain = Chain(tmp_path, store, default_program_text())  # full: no holds kept
    try:
        ada = chain.enrol("sha-lobby-01", "Ada L", "04A1")
        bob = chain.enrol("lon-lobby-01", "Bob R", "04B2")
        chain.upload("sha-lobby-01")
        chain.upload("lon-lobby-01")
        ledger = chain.ledger
        assert ledger.fleet_scopes() is None and ledger.node_scopes("sha-lobby-01") is None
        assert ledger.store.replica_scopes([ada, bob]) == {}
        ledger.publish_program(partial_text(2), NOW)
        # Publishing it gave both their home holds, in its transaction; the cards were indexed
        # as they were bound (in full mode too). So the repair command finds nothing to add.
        assert ledger.store.replica_scopes([ada, bob]) == {ada: {"r:CN"}, bob: {"r:EU"}}
        assert ledger.assign_replicas() == (0, 0)
        assert held_members(ledger, "bjs-lobby-01") == {ada}
        london = chain.nodes["lon-lobby-01"]
        doc = ledger.fetch_member("lon-lobby-01", NOW, card_hash=london.keys.card_hash("04A1"))
        assert doc is not None and doc["number"] == ada
    finally:
        chain.close()


def test_the_replicas_section_is_checked_when_the_programme_is_read() -> None:
    program = parse_program(partial_text())
    assert (program.replicas.mode.value, program.replicas.stay_days) == ("partial", 365)
    assert {p.code: p.region for p in program.properties}["LON"] == "EU"
    for bad, field in (
        ('mode = "partial"', 'mode = "some"'),
        ("stay_days = 365", "stay_days = 0"),
        ("fetched_days = 90", "fetched_days = 99999"),
        ("arrival_days = 14", "arrival_dayz = 14"),
    ):
        with pytest.raises(ProgramError) as err:
            parse_program(partial_text().replace(bad, field))
        assert "replicas" in str(err.value), err.value


def test_a_node_forgets_released_members_but_keeps_one_with_events_not_yet_acknowledged(chain: Chain) -> None:
    ada = chain.enrol("sha-lobby-01", "Ada L", "04A1")
    cy = chain.enrol("sha-lobby-01", "Cy W", "04C3")
    chain.upload("sha-lobby-01")
    node = chain.nodes["sha-lobby-01"]
    conn = node.replica.conn
    with node.replica.write():
        sync_store.mark_acked(conn, 1, chain.sent["sha-lobby-01"], NOW.isoformat())
    node.post_stay(cy, "F-9", NOW, nights=1, revenue={Outlet.ROOM: Decimal("100")})  # not acked yet
    with node.replica.write():
        assert sync_store.release_members(conn, [ada, cy, "7000000000"]) == 1
    assert node.replica.member(ada) is None and node.replica.member(cy) is not None
    assert node.replica.member_by_card(node.keys.card_hash("04A1")) is None
    assert node.replica.member_by_card(node.keys.card_hash("04C3")) == cy
