"""The node's SQLite replica: connection, migrations, and every SQL statement of the node.

One file in WAL mode. Writers take the write lock up front (``BEGIN IMMEDIATE``) so two
processes on the same file — the kiosk and a staff command — queue instead of failing
half-way, and the outbox ``seq`` stays gapless. Each public operation of the service is
exactly one ``write()`` block: its effect and its outbox event commit together or not at all.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from staypoint.edge.schema import LATEST, MIGRATIONS
from staypoint.loyalty.events import Event
from staypoint.sqlitetx import immediate

BUSY_TIMEOUT_MS = 10_000
AUTOCHECKPOINT_PAGES = 4_000


class _Rows:
    """Rows already fetched from a cursor, with the cursor's small reading API."""

    def __init__(self, rows: list[Any], description: Any) -> None:
        self._rows = rows
        self.description = description

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class ReplicaError(RuntimeError):
    """The replica file cannot be opened or is not a Staypoint replica."""


@dataclass(frozen=True)
class MemberRow:
    number: str
    name: str
    tier: str
    points: int
    stored_value: str
    window_start: str
    qual_nights: int
    qual_points: int
    last_activity: str | None
    pin_hash: str
    pin_failures: int
    locked_until: str | None
    blocked: bool
    enrolled_at: str
    home_property: str


_MEMBER_COLUMNS = (
    "number, name, tier, points, stored_value, window_start, qual_nights, qual_points, "
    "last_activity, pin_hash, pin_failures, locked_until, blocked, enrolled_at, home_property"
)


