"""Ingest groups on PostgreSQL overlap (store_pg, ``ingest_transaction``): two groups that share
no node and no member read and fold at the same time; one that shares a node's stream or a
member with a running group waits for its commit; any other writer waits for them all; the
groups' writes still commit one at a time, in the order their serials were handed out. Two
ledgers ingesting the same fleet's backlog at once end exactly where one ledger alone does."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from staypoint.central import pg
from staypoint.central.ledger import Ledger
from staypoint.central.seed import seed_docs
from staypoint.central.store_pg import PgLedgerStore
from staypoint.loyalty.events import Event, iso, uuid7
from staypoint.loyalty.program import default_program_text

pytest_plugins = ["tests.pg_fixtures"]
pytestmark = [pytest.mark.timeout(120)]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def two_stores(pg_url: str) -> Iterator[tuple[PgLedgerStore, PgLedgerStore]]:
    """Two stores on one ledger: what two ``central serve`` processes have."""
    ledger = Ledger(PgLedgerStore(pg_url))
    ledger.publish_program(default_program_text(), NOW)
    program = ledger.program()
    assert program is not None
    ledger.import_members(seed_docs(program, 6, NOW, start=7_000_000))
    ledger.store.close()
    stores = (PgLedgerStore(pg_url), PgLedgerStore(pg_url))
    try:
        yield stores
    finally:
        for s in stores:
            s.close()


def _members(store: PgLedgerStore) -> list[str]:
    return sorted(str(n) for (n,) in store._all("SELECT number FROM members"))


class Held:
    """An ingest group held open in a thread of its own until ``release()``."""

    def __init__(self, work: Callable[[], Any], store: PgLedgerStore, nodes: list[str], enrolled: list[str]):
        self.inside = threading.Event()
        self._go = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                with store.ingest_transaction(nodes, enrolled):
                    work()
                    self.inside.set()
                    self._go.wait(30)
            except BaseException as exc:
                self.error = exc
                self.inside.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.inside.wait(20), "the held group never got in"
        assert self.error is None, self.error

    def release(self) -> None:
        self._go.set()
        self.thread.join(20)
        assert self.error is None, self.error


def _blocked(run: Callable[[], Any], *, for_: float = 0.5) -> tuple[threading.Thread, threading.Event]:
    """Start ``run`` in a thread; return it and an event set when it finished."""
    done = threading.Event()

    def go() -> None:
        run()
        done.set()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    done.wait(for_)
    return t, done


def test_groups_of_other_nodes_and_members_overlap_and_the_rest_wait(
    two_stores: tuple[PgLedgerStore, PgLedgerStore],
) -> None:
    a, b = two_stores
    m1, m2 = _members(a)[:2]
    held = Held(lambda: a.members_many([m1]), a, ["sha-lobby-01"], [])
    try:
        # Another node, another member: in and out while the first group is open.
        with b.ingest_transaction(["sha-lobby-02"], []):
            assert set(b.members_many([m2])) == {m2}
        # The same node's streams, the same member, a number the first would enrol, or any
        # other writer: each waits for the first group's commit.
        same_node = _blocked(lambda: _in_group(b, ["sha-lobby-01"], [], lambda: None))
        same_member = _blocked(lambda: _in_group(b, ["sha-lobby-03"], [], lambda: b.members_many([m1])))
        writer = _blocked(lambda: _in_writer(b))
        waiting = [same_node, same_member, writer]
        assert not any(done.is_set() for _, done in waiting), "a group that should wait did not"
    finally:
        held.release()
    for t, done in waiting:
        t.join(20)
        assert done.is_set()


def _in_group(store: PgLedgerStore, nodes: list[str], enrolled: list[str], work: Callable[[], Any]) -> None:
    with store.ingest_transaction(nodes, enrolled):
        work()


def _in_writer(store: PgLedgerStore) -> None:
    with store.transaction():
        store.bump_counter("test_writer")


def test_an_enrolment_waits_for_a_group_enrolling_the_same_number(
    two_stores: tuple[PgLedgerStore, PgLedgerStore],
) -> None:
    a, b = two_stores
    held = Held(a.event_count, a, ["sha-lobby-01"], ["9000017"])  # a read: its locks are in
    try:
        other = _blocked(lambda: _in_group(b, ["sha-lobby-02"], ["9000025"], lambda: None))
        assert other[1].is_set()  # another number: no wait
        same = _blocked(lambda: _in_group(b, ["sha-lobby-02"], ["9000017"], lambda: None))
        assert not same[1].is_set()
    finally:
        held.release()
    same[0].join(20)
    assert same[1].is_set()


Row = tuple[str, str, int, int, str, None, str, str]


def _write_events(store: PgLedgerStore, how: str, row: Row) -> None:
    """A group's first write: a plain one (its turn taken by ``_ordered`` first), or the ingest's
    ``put_applied`` (the turn taken inside its own statement)."""
    if how == "insert_events":
        store.insert_events([row])
    else:
        store.put_applied([row], [(row[0], "9000017", 10, 1)], [(row[1], row[2], row[3])])


@pytest.mark.parametrize("how", ["insert_events", "put_applied"])
def test_overlapping_groups_write_one_at_a_time_in_the_order_of_their_positions(
    two_stores: tuple[PgLedgerStore, PgLedgerStore], how: str
) -> None:
    a, b = two_stores
    row = ("id-a", "sha-lobby-01", 1, 1, "x.test", None, "{}", iso(NOW))
    # Wrote, then read: a pipelined write is only sent, and the read waits for the server to
    # have run it, so the group's turn (ORDER_LOCK) is held before the second group starts.
    held = Held(lambda: (_write_events(a, how, row), a.event_count()), a, ["sha-lobby-01"], [])
    try:
        reads: list[int] = []

        def second() -> None:
            reads.append(b.event_count())  # a read does not wait
            _write_events(b, how, ("id-b", "sha-lobby-02", 1, 1, "x.test", None, "{}", iso(NOW)))

        t, done = _blocked(lambda: _in_group(b, ["sha-lobby-02"], [], second))
        assert reads == [0] and not done.is_set()  # read at once, but its write waits
    finally:
        held.release()
    t.join(20)
    assert done.is_set()
    order = [str(i) for (i,) in a._all("SELECT id FROM events ORDER BY pos")]
    assert order == ["id-a", "id-b"]  # positions in commit order


def _batches(node: str, members: list[str], batches: int, per_batch: int) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    seq = 0
    for _ in range(batches):
        batch = []
        for _ in range(per_batch):
            seq += 1
            ev = Event(
                node=node,
                epoch=1,
                seq=seq,
                id=uuid7(NOW),
                at=iso(NOW),
                type="stay.posted",
                member=members[seq % len(members)],
                program=1,
                data={
                    "folio": f"{node}-{seq}",
                    "property": "H1",
                    "arrival": NOW.date().isoformat(),
                    "departure": NOW.date().isoformat(),
                    "nights": 0,
                    "revenue": {"fnb": "2.00"},
                    "points": 10,
                    "qualifying_points": 10,
                    "tier": "MEMBER",
                    "tier_after": "MEMBER",
                    "promotions": [],
                },
            )
            batch.append(ev.to_dict())
        out.append(batch)
    return out


def test_two_ledgers_ingesting_at_once_end_where_one_alone_does(pg_server: pg.PgServer) -> None:
    """Four nodes' backlogs over members they share and members of their own, as two processes
    apply them (two nodes each, groups of batches of both, at the same time) and as one does:
    every member's record the same, every event once, the change log gapless."""
    urls = [pg_server.create_database(), pg_server.create_database()]
    try:
        for url in urls:
            ledger = Ledger(PgLedgerStore(url))
            ledger.publish_program(default_program_text(), NOW)
            program = ledger.program()
            assert program is not None
            ledger.import_members(seed_docs(program, 40, NOW, start=7_000_000))
            numbers = _members(ledger.store)  # type: ignore[arg-type]
            ledger.store.close()
        shared, own = numbers[:8], [numbers[8 + 8 * i : 16 + 8 * i] for i in range(4)]
        nodes = [f"sha-lobby-{i:02d}" for i in range(4)]
        backlog = {n: _batches(n, shared + own[i], 12, 30) for i, n in enumerate(nodes)}

        def groups(mine: list[str]) -> list[list[tuple[str, list[dict[str, Any]]]]]:
            return [[(n, backlog[n][k]) for n in mine] for k in range(12)]

        alone = Ledger(PgLedgerStore(urls[0]))
        for group in groups(nodes):
            alone.ingest_many(group, NOW)
        together = [Ledger(PgLedgerStore(urls[1])) for _ in range(2)]
        errors: list[BaseException] = []

        def process(ledger: Ledger, mine: list[str]) -> None:
            try:
                for group in groups(mine):
                    ledger.ingest_many(group, NOW)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=process, args=(together[0], nodes[:2])),
            threading.Thread(target=process, args=(together[1], nodes[2:])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors

        def state(store: Any) -> tuple[Any, ...]:
            members = {
                str(n): (int(p), dict(d)["folded"])
                for n, p, d in store._all("SELECT number, points, doc FROM members")
            }
            events = store.event_count()
            low, high, count = store._row("SELECT min(version), max(version), count(*) FROM changes")
            assert high - low + 1 == count  # gapless
            return members, events

        assert state(together[0].store) == state(alone.store)
        assert together[0].store.event_count() == 4 * 12 * 30
        for ledger in (alone, *together):
            ledger.store.close()
    finally:
        for url in urls:
            pg_server.drop_database(url)


def test_a_group_with_too_many_keys_takes_the_writer_lock_alone(
    two_stores: tuple[PgLedgerStore, PgLedgerStore],
) -> None:
    """A migration enrolling hundreds in one group: one lock, exclusive, not hundreds of keys."""
    a, b = two_stores
    many = [f"9{i:06d}" for i in range(100)]
    held = Held(a.event_count, a, ["sha-lobby-01"], many)
    try:
        t, done = _blocked(lambda: _in_group(b, ["sha-lobby-02"], [], b.event_count))
        assert not done.is_set()  # nothing in common, and still it waits
    finally:
        held.release()
    t.join(20)
    assert done.is_set()
