"""The ledger store on PostgreSQL (psycopg 3 + a connection pool); see ``store.LedgerStore``.

Same tables and meaning as ``store_sqlite.py``; documents are JSONB. Choices, and why:
- **One writer.** Every ``transaction()`` takes ``pg_advisory_xact_lock`` first, so writers
  queue exactly like SQLite's single writer, across processes too. The change log's
  ``version`` comes from a one-row counter updated inside that transaction: gapless,
  because a rollback takes the increment back with it.
- **Except ingest groups, which overlap** (``ingest_transaction``; several ``central serve``
  processes, docs/scale.md). One takes the writer's lock *shared* (so no other writer runs
  beside it, and the digest's exclusive hold still stops every commit), then a transaction
  lock per node of the group (its streams' high-waters) and per member number it enrols, in
  one sorted order, then reads its members ``FOR UPDATE`` (in number order). So two groups
  that share no node and no member read and fold at the same time, and two that share one go
  one after the other, as before. Their writes do not overlap: the first write of a group
  takes ``ORDER_LOCK``, held to its commit, so ``events.pos``, the change log's versions and
  every other serial still commit in the order they were handed out (a copy up to the last
  ``pos`` seen misses nothing). Locks are always taken in that order (writer's, keys,
  members, order), so groups cannot deadlock one another.
- **Reads never wait.** Reads outside a transaction run on pooled autocommit connections;
  ``snapshot()`` uses its own REPEATABLE READ connection and a server-side cursor, so a
  million members stream without holding the writer up.
- **Migrations** are numbered and recorded in ``schema_migrations``, each in one transaction.
- ``transaction()`` is re-entrant on one thread: a caller may group several ledger calls
  (an API write and its bookkeeping) into one atomic unit.
- **Failover.** The URL may name several hosts with ``target_session_attrs=read-write``
  (``postgresql://sp@db1:5432,db2:5432/staypoint?target_session_attrs=read-write``): libpq
  connects to whichever takes writes. ``retrying(work)`` runs a whole transaction again when
  its connection broke (the primary died, was demoted, or is promoting): broken pooled
  connections are dropped, fresh ones find the new primary, with a bounded backoff
  (``failover_seconds``). One log line per failover, when writing resumes. A transaction whose
  COMMIT's outcome is unknown is simply applied again: the caller's work must be idempotent
  (ingest is: the per-stream high-water skips what was committed). TCP keepalives and a
  connect timeout are added to the URL's options when it sets none, so a primary whose
  machine vanished is noticed in seconds, not at the kernel's retransmission timeout.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import astuple
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from staypoint.central.store import (
    HOLD_ARITY,
    HOLD_COLUMNS,
    REVIEW_COLUMNS,
    Change,
    EventRow,
    GroupReads,
    HoldRecord,
    Mark,
    StayRow,
    StoredEvent,
    StoreUnavailable,
    T,
)
from staypoint.loyalty.replicas import Hold

log = logging.getLogger("staypoint.central.store")

# Every JSON column through orjson, in every connection of the process (psycopg's adapters are
# global): a bootstrap decodes each member document it sends, a stay encodes its member twice
# (the row and the change), and the standard library's json costs about three times as much.
set_json_loads(orjson.loads)
set_json_dumps(lambda value: orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))

WRITER_LOCK = 0x5350_4C44  # "SPLD": the ledger's single-writer advisory lock
# Ingest groups (``ingest_transaction``): the writer's lock shared, then these two.
INGEST_KEYS = 0x5350_4C4B  # "SPLK": (INGEST_KEYS, key) transaction locks, a node's or an enrolled number's
ORDER_LOCK = 0x5350_4C4F  # "SPLO": taken by an ingest group's first write, held to its commit
INGEST_KEYS_MAX = 64  # a group needing more (one enrolling many): the writer's lock alone, exclusive


def _ingest_key(kind: str, name: str) -> int:
    """A signed 32-bit lock key for ``kind:name``: the same in every process (not ``hash``)."""
    return int.from_bytes(
        hashlib.blake2b(f"{kind}:{name}".encode(), digest_size=4).digest(), "big", signed=True
    )


# What a failover looks like from here: the connection broke or was refused (OperationalError:
# server closed the connection, admin shutdown, "the database system is starting up"), it is
# closed (InterfaceError), it landed on a server that is now read-only (a demoted primary), or
# no pooled connection could be had while the pool reconnects (PoolTimeout), or the pool was
# replaced after a failover while this thread held the old one (PoolClosed).
TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
    PoolTimeout,
    PoolClosed,
)
# Options added to the URL's when it names none of them: a dead machine is noticed in
# seconds (keepalives, tcp_user_timeout) and a host that does not answer is skipped.
LIVENESS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def apply_migrations(
    conn: psycopg.Connection[Any], table: str, lock: int, migrations: tuple[tuple[int, tuple[str, ...]], ...]
) -> list[int]:
    """Apply the ``migrations`` not yet recorded in ``table`` (one transaction, under the advisory
    lock ``lock`` so two processes starting at once do not both apply them); the versions applied.
    For the tables that live beside the ledger in its database (profiles, campaigns)."""
    done: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, at TIMESTAMPTZ "
            "NOT NULL DEFAULT now())"
        )
        seen = {int(v) for (v,) in conn.execute(f"SELECT version FROM {table}")}
        for version, stmts in migrations:
            if version in seen:
                continue
            for stmt in stmts:
                conn.execute(stmt)
            conn.execute(f"INSERT INTO {table} (version) VALUES (%s)", (version,))
            done.append(version)
    return done


MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE streams (node TEXT NOT NULL, epoch INTEGER NOT NULL, hw BIGINT NOT NULL,
                PRIMARY KEY (node, epoch))""",
            """CREATE TABLE events (pos BIGSERIAL UNIQUE, id TEXT PRIMARY KEY, node TEXT NOT NULL,
                epoch INTEGER NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL, member TEXT,
                body TEXT NOT NULL, applied_at TEXT NOT NULL, UNIQUE (node, epoch, seq))""",
            "CREATE INDEX events_member ON events (member, pos)",
            "CREATE INDEX events_type ON events (type, pos)",
            """CREATE TABLE members (number TEXT PRIMARY KEY, doc JSONB NOT NULL, points BIGINT NOT NULL,
                blocked BOOLEAN NOT NULL)""",
            "CREATE TABLE personal (number TEXT PRIMARY KEY, name TEXT NOT NULL, changed_at TEXT NOT NULL)",
            """CREATE TABLE stays (event_id TEXT PRIMARY KEY, member TEXT NOT NULL, points BIGINT NOT NULL,
                nights INTEGER NOT NULL)""",
            "CREATE TABLE vouchers (code TEXT PRIMARY KEY, doc JSONB NOT NULL)",
            "CREATE INDEX vouchers_member ON vouchers ((doc->>'member'))",
            """CREATE TABLE holds (id TEXT PRIMARY KEY, member TEXT NOT NULL, node TEXT NOT NULL,
                reward TEXT NOT NULL, points BIGINT NOT NULL, created TEXT NOT NULL, expires TEXT NOT NULL,
                status TEXT NOT NULL)""",
            "CREATE INDEX holds_member ON holds (member) WHERE status = 'held'",
            """CREATE TABLE overdrafts (id BIGSERIAL PRIMARY KEY, member TEXT NOT NULL, node TEXT NOT NULL,
                event_id TEXT NOT NULL, balance BIGINT NOT NULL, at TEXT NOT NULL, resolved_at TEXT)""",
            """CREATE TABLE alarms (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, node TEXT,
                detail TEXT NOT NULL, at TEXT NOT NULL)""",
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            """CREATE TABLE changes (version BIGINT PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL,
                body JSONB NOT NULL)""",
            "CREATE INDEX changes_key ON changes (kind, key, version)",
            "CREATE TABLE change_seq (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), v BIGINT NOT NULL)",
            "INSERT INTO change_seq (v) VALUES (0)",
            "CREATE TABLE programs (version INTEGER PRIMARY KEY, document TEXT NOT NULL)",
            "CREATE TABLE node_keys (node TEXT PRIMARY KEY, public_key TEXT NOT NULL)",
        ),
    ),
    (
        2,
        (
            """CREATE TABLE quarantine (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, node TEXT NOT NULL,
                epoch BIGINT NOT NULL, seq BIGINT NOT NULL, member TEXT, type TEXT NOT NULL,
                kind TEXT NOT NULL, reason TEXT NOT NULL, body TEXT NOT NULL, at TEXT NOT NULL,
                acknowledged_at TEXT,
                UNIQUE (node, epoch, seq))""",
            "CREATE TABLE node_properties (node TEXT PRIMARY KEY, property TEXT NOT NULL)",
            "ALTER TABLE overdrafts ADD COLUMN kind TEXT NOT NULL DEFAULT 'points_overdraft'",
            # A restore's epoch is its time in ms with random bits (edge/sync_store.py).
            "ALTER TABLE streams ALTER COLUMN epoch TYPE BIGINT",
            "ALTER TABLE events ALTER COLUMN epoch TYPE BIGINT",
        ),
    ),
    (
        3,
        (
            """CREATE TABLE reviews (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL, member TEXT, node TEXT NOT NULL, detail TEXT NOT NULL, body TEXT NOT NULL,
                at TEXT NOT NULL, outcome TEXT, closed_by TEXT, closed_at TEXT)""",
        ),
    ),
    (
        4,
        (
            # Stored-value holds (online payments): kind 'value', the amount a decimal string
            # (as HoldRecord carries it; summed as Decimal, never as a float).
            "ALTER TABLE holds ADD COLUMN kind TEXT NOT NULL DEFAULT 'points'",
            "ALTER TABLE holds ADD COLUMN amount TEXT",
        ),
    ),
    (
        5,
        (
            # Partial replicas (loyalty/replicas.py): the members each scope's nodes hold, and
            # the cards head office finds a member by when a node asks for one it does not hold.
            """CREATE TABLE replica_holds (scope TEXT NOT NULL, member TEXT NOT NULL, reason TEXT NOT NULL,
                until TEXT, PRIMARY KEY (scope, member))""",
            "CREATE INDEX replica_holds_member ON replica_holds (member)",
            "CREATE INDEX replica_holds_until ON replica_holds (until) WHERE until IS NOT NULL",
            "CREATE TABLE member_cards (card TEXT PRIMARY KEY, member TEXT NOT NULL)",
        ),
    ),
)