def _member(row: Sequence[Any] | None) -> MemberRow | None:
    if row is None:
        return None
    values = list(row)
    values[12] = bool(values[12])
    return MemberRow(*values)


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open ``path`` with the replica's settings (WAL, busy timeout, foreign keys off)."""
    try:
        # check_same_thread off: the kiosk runs service calls in worker threads; the
        # Replica's lock keeps one transaction at a time on the connection.
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ReplicaError(f"{path}: not a usable SQLite file ({exc})") from None
    if mode != "wal":
        raise ReplicaError(f"{path}: could not switch to WAL mode (got {mode})")
    # FULL: a voucher handed to a guest must survive a power cut, not just a crash.
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # The default auto-checkpoint (1,000 pages) lands on about one guest operation in a
    # hundred and triples its latency. A kiosk is idle most of the time, so the node
    # checkpoints when idle (NodeService.maintenance) and keeps this as a safety net.
    conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
    return conn


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> int:
    """Bring the schema to ``target``, one transaction per migration; return the new version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST:
        raise ReplicaError(f"replica schema {version} is newer than this software ({LATEST})")
    for m in MIGRATIONS:
        if version < m.version <= target:
            with immediate(conn):
                for stmt in m.statements:
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {m.version}")
            version = m.version
    return version


class Replica:
    """All SQL the node runs. Methods that change data must be called inside ``write()``."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self.conn = connect(path, synchronous=synchronous)
        self._lock = threading.RLock()
        migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[None]:
        """One atomic operation: take the write lock now, commit on success, roll back on error."""
        with self._lock, immediate(self.conn):
            yield

    @contextmanager
    def read(self) -> Iterator[None]:
        """A consistent snapshot across several reads."""
        with self._lock:
            self.conn.execute("BEGIN")
            try:
                yield
            finally:
                self.conn.execute("COMMIT")

    def _q(self, sql: str, args: Sequence[Any] = ()) -> _Rows:
        """Run one statement under the connection's lock and fetch its rows at once.

        The kiosk calls the service from worker threads; holding the lock while the rows
        are read keeps a reader from seeing another thread's half-done transaction.
        """
        with self._lock:
            cur = self.conn.execute(sql, args)
            return _Rows(cur.fetchall(), cur.description)

    def _qmany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._lock:
            self.conn.executemany(sql, rows)

    def checkpoint(self) -> tuple[int, int]:
        """A passive WAL checkpoint (never blocks writers); returns (wal pages, checkpointed)."""
        with self._lock:
            _, log, done = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log), int(done)

    # -- node meta -------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._q("SELECT value FROM node_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | int) -> None:
        self._q(
            "INSERT INTO node_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    def bump_meta(self, key: str, by: int = 1) -> int:
        """Add ``by`` to an integer meta value and return the new value (inside write())."""
        row = self._q(
            "UPDATE node_meta SET value = CAST(value AS INTEGER) + ? WHERE key = ? RETURNING value",
            (by, key),
        ).fetchone()
        if row is None:
            self.set_meta(key, by)
            return by
        return int(row[0])

    # -- programme -------------------------------------------------------------------

    def store_program(self, version: int, document: str, at: str) -> None:
        self._q(
            "INSERT OR REPLACE INTO programs (version, document, received_at) VALUES (?, ?, ?)",
            (version, document, at),
        )

    def program_document(self, version: int) -> str | None:
        row = self._q("SELECT document FROM programs WHERE version = ?", (version,)).fetchone()
        return None if row is None else str(row[0])

    # -- members ---------------------------------------------------------------------

    def member(self, number: str) -> MemberRow | None:
        row = self._q(f"SELECT {_MEMBER_COLUMNS} FROM members WHERE number = ?", (number,)).fetchone()
        return _member(row)

    def member_by_card(self, uid_hash: str) -> str | None:
        row = self._q("SELECT member FROM cards WHERE uid_hash = ?", (uid_hash,)).fetchone()
        return None if row is None else str(row[0])

    def insert_member(self, m: MemberRow) -> None:
        self._q(
            f"INSERT INTO members ({_MEMBER_COLUMNS}) VALUES ({', '.join('?' * 15)})",
            (
                m.number,
                m.name,
                m.tier,
                m.points,
                m.stored_value,
                m.window_start,
                m.qual_nights,
                m.qual_points,
                m.last_activity,
                m.pin_hash,
                m.pin_failures,
                m.locked_until,
                int(m.blocked),
                m.enrolled_at,
                m.home_property,
            ),
        )

    def insert_members(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Bulk insert (seeding / snapshots): rows in ``_MEMBER_COLUMNS`` order."""
        self._qmany(f"INSERT INTO members ({_MEMBER_COLUMNS}) VALUES ({', '.join('?' * 15)})", rows)

    def insert_cards(self, rows: Iterable[tuple[str, str, str]]) -> None:
        self._qmany("INSERT INTO cards (uid_hash, member, bound_at) VALUES (?, ?, ?)", rows)

    def bind_card(self, uid_hash: str, member: str, at: str) -> None:
        self._q(
            "INSERT INTO cards (uid_hash, member, bound_at) VALUES (?, ?, ?)",
            (uid_hash, member, at),
        )

    def update_member(self, number: str, **fields: Any) -> None:
        allowed = set(_MEMBER_COLUMNS.replace(" ", "").split(",")) - {"number"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown member fields {sorted(bad)}")
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self._q(f"UPDATE members SET {assignments} WHERE number = ?", (*fields.values(), number))

    def member_count(self) -> int:
        return int(self._q("SELECT count(*) FROM members").fetchone()[0])

    def points_from_ledger(self, number: str) -> int:
        row = self._q("SELECT coalesce(sum(points), 0) FROM ledger WHERE member = ?", (number,)).fetchone()
        return int(row[0])

    # -- ledger (member activity) ---------------------------------------------------

    def add_ledger(
        self,
        event_id: str,
        member: str,
        at: str,
        kind: str,
        points: int,
        description: str,
        amount: str | None = None,
    ) -> None:
        self._q(
            "INSERT INTO ledger (event_id, member, at, type, points, amount, description) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event_id, member, at, kind, points, amount, description),
        )

    def insert_ledger_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._qmany(
            "INSERT INTO ledger (event_id, member, at, type, points, amount, description) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def recent_activity(self, member: str, limit: int) -> list[tuple[str, str, int, str | None, str]]:
        rows = self._q(
            "SELECT at, type, points, amount, description FROM ledger WHERE member = ? "
            "ORDER BY id DESC LIMIT ?",
            (member, limit),
        ).fetchall()
        return [(str(a), str(t), int(p), m, str(d)) for a, t, p, m, d in rows]

    # -- outbox ----------------------------------------------------------------------

    def append_outbox(self, event: Event) -> None:
        self._q(
            "INSERT INTO outbox (epoch, seq, id, type, member, at, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.epoch, event.seq, event.id, event.type, event.member, event.at, event.to_json()),
        )

    def outbox(self, *, pending_only: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT body, acked_at FROM outbox"
        if pending_only:
            sql += " WHERE acked_at IS NULL"
        sql += " ORDER BY epoch, seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for body, acked in self._q(sql):
            event = json.loads(body)
            event["acked"] = acked is not None
            out.append(event)
        return out

    def outbox_depth(self) -> int:
        return int(self._q("SELECT count(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0])

    # -- stays -----------------------------------------------------------------------

    def live_stay(self, property_: str, folio: str) -> tuple[str, str, int, int] | None:
        """(event_id, member, points, nights) of the live stay for a folio."""
        row = self._q(
            "SELECT event_id, member, points, nights FROM stays "
            "WHERE property = ? AND folio = ? AND voided_at IS NULL",
            (property_, folio),
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), int(row[2]), int(row[3]))

    def void_requested(self, stay_id: str) -> bool:
        """True when this node has already asked head office to settle a void of ``stay_id``."""
        row = self._q(
            "SELECT 1 FROM outbox WHERE type = 'stay.void_requested' "
            "AND json_extract(body, '$.data.stay') = ? LIMIT 1",
            (stay_id,),
        ).fetchone()
        return row is not None

    def insert_stay(
        self,
        event_id: str,
        member: str,
        property_: str,
        folio: str,
        arrival: str,
        departure: str,
        nights: int,
        revenue: str,
        points: int,
        at: str,
    ) -> None:
        self._q(
            "INSERT INTO stays (event_id, member, property, folio, arrival, departure, nights, "
            "revenue, points, posted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, member, property_, folio, arrival, departure, nights, revenue, points, at),
        )

    def void_stay(self, event_id: str, at: str) -> None:
        self._q("UPDATE stays SET voided_at = ? WHERE event_id = ?", (at, event_id))

    def stay_count(self, member: str) -> int:
        return int(
            self._q(
                "SELECT count(*) FROM stays WHERE member = ? AND voided_at IS NULL", (member,)
            ).fetchone()[0]
        )

    # -- vouchers and stock -------------------------------------------------------------

    def insert_voucher(
        self,
        code: str,
        token: str,
        reward: str,
        member: str,
        node: str,
        serial: int,
        points: int,
        issued_at: str,
        expires: str,
    ) -> None:
        self._q(
            "INSERT INTO vouchers (code, token, reward, member, node, serial, points, issued_at, "
            "expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (code, token, reward, member, node, serial, points, issued_at, expires),
        )

    def voucher(self, code: str) -> dict[str, Any] | None:
        cur = self._q("SELECT * FROM vouchers WHERE code = ?", (code,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def set_voucher_status(self, code: str, status: str, at: str) -> None:
        self._q("UPDATE vouchers SET status = ?, changed_at = ? WHERE code = ?", (status, at, code))

    def last_voucher(self, member: str | None = None) -> dict[str, Any] | None:
        sql = "SELECT code FROM vouchers"
        args: tuple[Any, ...] = ()
        if member is not None:
            sql += " WHERE member = ?"
            args = (member,)
        row = self._q(sql + " ORDER BY issued_at DESC, serial DESC LIMIT 1", args).fetchone()
        return None if row is None else self.voucher(str(row[0]))

    def member_vouchers(self, member: str, limit: int = 10) -> list[dict[str, Any]]:
        codes = self._q(
            "SELECT code FROM vouchers WHERE member = ? ORDER BY issued_at DESC LIMIT ?",
            (member, limit),
        ).fetchall()
        return [v for (c,) in codes if (v := self.voucher(str(c))) is not None]

    def stock(self, reward: str) -> int | None:
        row = self._q("SELECT remaining FROM reward_stock WHERE reward = ?", (reward,)).fetchone()
        return None if row is None else int(row[0])

    def set_stock(self, reward: str, remaining: int) -> None:
        self._q(
            "INSERT INTO reward_stock (reward, remaining) VALUES (?, ?) "
            "ON CONFLICT (reward) DO UPDATE SET remaining = excluded.remaining",
            (reward, remaining),
        )

    def add_stock(self, reward: str, by: int) -> None:
        self._q("UPDATE reward_stock SET remaining = remaining + ? WHERE reward = ?", (by, reward))

    def node_public_keys(self) -> dict[str, str]:
        return {str(n): str(k) for n, k in self._q("SELECT node, public_key FROM node_keys")}

    def node_revoked_at(self, node: str) -> str | None:
        """When head office revoked ``node`` (ISO), or None while it is in good standing."""
        row = self._q("SELECT revoked_at FROM node_revocations WHERE node = ?", (node,)).fetchone()
        return None if row is None else str(row[0])

    def set_node_key(self, node: str, public_key_hex: str) -> None:
        self._q("INSERT OR REPLACE INTO node_keys (node, public_key) VALUES (?, ?)", (node, public_key_hex))

    # -- claims and feedback ------------------------------------------------------------

    def insert_claim(
        self,
        event_id: str,
        member: str,
        property_: str,
        folio: str,
        arrival: str,
        departure: str,
        note: str,
        at: str,
    ) -> None:
        self._q(
            "INSERT INTO claims (event_id, member, property, folio, arrival, departure, note, "
            "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, member, property_, folio, arrival, departure, note, at),
        )

    def insert_feedback(
        self, event_id: str, member: str, at: str, stars: int, tags: str, context: str
    ) -> None:
        self._q(
            "INSERT INTO feedback (event_id, member, at, stars, tags, context) VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, member, at, stars, tags, context),
        )

    def feedback_for(self, member: str) -> list[tuple[int, str, str]]:
        return [
            (int(s), str(t), str(c))
            for s, t, c in self._q(
                "SELECT stars, tags, context FROM feedback WHERE member = ? ORDER BY at", (member,)
            )
        ]

    # -- offline counters -----------------------------------------------------------------

    def offline_counters(self, member: str) -> tuple[int, int]:
        row = self._q(
            "SELECT points_since_contact, consecutive FROM member_offline WHERE member = ?",
            (member,),
        ).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def rejected_events(self, limit: int) -> list[dict[str, Any]]:
        """Our events head office would not book, newest first (``quarantine`` changes)."""
        rows = self._q(
            "SELECT epoch, seq, type, member, at, rejected FROM outbox WHERE rejected IS NOT NULL "
            "ORDER BY epoch DESC, seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("epoch", "seq", "type", "member", "at", "reason")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def rejected_count(self) -> int:
        return int(self._q("SELECT count(*) FROM outbox WHERE rejected IS NOT NULL").fetchone()[0])

    def value_spent_since(self, member: str, since: str | None) -> Decimal:
        """Stored value this node paid out for ``member`` since ``since`` (an ISO time) on
        its own word: payments head office held (``data.hold``) count against no offline limit."""
        total = Decimal(0)
        for (amount,) in self._q(
            "SELECT json_extract(body, '$.data.amount') FROM outbox "
            "WHERE member = ? AND type = 'value.spent' AND at >= ? "
            "AND json_extract(body, '$.data.hold') IS NULL",
            (member, since or ""),
        ):
            total += Decimal(str(amount))
        return total

    def add_offline(self, member: str, points: int) -> None:
        self._q(
            "INSERT INTO member_offline (member, points_since_contact, consecutive) VALUES (?, ?, 1) "
            "ON CONFLICT (member) DO UPDATE SET points_since_contact = points_since_contact + ?, "
            "consecutive = consecutive + 1",
            (member, points, points),
        )

    def clear_offline(self, member: str | None = None) -> None:
        if member is None:
            self._q("DELETE FROM member_offline")
        else:
            self._q("DELETE FROM member_offline WHERE member = ?", (member,))

    # -- staff ----------------------------------------------------------------------------

    def insert_staff(self, staff_id: str, name: str, role: str, card_hash: str | None, pin_hash: str) -> None:
        self._q(
            "INSERT INTO staff (staff_id, name, role, card_hash, pin_hash) VALUES (?, ?, ?, ?, ?)",
            (staff_id, name, role, card_hash, pin_hash),
        )

    def staff(self, *, staff_id: str | None = None, card_hash: str | None = None) -> dict[str, Any] | None:
        if staff_id is not None:
            cur = self._q("SELECT * FROM staff WHERE staff_id = ?", (staff_id,))
        else:
            cur = self._q("SELECT * FROM staff WHERE card_hash = ?", (card_hash,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    def update_staff_pin_state(self, staff_id: str, failures: int, locked_until: str | None) -> None:
        self._q(
            "UPDATE staff SET pin_failures = ?, locked_until = ? WHERE staff_id = ?",
            (failures, locked_until, staff_id),
        )
