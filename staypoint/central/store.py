"""The ledger store interface: everything head office keeps, behind one narrow Protocol.

The ledger logic (``central/ledger.py``) talks only to this Protocol, so the embedded
SQLite store (``store_sqlite.py``) can be swapped for PostgreSQL without touching it.
Records cross the interface as plain JSON-able dicts (a member record is exactly what is
sent to nodes), which maps onto a JSONB column as easily as onto SQLite text.

Contract every implementation keeps:
- ``transaction()`` is one atomic unit (SERIALIZABLE, or SQLite's single writer);
  nothing is visible to readers before it commits, and an exception rolls it back.
- ``append_change`` hands out a gapless, increasing global ``version`` (one writer).
- ``snapshot()`` reads a consistent view (its own connection / repeatable read) and
  does not block writers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from staypoint.loyalty.replicas import Hold

T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One entry of the change log (downstream to every node)."""

    version: int
    kind: str  # member | deny | voucher | node_key | program | quarantine | revocation
    key: str
    body: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"version": self.version, "kind": self.kind, "key": self.key, "body": self.body}


@dataclass(frozen=True)
class HoldRecord:
    """Points set aside for an online redemption, or stored value for an online payment
    (``kind`` value: ``amount`` is the money, ``points`` 0, ``reward`` empty), until its event
    arrives."""

    id: str
    member: str
    node: str
    reward: str
    points: int
    created: str
    expires: str
    status: str  # held | settled | expired
    kind: str = "points"  # points | value
    amount: str | None = None  # a value hold's money, a decimal string ("120.50")


# The holds table's columns, in HoldRecord's field order (rows map back with HoldRecord(*row)).
HOLD_COLUMNS = ", ".join(f.name for f in fields(HoldRecord))
#: One placeholder per holds column, for the stores' INSERT (``?`` or ``%s``).
HOLD_ARITY = len(fields(HoldRecord))
#: A review as the stores return it (``LedgerStore.reviews``).
REVIEW_COLUMNS = ("event_id", "kind", "member", "node", "detail", "at", "outcome", "closed_by", "closed_at")


@dataclass(frozen=True)
class GroupReads:
    """What ``Ledger.ingest_many`` reads before it applies a group, read together
    (``LedgerStore.group_reads``): on PostgreSQL one round trip, not one per kind."""

    taken: set[str]  # the group's event ids already in the ledger
    members: dict[str, dict[str, Any]]  # the records of the group's members that exist
    high_water: dict[tuple[str, int], int]  # each (node, epoch) stream's; 0 for a new one
    program_version: int | None = None  # the latest programme's, when asked for (``with_program``)


@dataclass(frozen=True)
class StoredEvent:
    id: str
    node: str
    epoch: int
    seq: int
    body: str


# An ingest group's rows, as the store writes them: (id, node, epoch, seq, type, member, body,
# applied_at); (event_id, member, points, nights); a stream's (node, epoch, high-water).
EventRow = tuple[str, str, int, int, str, str | None, str, str]
StayRow = tuple[str, str, int, int]
Mark = tuple[str, int, int]


