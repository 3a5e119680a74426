"""The embedded ledger store: one SQLite file in WAL mode (see ``store.LedgerStore``)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import astuple
from decimal import Decimal
from pathlib import Path
from typing import Any

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
    T,
)
from staypoint.loyalty.replicas import Hold
from staypoint.sqlitetx import immediate

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS streams (node TEXT NOT NULL, epoch INTEGER NOT NULL, "
    "hw INTEGER NOT NULL, PRIMARY KEY (node, epoch)) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS events (
        id TEXT PRIMARY KEY, node TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
        type TEXT NOT NULL, member TEXT, body TEXT NOT NULL, applied_at TEXT NOT NULL,
        UNIQUE (node, epoch, seq))""",
    """CREATE TABLE IF NOT EXISTS members (number TEXT PRIMARY KEY, doc TEXT NOT NULL,
        points INTEGER NOT NULL, blocked INTEGER NOT NULL) WITHOUT ROWID""",
    # Personal data stays at head office; it never travels to a node.
    "CREATE TABLE IF NOT EXISTS personal (number TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "changed_at TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS stays (event_id TEXT PRIMARY KEY, member TEXT NOT NULL, "
    "points INTEGER NOT NULL, nights INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS vouchers (code TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, member TEXT NOT NULL, node TEXT NOT NULL,
        reward TEXT NOT NULL, points INTEGER NOT NULL, created TEXT NOT NULL, expires TEXT NOT NULL,
        status TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS holds_member ON holds (member) WHERE status = 'held'",
    """CREATE TABLE IF NOT EXISTS overdrafts (id INTEGER PRIMARY KEY, member TEXT NOT NULL,
        node TEXT NOT NULL, event_id TEXT NOT NULL, balance INTEGER NOT NULL, at TEXT NOT NULL,
        resolved_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS alarms (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, node TEXT,
        detail TEXT NOT NULL, at TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS changes (version INTEGER PRIMARY KEY, kind TEXT NOT NULL,
        key TEXT NOT NULL, body TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS changes_key ON changes (kind, key, version)",
    "CREATE TABLE IF NOT EXISTS programs (version INTEGER PRIMARY KEY, document TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS node_keys (node TEXT PRIMARY KEY, public_key TEXT NOT NULL) WITHOUT ROWID",
    # For the API and the console: a member's recent activity, claims by type, vouchers by member.
    "CREATE INDEX IF NOT EXISTS events_member ON events (member)",
    "CREATE INDEX IF NOT EXISTS events_type ON events (type)",
    "CREATE INDEX IF NOT EXISTS vouchers_member ON vouchers (json_extract(doc, '$.member'))",
    # Events head office would not book (a bound, a rule or a node's rights broken).
    """CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL,
        node TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL, member TEXT, type TEXT NOT NULL,
        kind TEXT NOT NULL, reason TEXT NOT NULL, body TEXT NOT NULL, at TEXT NOT NULL, acknowledged_at TEXT,
        UNIQUE (node, epoch, seq))""",
    "CREATE TABLE IF NOT EXISTS node_properties (node TEXT PRIMARY KEY, property TEXT NOT NULL) "
    "WITHOUT ROWID",
    # Partial replicas (loyalty/replicas.py): the members each scope's nodes hold, and the
    # cards head office can find a member by when a node asks for one it does not hold.
    """CREATE TABLE IF NOT EXISTS replica_holds (scope TEXT NOT NULL, member TEXT NOT NULL,
        reason TEXT NOT NULL, until TEXT, PRIMARY KEY (scope, member)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS replica_holds_member ON replica_holds (member)",
    "CREATE INDEX IF NOT EXISTS replica_holds_until ON replica_holds (until) WHERE until IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS member_cards (card TEXT PRIMARY KEY, member TEXT NOT NULL) WITHOUT ROWID",
    # Requests a node made of head office (a void of spent points, a member reported).
    """CREATE TABLE IF NOT EXISTS reviews (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL, member TEXT, node TEXT NOT NULL, detail TEXT NOT NULL, body TEXT NOT NULL,
        at TEXT NOT NULL, outcome TEXT, closed_by TEXT, closed_at TEXT)""",
)
# A hold only grows: a home hold (no end) stays one; otherwise the later end wins, with its reason.
_HOLD_UPSERT = (
    "INSERT INTO replica_holds (scope, member, reason, until) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (scope, member) DO UPDATE SET "
    "reason = CASE WHEN replica_holds.until IS NULL THEN replica_holds.reason "
    "WHEN excluded.until IS NULL OR excluded.until >= replica_holds.until THEN excluded.reason "
    "ELSE replica_holds.reason END, "
    "until = CASE WHEN replica_holds.until IS NULL OR excluded.until IS NULL THEN NULL "
    "ELSE max(replica_holds.until, excluded.until) END"
)
# Columns added after the first release: (table, column, definition).
ADDED_COLUMNS = (
    ("overdrafts", "kind", "TEXT NOT NULL DEFAULT 'points_overdraft'"),
    # Stored-value holds (online payments): kind 'value', the amount a decimal string.
    ("holds", "kind", "TEXT NOT NULL DEFAULT 'points'"),
    ("holds", "amount", "TEXT"),
)


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


