"""PgLedgerStore.retrying on a real server: a broken connection is retried, other errors are not."""

from __future__ import annotations

import logging

import psycopg
import pytest

from staypoint.central.store import StoreUnavailable
from staypoint.central.store_pg import PgLedgerStore

pytest_plugins = ["tests.pg_fixtures"]


def test_a_connection_killed_mid_transaction_is_retried_on_a_fresh_one(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PgLedgerStore(pg_url, min_size=2, max_size=4)
    tries: list[int] = []

    def work() -> int:
        with store.transaction():
            store.set_high_water("n1", 1, 7)
            if not tries:
                tries.append(1)
                with psycopg.connect(pg_url, autocommit=True) as admin:  # the server drops us
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                store.high_water("n1", 1)  # on the killed connection: OperationalError
            return store.high_water("n1", 1)

    try:
        with caplog.at_level(logging.WARNING, logger="staypoint.central.store"):
            assert store.retrying(work, "test") == 7
        assert store.streams() == [("n1", 1, 7)]  # applied once, by the second try
        lines = [r.getMessage() for r in caplog.records if "ledger failover:" in r.getMessage()]
        assert len(lines) == 1 and "test resumed" in lines[0], lines
    finally:
        store.close()


def test_other_errors_pass_at_once_and_a_store_that_stays_down_gives_up(pg_url: str) -> None:
    store = PgLedgerStore(pg_url, min_size=1, max_size=2, failover_seconds=0.5)
    calls: list[int] = []

    def bug() -> None:
        calls.append(1)
        raise ValueError("a bug, not a failover")

    def down() -> None:
        calls.append(1)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    try:
        with pytest.raises(ValueError):
            store.retrying(bug)
        assert len(calls) == 1
        with pytest.raises(StoreUnavailable):
            store.retrying(down)
        assert len(calls) > 2
        assert store.event_count() == 0  # the store still works afterwards
    finally:
        store.close()