# ``put_members_logged``: a group's member records upserted, the change counter bumped once and
# a change per record at consecutive versions, in one statement (data-modifying CTEs all run;
# numbers are unique per group, one record per member). The records go as one JSON array,
# encoded once (orjson) and taken apart by the server. Answers the first version.
_MEMBERS_LOGGED = (
    "WITH d AS (SELECT doc, ord FROM jsonb_array_elements(%s) WITH ORDINALITY AS d(doc, ord)), "
    "m AS (INSERT INTO members (number, doc, points, blocked) "
    "SELECT doc->>'number', doc, (doc->>'points')::bigint, coalesce((doc->>'blocked')::boolean, false) "
    "FROM d ORDER BY ord "
    "ON CONFLICT (number) DO UPDATE SET doc = excluded.doc, points = excluded.points, "
    "blocked = excluded.blocked), "
    "s AS (UPDATE change_seq SET v = v + %s RETURNING v), "
    "c AS (INSERT INTO changes (version, kind, key, body) "
    "SELECT s.v - %s + d.ord, 'member', d.doc->>'number', d.doc FROM s, d RETURNING version) "
    "SELECT min(version) FROM c"
)

# ``put_applied``: an ingest group's events (inserted in the order given: ``pos`` is the API's
# position), its stays and its streams' high-waters, in one statement. Each row is a JSON array.
# ``o`` takes the group's turn (ORDER_LOCK) when asked: the main query reads it first, and every
# write is joined with its one row, so no write of the statement runs before the turn is held.
_APPLIED = (
    "WITH o AS MATERIALIZED "
    "(SELECT CASE WHEN %s::boolean THEN (SELECT 1 FROM pg_advisory_xact_lock(%s)) END), "
    "e AS (INSERT INTO events (id, node, epoch, seq, type, member, body, applied_at) "
    "SELECT r->>0, r->>1, (r->>2)::bigint, (r->>3)::bigint, r->>4, r->>5, r->>6, r->>7 "
    "FROM json_array_elements(%s::json) WITH ORDINALITY AS x(r, ord) CROSS JOIN o ORDER BY ord), "
    "s AS (INSERT INTO stays (event_id, member, points, nights) "
    "SELECT r->>0, r->>1, (r->>2)::bigint, (r->>3)::integer FROM json_array_elements(%s::json) AS x(r) "
    "CROSS JOIN o ON CONFLICT (event_id) DO UPDATE SET member = excluded.member, "
    "points = excluded.points, nights = excluded.nights), "
    "h AS (INSERT INTO streams (node, epoch, hw) "
    "SELECT r->>0, (r->>1)::bigint, (r->>2)::bigint FROM json_array_elements(%s::json) AS x(r) "
    "CROSS JOIN o ON CONFLICT (node, epoch) DO UPDATE SET hw = excluded.hw) "
    "SELECT count(*) FROM o"
)

