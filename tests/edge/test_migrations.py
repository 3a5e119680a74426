"""Every migration path ends in the same schema, and data written at any version survives."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from staypoint.edge.replica import ReplicaError, connect, migrate
from staypoint.edge.schema import LATEST, MIGRATIONS


def schema_of(path: Path) -> dict[str, str]:
    """Every table, index, view and trigger by name, with the SQL that made it."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    return dict(rows)


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))


@pytest.mark.parametrize("start", range(0, LATEST + 1))
def test_every_path_ends_in_the_same_schema(tmp_path: Path, start: int) -> None:
    fresh = tmp_path / "fresh.db"
    migrate(connect(fresh))
    old = tmp_path / f"from-{start}.db"
    conn = connect(old)
    migrate(conn, target=start)
    if start >= 1:
        conn.execute("INSERT INTO node_meta VALUES ('node_id', 'old-node')")
        conn.execute(
            "INSERT INTO members (number, name, tier, points, window_start, pin_hash, enrolled_at, "
            "home_property) VALUES ('0001000009', 'Old M.', 'GOLD', 1234, '2026-01-01', 'x', 't', 'P')"
        )
    assert migrate(conn) == LATEST
    assert schema_of(old) == schema_of(fresh)
    if start >= 1:
        assert conn.execute("SELECT points FROM members").fetchone() == (1234,)
    assert conn.execute("PRAGMA user_version").fetchone() == (LATEST,)


def test_a_failing_migration_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from staypoint.edge import replica, schema

    db = tmp_path / "n.db"
    conn = connect(db)
    migrate(conn, target=1)
    broken = schema.Migration(2, "broken", ("CREATE TABLE stays (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(replica, "MIGRATIONS", (MIGRATIONS[0], broken))
    with pytest.raises(sqlite3.OperationalError):
        replica.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'stays'").fetchone() == (0,)


def test_a_newer_replica_or_a_non_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    conn = connect(db)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(ReplicaError, match="newer than this software"):
        migrate(conn)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ReplicaError, match="not a usable SQLite file"):
        connect(junk)