class LedgerStore(Protocol):
    """Head office's persistent state. All writes happen inside ``transaction()``."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def ingest_transaction(
        self, nodes: Collection[str], enrolled: Collection[str]
    ) -> AbstractContextManager[None]:
        """``transaction()`` for one ``Ledger.ingest_many`` group: batches from ``nodes``, whose
        events enrol the member numbers ``enrolled``. A store may run several such groups at
        once (PostgreSQL: from several processes), each seeing its nodes' streams and the
        members it reads (``members_many``) as a lone writer would; SQLite runs one at a time."""
        ...

    def retrying(self, work: Callable[[], T], what: str = "ledger transaction") -> T:
        """Run ``work`` (one whole, idempotent transaction) and return what it returns; when the
        store's connection breaks (a database failover) run it again, with a bounded backoff,
        once the store can write again. Gives up with :class:`StoreUnavailable`. Other errors
        pass through at once. A store with nothing to fail over (SQLite) just runs it."""
        ...

    def close(self) -> None: ...

    # -- node streams and events -------------------------------------------------------
    def high_water(self, node: str, epoch: int) -> int: ...

    def set_high_water(self, node: str, epoch: int, hw: int) -> None: ...

    def streams(self) -> list[tuple[str, int, int]]: ...

    def event_at(self, node: str, epoch: int, seq: int) -> StoredEvent | None: ...

    def event_by_id(self, event_id: str) -> StoredEvent | None: ...

    def insert_event(self, event: StoredEvent, kind: str, member: str | None, applied_at: str) -> None: ...

    def event_count(self) -> int: ...

    # Bulk forms, for ``Ledger.ingest_many``: one statement per ingest group, not one per event.
    def group_reads(
        self,
        ids: list[str],
        numbers: list[str],
        streams: Collection[tuple[str, int]],
        *,
        with_program: bool = False,
    ) -> GroupReads:
        """An ingest group's reads, together: which of ``ids`` are already in the ledger, the
        records of ``numbers`` (as ``members_many``, locked as it locks them), the high-water
        of each of ``streams`` and, ``with_program``, the latest programme's version."""
        ...

    def insert_events(self, rows: list[EventRow]) -> None:
        """(id, node, epoch, seq, type, member, body, applied_at) rows, as ``insert_event``, in order."""
        ...

    def put_stays(self, rows: list[StayRow]) -> None:
        """(event_id, member, points, nights) rows, as ``put_stay``."""
        ...

    def put_applied(self, events: list[EventRow], stays: list[StayRow], marks: list[Mark]) -> None:
        """An ingest group's writes of what it applied: ``insert_events(events)``,
        ``put_stays(stays)`` and ``set_high_water`` of each (node, epoch, hw) in ``marks``."""
        ...

    # -- members -------------------------------------------------------------------------
    def members_many(self, numbers: list[str]) -> dict[str, dict[str, Any]]:
        """The records of ``numbers`` that exist, in one read (ingest's prefetch)."""
        ...

    def put_members_logged(self, docs: list[dict[str, Any]]) -> list[int]:
        """``put_member`` + ``append_change("member", …)`` for each doc; the change versions, in order."""
        ...

    def put_members_logged_later(self, docs: list[dict[str, Any]]) -> Callable[[], list[int]]:
        """``put_members_logged``, whose versions are read when the returned function is called:
        at its cheapest after the transaction's commit (on PostgreSQL its answer then comes in
        the COMMIT's round trip, not one of its own)."""
        ...

    # -- referrals: what the daily job's bonus pass reads -----------------------------------------
    def referred_members(self) -> list[tuple[str, str, str]]:
        """(member, referrer, referred_at) of every member the fold recorded as referred."""
        ...

    def first_stay_since(self, member: str, at: str) -> str | None:
        """The event id of ``member``'s first booked stay of one night or more at or after ``at``."""
        ...

    def member(self, number: str) -> dict[str, Any] | None: ...

    def put_member(self, doc: dict[str, Any]) -> None: ...

    def put_members(self, docs: list[dict[str, Any]]) -> None: ...

    def member_numbers(self) -> list[str]: ...

    def set_personal(self, number: str, name: str, at: str) -> None: ...

    # -- stays and vouchers ------------------------------------------------------------------
    def stay(self, event_id: str) -> tuple[str, int, int] | None: ...

    def put_stay(self, event_id: str, member: str, points: int, nights: int) -> None: ...

    def voucher(self, code: str) -> dict[str, Any] | None: ...

    def put_voucher(self, doc: dict[str, Any]) -> None: ...

    # -- holds ------------------------------------------------------------------------------
    def put_hold(self, hold: HoldRecord) -> None: ...

    def hold(self, hold_id: str) -> HoldRecord | None: ...

    def set_hold_status(self, hold_id: str, status: str) -> None: ...

    def held_points(self, member: str) -> int: ...

    def held_value(self, member: str) -> Decimal:
        """The stored value set aside by the member's open value holds."""
        ...

    def holds_expiring(self, now: str) -> list[HoldRecord]: ...

    # -- overdrafts, alarms, counters -----------------------------------------------------------
    def add_overdraft(
        self, member: str, node: str, event_id: str, balance: int, at: str, kind: str = "points_overdraft"
    ) -> None:
        """A debt written down: ``kind`` is points_overdraft, value_overdraft, voucher_reused or
        void_after_spend; ``balance`` the member's points after it (cents for stored value)."""
        ...

    def resolve_overdrafts(self, member: str, at: str) -> None: ...

    def open_overdrafts(self) -> list[dict[str, Any]]: ...

    def add_alarm(self, kind: str, node: str | None, detail: str, at: str) -> None: ...

    # -- quarantine: events head office would not book ----------------------------------------
    def add_quarantine(self, record: dict[str, Any]) -> None:
        """Keep one refused event (event_id, node, epoch, seq, member, type, kind, reason, body, at)."""
        ...

    def quarantined(self, *, open_only: bool = True) -> list[dict[str, Any]]: ...

    def acknowledge_quarantine(self, event_id: str, at: str) -> bool: ...

    def quarantined_at(self, node: str, epoch: int, seq: int) -> str | None:
        """The body of the quarantined event at this stream key, if any."""
        ...

    # -- reviews: what nodes ask head office to decide ------------------------------------------
    def add_review(self, record: dict[str, Any]) -> None:
        """Keep one request (event_id, kind, member, node, detail, body, at); a repeat is ignored."""
        ...

    def reviews(self, *, open_only: bool = True) -> list[dict[str, Any]]: ...

    def close_review(self, event_id: str, outcome: str, by: str, at: str) -> bool:
        """Close an open review with staff's decision; False when none was open."""
        ...

    def put_node_property(self, node: str, property_: str) -> None: ...

    def node_property(self, node: str) -> str | None: ...

    def node_properties(self) -> list[tuple[str, str]]:
        """Every registered node and its property."""
        ...

    def alarms(self) -> list[dict[str, Any]]: ...

    def bump_counter(self, name: str, by: int = 1) -> None: ...

    def counters(self) -> dict[str, int]: ...

    # -- change log -------------------------------------------------------------------------------
    def append_change(self, kind: str, key: str, body: dict[str, Any]) -> int: ...

    def latest_version(self) -> int: ...

    def changes_since(self, version: int, limit: int) -> list[Change] | None:
        """The latest change per (kind, key) past ``version``, in version order; None when
        more than ``limit`` keys changed (the caller sends a snapshot instead)."""
        ...

    def snapshot(self, scopes: Collection[str] | None = None) -> tuple[int, Iterator[Change]]:
        """(version, the current state as changes) from one consistent read; with ``scopes``,
        only the members held in them (a partial replica's snapshot, loyalty/replicas.py)."""
        ...

    def digest(self) -> tuple[int, int, int]:
        """(version, members, sum of their points) from one consistent read: what a node at
        ``version`` with nothing of its own unfolded must hold too (``sp/v1/fleet/digest``)."""
        ...

    # -- programmes and node keys -------------------------------------------------------------------
    def put_program(self, version: int, document: str) -> None: ...

    def program(self, version: int) -> str | None: ...

    def latest_program_version(self) -> int | None: ...

    def put_node_key(self, node: str, public_key: str) -> None: ...

    # -- reads for the API and the console ---------------------------------------------------------------
    def events_after(self, position: int, kinds: list[str], limit: int = 500) -> list[tuple[int, str]]:
        """(position, body) of applied events of ``kinds`` past ``position``, in applied order."""
        ...

    def member_events(self, member: str, limit: int = 20) -> list[str]: ...

    def member_vouchers(self, member: str, limit: int = 20) -> list[dict[str, Any]]: ...

    def voucher_counts(self) -> dict[str, int]: ...

    def member_by_card(self, card_hash: str) -> str | None: ...

    # -- partial replicas (loyalty/replicas.py) ----------------------------------------------------------
    def put_replica_holds(self, holds: Sequence[Hold]) -> None:
        """Keep these holds; a hold only grows (a home hold stays one, the later end wins)."""
        ...

    def replica_scopes(self, members: Sequence[str]) -> dict[str, set[str]]:
        """The scopes each of ``members`` is held in (a member held nowhere is absent)."""
        ...

    def expire_replica_holds(self, at: str, limit: int) -> list[tuple[str, str]]:
        """Remove up to ``limit`` holds that ended before ``at``; the (scope, member) removed."""
        ...

    def put_member_cards(self, cards: Sequence[tuple[str, str]]) -> None:
        """Index (card hash, member): what a node's online fetch by card looks up."""
        ...

    def card_member(self, card_hash: str) -> str | None:
        """The member of an indexed card hash (one index probe, never a scan)."""
        ...

    def backfill_replicas(self, home_scopes: Mapping[str, str]) -> tuple[int, int]:
        """Give every member its home hold (``home_scopes``: home property -> scope; a property
        not in it is its own scope) and index every card; (holds added, cards added)."""
        ...


