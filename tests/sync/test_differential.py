"""One truth for a member: random event streams through two nodes, head office on SQLite and
on PostgreSQL, and the API, end in the same state and the same view everywhere.

Hypothesis drives real node replicas (their refusals included), delivers their outboxes to
both ledgers in random splits with duplicates and resends, applies head office's changes back
to the nodes at random moments, and runs the tier and expiry jobs at the end. Every place that
shows a member computes through ``loyalty/fold.py``; this test is what keeps it that way.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from staypoint.central import pg
from staypoint.central.application.services import Services
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.store_pg import PgLedgerStore
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge import sync_store
from staypoint.edge.service import NodeError, NodeService, PinProof, StaffProof
from staypoint.loyalty import fold
from staypoint.loyalty.program import Outlet, default_program_text

pytest_plugins = ["tests.pg_fixtures"]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CLERK = StaffProof("s1", "Sam", "supervisor")
PIN = "2580"

op = st.one_of(
    st.tuples(st.just("stay"), st.integers(0, 1), st.integers(0, 4), st.integers(0, 900)),
    st.tuples(st.just("redeem"), st.integers(0, 1), st.integers(0, 9)),
    st.tuples(st.just("adjust"), st.integers(0, 1), st.integers(-3000, 3000)),
    st.tuples(st.just("topup"), st.integers(0, 1), st.integers(1, 300)),
    st.tuples(st.just("spend"), st.integers(0, 1), st.integers(1, 150)),
    st.tuples(st.just("void_stay"), st.integers(0, 1)),
    st.tuples(st.just("void_voucher"), st.integers(0, 1)),
    st.tuples(st.just("use_voucher"), st.integers(0, 1)),
    st.tuples(st.just("sync"), st.integers(0, 1), st.booleans(), st.integers(1, 5)),
)


class World:
    """Two boards of one property, one member, and head office on both stores."""

    def __init__(self, folder: Path, pg_url: str) -> None:
        text = default_program_text()
        self.ledgers = [Ledger(SqliteLedgerStore(folder / "ledger.db")), Ledger(PgLedgerStore(pg_url))]
        for ledger in self.ledgers:
            ledger.publish_program(text, NOW)
        self.nodes = [
            NodeService.init_node(
                folder / f"n{i}.db", f"sha-lobby-0{i + 1}", "SHA", text, NOW, member_blocks=[i + 1]
            )
            for i in range(2)
        ]
        for node in self.nodes:
            for ledger in self.ledgers:
                ledger.register_node(node.node_id, node.keys.public_hex(), "SHA")
        self.sent = [0, 0]
        self.clock = NOW
        self.proofs: dict[int, PinProof] = {}
        self.member = self.nodes[0].enrol("Ada L", PIN, NOW).number
        self.folios = 0
        self.sync(0, dup=False, split=1)
        self.sync(1, dup=False, split=1)

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def proof(self, i: int, now: datetime) -> PinProof:
        proof = self.proofs.get(i)
        if proof is None or now - proof.verified_at > timedelta(minutes=4):
            proof = self.proofs[i] = self.nodes[i].verify_pin(self.member, PIN, now)
        return proof

    def run(self, step: tuple[Any, ...]) -> None:
        kind, i = step[0], step[1]
        node, now = self.nodes[i], self.tick()
        try:
            if kind == "stay":
                self.folios += 1
                node.post_stay(
                    self.member,
                    f"F{self.folios}",
                    now,
                    nights=step[2],
                    revenue={Outlet.ROOM: Decimal(step[3])},
                ) if step[2] or not step[3] else None
            elif kind == "redeem":
                rewards = node.program.rewards
                node.redeem(self.proof(i, now), rewards[step[2] % len(rewards)].code, now, online=False)
            elif kind == "adjust" and step[2]:
                node.adjust(self.member, step[2], "random", now, CLERK)
            elif kind == "topup":
                node.top_up(self.member, Decimal(step[2]), now, CLERK)
            elif kind == "spend":
                node.spend(self.proof(i, now), Decimal(step[2]), now)
            elif kind == "void_stay":
                folios = [
                    f for (f,) in node.replica.conn.execute("SELECT folio FROM stays WHERE voided_at IS NULL")
                ]
                if folios:
                    node.void_stay(folios[-1], now, CLERK, "posted in error")
            elif kind in ("void_voucher", "use_voucher"):
                codes = [
                    c
                    for (c,) in node.replica.conn.execute("SELECT code FROM vouchers WHERE status = 'issued'")
                ]
                if codes and kind == "void_voucher":
                    node.void_voucher(codes[0], now, CLERK, "changed mind")
                elif codes:
                    node.use_voucher(codes[0], now, CLERK)
            elif kind == "sync":
                self.sync(i, dup=step[2], split=step[3])
        except NodeError:
            pass  # the node refused: nothing written, which the comparison below also checks

    def sync(self, i: int, *, dup: bool, split: int) -> None:
        """Deliver node i's new events (in ``split`` batches, again from the start if ``dup``)
        to both ledgers, and head office's changes to both nodes."""
        node = self.nodes[i]
        start = 0 if dup else self.sent[i]
        rows = node.replica.conn.execute("SELECT body FROM outbox WHERE seq > ? ORDER BY seq", (start,))
        events = [json.loads(b) for (b,) in rows]
        self.sent[i] = max(self.sent[i], events[-1]["seq"] if events else 0)
        size = max(1, -(-len(events) // split))
        changes: list[list[dict[str, Any]]] = [[], []]
        for k, ledger in enumerate(self.ledgers):
            for lo in range(0, len(events), size):
                result = ledger.ingest(node.node_id, events[lo : lo + size], self.clock)
                assert result.rejected == 0 and not result.resend_from
                changes[k] += [c.to_wire() for c in result.changes]
        sqlite_changes = changes[0]
        for other in self.nodes:
            with other.replica.write():
                sync_store.apply_changes(other.replica.conn, sqlite_changes, self._ranks())
        node.record_contact(self.clock)

    def _ranks(self) -> dict[str, int]:
        return {t.code: t.rank for t in self.nodes[0].program.tiers}

    def jobs(self, when: datetime) -> None:
        changes = []
        for k, ledger in enumerate(self.ledgers):
            ledger.run_jobs(when)
            if k == 0:
                changes = [c.to_wire() for c in ledger.store.changes_since(0, 10**6) or []]
        for node in self.nodes:
            with node.replica.write():
                sync_store.apply_changes(node.replica.conn, changes, self._ranks())

    def close(self) -> None:
        for ledger in self.ledgers:
            ledger.store.close()
        for node in self.nodes:
            node.close()


FIELDS = ("points", "stored_value", "tier", "qual_nights", "qual_points", "blocked", "window_start")
SHOWN = ("points", "stored_value", "tier", "qual_nights", "qual_points")


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(op, min_size=1, max_size=30), expire=st.booleans())
# Node 0 acts while node 1 syncs: node 0's own unsent events are overlaid on each record.
@example(
    steps=[
        ("stay", 0, 3, 900),
        ("topup", 0, 200),
        ("sync", 0, False, 1),
        ("spend", 0, 60),
        ("redeem", 0, 0),
        ("void_stay", 0),
        ("stay", 1, 1, 100),
        ("sync", 1, True, 2),
        ("adjust", 0, -50),
        ("sync", 1, False, 1),
        ("sync", 0, False, 2),
    ],
    expire=False,
)
def test_every_place_computes_the_same_member(
    pg_server: pg.PgServer, steps: list[tuple[Any, ...]], expire: bool
) -> None:
    url = pg_server.create_database()
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), url)
        try:
            for n, step in enumerate(steps):
                world.run(step)
                _assert_shown_is_head_office_plus_own(world, Path(tmp) / f"copy{n}.db")
            world.sync(0, dup=True, split=3)  # everything again, in other splits: nothing doubles
            world.sync(1, dup=True, split=2)
            if expire:
                world.jobs(world.clock + timedelta(days=3 * 365))
            _assert_one_truth(world, Path(tmp))
        finally:
            world.close()
            pg_server.drop_database(url)


