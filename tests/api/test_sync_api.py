"""End to end over a real Mosquitto, on SQLite and on PostgreSQL: a stay the property system
posts over the API shows on a node's kiosk after the next sync, and a redemption at the
kiosk shows over the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import PIN, Api, Clock, build_api
from tests.mqtt_fixtures import MosquittoBroker
from tests.sync.conftest import Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures", "tests.pg_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_api_stay_reaches_the_kiosk_and_kiosk_redemption_reaches_the_api(
    fresh_mosquitto: MosquittoBroker,
    store_url: str,
    tmp_path: Path,
) -> None:
    clock = Clock(now())
    api: Api = build_api(store_url, tmp_path, clock)
    fleet = Fleet(fresh_mosquitto, tmp_path, api.ledger)
    try:
        fleet.start_office()
        node = fleet.add_node("sha-lobby-01")
        fleet.settle()
        member = api.enrol("Ada Lovelace")
        day = clock.now.date().isoformat()
        r = api.client.post(
            "/v1/properties/SHA/stays",
            json={
                "folio": "PMS-1",
                "member": member,
                "arrival": day,
                "departure": day,
                "revenue": {"room": "600"},
            },
            headers=api.h("pms-sha"),
        )
        assert r.status_code == 200, r.text
        fleet.settle()
        wait_until(lambda: node.service.replica.member(member) is not None, message="the member on the node")
        wait_until(lambda: node.points(member) == 6500, message="the API's stay on the kiosk")
        kiosk = node.service.summary(member, now())
        assert (kiosk.points, kiosk.tier) == (6500, "MEMBER")

        red = node.service.redeem(node.service.verify_pin(member, PIN, now()), "LATE-CO", now())
        assert red.auth == "online"
        fleet.settle()
        token = api.login(member)
        d = api.client.get("/v1/me", headers=api.h(token=token)).json()
        assert d["points"] == 4000 == node.points(member)
        assert d["vouchers"][0]["reward"] == "LATE-CO"
        assert node.service.summary(member, now()).points == d["points"]  # one figure everywhere
    finally:
        fleet.close()
        api.client.close()
        api.services.side.close()
