"""The ledger's unit tests (tests/sync/test_ledger_unit.py) run again on PostgreSQL, plus the
PostgreSQL store's own promises: migrations recorded, gapless versions, snapshot reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store_pg import PgLedgerStore
from staypoint.loyalty.program import default_program_text
from tests.sync import test_ledger_unit as unit

pytest_plugins = ["tests.pg_fixtures"]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
UNIT_TESTS = [
    unit.test_ingest_is_idempotent_stops_at_gaps_and_rejects_conflicts,
    unit.test_a_hold_sets_points_aside_until_it_expires,
    unit.test_stay_points_are_rechecked_with_the_loyalty_code,
    unit.test_shown_balance_never_double_counts_whatever_the_order,
    unit.test_restore_starts_a_new_epoch_and_jobs_downgrade_one_tier,
]


@pytest.mark.parametrize("test", UNIT_TESTS, ids=lambda t: t.__name__)
def test_ledger_unit_on_postgresql(
    test: Callable[[Path], None], pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores: list[PgLedgerStore] = []

    def pg_store(path: Any, **kw: Any) -> PgLedgerStore:
        stores.append(PgLedgerStore(pg_url))
        return stores[-1]

    monkeypatch.setattr(unit, "SqliteLedgerStore", pg_store)
    try:
        test(tmp_path)
    finally:
        for s in stores:
            s.close()
    assert stores, "the unit test did not build its store through SqliteLedgerStore"


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