class SqliteLedgerStore:
    """``LedgerStore`` on SQLite (WAL). One writer connection; snapshots open their own."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self.conn = self._connect()
        self._lock = threading.RLock()
        for stmt in SCHEMA:
            self.conn.execute(stmt)
        for table, column, definition in ADDED_COLUMNS:
            have = {str(r[1]) for r in self.conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL by default: an ack promises durability, so the commit must reach the disk first.
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA busy_timeout = 30000")
        # Ingest touches the events table's five b-trees and the member rows of a group: keep
        # their pages in memory (64 MiB cache, reads through mmap) instead of re-reading them.
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA mmap_size = 268435456")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, immediate(self.conn):
            yield

    def ingest_transaction(
        self, nodes: Collection[str], enrolled: Collection[str]
    ) -> AbstractContextManager[None]:
        return self.transaction()  # one writer at a time, always

    def retrying(self, work: Callable[[], T], what: str = "ledger transaction") -> T:
        return work()  # one local file: no connection to lose, nothing to fail over to

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        row = self.conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    # -- streams and events ------------------------------------------------------------------
    def high_water(self, node: str, epoch: int) -> int:
        value = self._one("SELECT hw FROM streams WHERE node = ? AND epoch = ?", (node, epoch))
        return 0 if value is None else int(value)

    def put_applied(self, events: list[EventRow], stays: list[StayRow], marks: list[Mark]) -> None:
        if events:
            self.insert_events(events)
        if stays:
            self.put_stays(stays)
        for node, epoch, hw in marks:
            self.set_high_water(node, epoch, hw)

    def set_high_water(self, node: str, epoch: int, hw: int) -> None:
        self.conn.execute(
            "INSERT INTO streams (node, epoch, hw) VALUES (?, ?, ?) "
            "ON CONFLICT (node, epoch) DO UPDATE SET hw = excluded.hw",
            (node, epoch, hw),
        )

    def streams(self) -> list[tuple[str, int, int]]:
        return [
            (str(n), int(e), int(h))
            for n, e, h in self.conn.execute("SELECT node, epoch, hw FROM streams ORDER BY node, epoch")
        ]

    def event_at(self, node: str, epoch: int, seq: int) -> StoredEvent | None:
        row = self.conn.execute(
            "SELECT id, body FROM events WHERE node = ? AND epoch = ? AND seq = ?", (node, epoch, seq)
        ).fetchone()
        return None if row is None else StoredEvent(str(row[0]), node, epoch, seq, str(row[1]))

    def event_by_id(self, event_id: str) -> StoredEvent | None:
        row = self.conn.execute(
            "SELECT node, epoch, seq, body FROM events WHERE id = ?", (event_id,)
        ).fetchone()
        return (
            None if row is None else StoredEvent(event_id, str(row[0]), int(row[1]), int(row[2]), str(row[3]))
        )

    def insert_event(self, event: StoredEvent, kind: str, member: str | None, applied_at: str) -> None:
        self.conn.execute(
            "INSERT INTO events (id, node, epoch, seq, type, member, body, applied_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        """An ingest group's reads: one statement each (a local file: no round trips to save)."""
        taken: set[str] = set()
        if ids:  # one index probe each, one statement
            found = self._one(
                "SELECT json_group_array(id) FROM events WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            )
            taken = set(json.loads(found)) if found else set()
        return GroupReads(
            taken,
            self.members_many(numbers),
            {(n, e): self.high_water(n, e) for n, e in streams},
            self.latest_program_version() if with_program else None,
        )

    def insert_events(self, rows: list[EventRow]) -> None:
        """(id, node, epoch, seq, type, member, body, applied_at) rows, as ``insert_event``."""
        self.conn.executemany(
            "INSERT INTO events (id, node, epoch, seq, type, member, body, applied_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def put_stays(self, rows: list[StayRow]) -> None:
        """(event_id, member, points, nights) rows, as ``put_stay``."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO stays (event_id, member, points, nights) VALUES (?, ?, ?, ?)", rows
        )

    # -- members -------------------------------------------------------------------------------
    def member(self, number: str) -> dict[str, Any] | None:
        doc = self._one("SELECT doc FROM members WHERE number = ?", (number,))
        return None if doc is None else dict(json.loads(doc))

    def put_member(self, doc: dict[str, Any]) -> None:
        self.put_members([doc])

    def put_members(self, docs: list[dict[str, Any]]) -> None:
        self.conn.executemany(
            "INSERT INTO members (number, doc, points, blocked) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (number) DO UPDATE SET doc = excluded.doc, points = excluded.points, "
            "blocked = excluded.blocked",
            [(d["number"], _dumps(d), int(d["points"]), int(bool(d.get("blocked")))) for d in docs],
        )

    def members_many(self, numbers: list[str]) -> dict[str, dict[str, Any]]:
        """The records of ``numbers`` that exist, read in one statement (ingest's prefetch)."""
        if not numbers:
            return {}
        found = self._one(
            "SELECT json_group_object(number, json(doc)) FROM members "
            "WHERE number IN (SELECT value FROM json_each(?))",
            (json.dumps(numbers),),
        )
        return dict(json.loads(found)) if found else {}

    def put_members_logged(self, docs: list[dict[str, Any]]) -> list[int]:
        """``put_member`` + ``append_change("member", …)`` for each doc, serialised once; the
        change versions, in order. Inside the caller's (writer) transaction, so the versions
        are the next ones after the current maximum."""
        if not docs:
            return []
        texts = [_dumps(d) for d in docs]
        self.conn.executemany(
            "INSERT INTO members (number, doc, points, blocked) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (number) DO UPDATE SET doc = excluded.doc, points = excluded.points, "
            "blocked = excluded.blocked",
            [
                (d["number"], t, int(d["points"]), int(bool(d.get("blocked"))))
                for d, t in zip(docs, texts, strict=True)
            ],
        )
        base = self.latest_version()
        self.conn.executemany(
            "INSERT INTO changes (version, kind, key, body) VALUES (?, 'member', ?, ?)",
            [(base + i, d["number"], t) for i, (d, t) in enumerate(zip(docs, texts, strict=True), 1)],
        )
        return list(range(base + 1, base + 1 + len(docs)))

    def put_members_logged_later(self, docs: list[dict[str, Any]]) -> Callable[[], list[int]]:
        """``put_members_logged`` (a local file: nothing to wait for)."""
        versions = self.put_members_logged(docs)
        return lambda: versions

    def referred_members(self) -> list[tuple[str, str, str]]:
        rows = self.conn.execute(
            "SELECT number, json_extract(doc, '$.referred_by'), json_extract(doc, '$.referred_at') "
            "FROM members WHERE json_extract(doc, '$.referred_by') IS NOT NULL ORDER BY number"
        )
        return [(str(n), str(r), str(a or "")) for n, r, a in rows]

    def first_stay_since(self, member: str, at: str) -> str | None:
        value = self._one(
            "SELECT s.event_id FROM stays s JOIN events e ON e.id = s.event_id "
            "WHERE s.member = ? AND s.nights > 0 AND e.type = 'stay.posted' "
            "AND json_extract(e.body, '$.at') >= ? ORDER BY e.rowid LIMIT 1",
            (member, at),
        )
        return None if value is None else str(value)

    def member_numbers(self) -> list[str]:
        return [str(n) for (n,) in self.conn.execute("SELECT number FROM members ORDER BY number")]

    def set_personal(self, number: str, name: str, at: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO personal (number, name, changed_at) VALUES (?, ?, ?)", (number, name, at)
        )

    # -- stays and vouchers ----------------------------------------------------------------------
    def stay(self, event_id: str) -> tuple[str, int, int] | None:
        row = self.conn.execute(
            "SELECT member, points, nights FROM stays WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]))

    def put_stay(self, event_id: str, member: str, points: int, nights: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO stays (event_id, member, points, nights) VALUES (?, ?, ?, ?)",
            (event_id, member, points, nights),
        )

    def voucher(self, code: str) -> dict[str, Any] | None:
        doc = self._one("SELECT doc FROM vouchers WHERE code = ?", (code,))
        return None if doc is None else dict(json.loads(doc))

    def put_voucher(self, doc: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO vouchers (code, doc) VALUES (?, ?)", (doc["code"], _dumps(doc))
        )

    # -- holds -------------------------------------------------------------------------------------
    def put_hold(self, hold: HoldRecord) -> None:
        self.conn.execute(
            f"INSERT INTO holds ({HOLD_COLUMNS}) VALUES ({', '.join('?' * HOLD_ARITY)})", astuple(hold)
        )

    def hold(self, hold_id: str) -> HoldRecord | None:
        row = self.conn.execute(
            f"SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?",
            (hold_id,),
        ).fetchone()
        return None if row is None else HoldRecord(*row)

    def set_hold_status(self, hold_id: str, status: str) -> None:
        self.conn.execute("UPDATE holds SET status = ? WHERE id = ?", (status, hold_id))

    def held_points(self, member: str) -> int:
        return int(
            self._one(
                "SELECT coalesce(sum(points), 0) FROM holds WHERE member = ? AND status = 'held'", (member,)
            )
        )

    def held_value(self, member: str) -> Decimal:
        rows = self.conn.execute(
            "SELECT amount FROM holds WHERE member = ? AND status = 'held' AND kind = 'value'", (member,)
        )
        return sum((Decimal(str(a)) for (a,) in rows), Decimal(0))

    def holds_expiring(self, now: str) -> list[HoldRecord]:
        return [
            HoldRecord(*row)
            for row in self.conn.execute(
                f"SELECT {HOLD_COLUMNS} FROM holds WHERE status = 'held' AND expires <= ?",
                (now,),
            )
        ]

    # -- overdrafts, alarms, counters ----------------------------------------------------------------
    def add_overdraft(
        self, member: str, node: str, event_id: str, balance: int, at: str, kind: str = "points_overdraft"
    ) -> None:
        self.conn.execute(
            "INSERT INTO overdrafts (member, node, event_id, balance, at, kind) VALUES (?, ?, ?, ?, ?, ?)",
            (member, node, event_id, balance, at, kind),
        )

    def resolve_overdrafts(self, member: str, at: str) -> None:
        self.conn.execute(
            "UPDATE overdrafts SET resolved_at = ? WHERE member = ? AND resolved_at IS NULL", (at, member)
        )

    def open_overdrafts(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT member, node, event_id, balance, at, kind FROM overdrafts "
            "WHERE resolved_at IS NULL ORDER BY id"
        )
        return [
            dict(zip(("member", "node", "event_id", "balance", "at", "kind"), r, strict=True)) for r in cur
        ]

    def add_quarantine(self, record: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO quarantine "
            "(event_id, node, epoch, seq, member, type, kind, reason, body, at) "
            "VALUES (:event_id, :node, :epoch, :seq, :member, :type, :kind, :reason, :body, :at)",
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
        cur = self.conn.execute(f"SELECT {', '.join(cols)} FROM quarantine{where} ORDER BY id")
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def acknowledge_quarantine(self, event_id: str, at: str) -> bool:
        cur = self.conn.execute(
            "UPDATE quarantine SET acknowledged_at = ? WHERE event_id = ? AND acknowledged_at IS NULL",
            (at, event_id),
        )
        return cur.rowcount > 0

    def add_review(self, record: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO reviews (event_id, kind, member, node, detail, body, at) "
            "VALUES (:event_id, :kind, :member, :node, :detail, :body, :at)",
            record,
        )

    def reviews(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        cols = REVIEW_COLUMNS
        where = " WHERE closed_at IS NULL" if open_only else ""
        cur = self.conn.execute(f"SELECT {', '.join(cols)} FROM reviews{where} ORDER BY id")
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def close_review(self, event_id: str, outcome: str, by: str, at: str) -> bool:
        cur = self.conn.execute(
            "UPDATE reviews SET outcome = ?, closed_by = ?, closed_at = ? "
            "WHERE event_id = ? AND closed_at IS NULL",
            (outcome, by, at, event_id),
        )
        return cur.rowcount > 0

    def quarantined_at(self, node: str, epoch: int, seq: int) -> str | None:
        value = self._one(
            "SELECT body FROM quarantine WHERE node = ? AND epoch = ? AND seq = ?", (node, epoch, seq)
        )
        return None if value is None else str(value)

    def add_alarm(self, kind: str, node: str | None, detail: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO alarms (kind, node, detail, at) VALUES (?, ?, ?, ?)", (kind, node, detail, at)
        )

    def alarms(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT kind, node, detail, at FROM alarms ORDER BY id")
        return [dict(zip(("kind", "node", "detail", "at"), r, strict=True)) for r in cur]

    def bump_counter(self, name: str, by: int = 1) -> None:
        self.conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def counters(self) -> dict[str, int]:
        return {str(n): int(v) for n, v in self.conn.execute("SELECT name, value FROM counters")}

    # -- change log ----------------------------------------------------------------------------------
    def append_change(self, kind: str, key: str, body: dict[str, Any]) -> int:
        cur = self.conn.execute(
            "INSERT INTO changes (kind, key, body) VALUES (?, ?, ?) RETURNING version",
            (kind, key, _dumps(body)),
        )
        return int(cur.fetchone()[0])

    def latest_version(self) -> int:
        return int(self._one("SELECT coalesce(max(version), 0) FROM changes"))

    def changes_since(self, version: int, limit: int) -> list[Change] | None:
        keys = self.conn.execute(
            "SELECT max(version) FROM changes WHERE version > ? GROUP BY kind, key LIMIT ?",
            (version, limit + 1),
        ).fetchall()
        if len(keys) > limit:
            return None
        versions = sorted(int(v) for (v,) in keys)
        out: list[Change] = []
        for i in range(0, len(versions), 500):
            part = versions[i : i + 500]
            marks = ",".join("?" * len(part))
            for v, kind, key, body in self.conn.execute(
                f"SELECT version, kind, key, body FROM changes WHERE version IN ({marks}) ORDER BY version",
                part,
            ):
                out.append(Change(int(v), str(kind), str(key), json.loads(body)))
        return out

    def digest(self) -> tuple[int, int, int]:
        # One statement is one read snapshot in WAL mode: the version and the sums agree even
        # while another process (central jobs) writes.
        with self._lock:
            row = self.conn.execute(
                "SELECT (SELECT coalesce(max(version), 0) FROM changes), count(*), "
                "coalesce(sum(points), 0) FROM members"
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def snapshot(self, scopes: Collection[str] | None = None) -> tuple[int, Iterator[Change]]:
        # Its own connection and read transaction: a consistent view while the writer goes on.
        conn = self._connect()
        conn.execute("BEGIN")
        version = int(conn.execute("SELECT coalesce(max(version), 0) FROM changes").fetchone()[0])

        def rows() -> Iterator[Change]:
            try:
                for v, doc in conn.execute("SELECT version, document FROM programs ORDER BY version"):
                    yield Change(0, "program", str(v), {"version": int(v), "document": str(doc)})
                for node, key in conn.execute("SELECT node, public_key FROM node_keys"):
                    yield Change(0, "node_key", str(node), {"node": str(node), "public_key": str(key)})
                # Revocations live only in the change log; a new node must hear of them too.
                for node, body in conn.execute(
                    "SELECT key, body FROM changes WHERE kind = 'revocation' ORDER BY version"
                ):
                    yield Change(0, "revocation", str(node), json.loads(body))
                if scopes is None:
                    members = conn.execute("SELECT number, doc FROM members")
                else:
                    members = conn.execute(
                        "SELECT number, doc FROM members WHERE number IN (SELECT member FROM "
                        "replica_holds WHERE scope IN (SELECT value FROM json_each(?)))",
                        (json.dumps(sorted(scopes)),),
                    )
                for number, doc in members:
                    yield Change(0, "member", str(number), json.loads(doc))
                for code, doc in conn.execute("SELECT code, doc FROM vouchers"):
                    yield Change(0, "voucher", str(code), json.loads(doc))
            finally:
                conn.execute("COMMIT")
                conn.close()

        return version, rows()

    # -- programmes and node keys ------------------------------------------------------------------------
    def put_program(self, version: int, document: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO programs (version, document) VALUES (?, ?)", (version, document)
        )

    def program(self, version: int) -> str | None:
        doc = self._one("SELECT document FROM programs WHERE version = ?", (version,))
        return None if doc is None else str(doc)

    def latest_program_version(self) -> int | None:
        value = self._one("SELECT max(version) FROM programs")
        return None if value is None else int(value)

    def put_node_key(self, node: str, public_key: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO node_keys (node, public_key) VALUES (?, ?)", (node, public_key)
        )

    def put_node_property(self, node: str, property_: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO node_properties (node, property) VALUES (?, ?)", (node, property_)
        )

    def node_properties(self) -> list[tuple[str, str]]:
        return [(str(n), str(p)) for n, p in self.conn.execute("SELECT node, property FROM node_properties")]

    def node_property(self, node: str) -> str | None:
        value = self._one("SELECT property FROM node_properties WHERE node = ?", (node,))
        return None if value is None else str(value)

    # -- reads for the API and the console (added with the PostgreSQL store) --------------------------
    def events_after(self, position: int, kinds: list[str], limit: int = 500) -> list[tuple[int, str]]:
        """(position, body) of applied events of ``kinds`` past ``position``, in applied order."""
        marks = ",".join("?" * len(kinds))
        rows = self.conn.execute(
            f"SELECT rowid, body FROM events WHERE type IN ({marks}) AND rowid > ? ORDER BY rowid LIMIT ?",
            (*kinds, position, limit),
        ).fetchall()
        return [(int(p), str(b)) for p, b in rows]

    def member_events(self, member: str, limit: int = 20) -> list[str]:
        """The member's most recent applied events (bodies), newest first."""
        rows = self.conn.execute(
            "SELECT body FROM events WHERE member = ? ORDER BY rowid DESC LIMIT ?", (member, limit)
        ).fetchall()
        return [str(b) for (b,) in rows]

    def member_vouchers(self, member: str, limit: int = 20) -> list[dict[str, Any]]:
        """The member's vouchers, newest first."""
        rows = self.conn.execute(
            "SELECT doc FROM vouchers WHERE json_extract(doc, '$.member') = ? "
            "ORDER BY json_extract(doc, '$.issued_at') DESC LIMIT ?",
            (member, limit),
        ).fetchall()
        return [dict(json.loads(d)) for (d,) in rows]

    def voucher_counts(self) -> dict[str, int]:
        """Vouchers issued per reward and not voided (what the catalogue's stock has given out)."""
        rows = self.conn.execute(
            "SELECT json_extract(doc, '$.reward'), count(*) FROM vouchers "
            "WHERE json_extract(doc, '$.status') <> 'voided' GROUP BY 1"
        ).fetchall()
        return {str(r): int(n) for r, n in rows}

    # -- partial replicas (loyalty/replicas.py) -------------------------------------------------------
    def put_replica_holds(self, holds: Sequence[Hold]) -> None:
        self.conn.executemany(_HOLD_UPSERT, [(h.scope, h.member, h.reason, h.until) for h in holds])

    def replica_scopes(self, members: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for member, scope in self.conn.execute(
            "SELECT member, scope FROM replica_holds WHERE member IN (SELECT value FROM json_each(?))",
            (json.dumps(list(members)),),
        ):
            out.setdefault(str(member), set()).add(str(scope))
        return out

    def expire_replica_holds(self, at: str, limit: int) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "DELETE FROM replica_holds WHERE (scope, member) IN (SELECT scope, member FROM replica_holds "
            "WHERE until IS NOT NULL AND until < ? LIMIT ?) RETURNING scope, member",
            (at, limit),
        ).fetchall()
        return [(str(scope), str(member)) for scope, member in rows]

    def put_member_cards(self, cards: Sequence[tuple[str, str]]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO member_cards (card, member) VALUES (?, ?)", cards)

    def card_member(self, card_hash: str) -> str | None:
        value = self._one("SELECT member FROM member_cards WHERE card = ?", (card_hash,))
        return None if value is None else str(value)

    def backfill_replicas(self, home_scopes: Mapping[str, str]) -> tuple[int, int]:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO replica_holds (scope, member, reason, until) "
            "SELECT coalesce((SELECT value FROM json_each(:scopes) WHERE key = h.home), 'p:' || h.home), "
            "h.number, 'home', NULL FROM (SELECT number, json_extract(doc, '$.home_property') AS home "
            "FROM members) AS h WHERE h.home IS NOT NULL AND h.home <> ''",
            {"scopes": json.dumps(dict(home_scopes))},
        )
        holds = cur.rowcount
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO member_cards (card, member) "
            "SELECT j.value, m.number FROM members AS m, json_each(m.doc, '$.cards') AS j"
        )
        return holds, cur.rowcount

    def member_by_card(self, card_hash: str) -> str | None:
        """The member whose record lists this keyed card hash (a scan: console use only)."""
        value = self._one(
            "SELECT number FROM members WHERE EXISTS "
            "(SELECT 1 FROM json_each(members.doc, '$.cards') WHERE value = ?) LIMIT 1",
            (card_hash,),
        )
        return None if value is None else str(value)
