"""API fixtures: the app over a ledger on SQLite or PostgreSQL (parametrised), a test client,
API keys and a fixed, movable clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from staypoint.central.api.app import make_api
from staypoint.central.application.services import Services
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.pg import open_ledger_store
from staypoint.central.profiles import ProfileStore
from staypoint.loyalty.program import default_program_text

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PIN = "2580"

ONLINE_RULES = """
[[rates]]
code = "MEMBER-RATE"
name = "Member rate"
discount = "0.10"
by_tier = { GOLD = "0.15", PLATINUM = "0.20" }

[[rates]]
code = "WINTER-MEMBERS"
name = "Winter members' escape"
discount = "0.25"
stay_from = "2027-01-05"
stay_until = "2027-02-28"
min_nights = 2

[[vip_offers]]
code = "NYE-GALA"
name = "New Year's Eve gala package"
tiers = ["MEMBER", "SILVER", "GOLD", "PLATINUM"]
public_from = "2026-12-01"
ends = "2026-12-31"
early_tiers = ["PLATINUM"]
early_days = 7

[[last_minute]]
code = "SHA-SUITE-LM"
name = "Last-minute suite"
property = "SHA"
room_type = "STE"
date = "2026-11-25"
rooms = 2
days_before = 3
tiers = ["GOLD", "PLATINUM"]
price = "180.00"

[channels]
direct = ["direct", "web"]
direct_bonus = 500
no_points = ["ota"]

[[partners]]
code = "SKYMILES"
name = "SkyMiles"
ratio = "2"
min_points = 1000
daily_cap = 5000
"""


def program_text() -> str:
    return default_program_text() + ONLINE_RULES


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Api:
    client: TestClient
    services: Services
    ledger: Ledger
    clock: Clock
    keys: dict[str, str] = field(default_factory=dict)

    def h(self, key: str = "web", token: str | None = None) -> dict[str, str]:
        headers = {"X-API-Key": self.keys[key]}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def enrol(self, name: str = "Ada Lovelace", email: str | None = None, **kw: Any) -> str:
        body = {"name": name, "pin": PIN, **({"email": email} if email else {}), **kw}
        r = self.client.post("/v1/members", json=body, headers=self.h("web"))
        assert r.status_code == 201, r.text
        return str(r.json()["member"])

    def login(self, member: str, pin: str = PIN) -> str:
        r = self.client.post("/v1/members/login", json={"login": member, "pin": pin}, headers=self.h("web"))
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def stay(self, member: str | None, folio: str, room: str = "500", prop: str = "SHA", **kw: Any) -> Any:
        body = {
            "folio": folio,
            "member": member,
            "arrival": "2026-11-20",
            "departure": "2026-11-22",
            "revenue": {"room": room},
            **kw,
        }
        return self.client.post(f"/v1/properties/{prop}/stays", json=body, headers=self.h("pms-sha"))


@pytest.fixture(params=["sqlite", "pg"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "pg":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite://{tmp_path / 'ledger.db'}"


def build_api(store_url: str, tmp_path: Path, clock: Clock) -> Api:
    store = open_ledger_store(store_url)
    ledger = Ledger(store)
    ledger.publish_program(program_text(), NOW)
    side_url = store_url if store_url.startswith("postgresql") else f"sqlite://{tmp_path / 'side.db'}"
    side = SideStore(side_url)
    profiles = ProfileStore(tmp_path / "profiles.db")
    app = make_api(ledger, profiles, side, token_key=b"k" * 32, clock=clock)
    services: Services = app.state.services
    api = Api(TestClient(app, raise_server_exceptions=False), services, ledger, clock)
    api.keys["web"] = services.create_key("website", ["member", "enrol", "rates", "claims"], ["*"], NOW)
    api.keys["pms-sha"] = services.create_key("SHA PMS", ["stays"], ["SHA"], NOW)
    api.keys["rates-only"] = services.create_key("meta", ["rates"], ["PEK"], NOW)
    return api


@pytest.fixture
def api(store_url: str, tmp_path: Path) -> Iterator[Api]:
    a = build_api(store_url, tmp_path, Clock())
    yield a
    a.client.close()
    a.services.side.close()
    a.services.profiles.close()
    a.ledger.store.close()


@pytest.fixture
def api_factory(tmp_path: Path) -> Callable[[str], Api]:
    return lambda url: build_api(url, tmp_path, Clock())
