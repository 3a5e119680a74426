"""The node-side SQL of sync: the outbox cursor, acks, downstream changes and epochs.

Every function takes the replica's connection and must run inside ``Replica.write()`` (or
``read()`` for the read-only ones), so each step commits with its effect or not at all.

The one rule that keeps a node's shown balance honest (docs/architecture.md, The event contract):
a member row on a node is ``central record + this node's own events not yet folded into it``. Head office's
member record carries, per ``node:epoch``, the last seq it folded in; when a record arrives
we replay only our own outbox events past those marks on top of it. Acks and changes may
arrive in any order: the answer is the same, never a double count, never a dropped event.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import orjson

from staypoint.loyalty import fold
from staypoint.loyalty.events import parse_iso
from staypoint.loyalty.program import PinPolicy, parse_program

APPLIED_VERSION_KEY = "sync_applied_version"
SESSION_KEY = "sync_session"

# Member fields head office sends that the node stores as they are.
_MEMBER_SQL = (
    "INSERT INTO members (number, name, tier, points, stored_value, window_start, qual_nights, "
    "qual_points, last_activity, pin_hash, pin_failures, locked_until, blocked, enrolled_at, "
    "home_property) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (number) DO UPDATE SET name = excluded.name, tier = excluded.tier, "
    "points = excluded.points, stored_value = excluded.stored_value, "
    "window_start = excluded.window_start, qual_nights = excluded.qual_nights, "
    "qual_points = excluded.qual_points, last_activity = excluded.last_activity, "
    "pin_hash = excluded.pin_hash, pin_failures = excluded.pin_failures, "
    "locked_until = excluded.locked_until, blocked = excluded.blocked, enrolled_at = excluded.enrolled_at, "
    "home_property = excluded.home_property"
)


class ChangeError(ValueError):
    """A downstream change that does not match the contract (dropped and counted by the agent)."""


@dataclass(frozen=True)
class PendingEvent:
    """One outbox row not yet acknowledged by head office."""

    epoch: int
    seq: int
    body: str


# -- meta ------------------------------------------------------------------------------------


def _meta_int(conn: sqlite3.Connection, key: str, default: int = 0) -> int:
    row = conn.execute("SELECT value FROM node_meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else int(row[0])


def _set_meta(conn: sqlite3.Connection, key: str, value: int | str) -> None:
    conn.execute(
        "INSERT INTO node_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, str(value)),
    )


def node_id(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM node_meta WHERE key = 'node_id'").fetchone()
    if row is None:
        raise ChangeError("replica has no node id")
    return str(row[0])


def current_epoch(conn: sqlite3.Connection) -> int:
    return _meta_int(conn, "epoch", 1)


def applied_version(conn: sqlite3.Connection) -> int:
    """The change-log version this replica has applied everything up to."""
    return _meta_int(conn, APPLIED_VERSION_KEY, 0)


def set_applied_version(conn: sqlite3.Connection, version: int) -> None:
    _set_meta(conn, APPLIED_VERSION_KEY, version)


def next_session(conn: sqlite3.Connection) -> int:
    """A fresh session counter for the retained status / Last Will pair (inside write())."""
    value = _meta_int(conn, SESSION_KEY, 0) + 1
    _set_meta(conn, SESSION_KEY, value)
    return value


def start_new_epoch(conn: sqlite3.Connection, now: datetime, rand: int | None = None) -> int:
    """After a restore: a new epoch with seq from 1, so no (node, epoch, seq) is issued twice.

    A restored file may have lost its newest events, some of them already acknowledged;
    their seqs must never be reused with other bodies. A new epoch needs no talk with head
    office, so a restore works offline. The same backup may be restored twice (Litestream
    lagging, a restore repeated, the wrong file on a second board), so the epoch is not just
    one more than the backup's: it is the restore's own time in milliseconds with 10 random
    bits (below 2**53, what every store and JSON reader holds), never below one more.
    """
    bits = rand if rand is not None else secrets.randbits(10)
    unique = (int(now.timestamp() * 1000) << 10) | (bits & 0x3FF)
    epoch = max(current_epoch(conn) + 1, unique)
    _set_meta(conn, "epoch", epoch)
    _set_meta(conn, "last_seq", 0)
    return epoch


# -- upstream: the outbox ----------------------------------------------------------------------


def oldest_pending_epoch(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT min(epoch) FROM outbox WHERE acked_at IS NULL").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def pending_batch(
    conn: sqlite3.Connection, epoch: int, after_seq: int, *, limit: int, max_bytes: int
) -> list[PendingEvent]:
    """Unacknowledged events of ``epoch`` past ``after_seq``, in seq order, within the limits.

    Batches never mix epochs: a later epoch is sent only once the earlier one is fully
    acknowledged, so the single cumulative ack ``{"epoch", "hw"}`` is always exact.
    """
    out: list[PendingEvent] = []
    size = 0
    for seq, body in conn.execute(
        "SELECT seq, body FROM outbox WHERE acked_at IS NULL AND epoch = ? AND seq > ? ORDER BY seq LIMIT ?",
        (epoch, after_seq, limit),
    ):
        if out and size + len(body) + 1 > max_bytes:
            break
        out.append(PendingEvent(epoch, int(seq), str(body)))
        size += len(body) + 1
    return out


def mark_acked(conn: sqlite3.Connection, epoch: int, hw: int, at: str) -> int:
    """Mark rows done up to head office's cumulative ack; returns how many changed."""
    # Through the pending-rows index: a range over the primary key would walk every row
    # ever acknowledged, on every ack (quadratic over a long backlog).
    cur = conn.execute(
        "UPDATE outbox SET acked_at = ? WHERE rowid IN (SELECT rowid FROM outbox INDEXED BY outbox_pending "
        "WHERE epoch = ? AND seq <= ? AND acked_at IS NULL)",
        (at, epoch, hw),
    )
    return int(cur.rowcount)


