"""The PostgreSQL store's own promises: migrations recorded, gapless versions, snapshot reads.

The ledger's unit tests run on PostgreSQL from tests/sync/test_ledger_unit.py itself, every
one of them, through the ``store`` / ``store_factory`` fixtures parametrised over both stores.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from staypoint.central.ledger import Ledger
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