# A hold only grows: a home hold (no end) stays one; otherwise the later end wins, with its reason.
_HOLD_UPSERT = (
    "INSERT INTO replica_holds (scope, member, reason, until) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (scope, member) DO UPDATE SET "
    "reason = CASE WHEN replica_holds.until IS NULL THEN replica_holds.reason "
    "WHEN excluded.until IS NULL OR excluded.until >= replica_holds.until THEN excluded.reason "
    "ELSE replica_holds.reason END, "
    "until = CASE WHEN replica_holds.until IS NULL OR excluded.until IS NULL THEN NULL "
    "ELSE greatest(replica_holds.until, excluded.until) END"
)


class PgLedgerStore:
    """``LedgerStore`` on PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 16,
        failover_seconds: float = 120.0,
        pool_timeout: float = 10.0,
        **_: Any,
    ) -> None:
        self.url = url
        self.failover_seconds = failover_seconds
        given = conninfo_to_dict(url)
        self._liveness = {k: v for k, v in LIVENESS.items() if k not in given}
        # The pool's own INFO lines come on every request and its reconnect warnings on every
        # attempt; ``retrying`` reports a failover in one line. Left alone when configured.
        pool_log = logging.getLogger("psycopg.pool")
        if pool_log.level == logging.NOTSET:
            pool_log.setLevel(logging.ERROR)
        self._pool_args: dict[str, Any] = {
            "min_size": min_size,
            "max_size": max_size,
            "timeout": pool_timeout,
            "kwargs": {"autocommit": True, **self._liveness},
        }
        self.pool = ConnectionPool(url, open=True, **self._pool_args)
        self._renew_lock = threading.Lock()
        self._local = threading.local()
        self.migrate()

    def retrying(self, work: Callable[[], T], what: str = "ledger transaction") -> T:
        """``work()``, run again after a broken connection until it succeeds or
        ``failover_seconds`` have passed since the first failure (then ``StoreUnavailable``).

        After a failure nothing is run again until a fresh connection to a writable primary
        succeeds (probed every 0.1 s doubling to 1 s); then the pool is replaced by a new one,
        since the old one's connections all went to the dead server and its own reconnect
        backoff would add seconds. Inside an outer ``transaction()`` there is nothing to retry
        on its own: ``work`` runs once and the outer unit's caller decides.
        """
        if getattr(self._local, "conn", None) is not None:
            return work()
        started: float | None = None
        first = ""
        tries = 0
        while True:
            try:
                result = work()
            except TRANSIENT as exc:
                now = time.monotonic()
                if started is None:
                    started, first = now, _one_line(exc)
                tries += 1
                if now - started >= self.failover_seconds:
                    log.error(
                        "ledger: no writable PostgreSQL primary for %.1f s (%d tries, first %s, last %s): "
                        "giving up on this %s",
                        now - started,
                        tries,
                        first,
                        _one_line(exc),
                        what,
                    )
                    raise StoreUnavailable(f"no writable PostgreSQL primary: {_one_line(exc)}") from exc
                self._await_primary(started + self.failover_seconds)
                continue
            if started is not None:
                log.warning(
                    "ledger failover: %s resumed on %s after %.1f s and %d retries (first error: %s)",
                    what,
                    self.primary(),
                    time.monotonic() - started,
                    tries,
                    first,
                )
            return result

    def _await_primary(self, deadline: float) -> None:
        """Wait (until ``deadline``) for a writable primary to take a fresh connection; then
        swap in a new pool. The old pool closes in the background: connections other threads
        hold from it are closed when they are given back."""
        delay = 0.1
        while True:
            try:
                probe = psycopg.connect(self.url, **{**self._liveness, "connect_timeout": "2"})  # type: ignore[arg-type]
            except psycopg.Error:
                if time.monotonic() + delay >= deadline:
                    return  # the caller's next try fails and gives up
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            probe.close()
            break
        with self._renew_lock:
            old, self.pool = self.pool, ConnectionPool(self.url, open=True, **self._pool_args)
        threading.Thread(target=old.close, kwargs={"timeout": 5.0}, name="old-pool", daemon=True).start()

    def primary(self) -> str:
        """host:port of the server this store writes to now ("?" when none answers)."""
        try:
            with self.pool.connection(timeout=2) as conn:
                return f"{conn.info.host}:{conn.info.port}"
        except Exception:  # for a log line only
            return "?"

    # -- plumbing ---------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations this database has not seen; returns the versions applied."""
        done: list[int] = []
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, at TIMESTAMPTZ "
                "NOT NULL DEFAULT now())"
            )
            seen = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            for version, stmts in MIGRATIONS:
                if version in seen:
                    continue
                for stmt in stmts:
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                done.append(version)
        return done

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None:  # re-entered on this thread: part of the outer unit
            yield
            return
        # Pipeline mode: a statement whose result is not read (every write) is sent without
        # waiting for its answer; a read sends what is queued and waits once for it all. BEGIN
        # and COMMIT are written out (psycopg's transaction() adds a Sync round trip at each
        # end), so BEGIN, the lock and the first read are one round trip, and the last writes
        # go with the COMMIT, whose answer the pipeline's end waits for: the block returns only
        # after the commit. An error comes out at the next read or at that end (the same
        # exception), and the transaction is rolled back as ever.
        with self.pool.connection() as conn:
            try:
                with conn.pipeline() as pipe:
                    conn.execute("BEGIN")
                    self._writer_lock(conn)
                    self._local.conn = conn
                    try:
                        yield
                    except BaseException:
                        with suppress(psycopg.Error):  # what is pending: the error being raised, or skipped
                            pipe.sync()
                        raise
                    finally:
                        self._local.conn = None
                    conn.execute("COMMIT")
            except BaseException:
                if not conn.broken and conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    with suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise

    @contextmanager
    def ingest_transaction(self, nodes: Collection[str], enrolled: Collection[str]) -> Iterator[None]:
        """``transaction()`` for one ingest group, which may overlap other groups (the module's
        docstring): the writer's lock shared, the group's node and enrolment keys, its members
        read ``FOR UPDATE`` (``members_many``) and its writes under ``ORDER_LOCK``. Inside an
        outer ``transaction()`` it is part of that unit, as ``transaction()`` is."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        keys = sorted({_ingest_key("node", n) for n in nodes} | {_ingest_key("member", m) for m in enrolled})
        self._local.ingest_keys = keys if len(keys) <= INGEST_KEYS_MAX else None
        try:
            with self.transaction():
                yield
        finally:
            self._local.ingest_keys = None
            self._local.shared = self._local.unordered = False

    def _writer_lock(self, conn: psycopg.Connection[Any]) -> None:
        """A transaction's first lock: the writer's, exclusive; an ingest group's, shared, and its keys."""
        keys: list[int] | None = getattr(self._local, "ingest_keys", None)
        self._local.ingest_keys = None
        if keys is None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
            self._local.shared = self._local.unordered = False
            return
        if not keys:
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (WRITER_LOCK,))
            self._local.shared = self._local.unordered = True
            return
        # The writer's lock shared first, always (else a group and a writer could deadlock), then
        # the keys in order, in one statement: every row the count takes a key lock on is joined
        # with ``w``'s one row, so ``w`` (the shared lock) has run before the first key lock.
        conn.execute(
            "WITH w AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(%s)) "
            "SELECT count(pg_advisory_xact_lock(%s, k)) "
            "FROM (SELECT unnest(%s::int4[]) AS k ORDER BY 1) AS s CROSS JOIN w",
            (WRITER_LOCK, INGEST_KEYS, keys),
        )
        self._local.shared = self._local.unordered = True

    def _turn_due(self, conn: psycopg.Connection[Any]) -> bool:
        """An ingest group on ``conn`` has not taken its turn to write (ORDER_LOCK) yet."""
        return bool(getattr(self._local, "unordered", False)) and getattr(self._local, "conn", None) is conn

    def _ordered(self, conn: psycopg.Connection[Any]) -> None:
        """Before an ingest group's first write: its turn to write, held to its commit."""
        if self._turn_due(conn):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ORDER_LOCK,))
            self._local.unordered = False

    def transaction_connection(self) -> psycopg.Connection[Any] | None:
        """This thread's open ``transaction()``'s connection (None outside one): for tables that
        live beside the ledger in its database, to write in the ledger's own commit
        (``SideStore.joined``). In an ingest group, its writes' turn is taken first."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._ordered(conn)
        return conn

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
        else:
            with self.pool.connection() as fresh:
                yield fresh

    @contextmanager
    def _write_conn(self) -> Iterator[psycopg.Connection[Any]]:
        """``_conn()`` for a write: in an ingest group, after ``_ordered``."""
        with self._conn() as conn:
            self._ordered(conn)
            yield conn

    def _exec(self, sql: str, args: tuple[Any, ...] | list[Any] | dict[str, Any] = ()) -> None:
        with self._write_conn() as conn:
            conn.execute(sql, args)

    def _all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn() as conn:
            return list(conn.execute(sql, args).fetchall())

    def _row(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> tuple[Any, ...] | None:
        with self._conn() as conn:
            return conn.execute(sql, args).fetchone()

    def _one(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> Any:
        row = self._row(sql, args)
        return None if row is None else row[0]

    # -- streams and events ---------------------------------------------------------------
    def high_water(self, node: str, epoch: int) -> int:
        value = self._one("SELECT hw FROM streams WHERE node = %s AND epoch = %s", (node, epoch))
        return 0 if value is None else int(value)

    def set_high_water(self, node: str, epoch: int, hw: int) -> None:
        self._exec(
            "INSERT INTO streams (node, epoch, hw) VALUES (%s, %s, %s) "
            "ON CONFLICT (node, epoch) DO UPDATE SET hw = excluded.hw",
            (node, epoch, hw),
        )

    def streams(self) -> list[tuple[str, int, int]]:
        return [
            (str(n), int(e), int(h))
            for n, e, h in self._all("SELECT node, epoch, hw FROM streams ORDER BY node, epoch")
        ]

    def event_at(self, node: str, epoch: int, seq: int) -> StoredEvent | None:
        row = self._row(
            "SELECT id, body FROM events WHERE node = %s AND epoch = %s AND seq = %s", (node, epoch, seq)
        )
        return None if row is None else StoredEvent(str(row[0]), node, epoch, seq, str(row[1]))

    def event_by_id(self, event_id: str) -> StoredEvent | None:
        row = self._row("SELECT node, epoch, seq, body FROM events WHERE id = %s", (event_id,))
        return (
            None if row is None else StoredEvent(event_id, str(row[0]), int(row[1]), int(row[2]), str(row[3]))
        )

    def insert_event(self, event: StoredEvent, kind: str, member: str | None, applied_at: str) -> None:
        self._exec(
            "INSERT INTO events (id, node, epoch, seq, type, member, body, applied_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (event.id, event.node, event.epoch, event.seq, kind, member, event.body, applied_at),
        )

    def event_count(self) -> int:
        return int(self._one("SELECT count(*) FROM events"))

    # Bulk forms for ``Ledger.ingest_many`` (one statement per group, not one per event).
    def group_reads(
        self,
        ids: list[str],
        numbers: list[str],
        streams: Collection[tuple[str, int]],
        *,
        with_program: bool = False,
    ) -> GroupReads:
        """The reads sent before any answer is read: in the ingest transaction's pipeline they
        go in one round trip (with BEGIN and the locks), where one after another took one
        each, each a wait for the reply and for the GIL inside the stream's one turn."""
        pairs = sorted(set(streams))
        with self._conn() as conn:
            known = conn.execute("SELECT id FROM events WHERE id = ANY(%s)", (ids,)) if ids else None
            records = self._members_query(conn, numbers) if numbers else None
            marks = (
                conn.execute(
                    "SELECT s.node, s.epoch, s.hw FROM streams s "
                    "JOIN unnest(%s::text[], %s::int8[]) AS w(node, epoch) "
                    "ON s.node = w.node AND s.epoch = w.epoch",
                    ([n for n, _ in pairs], [e for _, e in pairs]),
                )
                if pairs
                else None
            )
            latest = conn.execute("SELECT max(version) FROM programs") if with_program else None
            taken = {str(i) for (i,) in known.fetchall()} if known else set()
            members = {str(n): dict(d) for n, d in records.fetchall()} if records else {}
            found = {(str(n), int(e)): int(h) for n, e, h in marks.fetchall()} if marks else {}
            version = latest.fetchone() if latest else None
        return GroupReads(
            taken,
            members,
            {p: found.get(p, 0) for p in pairs},
            None if version is None or version[0] is None else int(version[0]),
        )

    def insert_events(self, rows: list[EventRow]) -> None:
        with self._write_conn() as conn, conn.cursor() as cur:
            # In applied order: ``pos`` (BIGSERIAL) is the API's position, as rowid is on SQLite.
            cur.executemany(
                "INSERT INTO events (id, node, epoch, seq, type, member, body, applied_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )

    def put_applied(self, events: list[EventRow], stays: list[StayRow], marks: list[Mark]) -> None:
        if not (events or stays or marks):
            return
        # One statement for the three (as ``put_members_logged``): each list goes as one JSON
        # array (orjson), taken apart by the server, instead of a statement per list and a
        # message per row. The group's turn to write (``_ordered``), when not taken yet, is
        # taken by the same statement, before any of its writes.
        with self._conn() as conn:
            turn = self._turn_due(conn)
            conn.execute(
                _APPLIED,
                (
                    turn,
                    ORDER_LOCK,
                    orjson.dumps(events).decode(),
                    orjson.dumps(stays).decode(),
                    orjson.dumps(marks).decode(),
                ),
            )
            if turn:
                self._local.unordered = False

    def put_stays(self, rows: list[StayRow]) -> None:
        with self._write_conn() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO stays (event_id, member, points, nights) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (event_id) DO UPDATE SET member = excluded.member, points = excluded.points, "
                "nights = excluded.nights",
                rows,
            )

    def events_after(self, position: int, kinds: list[str], limit: int = 500) -> list[tuple[int, str]]:
        """(position, body) of applied events of ``kinds`` past ``position``, in applied order."""
        rows = self._all(
            "SELECT pos, body FROM events WHERE type = ANY(%s) AND pos > %s ORDER BY pos LIMIT %s",
            (kinds, position, limit),
        )
        return [(int(p), str(b)) for p, b in rows]

    def member_events(self, member: str, limit: int = 20) -> list[str]:
        """The member's most recent applied events (bodies), newest first."""
        rows = self._all(
            "SELECT body FROM events WHERE member = %s ORDER BY pos DESC LIMIT %s", (member, limit)
        )
        return [str(b) for (b,) in rows]

    # -- members ------------------------------------------------------------------------------
    def member(self, number: str) -> dict[str, Any] | None:
        doc = self._one("SELECT doc FROM members WHERE number = %s", (number,))
        return None if doc is None else dict(doc)

    def put_member(self, doc: dict[str, Any]) -> None:
        self.put_members([doc])

    def members_many(self, numbers: list[str]) -> dict[str, dict[str, Any]]:
        if not numbers:
            return {}
        with self._conn() as conn:
            return {str(n): dict(d) for n, d in self._members_query(conn, numbers).fetchall()}

    def _members_query(self, conn: psycopg.Connection[Any], numbers: list[str]) -> psycopg.Cursor[Any]:
        # An ingest group's members, locked in number order (the module's docstring): another
        # group folding one of them waits here for its commit, then reads what it wrote.
        lock = " ORDER BY number FOR UPDATE" if getattr(self._local, "shared", False) else ""
        return conn.execute("SELECT number, doc FROM members WHERE number = ANY(%s)" + lock, (numbers,))

    def put_members_logged(self, docs: list[dict[str, Any]]) -> list[int]:
        return self.put_members_logged_later(docs)()

    def put_members_logged_later(self, docs: list[dict[str, Any]]) -> Callable[[], list[int]]:
        if not docs:
            return list
        # One statement (each document encoded and sent once): the records, one bump of the
        # change counter for the whole group, and its versions in the order given. On the API's
        # hot path every statement costs the client more CPU than the server (psycopg's Python
        # and a socket write that wakes the server): three became one. In the ingest pipeline
        # its answer is read when asked for: after the commit, it came with the COMMIT's.
        with self._write_conn() as conn:
            cur = conn.execute(_MEMBERS_LOGGED, (Jsonb(docs), len(docs), len(docs)))

        @functools.cache
        def versions() -> list[int]:
            row = cur.fetchone()
            assert row is not None and row[0] is not None
            return list(range(int(row[0]), int(row[0]) + len(docs)))

        return versions

    def put_members(self, docs: list[dict[str, Any]]) -> None:
        with self._write_conn() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO members (number, doc, points, blocked) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (number) DO UPDATE SET doc = excluded.doc, points = excluded.points, "
                "blocked = excluded.blocked",
                [(d["number"], Jsonb(d), int(d["points"]), bool(d.get("blocked"))) for d in docs],
            )

    def referred_members(self) -> list[tuple[str, str, str]]:
        rows = self._all(
            "SELECT number, doc->>'referred_by', doc->>'referred_at' FROM members "
            "WHERE doc->>'referred_by' IS NOT NULL ORDER BY number"
        )
        return [(str(n), str(r), str(a or "")) for n, r, a in rows]

    def first_stay_since(self, member: str, at: str) -> str | None:
        value = self._one(
            "SELECT s.event_id FROM stays s JOIN events e ON e.id = s.event_id "
            "WHERE s.member = %s AND s.nights > 0 AND e.type = 'stay.posted' "
            "AND e.body::jsonb->>'at' >= %s ORDER BY e.pos LIMIT 1",
            (member, at),
        )
        return None if value is None else str(value)

    def member_numbers(self) -> list[str]:
        return [str(n) for (n,) in self._all("SELECT number FROM members ORDER BY number")]

    def set_personal(self, number: str, name: str, at: str) -> None:
        self._exec(
            "INSERT INTO personal (number, name, changed_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (number) DO UPDATE SET name = excluded.name, changed_at = excluded.changed_at",
            (number, name, at),
        )

    # -- partial replicas (loyalty/replicas.py) -------------------------------------------------------
    def put_replica_holds(self, holds: Sequence[Hold]) -> None:
        if not holds:
            return
        with self._write_conn() as conn, conn.cursor() as cur:
            cur.executemany(_HOLD_UPSERT, [(h.scope, h.member, h.reason, h.until) for h in holds])

    def replica_scopes(self, members: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for member, scope in self._all(
            "SELECT member, scope FROM replica_holds WHERE member = ANY(%s)", (list(members),)
        ):
            out.setdefault(str(member), set()).add(str(scope))
        return out

    def expire_replica_holds(self, at: str, limit: int) -> list[tuple[str, str]]:
        with self._write_conn() as conn:
            rows = conn.execute(
                "DELETE FROM replica_holds WHERE (scope, member) IN (SELECT scope, member FROM replica_holds "
                "WHERE until IS NOT NULL AND until < %s LIMIT %s) RETURNING scope, member",
                (at, limit),
            ).fetchall()
        return [(str(scope), str(member)) for scope, member in rows]

    def put_member_cards(self, cards: Sequence[tuple[str, str]]) -> None:
        if not cards:
            return
        with self._write_conn() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO member_cards (card, member) VALUES (%s, %s) "
                "ON CONFLICT (card) DO UPDATE SET member = excluded.member",
                list(cards),
            )

    def card_member(self, card_hash: str) -> str | None:
        value = self._one("SELECT member FROM member_cards WHERE card = %s", (card_hash,))
        return None if value is None else str(value)

    def backfill_replicas(self, home_scopes: Mapping[str, str]) -> tuple[int, int]:
        # Counted by the statements themselves (a pipelined statement's rowcount is not known).
        with self._write_conn() as conn:
            holds = conn.execute(
                "WITH added AS (INSERT INTO replica_holds (scope, member, reason, until) "
                "SELECT coalesce(%s::jsonb ->> (doc->>'home_property'), 'p:' || (doc->>'home_property')), "
                "number, 'home', NULL FROM members WHERE coalesce(doc->>'home_property', '') <> '' "
                "ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM added",
                (Jsonb(dict(home_scopes)),),
            ).fetchone()
            cards = conn.execute(
                "WITH added AS (INSERT INTO member_cards (card, member) "
                "SELECT c, number FROM members, jsonb_array_elements_text(doc->'cards') AS c "
                "ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM added"
            ).fetchone()
        return int(holds[0]) if holds else 0, int(cards[0]) if cards else 0

    def member_by_card(self, card_hash: str) -> str | None:
        """The member whose record lists this keyed card hash."""
        value = self._one("SELECT number FROM members WHERE doc->'cards' ? %s LIMIT 1", (card_hash,))
        return None if value is None else str(value)

    # -- stays and vouchers -------------------------------------------------------------------------
    def stay(self, event_id: str) -> tuple[str, int, int] | None:
        row = self._row("SELECT member, points, nights FROM stays WHERE event_id = %s", (event_id,))
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]))

    def put_stay(self, event_id: str, member: str, points: int, nights: int) -> None:
        self._exec(
            "INSERT INTO stays (event_id, member, points, nights) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (event_id) DO UPDATE SET member = excluded.member, points = excluded.points, "
            "nights = excluded.nights",
            (event_id, member, points, nights),
        )

    def voucher(self, code: str) -> dict[str, Any] | None:
        doc = self._one("SELECT doc FROM vouchers WHERE code = %s", (code,))
        return None if doc is None else dict(doc)

    def put_voucher(self, doc: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO vouchers (code, doc) VALUES (%s, %s) "
            "ON CONFLICT (code) DO UPDATE SET doc = excluded.doc",
            (doc["code"], Jsonb(doc)),
        )

    def member_vouchers(self, member: str, limit: int = 20) -> list[dict[str, Any]]:
        """The member's vouchers, newest first."""
        rows = self._all(
            "SELECT doc FROM vouchers WHERE doc->>'member' = %s ORDER BY doc->>'issued_at' DESC LIMIT %s",
            (member, limit),
        )
        return [dict(d) for (d,) in rows]

    def voucher_counts(self) -> dict[str, int]:
        """Vouchers issued per reward and not voided (what the catalogue's stock has given out)."""
        rows = self._all(
            "SELECT doc->>'reward', count(*) FROM vouchers WHERE doc->>'status' <> 'voided' GROUP BY 1"
        )
        return {str(r): int(n) for r, n in rows}

    # -- holds ------------------------------------------------------------------------------------
    def put_hold(self, hold: HoldRecord) -> None:
        self._exec(
            f"INSERT INTO holds ({HOLD_COLUMNS}) VALUES ({', '.join(['%s'] * HOLD_ARITY)})", astuple(hold)
        )

    def hold(self, hold_id: str) -> HoldRecord | None:
        row = self._row(f"SELECT {HOLD_COLUMNS} FROM holds WHERE id = %s", (hold_id,))
        return None if row is None else HoldRecord(*row)

    def set_hold_status(self, hold_id: str, status: str) -> None:
        self._exec("UPDATE holds SET status = %s WHERE id = %s", (status, hold_id))

    def held_points(self, member: str) -> int:
        return int(
            self._one(
                "SELECT coalesce(sum(points), 0) FROM holds WHERE member = %s AND status = 'held'", (member,)
            )
        )

    def held_value(self, member: str) -> Decimal:
        rows = self._all(
            "SELECT amount FROM holds WHERE member = %s AND status = 'held' AND kind = 'value'", (member,)
        )
        return sum((Decimal(str(a)) for (a,) in rows), Decimal(0))

    def holds_expiring(self, now: str) -> list[HoldRecord]:
        rows = self._all(f"SELECT {HOLD_COLUMNS} FROM holds WHERE status = 'held' AND expires <= %s", (now,))
        return [HoldRecord(*r) for r in rows]

    # -- overdrafts, alarms, counters -------------------------------------------------------------
    def add_overdraft(
        self, member: str, node: str, event_id: str, balance: int, at: str, kind: str = "points_overdraft"
    ) -> None:
        self._exec(
            "INSERT INTO overdrafts (member, node, event_id, balance, at, kind) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (member, node, event_id, balance, at, kind),
        )

    def resolve_overdrafts(self, member: str, at: str) -> None:
        self._exec(
            "UPDATE overdrafts SET resolved_at = %s WHERE member = %s AND resolved_at IS NULL", (at, member)
        )

    def open_overdrafts(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT member, node, event_id, balance, at, kind FROM overdrafts "
            "WHERE resolved_at IS NULL ORDER BY id"
        )
        return [
            dict(zip(("member", "node", "event_id", "balance", "at", "kind"), r, strict=True)) for r in rows
        ]

    def add_quarantine(self, record: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO quarantine (event_id, node, epoch, seq, member, type, kind, reason, body, at) "
            "VALUES (%(event_id)s, %(node)s, %(epoch)s, %(seq)s, %(member)s, %(type)s, %(kind)s, %(reason)s, "
            "%(body)s, %(at)s) ON CONFLICT (node, epoch, seq) DO NOTHING",
            record,
        )

    def quarantined(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        cols = (
            "event_id",
            "node",
            "epoch",
            "seq",
            "member",
            "type",
            "kind",
            "reason",
            "at",
            "acknowledged_at",
        )
        where = " WHERE acknowledged_at IS NULL" if open_only else ""
        rows = self._all(f"SELECT {', '.join(cols)} FROM quarantine{where} ORDER BY id")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def acknowledge_quarantine(self, event_id: str, at: str) -> bool:
        rows = self._all(
            "UPDATE quarantine SET acknowledged_at = %s WHERE event_id = %s AND acknowledged_at IS NULL "
            "RETURNING id",
            (at, event_id),
        )
        return bool(rows)

    def add_review(self, record: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO reviews (event_id, kind, member, node, detail, body, at) "
            "VALUES (%(event_id)s, %(kind)s, %(member)s, %(node)s, %(detail)s, %(body)s, %(at)s) "
            "ON CONFLICT (event_id) DO NOTHING",
            record,
        )

    def reviews(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        cols = REVIEW_COLUMNS
        where = " WHERE closed_at IS NULL" if open_only else ""
        rows = self._all(f"SELECT {', '.join(cols)} FROM reviews{where} ORDER BY id")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def close_review(self, event_id: str, outcome: str, by: str, at: str) -> bool:
        rows = self._all(
            "UPDATE reviews SET outcome = %s, closed_by = %s, closed_at = %s "
            "WHERE event_id = %s AND closed_at IS NULL RETURNING id",
            (outcome, by, at, event_id),
        )
        return bool(rows)

    def quarantined_at(self, node: str, epoch: int, seq: int) -> str | None:
        rows = self._all(
            "SELECT body FROM quarantine WHERE node = %s AND epoch = %s AND seq = %s", (node, epoch, seq)
        )
        return str(rows[0][0]) if rows else None

    def add_alarm(self, kind: str, node: str | None, detail: str, at: str) -> None:
        self._exec(
            "INSERT INTO alarms (kind, node, detail, at) VALUES (%s, %s, %s, %s)", (kind, node, detail, at)
        )

    def alarms(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT kind, node, detail, at FROM alarms ORDER BY id")
        return [dict(zip(("kind", "node", "detail", "at"), r, strict=True)) for r in rows]

    def bump_counter(self, name: str, by: int = 1) -> None:
        self._exec(
            "INSERT INTO counters (name, value) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
            (name, by),
        )

    def counters(self) -> dict[str, int]:
        return {str(n): int(v) for n, v in self._all("SELECT name, value FROM counters")}

    # -- change log -------------------------------------------------------------------------------
    def append_change(self, kind: str, key: str, body: dict[str, Any]) -> int:
        with self._write_conn() as conn:
            row = conn.execute("UPDATE change_seq SET v = v + 1 RETURNING v").fetchone()
            assert row is not None
            version = int(row[0])
            conn.execute(
                "INSERT INTO changes (version, kind, key, body) VALUES (%s, %s, %s, %s)",
                (version, kind, key, Jsonb(body)),
            )
        return version

    def latest_version(self) -> int:
        return int(self._one("SELECT v FROM change_seq"))

    def changes_since(self, version: int, limit: int) -> list[Change] | None:
        keys = self._all(
            "SELECT max(version) FROM changes WHERE version > %s GROUP BY kind, key LIMIT %s",
            (version, limit + 1),
        )
        if len(keys) > limit:
            return None
        versions = sorted(int(v) for (v,) in keys)
        rows = self._all(
            "SELECT version, kind, key, body FROM changes WHERE version = ANY(%s) ORDER BY version",
            (versions,),
        )
        return [Change(int(v), str(k), str(key), dict(b)) for v, k, key, b in rows]

    def digest(self) -> tuple[int, int, int]:
        # One statement sees one snapshot even under READ COMMITTED, so the counter and the
        # sums agree without a REPEATABLE READ transaction of their own.
        row = self._row("SELECT (SELECT v FROM change_seq), count(*), coalesce(sum(points), 0) FROM members")
        assert row is not None
        return int(row[0] or 0), int(row[1]), int(row[2])

    def snapshot(self, scopes: Collection[str] | None = None) -> tuple[int, Iterator[Change]]:
        # Its own connection in one REPEATABLE READ transaction: one consistent view.
        conn = psycopg.connect(self.url, **self._liveness)  # type: ignore[arg-type]
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT v FROM change_seq").fetchone()
        version = int(row[0]) if row else 0

        def rows() -> Iterator[Change]:
            try:
                for v, doc in conn.execute("SELECT version, document FROM programs ORDER BY version"):
                    yield Change(0, "program", str(v), {"version": int(v), "document": str(doc)})
                for node, key in conn.execute("SELECT node, public_key FROM node_keys").fetchall():
                    yield Change(0, "node_key", str(node), {"node": str(node), "public_key": str(key)})
                # Revocations live only in the change log; a new node must hear of them too.
                for node, body in conn.execute(
                    "SELECT key, body FROM changes WHERE kind = 'revocation' ORDER BY version"
                ).fetchall():
                    yield Change(0, "revocation", str(node), dict(body))
                with conn.cursor(name="snapshot_members") as cur:
                    cur.itersize = 2000
                    if scopes is None:
                        cur.execute("SELECT number, doc FROM members")
                    else:
                        cur.execute(
                            "SELECT number, doc FROM members WHERE number IN "
                            "(SELECT member FROM replica_holds WHERE scope = ANY(%s))",
                            (sorted(scopes),),
                        )
                    for number, doc in cur:
                        yield Change(0, "member", str(number), dict(doc))
                for code, doc in conn.execute("SELECT code, doc FROM vouchers").fetchall():
                    yield Change(0, "voucher", str(code), dict(doc))
            finally:
                conn.rollback()
                conn.close()

        return version, rows()

    # -- programmes and node keys ------------------------------------------------------------------
    def put_program(self, version: int, document: str) -> None:
        self._exec(
            "INSERT INTO programs (version, document) VALUES (%s, %s) "
            "ON CONFLICT (version) DO UPDATE SET document = excluded.document",
            (version, document),
        )

    def program(self, version: int) -> str | None:
        doc = self._one("SELECT document FROM programs WHERE version = %s", (version,))
        return None if doc is None else str(doc)

    def latest_program_version(self) -> int | None:
        value = self._one("SELECT max(version) FROM programs")
        return None if value is None else int(value)

    def put_node_property(self, node: str, property_: str) -> None:
        self._exec(
            "INSERT INTO node_properties (node, property) VALUES (%s, %s) "
            "ON CONFLICT (node) DO UPDATE SET property = excluded.property",
            (node, property_),
        )

    def node_properties(self) -> list[tuple[str, str]]:
        return [(str(n), str(p)) for n, p in self._all("SELECT node, property FROM node_properties")]

    def node_property(self, node: str) -> str | None:
        rows = self._all("SELECT property FROM node_properties WHERE node = %s", (node,))
        return str(rows[0][0]) if rows else None

    def put_node_key(self, node: str, public_key: str) -> None:
        self._exec(
            "INSERT INTO node_keys (node, public_key) VALUES (%s, %s) "
            "ON CONFLICT (node) DO UPDATE SET public_key = excluded.public_key",
            (node, public_key),
        )
