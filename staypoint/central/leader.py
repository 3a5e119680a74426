"""Who may serve, and who leads: several ``central serve`` processes on one ledger.

- **PostgreSQL: any number serve, one leads.** :class:`PgLeadership` holds a session-level
  advisory lock (``pg_try_advisory_lock(LEADER_LOCK)``) on a connection of its own, not one
  of the pool's: the lock lives exactly as long as that session. The leader runs the fan-out
  ticker, the digest, hold expiry and the daily jobs; followers ingest, answer resyncs and
  authorisations. A leader that dies (SIGKILL, its machine, its connection) loses the session
  and with it the lock; a follower polling every ``poll`` seconds takes it within about that.
  A leader whose connection fails steps down at once (it cannot tell whether the server still
  holds its lock) and competes again on a new connection.
- **PostgreSQL: each node's batches in one process's hands.** :class:`PgShards` divides the
  nodes into ``count`` virtual shards by a stable hash of the node id (:func:`shard_of`) and
  holds one session-level advisory lock ``(SHARD_LOCK, shard)`` per shard it ingests, on a
  connection of its own. Every serving process holds ``(SHARD_MEMBERS, count)`` shared, so each
  can count the live ones and aim for ``ceil(count / live)`` shards: it takes free shards up to
  that and lets go of any past it (after the ingest thread has applied what it had queued for
  them). A process that dies loses its session and its shards with it; the others take them
  within ``poll`` seconds. Ownership keeps a node's batches in one process and in order; it is
  not what keeps them safe (the ledger's locks are: ``store_pg.PgLedgerStore.ingest_transaction``).
- **SQLite: one process serves.** :class:`SqliteServeLock` takes an exclusive ``flock`` on
  ``<ledger>.serve.lock``; a second ``central serve`` on the same file exits with one line.
  The kernel releases the lock when the process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("staypoint.central.leader")

LEADER_LOCK = 0x5350_4C45  # "SPLE": the head-office leader's session advisory lock (≠ the writer lock)
SHARD_LOCK = 0x5350_5348  # "SPSH": (SHARD_LOCK, shard), a session lock per ingest shard a process owns
SHARD_MEMBERS = 0x5350_5350  # "SPSP": (SHARD_MEMBERS, count), held shared by every sharded serve process
DEFAULT_SHARDS = 64
DRAIN_SECONDS = 10.0  # a shard let go waits this long at most for its queued batches to be applied
# The advisory locks of two-int keys in this database: (class, key) in pg_locks' classid/objid.
_LOCKS_SQL = (
    "SELECT classid::int8, objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
    "AND granted AND classid IN (%s, %s) AND database = (SELECT oid FROM pg_database "
    "WHERE datname = current_database())"
)


def _lock_session(url: str, application_name: str) -> Any:
    """A connection of its own for session advisory locks: they live exactly as long as it does.

    Keepalives: a holder whose machine vanishes without closing its socket is noticed by the
    server within ~10 s, and its locks freed.
    """
    import psycopg

    return psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=5,
        application_name=application_name,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
    )


class Leadership(Protocol):
    """What ``HeadOffice`` asks: am I the leader now?"""

    def is_leader(self) -> bool: ...

    def stop(self) -> None: ...


class AlwaysLeader:
    """The only process (SQLite, or a test's in-process head office): always the leader."""

    def is_leader(self) -> bool:
        return True

    def stop(self) -> None:
        return None


class PgLeadership:
    """Leadership by a PostgreSQL session advisory lock held on a dedicated connection."""

    def __init__(
        self,
        url: str,
        *,
        key: int = LEADER_LOCK,
        poll: float = 1.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.url = url
        self.key = key
        self.poll = poll
        self.on_change = on_change
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="head-office-leadership", daemon=True)

    def start(self) -> PgLeadership:
        self._thread.start()
        return self

    def is_leader(self) -> bool:
        return self._leader.is_set()

    def wait_leader(self, timeout: float) -> bool:
        return self._leader.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.poll + 5)
        self._close(release=True)

    def _set(self, leader: bool) -> None:
        if leader == self._leader.is_set():
            return
        if leader:
            self._leader.set()
            log.info("this process leads: fan-out, digest, hold expiry and jobs run here")
        else:
            self._leader.clear()
            log.warning("this process no longer leads")
        if self.on_change is not None:
            try:
                self.on_change(leader)
            except Exception:
                log.exception("leadership change hook failed")

    def _close(self, *, release: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if release and self._leader.is_set():
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self._set(False)
        with contextlib.suppress(Exception):
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._conn is None:
                    self._conn = _lock_session(self.url, "staypoint-central-leader")
                if self._leader.is_set():
                    self._conn.execute("SELECT 1")  # still our session, so still our lock
                else:
                    row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                    if row is not None and bool(row[0]):
                        self._set(True)
            except Exception as exc:  # the session is gone: so may the lock be; compete again
                if self._leader.is_set():
                    log.warning("leader's session failed (%s): stepping down", exc)
                self._close()
            self._stop.wait(self.poll)


def shard_of(node: str, count: int) -> int:
    """The shard of a node: a stable hash of its id (the same in every process, on every machine
    and in every release; not Python's ``hash``, which is salted per process)."""
    digest = hashlib.blake2b(node.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_ranges(shards: frozenset[int]) -> str:
    """``{0, 1, 2, 7}`` as ``0-2,7``: a shard set for a log line (and a reader of the log)."""
    out: list[str] = []
    for s in sorted(shards):
        if out and s == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{s}"
        else:
            out.append(str(s))
    return ",".join(out)


class ShardCountMismatch(RuntimeError):
    """Another process serving this ledger divides the nodes into a different number of shards."""


class PgShards:
    """The ingest shards this process owns, as PostgreSQL session advisory locks.

    ``owned`` is replaced whole (readers need no lock). ``on_release(shards)``, when set, is
    called from this object's thread after ``owned`` has shrunk and before the locks go: the
    head office returns once what it had queued for those shards is applied.
    """

    def __init__(
        self,
        url: str,
        count: int = DEFAULT_SHARDS,
        *,
        poll: float = 1.0,
        on_release: Callable[[frozenset[int]], None] | None = None,
    ) -> None:
        if not 1 <= count <= 4096:
            raise ValueError(f"shards: {count} is not between 1 and 4096")
        self.url = url
        self.count = count
        self.poll = poll
        self.on_release = on_release
        self.owned: frozenset[int] = frozenset()
        self.changes = 0  # how often ``owned`` changed: tests and logs
        self._stop = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="head-office-shards", daemon=True)

    def owns(self, node: str) -> bool:
        return shard_of(node, self.count) in self.owned

    def start(self) -> PgShards:
        """Join: the first round here (a count other processes do not share raises
        :class:`ShardCountMismatch`; a database that does not answer is retried by the thread)."""
        try:
            self._round()
        except ShardCountMismatch:
            self._close()
            raise
        except Exception as exc:
            log.warning("ingest shards: %s; trying again", exc)
            self._close()
        self._thread.start()
        return self

    def wait_owned(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.owned) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.poll + 5)
        self._close()

    def _set(self, owned: frozenset[int], why: str) -> None:
        if owned == self.owned:
            return
        self.owned = owned
        self.changes += 1
        log.info(
            "ingest shards: this process ingests %d of %d (%s): %s",
            len(owned),
            self.count,
            why,
            shard_ranges(owned) or "none",
        )

    def _connect(self) -> Any:
        conn = _lock_session(self.url, "staypoint-central-shards")
        try:
            conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", (SHARD_MEMBERS, self.count))
            counts = {
                int(key)
                for cls, key in conn.execute(_LOCKS_SQL, (SHARD_MEMBERS, SHARD_MEMBERS)).fetchall()
                if int(cls) == SHARD_MEMBERS
            }
            if counts != {self.count}:
                others = ", ".join(str(c) for c in sorted(counts - {self.count}))
                raise ShardCountMismatch(
                    f"another central serve on this ledger runs with --shards {others}, this one with "
                    f"--shards {self.count}: every process must divide the nodes alike"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _round(self) -> None:
        """Count the live processes; take free shards up to our share, or let go of those past it."""
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        rows = conn.execute(_LOCKS_SQL, (SHARD_MEMBERS, SHARD_LOCK)).fetchall()
        live = max(1, sum(1 for cls, key in rows if int(cls) == SHARD_MEMBERS and int(key) == self.count))
        taken = {int(key) for cls, key in rows if int(cls) == SHARD_LOCK and int(key) < self.count}
        share = math.ceil(self.count / live)
        held = self.owned
        if len(held) < share:
            free = [s for s in range(self.count) if s not in taken and s not in held]
            want = free[: share - len(held)]
            if want:
                got = conn.execute(
                    "SELECT s FROM unnest(%s::int4[]) AS s WHERE pg_try_advisory_lock(%s, s)",
                    (want, SHARD_LOCK),
                ).fetchall()
                if got:
                    self._set(held | {int(s) for (s,) in got}, f"{live} serving")
        elif len(held) > share:
            extra = frozenset(sorted(held)[share:])
            self._set(held - extra, f"{live} serving: {len(extra)} let go")
            if self.on_release is not None:
                try:
                    self.on_release(extra)
                except Exception:
                    log.exception("ingest shards: draining before a release failed")
            conn.execute(
                "SELECT count(pg_advisory_unlock(%s, s)) FROM unnest(%s::int4[]) AS s",
                (SHARD_LOCK, sorted(extra)),
            )
        else:
            conn.execute("SELECT 1")  # still our session, so still our locks

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._set(frozenset(), "session closed")
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self._round()
            except Exception as exc:  # the session is gone: so may our locks be; take them anew
                if self.owned:
                    log.warning("ingest shards: session failed (%s): letting go of all", exc)
                self._close()


class ServeLockHeld(RuntimeError):
    """Another ``central serve`` already serves this SQLite ledger."""


class SqliteServeLock:
    """An exclusive ``flock`` beside a SQLite ledger: one ``central serve`` per file."""

    def __init__(self, ledger_path: Path) -> None:
        self.path = Path(f"{ledger_path}.serve.lock")
        self._fd: int | None = None

    def acquire(self) -> SqliteServeLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ServeLockHeld(
                f"another central serve (pid {holder}) already serves this SQLite ledger ({self.path} is "
                "locked): on SQLite only one process may serve; run several on PostgreSQL (--store "
                "postgresql://...)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def is_leader(self) -> bool:
        return True

    def stop(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
