"""One lock-out for the whole fleet (issue 12 item 6), on both ledger stores.

Before, each node and the API kept a PIN counter of its own: five wrong PINs at the API,
then the right one at a kiosk, redeemed. Now a wrong PIN anywhere is a ``pin.failed``
event, head office folds the count into the member record, and the record reaches every
node like any member change; offline, a node counts its own tries on top.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from staypoint.central.application.services import Services
from staypoint.central.application.state import SideStore
from staypoint.central.errors import DomainError, Locked, Unauthenticated
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.store import LedgerStore
from staypoint.edge.service import PinLocked, StaffProof, WrongPin
from staypoint.loyalty.program import default_program_text
from tests.sync.nodes import NOW, Node

pytest_plugins = ["tests.pg_fixtures"]

PIN = "2580"
SUPERVISOR = StaffProof("s1", "Sam", "supervisor")


@pytest.fixture
def ledger(store: LedgerStore) -> Ledger:
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW)
    return ledger


@pytest.fixture
def api(ledger: Ledger, tmp_path: Path) -> Iterator[Services]:
    services = Services(
        ledger,
        ProfileStore(tmp_path / "profiles.db"),
        SideStore(f"sqlite://{tmp_path / 'side.db'}"),
        b"k" * 32,
    )
    yield services
    services.side.close()
    services.profiles.close()


def _member(node: Node, ledger: Ledger) -> str:
    m = node.svc.enrol("Ada L", PIN, NOW).number
    node.send(ledger)
    node.receive(ledger)
    return m


def _wrong_at_api(api: Services, m: str, times: int, now: datetime = NOW) -> list[type[DomainError]]:
    refusals: list[type[DomainError]] = []
    for _ in range(times):
        with pytest.raises(DomainError) as exc:
            api.login(m, "0000", now)
        refusals.append(type(exc.value))
    return refusals


def _wrong_at(node: Node, m: str, times: int, now: datetime = NOW) -> None:
    for _ in range(times):
        with pytest.raises(WrongPin):
            node.svc.verify_pin(m, "0000", now)


def test_five_wrong_pins_at_the_api_lock_the_kiosk(ledger: Ledger, api: Services, tmp_path: Path) -> None:
    a = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    m = _member(a, ledger)
    assert _wrong_at_api(api, m, 5) == [Unauthenticated] * 4 + [Locked]
    later = NOW + timedelta(minutes=1)
    assert a.svc.verify_pin(m, PIN, later)  # the kiosk has not heard yet: one sync round trip
    a.receive(ledger)
    with pytest.raises(PinLocked):
        a.svc.verify_pin(m, PIN, later)
    assert a.svc.summary(m, later).locked
    # The lock runs its course everywhere at the same moment: the policy's 30 minutes.
    assert a.svc.verify_pin(m, PIN, NOW + timedelta(minutes=30))
    assert api.login(m, PIN, NOW + timedelta(minutes=30))


def test_a_lock_at_one_node_reaches_another_and_an_unlock_lifts_it_everywhere(
    ledger: Ledger, api: Services, tmp_path: Path
) -> None:
    a, b = Node(tmp_path, "sha-lobby-01", "SHA", 1), Node(tmp_path, "sha-lobby-02", "SHA", 2)
    m = _member(a, ledger)
    b.receive(ledger)
    _wrong_at(a, m, 4)
    with pytest.raises(WrongPin, match="now locked"):
        a.svc.verify_pin(m, "0000", NOW)
    a.send(ledger)
    b.receive(ledger)
    with pytest.raises(PinLocked):
        b.svc.verify_pin(m, PIN, NOW)
    with pytest.raises(Locked):
        api.login(m, PIN, NOW)
    record = ledger.member(m)
    assert record is not None and record["pin_failures"] == 5 and record["locked_until"] is not None

    b.svc.unlock(m, NOW, SUPERVISOR)
    assert b.svc.verify_pin(m, PIN, NOW)
    b.send(ledger)
    a.receive(ledger)
    assert a.svc.verify_pin(m, PIN, NOW)
    assert api.login(m, PIN, NOW)
    record = ledger.member(m)
    assert record is not None and record["pin_failures"] == 0 and record["locked_until"] is None


def test_offline_a_node_counts_its_own_tries_on_top_of_the_fleets(
    ledger: Ledger, api: Services, tmp_path: Path
) -> None:
    a = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    m = _member(a, ledger)
    assert _wrong_at_api(api, m, 3) == [Unauthenticated] * 3
    a.receive(ledger)
    # Head office out of reach from here on: two more wrong tries at the kiosk lock it.
    with pytest.raises(WrongPin, match="1 try left"):
        a.svc.verify_pin(m, "0000", NOW)
    with pytest.raises(WrongPin, match="now locked"):
        a.svc.verify_pin(m, "0000", NOW)
    with pytest.raises(PinLocked):
        a.svc.verify_pin(m, PIN, NOW)
    # A record that arrives before head office has folded the kiosk's tries keeps them.
    api.adjust(m, 100, "goodwill", "clerk", NOW)
    a.receive(ledger)
    assert a.svc.summary(m, NOW).points == 100
    with pytest.raises(PinLocked):
        a.svc.verify_pin(m, PIN, NOW)
    a.send(ledger)
    with pytest.raises(Locked):
        api.login(m, PIN, NOW)


def test_the_right_pin_after_wrong_ones_starts_the_count_again_everywhere(
    ledger: Ledger, api: Services, tmp_path: Path
) -> None:
    a = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    m = _member(a, ledger)
    assert _wrong_at_api(api, m, 4) == [Unauthenticated] * 4
    a.receive(ledger)
    depth = a.svc.replica.outbox_depth()
    assert a.svc.verify_pin(m, PIN, NOW) and a.svc.replica.outbox_depth() == depth + 1
    a.send(ledger)
    with pytest.raises(Unauthenticated, match=r"4 tries left"):
        api.login(m, "0000", NOW)
    # No event for a right PIN after none wrong: a kiosk login is not news for the fleet.
    assert api.login(m, PIN, NOW)
    a.receive(ledger)
    assert a.svc.verify_pin(m, PIN, NOW) and a.svc.replica.outbox_depth() == depth + 1
