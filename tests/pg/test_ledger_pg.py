"""The PostgreSQL store's own promises: migrations recorded, gapless versions, snapshot reads.

The ledger's unit tests run on PostgreSQL from tests/sync/test_ledger_unit.py itself, every
one of them, through the ``store`` / ``store_factory`` fixtures parametrised over both stores.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store import StoredEvent
from staypoint.central.store_pg import PgLedgerStore
from staypoint.loyalty.program import default_program_text

pytest_plugins = ["tests.pg_fixtures"]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_migrations_versions_and_snapshot(pg_url: str) -> None:
    store = PgLedgerStore(pg_url)
    try:
        assert store.migrate() == []  # already applied on open, recorded
        ledger = Ledger(store)
        ledger.publish_program(default_program_text(), NOW)
        ledger.import_members(
            [{"number": f"90000{i:04d}0", "points": i, "tier": "MEMBER"} for i in range(50)]
        )
        assert store.latest_version() == 51
        with pytest.raises(RuntimeError), store.transaction():
            store.append_change("member", "x", {})
            raise RuntimeError("rolled back")
        assert store.latest_version() == 51  # no gap: the rollback took the version back
        version, rows = store.snapshot()
        store.put_member({"number": "9000000010", "points": 999, "folded": {}, "cards": []})
        got = list(rows)
        assert version == 51 and len([c for c in got if c.kind == "member"]) == 50
        changes = store.changes_since(40, 100)
        assert changes is not None and [c.version for c in changes] == list(range(41, 52))
    finally:
        store.close()


def test_a_failed_write_raises_its_own_error_and_leaves_nothing(pg_url: str) -> None:
    """The transaction is pipelined (a write does not wait for its answer): a write's error
    comes out at the next read or at the commit, as the same exception, and rolls all back."""
    store = PgLedgerStore(pg_url, min_size=1, max_size=1)  # one connection: each transaction reuses it
    event = StoredEvent("e1", "n1", 1, 1, "{}")
    try:
        with store.transaction():
            store.insert_event(event, "x", None, "t")
        with pytest.raises(psycopg.errors.UniqueViolation), store.transaction():
            store.set_high_water("n1", 1, 5)
            store.insert_event(event, "x", None, "t")  # its error comes with the COMMIT's answer
        with pytest.raises(psycopg.errors.UniqueViolation), store.transaction():
            store.set_high_water("n1", 1, 6)
            store.insert_event(event, "x", None, "t")
            store.high_water("n1", 1)  # ...or at the next read
        assert store.streams() == [] and store.event_count() == 1
        with store.transaction():  # the connection is clean for the next one
            store.set_high_water("n1", 1, 2)
            assert store.high_water("n1", 1) == 2  # a read sees the transaction's own write
        assert store.streams() == [("n1", 1, 2)]
    finally:
        store.close()
