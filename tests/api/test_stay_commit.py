"""A stay post's folio row commits with the stay: in the ledger's own transaction, so on
PostgreSQL (side tables in the ledger's database) a posted stay is one durable commit, and a
folio row that cannot be written leaves no stay behind on either store. Posts of different
folios run side by side (on PostgreSQL their side-table units overlap); one folio's wait."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.rows import TupleRow

from staypoint.central.application import stays
from staypoint.central.application.state import SideStore
from tests.api.conftest import Api
from tests.waits import wait_until

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
        spent = []
        for i in range(1, 6):  # the cluster's own work (autovacuum's ANALYZE) takes ids now and then
            start = _next_xid(pg_url)
            r = api.stay(m, f"F-{i}", room="500")  # no Idempotency-Key: nothing else writes
            assert r.json()["result"] == "posted"
            spent.append(_next_xid(pg_url) - start)
        assert min(spent) == 1, spent  # the stay: its events, the member, the folio row
        row = api.services.side.row("SELECT points, bonus FROM folios WHERE folio = ?", ("F-1",))
        assert row == (5000, 500)
    finally:
        api.client.close()
        api.services.side.close()
        api.services.profiles.close()
        api.ledger.store.close()


def test_on_postgresql_a_stay_applied_without_its_folio_row_is_not_earned_twice(
    api_factory: object, pg_url: str
) -> None:
    """A post reads no event ids before applying (its folio row commits with its events, so the
    row says what was applied); a stay applied before that was so, its row missing, is still
    refused as a duplicate, and the post then records the row and answers as if it were new."""
    api: Api = api_factory(pg_url)  # type: ignore[operator]
    try:
        m = api.enrol()
        assert api.stay(m, "F-7", room="500").json()["result"] == "posted"
        earned = api.ledger.member(m)["points"]
        events = api.ledger.store.event_count()
        api.services.side.execute("DELETE FROM folios WHERE folio = ?", ("F-7",))
        r = api.stay(m, "F-7", room="500")
        assert r.status_code == 200 and r.json()["result"] == "posted", r.text
        assert api.ledger.member(m)["points"] == earned  # nothing earned twice
        row = api.services.side.row("SELECT points, bonus FROM folios WHERE folio = ?", ("F-7",))
        assert row == (5000, 500)
        assert api.stay(m, "F-7", room="500").json()["result"] == "unchanged"
        assert api.ledger.store.event_count() == events  # the repeats were refused, not stored
    finally:
        api.client.close()
        api.services.side.close()
        api.services.profiles.close()
        api.ledger.store.close()


def test_concurrent_posts_of_one_folio_earn_once_and_of_others_each_once(api: Api) -> None:
    m = api.enrol()
    barrier = threading.Barrier(8)
    answers: list[tuple[str, str]] = []

    def go(folio: str) -> None:
        barrier.wait()
        body = {
            "folio": folio,
            "member": m,
            "arrival": "2026-11-20",
            "departure": "2026-11-22",
            "revenue": {"room": "100"},
        }
        r = api.client.post("/v1/properties/SHA/stays", json=body, headers=api.h("pms-sha"))
        assert r.status_code == 200, r.text
        answers.append((folio, str(r.json()["result"])))

    folios = ["F-SAME"] * 4 + [f"F-{i}" for i in range(4)]
    threads = [threading.Thread(target=go, args=(f,)) for f in folios]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r for f, r in answers if f == "F-SAME") == ["posted", "unchanged", "unchanged", "unchanged"]
    assert sorted(r for f, r in answers if f != "F-SAME") == ["posted"] * 4
    assert api.ledger.member(m)["points"] == 5 * (100 * 10 + 500)  # five stays, each once
    assert api.ledger.store.alarms() == []


def _blocked_on_locks(conn: psycopg.Connection[TupleRow]) -> int:
    """Sessions of this database blocked in an advisory lock's acquire (the side tables' locks)."""
    row = conn.execute(
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_keyed_units_overlap_for_other_keys_and_wait_for_their_own_and_for_writers(pg_url: str) -> None:
    side = SideStore(pg_url)
    watch = psycopg.connect(pg_url, autocommit=True)
    inside, release = threading.Event(), threading.Event()
    entered: list[str] = []

    def hold() -> None:
        with side.transaction(rows="folio:SHA:1"):
            inside.set()
            release.wait(30)

    def unit(name: str, rows: str | None) -> None:
        if name == "same key, read first":  # BEGIN, the locks and the read sent together
            assert rows is not None
            with side.row_unit(rows, "SELECT count(*) FROM api_keys") as row:
                assert row == (0,)
                entered.append(name)
            return
        with side.transaction(rows=rows):
            entered.append(name)

    try:
        holder = threading.Thread(target=hold)
        holder.start()
        assert inside.wait(30)
        unit("other key", "folio:SHA:2")  # does not wait for the holder
        waiting = [
            threading.Thread(target=unit, args=("same key", "folio:SHA:1")),
            threading.Thread(target=unit, args=("same key, read first", "folio:SHA:1")),
            threading.Thread(target=unit, args=("writer", None)),
        ]
        for t in waiting:
            t.start()
        # All seen blocked in the lock's acquire by the server itself, so a slow thread that has
        # not reached its BEGIN yet cannot pass for one that waits.
        wait_until(lambda: _blocked_on_locks(watch) == 3, 30, "the three units to wait on a lock")
        assert entered == ["other key"]  # the same key (read first or not) and an unkeyed writer wait
        release.set()
        for t in [holder, *waiting]:
            t.join(30)
        assert sorted(entered) == ["other key", "same key", "same key, read first", "writer"]
    finally:
        release.set()
        watch.close()
        side.close()