def outbox_depth(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0])


def replica_digest(conn: sqlite3.Connection) -> tuple[int, int]:
    """(members, sum of their points) of this replica, to hold against head office's digest."""
    row = conn.execute("SELECT count(*), coalesce(sum(points), 0) FROM members").fetchone()
    return int(row[0]), int(row[1])


# -- downstream: changes ---------------------------------------------------------------------


def _int(body: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChangeError(f"change: {key!r} must be a whole number")
    return value


def _str(body: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ChangeError(f"change: {key!r} must be text")
    return value


def _own_marks(folded: Any, node: str) -> dict[int, int]:
    if not isinstance(folded, dict):
        raise ChangeError("change: 'folded' must be an object")
    marks: dict[int, int] = {}
    prefix = node + ":"
    for key, seq in folded.items():
        if isinstance(key, str) and key.startswith(prefix) and isinstance(seq, int):
            try:
                marks[int(key[len(prefix) :])] = seq
            except ValueError:
                raise ChangeError("change: malformed folded mark") from None
    return marks


def _unfolded_rows(conn: sqlite3.Connection, member: str, marks: Mapping[int, int]) -> sqlite3.Cursor:
    """(epoch, seq, type, body) of ``member``'s outbox rows past head office's ``marks``.

    Only rows past the marks, as index ranges: a member with a long history (or a long
    backlog) must not cost a scan of all their rows on every record that arrives. Epochs
    below the highest mark without a mark of their own hold no unfolded rows: head office
    folds epochs in order."""
    where = ["epoch > ?"] + ["(epoch = ? AND seq > ?)"] * len(marks)
    args: list[Any] = [member, max(marks, default=0)]
    for e, s in marks.items():
        args += [e, s]
    return conn.execute(
        f"SELECT epoch, seq, type, body FROM outbox WHERE member = ? AND ({' OR '.join(where)}) "
        "ORDER BY epoch, seq",
        args,
    )


@lru_cache(maxsize=8)
def _pin_policy(document: str) -> PinPolicy:
    return parse_program(document, "programme").pin


def _event_pin_policy(conn: sqlite3.Connection, version: Any) -> PinPolicy | None:
    """The ``[pin]`` policy of the programme an event names, as head office folds it."""
    row = conn.execute("SELECT document FROM programs WHERE version = ?", (version,)).fetchone()
    return None if row is None else _pin_policy(str(row[0]))


def _overlay(
    conn: sqlite3.Connection, doc: dict[str, Any], marks: Mapping[int, int], tier_ranks: Mapping[str, int]
) -> None:
    """Replay this node's events that head office has not folded in yet onto ``doc``."""
    rows = _unfolded_rows(conn, str(doc["number"]), marks).fetchall()
    for epoch, seq, kind, body in rows:
        if seq <= marks.get(int(epoch), 0):
            continue
        ev = orjson.loads(body)
        pin = _event_pin_policy(conn, ev.get("program")) if kind == "pin.failed" else None
        fold.overlay(doc, kind, ev.get("data", {}), tier_ranks, ev.get("at"), pin)


_INF = 1 << 62


def _thresholds(marks: Mapping[int, int], epochs: Iterable[int]) -> dict[int, int]:
    """Per epoch, the last seq folded in: rows past it are unfolded (see ``_overlay``)."""
    top = max(marks, default=0)
    return {e: marks.get(e, _INF if e <= top else 0) for e in epochs}


@dataclass
class _Trail:
    """One member's own outbox events past some marks, as prefix sums (index 0 = nothing)."""

    loaded: dict[int, int]  # the marks it was read past: valid for any marks at or above them
    epochs: list[int] = field(default_factory=list)
    keys: list[tuple[int, int]] = field(default_factory=list)
    points: list[int] = field(default_factory=lambda: [0])
    value: list[Decimal] = field(default_factory=lambda: [Decimal(0)])
    nights: list[int] = field(default_factory=lambda: [0])
    qual: list[int] = field(default_factory=lambda: [0])
    tiers: dict[tuple[str, int], int] = field(default_factory=dict)  # (tier_after, epoch) -> last seq
    voids: list[tuple[int, int]] = field(default_factory=list)  # and PIN tries: no sums

    def add(self, epoch: int, seq: int, kind: str, body: str) -> None:
        d = fold.stated(kind, orjson.loads(body).get("data", {}))
        points, value, nights, qual = d.points, d.value, d.nights, d.qualifying
        if d.tier_after is not None:
            self.tiers[(d.tier_after, epoch)] = seq
        if d.clamps or kind in fold.PIN_KINDS:
            # A void clamps at zero and a PIN try counts against a lock's clock: order
            # matters, so a member with one unfolded is replayed row by row.
            self.voids.append((epoch, seq))
        if not self.epochs or self.epochs[-1] != epoch:
            self.epochs.append(epoch)
        self.keys.append((epoch, seq))
        self.points.append(self.points[-1] + points)
        self.value.append(self.value[-1] + value)
        self.nights.append(self.nights[-1] + nights)
        self.qual.append(self.qual[-1] + qual)


class UnfoldedCache:
    """Per member, this node's not-yet-folded events as prefix sums, kept between records.

    Without it every member record that arrives replays the member's whole unfolded
    backlog from the outbox (a JSON parse per row): while a long backlog drains, each batch
    head office folds sends every touched member back, and the work grows with the square
    of the backlog. Outbox rows never change once written (only ``acked_at``), so what was
    read stays true; rows written since are read incrementally by (epoch, seq). A trail is
    dropped once head office has folded all of it, so memory follows the unfolded backlog.
    The sums are exact (ints, Decimals); a member with an unfolded ``stay.voided`` (which
    clamps at zero, so order matters) is replayed row by row instead.
    """

    def __init__(self) -> None:
        self._trails: dict[str, _Trail] = {}
        self._seen: tuple[int, int] | None = None  # every trail holds its rows up to here

    def __len__(self) -> int:
        return len(self._trails)

    def clear(self) -> None:
        self._trails.clear()
        self._seen = None

    def refresh(self, conn: sqlite3.Connection) -> None:
        """Append rows written since the last look (inside the caller's write transaction)."""
        row = conn.execute("SELECT epoch, seq FROM outbox ORDER BY epoch DESC, seq DESC LIMIT 1").fetchone()
        newest = (0, 0) if row is None else (int(row[0]), int(row[1]))
        if self._seen is None or not self._trails:
            self._seen = newest
            return
        if newest <= self._seen:
            return
        for epoch, seq, member, kind, body in conn.execute(
            "SELECT epoch, seq, member, type, body FROM outbox WHERE (epoch, seq) > (?, ?) "
            "ORDER BY epoch, seq",
            self._seen,
        ):
            trail = self._trails.get(str(member))
            if trail is not None:
                trail.add(int(epoch), int(seq), str(kind), str(body))
        self._seen = newest

    def _trail(self, conn: sqlite3.Connection, member: str, marks: Mapping[int, int]) -> _Trail:
        trail = self._trails.get(member)
        if trail is not None:
            # Valid while every epoch's threshold is at least what it was loaded from (marks
            # only move forward; anything else is read afresh).
            before = trail.loaded
            epochs = set(before) | set(marks)
            now, then = _thresholds(marks, epochs), _thresholds(before, epochs)
            if max(marks, default=0) < max(before, default=0) or any(now[e] < then[e] for e in epochs):
                trail = None
        if trail is None:
            trail = _Trail(loaded=dict(marks))
            for epoch, seq, kind, body in _unfolded_rows(conn, member, marks):
                trail.add(int(epoch), int(seq), str(kind), str(body))
            self._trails[member] = trail
        return trail

    def overlay(
        self,
        conn: sqlite3.Connection,
        doc: dict[str, Any],
        marks: Mapping[int, int],
        tier_ranks: Mapping[str, int],
    ) -> None:
        """The same result as ``_overlay``, from the cached sums."""
        member = str(doc["number"])
        trail = self._trail(conn, member, marks)
        epochs = trail.epochs
        limits = _thresholds(marks, epochs)
        spans: list[tuple[int, int]] = []
        for e in epochs:
            lo = bisect_right(trail.keys, (e, limits[e]))
            hi = bisect_right(trail.keys, (e, _INF))
            if lo < hi:
                spans.append((lo, hi))
        if not spans:
            del self._trails[member]  # all folded: nothing of ours left to show on top
            return
        if any(s > limits.get(e, 0) for e, s in trail.voids):
            _overlay(conn, doc, marks, tier_ranks)
            return
        for lo, hi in spans:
            doc["points"] += trail.points[hi] - trail.points[lo]
            doc["qual_nights"] += trail.nights[hi] - trail.nights[lo]
            doc["qual_points"] += trail.qual[hi] - trail.qual[lo]
        value = Decimal(doc["stored_value"]) + sum(
            (trail.value[hi] - trail.value[lo] for lo, hi in spans), Decimal(0)
        )
        doc["stored_value"] = f"{value:.2f}"
        best = doc["tier"]
        for (after, e), seq in trail.tiers.items():
            if seq > limits.get(e, 0) and tier_ranks.get(after, -1) > tier_ranks.get(best, -1):
                best = after
        doc["tier"] = best


def apply_members(
    conn: sqlite3.Connection,
    node: str,
    docs: Sequence[Mapping[str, Any]],
    tier_ranks: Mapping[str, int],
    cache: UnfoldedCache | None = None,
) -> None:
    """Store head office's member records, each with our unfolded events on top."""
    checked: list[tuple[dict[str, Any], dict[int, int], list[str]]] = []
    for raw in docs:
        try:
            doc = {
                "number": _str(raw, "number"),
                "name": _str(raw, "name"),
                "tier": _str(raw, "tier"),
                "points": _int(raw, "points"),
                "stored_value": f"{Decimal(_str(raw, 'stored_value')):.2f}",
                "window_start": _str(raw, "window_start"),
                "qual_nights": _int(raw, "qual_nights", 0),
                "qual_points": _int(raw, "qual_points", 0),
                "last_activity": _str(raw, "last_activity", optional=True),
                "pin_hash": _str(raw, "pin_hash"),
                # Absent from a record written before the lock-out was fleet-wide: no lock.
                "pin_failures": _int(raw, "pin_failures", 0),
                "locked_until": _str(raw, "locked_until", optional=True),
                "blocked": bool(raw.get("blocked", False)),
                "enrolled_at": _str(raw, "enrolled_at"),
                "home_property": _str(raw, "home_property"),
            }
        except InvalidOperation:
            raise ChangeError("change: malformed stored_value") from None
        try:
            if doc["locked_until"] is not None:
                parse_iso(doc["locked_until"])
        except ValueError:
            raise ChangeError("change: malformed locked_until") from None
        cards = raw.get("cards", [])
        if not isinstance(cards, list) or not all(isinstance(c, str) for c in cards):
            raise ChangeError("change: 'cards' must be a list of text")
        checked.append((doc, _own_marks(raw.get("folded", {}), node), cards))
    if not checked:
        return
    # Only members with events of ours need the replay: one index probe per member.
    numbers = [d["number"] for d, _, _ in checked]
    with_events = {
        str(m)
        for (m,) in conn.execute(
            "SELECT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM outbox WHERE member = value)",
            (json.dumps(numbers),),
        )
    }
    if cache is not None and with_events:
        cache.refresh(conn)
    rows = []
    marks_rows: list[tuple[str, int, int]] = []
    card_rows: list[tuple[str, str, str]] = []
    for doc, marks, cards in checked:
        if doc["number"] in with_events:
            if cache is not None:
                cache.overlay(conn, doc, marks, tier_ranks)
            else:
                _overlay(conn, doc, marks, tier_ranks)
        rows.append(
            (
                doc["number"],
                doc["name"],
                doc["tier"],
                doc["points"],
                doc["stored_value"],
                doc["window_start"],
                doc["qual_nights"],
                doc["qual_points"],
                doc["last_activity"],
                doc["pin_hash"],
                doc["pin_failures"],
                doc["locked_until"],
                int(doc["blocked"]),
                doc["enrolled_at"],
                doc["home_property"],
            )
        )
        marks_rows.extend((doc["number"], e, s) for e, s in marks.items())
        card_rows.extend((c, doc["number"], doc["enrolled_at"]) for c in cards)
    conn.executemany(_MEMBER_SQL, rows)
    if marks_rows:
        conn.executemany(
            "INSERT INTO sync_folded (member, epoch, seq) VALUES (?, ?, ?) "
            "ON CONFLICT (member, epoch) DO UPDATE SET seq = max(seq, excluded.seq)",
            marks_rows,
        )
    if card_rows:
        conn.executemany(
            "INSERT OR IGNORE INTO cards (uid_hash, member, bound_at) VALUES (?, ?, ?)", card_rows
        )


def release_members(conn: sqlite3.Connection, numbers: Sequence[str]) -> int:
    """Forget members this partial replica no longer holds (head office ended their holds
    here): their records, cards and fold marks. A member with an event of ours head office has
    not acknowledged yet is kept (its record is what our overlay shows it on); the next
    release, or a snapshot, takes it. Returns how many were removed."""
    gone = [
        str(n)
        for (n,) in conn.execute(
            "SELECT value FROM json_each(?) WHERE NOT EXISTS "
            "(SELECT 1 FROM outbox WHERE member = value AND acked_at IS NULL)",
            (json.dumps(list(numbers)),),
        )
    ]
    if not gone:
        return 0
    listed = json.dumps(gone)
    for table, column in (("cards", "member"), ("sync_folded", "member"), ("member_offline", "member")):
        conn.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))", (listed,))
    cur = conn.execute("DELETE FROM members WHERE number IN (SELECT value FROM json_each(?))", (listed,))
    return int(cur.rowcount)


