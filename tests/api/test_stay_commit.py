"""A stay post's folio row commits with the stay: in the ledger's own transaction, so on
PostgreSQL (side tables in the ledger's database) a posted stay is one durable commit, and a
folio row that cannot be written leaves no stay behind on either store."""

from __future__ import annotations

import psycopg
import pytest

from staypoint.central.application import stays
from tests.api.conftest import Api

pytest_plugins = ["tests.pg_fixtures"]


def test_a_folio_row_that_cannot_be_written_leaves_no_stay(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    m = api.enrol()
    before = api.ledger.member(m)
    events = api.ledger.store.event_count()
    monkeypatch.setattr(stays, "FOLIO_UPSERT", "INSERT INTO no_such_table (x) VALUES (?)")
    r = api.stay(m, "F-300", room="500")
    assert r.status_code == 500
    assert api.ledger.member(m) == before and api.ledger.store.event_count() == events  # rolled back with it
    monkeypatch.undo()
    assert api.stay(m, "F-300", room="500").json()["result"] == "posted"  # the retry posts, once
    assert api.ledger.member(m)["points"] == 5500
    assert api.stay(m, "F-300", room="500").json()["result"] == "unchanged"


def _next_xid(url: str) -> int:
    """The next transaction id PostgreSQL will hand out: one per transaction that writes."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
        assert row is not None
        return int(row[0])


def test_on_postgresql_a_stay_post_writes_in_one_transaction(api_factory: object, pg_url: str) -> None:
    api: Api = api_factory(pg_url)  # type: ignore[operator]
    try:
        m = api.enrol()
        api.stay(m, "F-0")  # the programme read, pools filled
        start = _next_xid(pg_url)
        r = api.stay(m, "F-1", room="500")  # no Idempotency-Key: nothing else writes
        assert r.json()["result"] == "posted"
        assert _next_xid(pg_url) - start == 1  # the stay: its events, the member, the folio row
        row = api.services.side.row("SELECT points, bonus FROM folios WHERE folio = ?", ("F-1",))
        assert row == (5000, 500)
    finally:
        api.client.close()
        api.services.side.close()
        api.services.profiles.close()
        api.ledger.store.close()