def _assert_shown_is_head_office_plus_own(world: World, scratch: Path) -> None:
    """What a kiosk shows now is what head office will book once it has the kiosk's unsent
    events: the node's own arithmetic and its overlay agree with head office's fold."""
    live = world.ledgers[0].store
    assert isinstance(live, SqliteLedgerStore)
    for i, node in enumerate(world.nodes):
        rows = node.replica.conn.execute(
            "SELECT body FROM outbox WHERE seq > ? ORDER BY seq", (world.sent[i],)
        )
        unsent = [json.loads(b) for (b,) in rows]
        if not unsent:
            continue
        target = sqlite3.connect(scratch)
        live.conn.backup(target)
        target.close()
        copy = Ledger(SqliteLedgerStore(scratch))
        try:
            assert copy.ingest(node.node_id, unsent, world.clock).applied == len(unsent)
            doc = copy.member(world.member)
            row = node.replica.member(world.member)
            assert doc is not None and row is not None
            seen = dataclasses.asdict(row)
            assert {f: seen[f] for f in SHOWN} == {f: doc[f] for f in SHOWN}, node.node_id
        finally:
            copy.store.close()
        scratch.unlink()
        for extra in ("-wal", "-shm"):
            Path(f"{scratch}{extra}").unlink(missing_ok=True)


def _assert_one_truth(world: World, folder: Path) -> None:
    sqlite_doc, pg_doc = (ledger.member(world.member) for ledger in world.ledgers)
    assert sqlite_doc is not None and pg_doc is not None
    assert sqlite_doc == pg_doc  # the same record on both stores, fold marks included
    for store in (ledger.store for ledger in world.ledgers):
        assert store.quarantined() == []  # a node's own events never break the contract
    for node in world.nodes:
        row = node.replica.member(world.member)
        assert row is not None
        seen = dataclasses.asdict(row)
        assert {f: seen[f] for f in FIELDS} == {f: sqlite_doc[f] for f in FIELDS}, node.node_id
    today = world.clock.date()
    program = world.ledgers[0].program()
    assert program is not None
    expected = fold.view(sqlite_doc, program, today)
    for node in world.nodes:
        summary = node.summary(world.member, world.clock)
        assert (summary.points, summary.tier, summary.stored_value) == (
            expected.points,
            expected.tier,
            expected.stored_value,
        )
        assert (summary.progress, summary.expiring_points, summary.expiring_on) == (
            expected.progress,
            expected.expiring_points,
            expected.expiring_on,
        )
        assert [r.available for r in summary.rewards] == [r.available for r in expected.rewards]
    services = Services(
        world.ledgers[0],
        ProfileStore(folder / "profiles.db"),
        SideStore(f"sqlite://{folder / 'side.db'}"),
        b"k" * 32,
    )
    dash = services.dashboard(world.member, world.clock)
    assert (dash["points"], dash["tier"], dash["stored_value"], dash["progress"]) == (
        expected.points,
        expected.tier,
        str(expected.stored_value),
        round(expected.progress, 4),
    )
    assert [r["available"] for r in dash["rewards"]] == [r.available for r in expected.rewards]
