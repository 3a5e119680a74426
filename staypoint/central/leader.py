"""Who may serve, and who leads: several ``central serve`` processes on one ledger.

- **PostgreSQL: any number serve, one leads.** :class:`PgLeadership` holds a session-level
  advisory lock (``pg_try_advisory_lock(LEADER_LOCK)``) on a connection of its own, not one
  of the pool's: the lock lives exactly as long as that session. The leader runs the fan-out
  ticker, the digest, hold expiry and the daily jobs; followers ingest, answer resyncs and
  authorisations. A leader that dies (SIGKILL, its machine, its connection) loses the session
  and with it the lock; a follower polling every ``poll`` seconds takes it within about that.
  A leader whose connection fails steps down at once (it cannot tell whether the server still
  holds its lock) and competes again on a new connection.
- **SQLite: one process serves.** :class:`SqliteServeLock` takes an exclusive ``flock`` on
  ``<ledger>.serve.lock``; a second ``central serve`` on the same file exits with one line.
  The kernel releases the lock when the process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("staypoint.central.leader")

LEADER_LOCK = 0x5350_4C45  # "SPLE": the head-office leader's session advisory lock (≠ the writer lock)


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
        import psycopg

        while not self._stop.is_set():
            try:
                if self._conn is None:
                    # Keepalives: a leader's machine that vanishes without closing its socket
                    # is noticed by the server within ~10 s, and the lock freed.
                    self._conn = psycopg.connect(
                        self.url,
                        autocommit=True,
                        connect_timeout=5,
                        application_name="staypoint-central-leader",
                        keepalives=1,
                        keepalives_idle=5,
                        keepalives_interval=2,
                        keepalives_count=3,
                    )
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
