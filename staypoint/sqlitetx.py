"""One SQLite write transaction, the same way everywhere.

``BEGIN IMMEDIATE`` takes the write lock at the start, so two writers queue on the busy
timeout instead of one failing half-way; the block commits when it ends normally and rolls
back on any exception. Used by the node replica and by head office's SQLite stores (a
neutral module: it imports nothing of Staypoint's, so any layer may use it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block as one write transaction on ``conn`` (opened with ``isolation_level=None``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