# -- choosing a store: the one place a URL becomes a ledger store -----------------------------------

STORE_HELP = "the ledger: sqlite:///abs/path.db, sqlite:relative.db or postgresql://user@host/db"


class StoreConfigError(ValueError):
    """A store URL that names no store we have, or a store that is not there (one line, for a CLI)."""


class StoreUnavailable(RuntimeError):
    """The store could not write within its failover allowance (``LedgerStore.retrying``)."""


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL: ``kind`` is ``sqlite`` (with ``path``) or ``postgresql`` (with ``url``)."""

    kind: str
    url: str
    path: str | None = None

    @property
    def is_pg(self) -> bool:
        return self.kind == "postgresql"

    def canonical(self) -> str:
        """``sqlite:///absolute/path`` or the PostgreSQL URL as given (what ``SideStore`` takes)."""
        if self.is_pg:
            return self.url
        import os

        return "sqlite://" + os.path.abspath(self.path or "")


def parse_store_url(url: str) -> StoreUrl:
    """``sqlite:///abs/path.db``, ``sqlite:relative.db`` (``sqlite://relative.db`` too), a bare path
    (what ``--db`` gives), or ``postgresql://...`` / ``postgres://...``; anything else is refused."""
    text = (url or "").strip()
    if not text:
        raise StoreConfigError("empty store URL: use sqlite:///path/ledger.db or postgresql://...")
    if text.startswith(("postgresql://", "postgres://")):
        try:
            from psycopg.conninfo import conninfo_to_dict

            conninfo_to_dict(text)
        except ImportError:  # pragma: no cover - psycopg is a dependency
            pass
        except Exception as exc:  # psycopg.ProgrammingError: a URL libpq cannot read
            raise StoreConfigError(f"bad PostgreSQL URL {text!r}: {str(exc).splitlines()[0]}") from None
        return StoreUrl("postgresql", text)
    if text.startswith("sqlite:"):
        path = text.removeprefix("sqlite:")
        if path.startswith("//"):
            path = path[2:]  # sqlite:///abs -> /abs; sqlite://rel -> rel
        if not path or "?" in path or "://" in path:
            raise StoreConfigError(
                f"bad SQLite store URL {text!r}: use sqlite:///abs/path.db or sqlite:relative.db"
            )
        return StoreUrl("sqlite", text, path)
    import re

    if "://" in text or re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", text):
        raise StoreConfigError(f"unknown store {text!r}: use sqlite:///path/ledger.db or postgresql://...")
    return StoreUrl("sqlite", text, text)


