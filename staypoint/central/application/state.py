"""Head office's own bookkeeping beside the ledger: API keys, member sign-in state, PMS folios,
claims, transfers, partner accounts and settlements, feedback follow-up, console staff,
programme schedule.

None of this travels to a node, and none of it is a balance: balances change only by
events through the ledger. It lives in SQLite (a file of its own, so its writes never wait
on the ledger's writer) or in the ledger's PostgreSQL database, with one set of SQL
written in the common dialect (``?`` placeholders are turned into ``%s`` for psycopg).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from staypoint.central.store import LedgerStore

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL, properties TEXT NOT NULL, created TEXT NOT NULL, revoked TEXT)""",
    """CREATE TABLE IF NOT EXISTS member_auth (member TEXT PRIMARY KEY, failures INTEGER NOT NULL,
        locked_until TEXT)""",
    """CREATE TABLE IF NOT EXISTS folios (property TEXT NOT NULL, folio TEXT NOT NULL, member TEXT,
        event_id TEXT, bonus_event TEXT, digest TEXT NOT NULL, points INTEGER NOT NULL,
        bonus INTEGER NOT NULL,
        nights INTEGER NOT NULL, channel TEXT NOT NULL, arrival TEXT NOT NULL, departure TEXT NOT NULL,
        revenue TEXT NOT NULL, claimed_by TEXT, posted_at TEXT NOT NULL, PRIMARY KEY (property, folio))""",
    """CREATE TABLE IF NOT EXISTS transfers (id TEXT PRIMARY KEY, member TEXT NOT NULL, day TEXT NOT NULL,
        partner TEXT NOT NULL, points INTEGER NOT NULL, units INTEGER NOT NULL, at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS transfers_member_day ON transfers (member, day)",
    # Partner transfers both ways (central/partners.py, docs/partners.md): the member's account
    # at each partner, each outbound transfer's settlement (batch, confirmed/rejected), the
    # settlement batches, and inbound credits keyed by the partner's own reference.
    """CREATE TABLE IF NOT EXISTS partner_accounts (member TEXT NOT NULL, partner TEXT NOT NULL,
        account TEXT NOT NULL, linked_at TEXT NOT NULL, linked_by TEXT NOT NULL,
        PRIMARY KEY (member, partner), UNIQUE (partner, account))""",
    """CREATE TABLE IF NOT EXISTS partner_transfers (transfer TEXT PRIMARY KEY, partner TEXT NOT NULL,
        member TEXT NOT NULL, account TEXT NOT NULL, points INTEGER NOT NULL, units INTEGER NOT NULL,
        day TEXT NOT NULL, at TEXT NOT NULL, batch TEXT, status TEXT NOT NULL, reason TEXT,
        decided_at TEXT, refund_event TEXT)""",
    "CREATE INDEX IF NOT EXISTS partner_transfers_day ON partner_transfers (partner, day)",
    """CREATE TABLE IF NOT EXISTS partner_batches (batch TEXT PRIMARY KEY, partner TEXT NOT NULL,
        day TEXT NOT NULL, transfers INTEGER NOT NULL, points BIGINT NOT NULL, units BIGINT NOT NULL,
        file TEXT NOT NULL, created TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS partner_credits (partner TEXT NOT NULL, reference TEXT NOT NULL,
        member TEXT NOT NULL, account TEXT NOT NULL, points INTEGER NOT NULL, event_id TEXT NOT NULL,
        file TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (partner, reference))""",
    # The feedback loop (central/feedback.py): each feedback.recorded event, with its follow-up.
    """CREATE TABLE IF NOT EXISTS feedback (id TEXT PRIMARY KEY, member TEXT, node TEXT NOT NULL,
        property TEXT NOT NULL, tier TEXT NOT NULL, tier_rank INTEGER NOT NULL, stars INTEGER NOT NULL,
        tags TEXT NOT NULL, comment TEXT NOT NULL, at TEXT NOT NULL, status TEXT NOT NULL,
        status_by TEXT, status_at TEXT, note TEXT, alerted TEXT)""",
    "CREATE INDEX IF NOT EXISTS feedback_rank ON feedback (stars, tier_rank, at)",
    "CREATE TABLE IF NOT EXISTS side_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, member TEXT NOT NULL, source TEXT NOT NULL,
        folio TEXT NOT NULL, property TEXT NOT NULL, arrival TEXT NOT NULL, departure TEXT NOT NULL,
        note TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, clerk TEXT, points INTEGER, event_id TEXT,
        created TEXT NOT NULL, decided TEXT, notify TEXT)""",
    "CREATE INDEX IF NOT EXISTS claims_status ON claims (status, created)",
    "CREATE INDEX IF NOT EXISTS claims_folio ON claims (folio)",
    """CREATE TABLE IF NOT EXISTS staff (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
        pw_hash TEXT NOT NULL, failures INTEGER NOT NULL DEFAULT 0, locked_until TEXT)""",
    """CREATE TABLE IF NOT EXISTS program_schedule (version INTEGER PRIMARY KEY, document TEXT NOT NULL,
        effective TEXT NOT NULL, status TEXT NOT NULL, by_staff TEXT NOT NULL, created TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position BIGINT NOT NULL)",
)


SIDE_LOCK = 5350  # PostgreSQL: the side tables' writers' advisory lock
ROW_LOCKS = 5351  # (ROW_LOCKS, key): a unit's own rows (``transaction(rows=...)``), under SIDE_LOCK shared


def _row_key(rows: str) -> int:
    """A signed 32-bit lock key for ``rows``: the same in every process (not ``hash``)."""
    return int.from_bytes(hashlib.blake2b(rows.encode(), digest_size=4).digest(), "big", signed=True)


class SideStore:
    """A small SQL store with one dialect for SQLite and PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith(("postgresql://", "postgres://"))
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []  # every read connection, to close
        self._idle_readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        if self.pg:
            from psycopg_pool import ConnectionPool

            self.pool: Any = ConnectionPool(
                url, min_size=1, max_size=8, kwargs={"autocommit": True}, open=True
            )
            self.conn: Any = None
        else:
            path = url.removeprefix("sqlite://")
            self.conn = sqlite3.connect(Path(path), isolation_level=None, check_same_thread=False, timeout=30)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
        with self.transaction():
            for stmt in SCHEMA:
                self.execute(stmt)

    def close(self) -> None:
        if self.pg:
            self.pool.close()
        else:
            for reader in self._readers:
                reader.close()
            self.conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    @contextmanager
    def transaction(self, *, rows: str | None = None) -> Iterator[None]:
        """One atomic unit; re-entrant on a thread (inside another, part of it).

        ``rows``: this unit reads and writes only the rows of that one key (a folio's,
        ``"SHA:F-1"``). On PostgreSQL it then takes the writers' lock shared and the key's own
        lock, so units of different keys run at once, one key's one after another, and every
        other unit still waits for them all and they for it. On SQLite: the one writer, as ever.
        """
        with self._unit(rows, None):
            yield

    @contextmanager
    def row_unit(
        self, rows: str, sql: str, args: tuple[Any, ...] | list[Any] = ()
    ) -> Iterator[tuple[Any, ...] | None]:
        """``transaction(rows=rows)`` that begins by reading that key's row (``sql``): it yields
        the row. On PostgreSQL BEGIN, the locks and the read go as one query, one round trip,
        where the unit and then its read took two (a folio post, on the API's hot path)."""
        with self._unit(rows, (sql, args)) as row:
            yield row

    @contextmanager
    def _unit(
        self, rows: str | None, read: tuple[str, tuple[Any, ...] | list[Any]] | None
    ) -> Iterator[tuple[Any, ...] | None]:
        if getattr(self._local, "conn", None) is not None:
            yield None if read is None else self.row(*read)
            return
        if not self.pg:
            with self._lock:
                self.conn.execute("BEGIN IMMEDIATE")
                self._local.conn = self.conn
                try:
                    yield None if read is None else self.row(*read)
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                finally:
                    self._local.conn = None
                self.conn.execute("COMMIT")
            return
        # Serialise writers like the SQLite side does: the side tables are small and their
        # invariants (daily caps, counters) are read-then-write. BEGIN and the lock go as one
        # query (no parameters: the simple protocol takes several statements), one round trip;
        # COMMIT or ROLLBACK at the end. A unit of one key's rows takes the writers' lock shared
        # first, always (else two units and a writer could deadlock), then the key's.
        import psycopg
        from psycopg.pq import TransactionStatus

        with self.pool.connection() as conn:
            try:
                begin = (
                    f"BEGIN; SELECT pg_advisory_xact_lock({SIDE_LOCK})"
                    if rows is None
                    else f"BEGIN; SELECT pg_advisory_xact_lock_shared({SIDE_LOCK}); "
                    f"SELECT pg_advisory_xact_lock({ROW_LOCKS}, {_row_key(rows)})"
                )
                first: tuple[Any, ...] | None = None
                if read is None:
                    conn.execute(begin)
                else:
                    # The read joins the same query, its values quoted by psycopg on this side
                    # (the simple protocol takes no parameters): its answer comes after the locks'.
                    shown = psycopg.ClientCursor(conn).mogrify(self._sql(read[0]), read[1])
                    cur = conn.execute(f"{begin}; {shown}")
                    while cur.nextset():
                        pass
                    found = cur.fetchone()
                    first = None if found is None else tuple(found)
                self._local.conn = conn
                try:
                    yield first
                finally:
                    self._local.conn = None
                conn.execute("COMMIT")
            except BaseException:
                if not conn.broken and conn.pgconn.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(Exception):
                        conn.execute("ROLLBACK")
                raise

    @contextmanager
    def joined(self, ledger_store: LedgerStore) -> Iterator[None]:
        """This thread's statements go into the ledger transaction open on it, when these tables
        live in the ledger's own PostgreSQL database: they commit with the ledger's writes, in
        its one commit (a stay's folio row with the stay: ``Ledger.ingest(then=)``). There they
        are pipelined with the ledger's statements: a write's error comes out at the commit, and
        ``execute`` cannot count its rows (-1). Otherwise (SQLite, another database, no ledger
        transaction open) nothing changes: they run where they would have (this store's open
        transaction, if any)."""
        conn = self._ledger_connection(ledger_store)
        if conn is None:
            yield
            return
        outer = getattr(self._local, "conn", None)
        self._local.conn = conn
        try:
            yield
        finally:
            self._local.conn = outer

    def in_ledger_database(self, ledger_store: LedgerStore) -> bool:
        """These tables live in the ledger's own PostgreSQL database (``joined`` can join)."""
        if not self.pg:
            return False
        from staypoint.central.store_pg import PgLedgerStore

        return isinstance(ledger_store, PgLedgerStore) and _same_database(ledger_store.url, self.url)

    def _ledger_connection(self, ledger_store: LedgerStore) -> Any:
        if not self.in_ledger_database(ledger_store):
            return None
        from staypoint.central.store_pg import PgLedgerStore

        assert isinstance(ledger_store, PgLedgerStore)
        return ledger_store.transaction_connection()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
        elif self.pg:
            with self.pool.connection() as fresh:
                yield fresh
        else:
            with self._lock:
                yield self.conn

    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        with self._cursor() as conn:
            cur = conn.execute(self._sql(sql), args)
            return int(cur.rowcount or 0)

    def all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._cursor() as conn:
            return list(conn.execute(self._sql(sql), args).fetchall())

    def row(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> tuple[Any, ...] | None:
        with self._cursor() as conn:
            r = conn.execute(self._sql(sql), args).fetchone()
            return None if r is None else tuple(r)

    def read_row(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> tuple[Any, ...] | None:
        """``row`` for a read on the hot path (the API key of every request): on SQLite through one
        of a few read connections (WAL readers wait for no writer, and not for this store's
        lock, which a write transaction holds across its commit; as many as reads run at once,
        kept for the next); on PostgreSQL the pool. Inside a transaction on this thread, that
        transaction's connection (it sees its writes)."""
        if self.pg or getattr(self._local, "conn", None) is not None:
            return self.row(sql, args)
        try:
            reader = self._idle_readers.get_nowait()
        except queue.Empty:
            path = self.url.removeprefix("sqlite://")
            reader = sqlite3.connect(Path(path), isolation_level=None, check_same_thread=False, timeout=30)
            with self._lock:
                self._readers.append(reader)
        try:
            r = reader.execute(sql, args).fetchone()
        finally:
            self._idle_readers.put(reader)
        return None if r is None else tuple(r)

    def one(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> Any:
        r = self.row(sql, args)
        return None if r is None else r[0]

    def next_counter(self, name: str, start: int = 0, *, count: int = 1) -> int:
        """Hand out ``start``, ``start + 1``, ... for ``name``, atomically; ``count`` takes that many
        at once (the first is returned: a member import reserves a batch's numbers in one go)."""
        with self.transaction():
            self.execute(
                "INSERT INTO side_counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, start),
            )
            value = int(self.one("SELECT value FROM side_counters WHERE name = ?", (name,)))
            self.execute("UPDATE side_counters SET value = value + ? WHERE name = ?", (count, name))
        return value

    def cursor_position(self, name: str) -> int:
        value = self.one("SELECT position FROM cursors WHERE name = ?", (name,))
        return 0 if value is None else int(value)

    def set_cursor(self, name: str, position: int) -> None:
        self.execute(
            "INSERT INTO cursors (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )


@functools.lru_cache(maxsize=16)
def _same_database(a: str, b: str) -> bool:
    """Two PostgreSQL URLs that name one database (the same connection parameters, in any order)."""
    from psycopg.conninfo import conninfo_to_dict

    return a == b or conninfo_to_dict(a) == conninfo_to_dict(b)
