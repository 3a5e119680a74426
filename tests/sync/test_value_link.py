"""Stored value spent online: kiosk → agent socket → real Mosquitto → ``central serve`` → hold.

The arrangement of tests/sync/test_link.py (head office in its own process, each kiosk a
second NodeService on its node's replica with an AgentLink): an online spend above the offline
per-spend limit takes a value hold that ingest settles; two kiosks racing for one wallet cannot
overdraw it; with head office silent or the broker gone the offline limits decide. The ledger
part on both stores is tests/sync/test_value_holds.py.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.edge.agent_link import AgentLink
from staypoint.edge.service import AuthorisationDenied, NodeService, OfflineLimitReached, StaffProof
from staypoint.edge.sync.link import LinkServer
from tests.mqtt_fixtures import MosquittoBroker
from tests.sync.conftest import PIN, Fleet, now
from tests.sync.test_link import (
    AUTH_TIMEOUT,
    DESK,
    ECHO,
    REPO,
    Clock,
    Office,
    add_node,
    kiosk_service,
    make_fleet,
)
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SUP = StaffProof("sup", "Sup", "supervisor")
NODES = ("sha-lobby-01", "sha-lobby-02")


def _last_event(kiosk: NodeService) -> dict[str, object]:
    row = kiosk.replica.conn.execute("SELECT body FROM outbox ORDER BY seq DESC LIMIT 1").fetchone()
    return json.loads(row[0])  # type: ignore[no-any-return]


@pytest.fixture
def two_kiosks(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[tuple[Fleet, Office, list[NodeService], list[LinkServer]]]:
    fleet = make_fleet(fresh_mosquitto, tmp_path)
    office = Office(fleet, tmp_path / "office.log")
    office.start()
    clock = Clock()
    links: list[LinkServer] = []
    kiosks: list[NodeService] = []
    try:
        for node_id in NODES:
            node, link = add_node(fleet, node_id, clock, **ECHO)
            links.append(link)
            kiosk, client = kiosk_service(node, link)
            kiosks.append(kiosk)
            wait_until(lambda client=client: client.status().online, 15, f"{node_id}'s link online")
        yield fleet, office, kiosks, links
    finally:
        for kiosk in kiosks:
            kiosk.close()
        for link in links:
            link.stop()
        office.stop()
        fleet.close()


def test_online_spends_take_value_holds_and_two_kiosks_cannot_overdraw_one_wallet(
    two_kiosks: tuple[Fleet, Office, list[NodeService], list[LinkServer]],
) -> None:
    fleet, office, (a, b), (link_a, _) = two_kiosks
    limits = a.program.offline
    member = a.enrol("Ada Lovelace", PIN, now()).number
    a.top_up(member, "500.00", now(), SUP)
    fleet.settle(60)
    assert b.resolve_member(member).stored_value == "500.00"

    # Above the offline per-spend limit: only head office can allow it, with a value hold.
    assert Decimal("250.00") > limits.per_spend_value
    assert a.spend(a.verify_pin(member, PIN, now()), "250.00", now()) == Decimal("250.00")
    spent = _last_event(a)
    assert spent["auth"] == "online"
    hold_id = spent["data"]["hold"]  # type: ignore[index]
    assert isinstance(hold_id, str)
    hold = fleet.ledger.store.hold(hold_id)
    assert hold is not None and (hold.kind, hold.amount, hold.member) == ("value", "250.00", member)

    # Both kiosks at once, 150.00 each, before either replica has heard of the other: head
    # office has 250.00 available (500.00 less the open hold), so exactly one is allowed.
    proofs = [k.verify_pin(member, PIN, now()) for k in (a, b)]
    start = threading.Barrier(2)
    results: list[object] = [None, None]

    def race(i: int) -> None:
        start.wait(5)
        try:
            results[i] = [a, b][i].spend(proofs[i], "150.00", now())
        except (AuthorisationDenied, OfflineLimitReached) as exc:
            results[i] = exc

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    denied = [r for r in results if isinstance(r, AuthorisationDenied)]
    allowed = [r for r in results if isinstance(r, Decimal)]
    assert len(denied) == 1 and len(allowed) == 1, results
    assert "not enough stored value" in str(denied[0])

    # The desk's own command goes the same way, through the socket of the node config.
    toml = fleet.directory / "node.toml"
    toml.write_text(f'[node]\ndb = "{a.replica.path}"\n[sync]\nlink_socket = "{link_a.path}"\n')
    placed = fleet.ledger.store.counters()["value_holds_placed"]
    desk = subprocess.run(
        [*DESK, "value", "spend", "--config", str(toml), member, "20.00", "--pin", PIN, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert desk.returncode == 0, desk.stderr
    assert _last_event(a)["auth"] == "online"
    assert fleet.ledger.store.counters()["value_holds_placed"] == placed + 1

    # Everything reconciles once: 500 − 250 − 150 − 20, every hold settled, no debt.
    fleet.settle(60)
    wait_until(lambda: fleet.ledger.store.held_value(member) == 0, 15, "every value hold settled")
    assert fleet.ledger.member(member)["stored_value"] == "80.00"  # type: ignore[index]
    assert fleet.ledger.store.hold(hold_id).status == "settled"  # type: ignore[union-attr]
    assert not fleet.ledger.store.open_overdrafts()
    assert a.resolve_member(member).stored_value == b.resolve_member(member).stored_value == "80.00"

    # Head office silent, the broker up: the request times out and the offline limits decide.
    a.top_up(member, "400.00", now(), SUP)
    fleet.settle(60)
    office.stop()
    proof = a.verify_pin(member, PIN, now())
    started = time.monotonic()
    with pytest.raises(OfflineLimitReached):
        a.spend(proof, "250.00", now())
    assert time.monotonic() - started < AUTH_TIMEOUT + 1.0
    assert a.spend(proof, "50.00", now()) == Decimal("430.00")
    offline = _last_event(a)
    assert offline["auth"] == "offline" and offline["data"]["hold"] is None  # type: ignore[index]

    # The broker gone: offline at once, within the same limits.
    fleet.broker.stop()
    wait_until(lambda: not AgentLink(link_a.path).status().online, 10, "the link offline")
    started = time.monotonic()
    assert a.spend(proof, "60.00", now()) == Decimal("370.00")
    assert time.monotonic() - started < AUTH_TIMEOUT
    with pytest.raises(OfflineLimitReached):
        a.spend(proof, "250.00", now())
