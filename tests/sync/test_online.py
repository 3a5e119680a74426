"""Online path: enrol, earn and redeem with a head-office hold, over the real broker."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from staypoint.loyalty.program import Outlet
from tests.mqtt_fixtures import MosquittoBroker
from tests.sync.conftest import PIN, Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_online_redemption_is_held_applied_once_and_settled(
    fresh_mosquitto: MosquittoBroker, fleet_factory: Callable[[MosquittoBroker], Fleet]
) -> None:
    fleet = fleet_factory(fresh_mosquitto)
    fleet.start_office()
    a = fleet.add_node("sha-lobby-01")
    b = fleet.add_node("sha-lobby-02")
    fleet.settle()
    member = a.service.enrol("Ada Lovelace", PIN, now()).number
    a.service.post_stay(member, "F-1", now(), nights=3, revenue={Outlet.ROOM: Decimal("600")})
    fleet.settle()
    assert fleet.ledger.member(member)["points"] == 6000  # type: ignore[index]
    assert b.points(member) == 6000  # the member reached the other node

    red = b.service.redeem(b.proof(member), "LATE-CO", now())
    assert red.auth == "online"
    hold = red.event.data["hold"]
    assert hold
    fleet.settle()
    central = fleet.ledger.member(member)
    assert central is not None and central["points"] == 3500
    assert fleet.ledger.store.hold(hold).status == "settled"  # type: ignore[union-attr]
    assert a.points(member) == 3500 and b.points(member) == 3500
    # Applied exactly once at head office, whatever was resent.
    assert fleet.ledger.store.event_count() == 3
    wait_until(lambda: b.service.replica.voucher(red.voucher) is not None)
