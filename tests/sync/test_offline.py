"""Broker down: nodes keep earning and redeem within the offline limits; back up: exactly once."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from staypoint.edge.service import OfflineLimitReached
from staypoint.loyalty.program import Outlet
from tests.mqtt_fixtures import MosquittoBroker
from tests.sync.conftest import PIN, Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _two_nodes(fleet: Fleet) -> tuple[str, str]:
    fleet.start_office()
    a = fleet.add_node("sha-lobby-01", backoff_max=1.0, auth_timeout=1.0)
    fleet.add_node("sha-lobby-02", backoff_max=1.0, auth_timeout=1.0)
    fleet.settle()
    m1 = a.service.enrol("Grace Hopper", PIN, now()).number
    m2 = a.service.enrol("Alan Turing", PIN, now()).number
    for i, m in enumerate((m1, m2)):
        a.service.post_stay(m, f"F-{i}", now(), nights=4, revenue={Outlet.ROOM: Decimal("1000")})
    fleet.settle()
    return m1, m2


def test_offline_earning_and_limits_then_exactly_once(
    fresh_mosquitto: MosquittoBroker, fleet_factory: Callable[[MosquittoBroker], Fleet]
) -> None:
    fleet = fleet_factory(fresh_mosquitto)
    m1, m2 = _two_nodes(fleet)
    a, b = fleet.nodes["sha-lobby-01"], fleet.nodes["sha-lobby-02"]
    assert a.points(m1) == b.points(m1) == 10_000

    fresh_mosquitto.stop()
    wait_until(lambda: not a.agent.online.is_set() and not b.agent.online.is_set())  # type: ignore[union-attr]
    # Both nodes keep earning.
    a.service.post_stay(m1, "OFF-A", now(), nights=1, revenue={Outlet.ROOM: Decimal("100")})
    b.service.post_stay(m1, "OFF-B", now(), nights=1, revenue={Outlet.ROOM: Decimal("200")})
    b.service.post_stay(m2, "OFF-B2", now(), nights=2, revenue={Outlet.FNB: Decimal("80")})
    # Offline redemptions within the limits...
    r1 = a.service.redeem(a.proof(m1), "BREAKFAST", now())
    assert r1.auth == "offline" and r1.limits_profile == "standard-2026"
    b.service.redeem(b.proof(m2), "LATE-CO", now())
    b.service.redeem(b.proof(m2), "LATE-CO", now())
    b.service.redeem(b.proof(m2), "LATE-CO", now())
    # ...and past one: a fourth in a row for the same member is refused, in words a guest reads.
    with pytest.raises(OfflineLimitReached, match="at most 3 rewards in a row"):
        b.service.redeem(b.proof(m2), "LATE-CO", now())
    local_a, local_b = a.points(m1), b.points(m1)
    assert local_a == 10_000 + 1000 - 3000 and local_b == 10_000 + 2000

    fresh_mosquitto.start()
    fleet.settle(timeout=40)
    central1 = fleet.ledger.member(m1)
    central2 = fleet.ledger.member(m2)
    assert central1 is not None and central2 is not None
    assert central1["points"] == 10_000 + 1000 + 2000 - 3000
    assert central2["points"] == 10_000 + 400 - 3 * 2500
    for node in (a, b):
        assert node.points(m1) == central1["points"]
        assert node.points(m2) == central2["points"]
    # 2 enrolments + 2 stays + 3 offline stays + 4 redemptions: each applied exactly once.
    assert fleet.ledger.store.event_count() == 11
    assert a.service.status(now())["outbox_depth"] == 0 == b.service.status(now())["outbox_depth"]
    # Contact again: the offline counters start over.
    assert b.service.replica.offline_counters(m2) == (0, 0)


def test_offline_overdraft_at_two_nodes_blocks_the_member_everywhere(
    fresh_mosquitto: MosquittoBroker, fleet_factory: Callable[[MosquittoBroker], Fleet]
) -> None:
    fleet = fleet_factory(fresh_mosquitto)
    m1, _ = _two_nodes(fleet)
    a, b = fleet.nodes["sha-lobby-01"], fleet.nodes["sha-lobby-02"]
    fresh_mosquitto.stop()
    wait_until(lambda: not a.agent.online.is_set() and not b.agent.online.is_set())  # type: ignore[union-attr]
    # 10,000 points, and each node alone sees enough for what it allows.
    a.service.redeem(a.proof(m1), "SPA-60", now())  # 8000
    b.service.redeem(b.proof(m1), "SPA-60", now())  # 8000 more: overdrawn by 6000
    fresh_mosquitto.start()
    fleet.settle(timeout=40)
    central = fleet.ledger.member(m1)
    assert central is not None and central["points"] == -6000 and central["blocked"]
    overdrafts = fleet.ledger.store.open_overdrafts()
    assert [o["member"] for o in overdrafts] == [m1]
    for node in (a, b):
        row = node.service.replica.member(m1)
        assert row is not None and row.blocked and row.points == -6000
    summary = a.service.summary(m1, now())
    assert summary.blocked and summary.redeemable == []
    # A stay that brings the balance back above zero lifts the block fleet-wide.
    a.service.post_stay(m1, "PAYBACK", now(), nights=4, revenue={Outlet.ROOM: Decimal("700")})
    fleet.settle()
    wait_until(lambda: not b.service.replica.member(m1).blocked)  # type: ignore[union-attr]
    assert fleet.ledger.store.open_overdrafts() == []
