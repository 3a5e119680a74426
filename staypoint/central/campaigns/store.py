"""Campaign tables (in the ledger file): send log, bonus outbox, segments, who runs a job.

The send log is the heart of "one send per member per occasion": its primary key is
``(member, occasion)``, a row is inserted (claimed) before anything is handed to a
gateway, marked ``handing`` in a committed write just before the hand-over and ``sent``
after the gateway's answer. Whoever inserts the row owns the send; a second job finds
the key taken. A row left ``handing`` by a process that died was cut off mid-hand-over:
it becomes ``uncertain`` and is listed for a person, never sent again by a machine.

Bonus points travel as ledger events through a stream of their own (node
``campaigns``): they are written to ``cmp_outbox`` in the same transaction that claims
the send, with the next sequence number, then ingested by the ledger like any node's
batch. Same event, same bytes, so a re-ingest is skipped by the ledger's high-water.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from staypoint.loyalty.events import Event, iso, uuid7
from staypoint.sqlitetx import immediate

CAMPAIGN_NODE = "campaigns"
CAMPAIGN_EPOCH = 1

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cmp_sends (
        member TEXT NOT NULL, occasion TEXT NOT NULL, campaign TEXT NOT NULL,
        channel TEXT, address TEXT, status TEXT NOT NULL, owner TEXT,
        attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT, claimed_at TEXT NOT NULL,
        handed_at TEXT, handed_wall REAL, done_at TEXT, outcome TEXT, message_id TEXT,
        holdout INTEGER NOT NULL DEFAULT 0, opened_at TEXT, bonus_points INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (member, occasion)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS cmp_sends_status ON cmp_sends (status, next_at)",
    "CREATE INDEX IF NOT EXISTS cmp_sends_member_done ON cmp_sends (member, done_at)",
    "CREATE INDEX IF NOT EXISTS cmp_sends_campaign ON cmp_sends (campaign, status)",
    """CREATE TABLE IF NOT EXISTS cmp_outbox (seq INTEGER PRIMARY KEY, body TEXT NOT NULL,
        reason TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cmp_segments (code TEXT NOT NULL, version INTEGER NOT NULL,
        definition TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        PRIMARY KEY (code, version)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS ref_rewards (referred TEXT PRIMARY KEY, referrer TEXT NOT NULL,
        stay_event TEXT, awarded_at TEXT NOT NULL) WITHOUT ROWID""",
)

# Status of a send-log row. Terminal: sent, failed, uncertain, bounced, and the skips.
# ``reserved``: durably set aside for hand-over by its owner (see engine.deliver): only the
# per-message ``handing`` mark after it is written without waiting for the disk.
PENDING, HANDING, SENT, RETRY, DELAYED = "pending", "handing", "sent", "retry", "delayed"
RESERVED = "reserved"
FAILED, UNCERTAIN, BOUNCED = "failed", "uncertain", "bounced"
HOLDOUT, NO_CONSENT, CAPPED, BONUS_ONLY = "holdout", "no_consent", "capped", "bonus_only"


def _proc_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (guards against a reused process id)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def boot_id() -> str:
    """This machine's boot (changes when it restarts: unsynced writes may have been lost)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


def owner_id() -> str:
    """This process as the owner of claimed sends: host, pid, the pid's start time, the boot."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}:{boot_id()}"


def same_boot(owner: str) -> bool:
    """Did ``owner`` run on this host since its last boot (so its writes all reached the disk,
    a process's death does not lose what it wrote to the operating system)?"""
    host, _, rest = owner.partition(":")
    boot = rest.split(":")[2] if rest.count(":") >= 2 else "?"
    return host == socket.gethostname() and boot != "?" and boot == boot_id()


def owner_alive(owner: str, *, lease_seconds: float, handed_wall: float | None, wall_now: float) -> bool:
    """Is the process that owns a row still running?

    On this host the answer is exact (pid + its start time). For another host only a
    lease can tell: a hand-over is bounded by the gateway's timeout, so a row older than
    the lease cannot still be in flight.
    """
    host, _, rest = owner.partition(":")
    pid_s, _, start = rest.partition(":")
    start = start.partition(":")[0]
    if host == socket.gethostname() and pid_s.isdigit():
        return _proc_start(int(pid_s)) == start and start != "?"
    return handed_wall is None or wall_now - handed_wall < lease_seconds


class CampaignDb:
    """The campaign tables on their own connection to the ledger file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Any: a PostgreSQL job store (``PgCampaignDb``) puts its dialect adapter here.
        self.conn: Any = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        # A claim and a hand-over mark must be on disk before the gateway sees anything.
        self.conn.execute("PRAGMA synchronous = FULL")
        self._sync = "FULL"
        self.conn.execute("PRAGMA busy_timeout = 60000")
        for stmt in SCHEMA:
            self.conn.execute(stmt)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def tx(self, *, durable: bool = True) -> Iterator[Any]:
        """One write transaction (BEGIN IMMEDIATE: claims are decided under the write lock).

        ``durable=False`` commits to the operating system without waiting for the disk
        (WAL, synchronous NORMAL): it survives the process being killed, not the machine
        losing power; the next durable commit makes it and everything before it durable.
        """
        want = "FULL" if durable else "NORMAL"
        if self._sync != want:
            self.conn.execute(f"PRAGMA synchronous = {want}")
            self._sync = want
        with immediate(self.conn):
            yield self.conn

    # -- bonus events -------------------------------------------------------------------
    def queue_bonus_event(
        self, member: str, kind: str, data: dict[str, Any], now: datetime, program: int, reason: str
    ) -> int:
        """Append one event of the campaigns stream to the outbox (call inside ``tx``)."""
        seq = int(self.conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM cmp_outbox").fetchone()[0])
        ev = Event(
            node=CAMPAIGN_NODE,
            epoch=CAMPAIGN_EPOCH,
            seq=seq,
            id=uuid7(now),
            at=iso(now),
            type=kind,
            member=member,
            program=program,
            data=data,
        )
        self.conn.execute(
            "INSERT INTO cmp_outbox (seq, body, reason, created_at) VALUES (?, ?, ?, ?)",
            (seq, ev.to_json(), reason, iso(now)),
        )
        return seq

    def outbox_after(self, seq: int, limit: int = 5000) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT body FROM cmp_outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [json.loads(b) for (b,) in rows]

    # -- send log reads -------------------------------------------------------------------
    def sends(self, **where: Any) -> list[dict[str, Any]]:
        """Rows of the send log, filtered by equality on the given columns."""
        cond = " AND ".join(f"{k} = ?" for k in where) or "true"
        cur = self.conn.execute(
            f"SELECT * FROM cmp_sends WHERE {cond} ORDER BY member, occasion", list(where.values())
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def uncertain(self) -> list[dict[str, Any]]:
        """Sends cut off mid-hand-over: a person checks the gateway's log and closes them."""
        return self.sends(status=UNCERTAIN)

    def resolve_uncertain(self, member: str, occasion: str, delivered: bool, at: str, by: str) -> bool:
        """A person's verdict on an uncertain send (sent, or failed for good: never resent)."""
        with self.tx() as c:
            cur = c.execute(
                "UPDATE cmp_sends SET status = ?, done_at = ?, outcome = outcome || ? "
                "WHERE member = ? AND occasion = ? AND status = ?",
                (SENT if delivered else FAILED, at, f"; resolved by {by}", member, occasion, UNCERTAIN),
            )
        return bool(cur.rowcount == 1)

    def record_open(self, member: str, occasion: str, at: str) -> None:
        """An opened message (tracking pixel or the gateway's webhook), where known."""
        self.conn.execute(
            "UPDATE cmp_sends SET opened_at = coalesce(opened_at, ?) WHERE member = ? AND occasion = ?",
            (at, member, occasion),
        )


# -- PostgreSQL: the same tables beside the ledger, in its database ------------------------------------
#
# The engine's SQL is written once, in SQLite's words; ``_PgConn`` says it in PostgreSQL's
# (``?`` -> ``%s``, ``INSERT OR IGNORE`` -> ``ON CONFLICT DO NOTHING``). Every write transaction
# takes one advisory lock first, as SQLite's BEGIN IMMEDIATE takes the write lock: a claim is
# decided, and the bonus outbox's next ``seq`` is read, by one job at a time. Every commit waits
# for the server's disk (``durable=False`` is not honoured): recovery takes over a dead owner's
# ``reserved`` rows only when its machine did not restart, which proves nothing was lost on the
# *job's* machine - a server that dropped unsynced commits would make that unsafe.

PG_MIGRATIONS_TABLE = "cmp_migrations"
PG_MIGRATIONS_LOCK = 5361
PG_WRITE_LOCK = 5362
PG_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE cmp_sends (
                member TEXT NOT NULL, occasion TEXT NOT NULL, campaign TEXT NOT NULL,
                channel TEXT, address TEXT, status TEXT NOT NULL, owner TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT, claimed_at TEXT NOT NULL,
                handed_at TEXT, handed_wall DOUBLE PRECISION, done_at TEXT, outcome TEXT, message_id TEXT,
                holdout INTEGER NOT NULL DEFAULT 0, opened_at TEXT, bonus_points INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (member, occasion))""",
            "CREATE INDEX cmp_sends_status ON cmp_sends (status, next_at)",
            "CREATE INDEX cmp_sends_member_done ON cmp_sends (member, done_at)",
            "CREATE INDEX cmp_sends_campaign ON cmp_sends (campaign, status)",
            """CREATE TABLE cmp_outbox (seq BIGINT PRIMARY KEY, body TEXT NOT NULL,
                reason TEXT NOT NULL, created_at TEXT NOT NULL)""",
            """CREATE TABLE cmp_segments (code TEXT NOT NULL, version INTEGER NOT NULL,
                definition TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
                PRIMARY KEY (code, version))""",
            """CREATE TABLE ref_rewards (referred TEXT PRIMARY KEY, referrer TEXT NOT NULL,
                stay_event TEXT, awarded_at TEXT NOT NULL)""",
        ),
    ),
)


def pg_sql(sql: str) -> str:
    """A statement of the engine's (SQLite's words) in PostgreSQL's."""
    out = sql.replace("%", "%%").replace("?", "%s")
    if out.lstrip().upper().startswith("INSERT OR IGNORE INTO"):
        out = out.replace("INSERT OR IGNORE INTO", "INSERT INTO", 1) + " ON CONFLICT DO NOTHING"
    return out


class _PgConn:
    """``execute`` as the engine calls it, on one PostgreSQL connection (autocommit outside ``tx``)."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> Any:
        return self.raw.execute(pg_sql(sql), list(args))


class PgCampaignDb(CampaignDb):
    """The campaign tables in a PostgreSQL ledger's database (one connection: a job is one thread)."""

    def __init__(self, url: str) -> None:  # no super().__init__: no SQLite file here
        import threading

        import psycopg

        from staypoint.central.store_pg import apply_migrations

        self.path = Path(url)
        self.url = url
        raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
        apply_migrations(raw, PG_MIGRATIONS_TABLE, PG_MIGRATIONS_LOCK, PG_MIGRATIONS)
        self.conn = _PgConn(raw)
        self._tx_lock = threading.RLock()
        self._sync = "FULL"

    def close(self) -> None:
        self.conn.raw.close()

    @contextmanager
    def tx(self, *, durable: bool = True) -> Iterator[Any]:
        """One write transaction under the campaigns' advisory lock; always durable (see above)."""
        with self._tx_lock, self.conn.raw.transaction():
            self.conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (PG_WRITE_LOCK,))
            yield self.conn


def open_campaign_db(url: str) -> CampaignDb:
    """The campaign tables beside the ledger ``url`` names (``store.parse_store_url``)."""
    from staypoint.central.store import parse_store_url

    parsed = parse_store_url(url)
    return PgCampaignDb(parsed.url) if parsed.is_pg else CampaignDb(Path(parsed.path or ""))


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size``."""
    part: list[Any] = []
    for item in items:
        part.append(item)
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part