def folded_marks(conn: sqlite3.Connection, member: str) -> dict[int, int]:
    """This node's (epoch -> seq) marks head office has folded into ``member``'s record."""
    return {
        int(e): int(s)
        for e, s in conn.execute("SELECT epoch, seq FROM sync_folded WHERE member = ?", (member,))
    }


def _apply_voucher(conn: sqlite3.Connection, body: Mapping[str, Any]) -> None:
    conn.execute(
        "INSERT INTO vouchers (code, token, reward, member, node, serial, points, issued_at, expires, "
        "status, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        # A voucher only moves forward (issued -> used / voided): an older record never
        # revives one this kiosk has already used or voided.
        "ON CONFLICT (code) DO UPDATE SET status = CASE WHEN vouchers.status = 'issued' "
        "THEN excluded.status ELSE vouchers.status END, changed_at = excluded.changed_at",
        (
            _str(body, "code"),
            _str(body, "token"),
            _str(body, "reward"),
            _str(body, "member"),
            _str(body, "node"),
            _int(body, "serial"),
            _int(body, "points"),
            _str(body, "issued_at"),
            _str(body, "expires"),
            _str(body, "status"),
            _str(body, "changed_at", optional=True),
        ),
    )


def apply_changes(
    conn: sqlite3.Connection,
    changes: Iterable[Mapping[str, Any]],
    tier_ranks: Mapping[str, int],
    cache: UnfoldedCache | None = None,
) -> int:
    """Apply downstream changes in the order given (callers sort by version); returns the count.

    Kinds: ``member`` (a full record), ``deny`` (block / unblock redemptions), ``voucher``,
    ``node_key`` (a node's voucher-signing public key), ``program`` (a versioned document),
    ``quarantine`` (an event head office refused, with its reason), ``revocation`` (a node
    head office revoked, and when).
    Raises ChangeError on a malformed change; the caller's transaction then rolls back.
    """
    node = node_id(conn)
    members: list[Mapping[str, Any]] = []
    count = 0

    def flush() -> None:
        if members:
            apply_members(conn, node, members, tier_ranks, cache)
            members.clear()

    for change in changes:
        if not isinstance(change, Mapping):
            raise ChangeError("change: not an object")
        kind, body = change.get("kind"), change.get("body")
        if not isinstance(body, Mapping):
            raise ChangeError("change: 'body' must be an object")
        count += 1
        if kind == "member":
            members.append(body)
            continue
        flush()  # keep version order between a member record and the other kinds
        if kind == "deny":
            conn.execute(
                "UPDATE members SET blocked = ? WHERE number = ?",
                (int(bool(body.get("blocked"))), _str(body, "member")),
            )
        elif kind == "voucher":
            _apply_voucher(conn, body)
        elif kind == "node_key":
            conn.execute(
                "INSERT OR REPLACE INTO node_keys (node, public_key) VALUES (?, ?)",
                (_str(body, "node"), _str(body, "public_key")),
            )
        elif kind == "revocation":
            at = _str(body, "at")
            try:
                parse_iso(at)
            except ValueError:
                raise ChangeError("change: malformed revocation time") from None
            # The first revocation time is kept: a repeated `provision revoke` moves nothing.
            conn.execute(
                "INSERT INTO node_revocations (node, revoked_at) VALUES (?, ?) "
                "ON CONFLICT (node) DO UPDATE SET revoked_at = min(revoked_at, excluded.revoked_at)",
                (_str(body, "node"), at),
            )
        elif kind == "quarantine":
            # Head office would not book one of our events: the row is marked for the staff
            # status screen (its effect is already gone from the member record it sent).
            if _str(body, "node") == node:
                conn.execute(
                    "UPDATE outbox SET rejected = ? WHERE epoch = ? AND seq = ?",
                    (_str(body, "reason")[:300], _int(body, "epoch"), _int(body, "seq")),
                )
        elif kind == "program":
            version = _int(body, "version")
            conn.execute(
                "INSERT OR REPLACE INTO programs (version, document, received_at) VALUES (?, ?, ?)",
                (version, _str(body, "document"), _str(body, "at", optional=True) or ""),
            )
            if version > _meta_int(conn, "program_version", 0):
                _set_meta(conn, "program_version", version)
        else:
            raise ChangeError(f"change: unknown kind {kind!r}")
    flush()
    return count