def open_ledger_store(url: str, *, must_exist: bool = False, **kw: Any) -> LedgerStore:
    """The ledger store a URL names (see :func:`parse_store_url`).

    ``must_exist`` is for commands that only read (stats, report, console): a SQLite file
    that is not there, or a PostgreSQL database with no ledger in it, is a
    :class:`StoreConfigError` instead of a new, empty ledger. A server that cannot be
    reached is one too.
    """
    parsed = parse_store_url(url)
    if parsed.is_pg:
        import psycopg

        from staypoint.central.store_pg import PgLedgerStore

        try:
            if must_exist:
                with psycopg.connect(parsed.url, connect_timeout=10) as conn:
                    row = conn.execute("SELECT to_regclass('events') IS NOT NULL").fetchone()
                if not row or not row[0]:
                    raise StoreConfigError(f"no ledger in {_redact(parsed.url)} (no events table)")
            return PgLedgerStore(parsed.url, **kw)
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreConfigError(f"cannot open {_redact(parsed.url)}: {first}") from None
        except Exception as exc:  # the pool's own timeout when the server is not there
            if type(exc).__name__ == "PoolTimeout":
                raise StoreConfigError(f"cannot reach {_redact(parsed.url)}: {exc}") from None
            raise
    import sqlite3
    from pathlib import Path

    from staypoint.central.store_sqlite import SqliteLedgerStore

    path = Path(parsed.path or "")
    if must_exist and not path.is_file():
        raise StoreConfigError(f"no ledger at {path}: check --store (a read command creates nothing)")
    if not path.parent.is_dir():
        raise StoreConfigError(f"no folder {path.parent} for the ledger {path}")
    try:
        return SqliteLedgerStore(path, **kw)
    except sqlite3.DatabaseError as exc:
        raise StoreConfigError(f"cannot open the ledger {path}: {exc}") from None


def _redact(url: str) -> str:
    """A PostgreSQL URL without its password, for messages."""
    import re

    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def add_store_option(parser: Any, *, required: bool = True) -> None:
    """``--store URL`` with ``--db PATH`` kept as its SQLite alias (one of them, not both)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--store", help=STORE_HELP)
    group.add_argument("--db", help="the ledger as a SQLite file: same as --store sqlite:PATH")


def store_url(args: Any) -> str:
    """The store URL a command was given (``--store``, or ``--db`` as a SQLite path)."""
    url = getattr(args, "store", None) or getattr(args, "db", None)
    if not url:
        raise StoreConfigError("no ledger given: use --store sqlite:///path/ledger.db or postgresql://...")
    return str(url)
