"""Console fixtures: a desk over a SQLite ledger with a few members, a claim and staff."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from staypoint.central.claims import ClaimsQueue
from staypoint.central.console.desk import Desk
from tests.api.conftest import NOW, Api, Clock, build_api

PASSWORD = "correct horse"


@pytest.fixture
def desk_api(tmp_path: Path) -> Iterator[tuple[Desk, Api]]:
    api = build_api(f"sqlite://{tmp_path / 'ledger.db'}", tmp_path, Clock())
    desk = Desk(api.services, ClaimsQueue(api.services))
    desk.add_staff("clerk-1", "Clara Clerk", "clerk", PASSWORD)
    desk.add_staff("admin-1", "Ada Admin", "administrator", PASSWORD)
    desk.add_staff("mkt-1", "Mia Marketing", "marketing", PASSWORD)
    ada = api.enrol("Ada Lovelace", email="ada@example.com")
    api.stay(ada, "F-1", room="300")
    token = api.login(ada)
    api.client.post(
        "/v1/me/claims",
        json={"folio": "F-MISSING", "property": "SHA", "arrival": "2026-11-01", "departure": "2026-11-02"},
        headers=api.h(token=token),
    )
    yield desk, api
    api.client.close()


@pytest.fixture(params=["sqlite", "pg"])
def any_desk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Desk, Api]]:
    """The desk over the API's stores on either ledger (SQLite, PostgreSQL: the test module
    loads ``tests.pg_fixtures``): an administrator (admin-1), a marketer (mkt-1) and Ada,
    enrolled without marketing consent."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # PostgreSQL: the report cache
    url = str(request.getfixturevalue("pg_url")) if request.param == "pg" else f"sqlite://{tmp_path / 'l.db'}"
    api = build_api(url, tmp_path, Clock())
    desk = Desk(api.services, ClaimsQueue(api.services))
    desk.add_staff("admin-1", "Ada Admin", "administrator", PASSWORD)
    desk.add_staff("mkt-1", "Mia Marketing", "marketing", PASSWORD)
    api.enrol("Ada Lovelace", email="ada@example.com")
    yield desk, api
    api.client.close()
    desk.close()


__all__ = ["NOW", "PASSWORD"]
