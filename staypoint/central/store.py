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

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import Any, Protocol


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
    """Points set aside for an online redemption until its event arrives."""

    id: str
    member: str
    node: str
    reward: str
    points: int
    created: str
    expires: str
    status: str  # held | settled | expired


# The holds table's columns, in HoldRecord's field order (rows map back with HoldRecord(*row)).
HOLD_COLUMNS = ", ".join(f.name for f in fields(HoldRecord))


@dataclass(frozen=True)
class StoredEvent:
    id: str
    node: str
    epoch: int
    seq: int
    body: str


class LedgerStore(Protocol):
    """Head office's persistent state. All writes happen inside ``transaction()``."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...

    # -- node streams and events -------------------------------------------------------
    def high_water(self, node: str, epoch: int) -> int: ...

    def set_high_water(self, node: str, epoch: int, hw: int) -> None: ...

    def streams(self) -> list[tuple[str, int, int]]: ...

    def event_at(self, node: str, epoch: int, seq: int) -> StoredEvent | None: ...

    def event_by_id(self, event_id: str) -> StoredEvent | None: ...

    def insert_event(self, event: StoredEvent, kind: str, member: str | None, applied_at: str) -> None: ...

    def event_count(self) -> int: ...

    # -- members -------------------------------------------------------------------------
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

    def put_node_property(self, node: str, property_: str) -> None: ...

    def node_property(self, node: str) -> str | None: ...

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

    def snapshot(self) -> tuple[int, Iterator[Change]]:
        """(version, the current state as changes) from one consistent read."""
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
