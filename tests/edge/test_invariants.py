"""Property-based checks of the replica's invariants over random runs of operations."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from staypoint.edge.service import NodeError, NodeService, StaffProof
from staypoint.loyalty.events import points_delta
from staypoint.loyalty.program import Outlet, default_program_text

STAFF = StaffProof("sup", "Sup", "supervisor")
amounts = st.decimals(min_value=0, max_value=3000, places=2).map(str)


class NodeMachine(RuleBasedStateMachine):
    """Random staff and guest operations; after each, the books must balance."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp())
        self.now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
        self.svc = NodeService.init_node(
            self.dir / "n.db", "n1", "P", default_program_text(), self.now, member_blocks=[3]
        )
        self.members: list[str] = []
        self.folios: list[str] = []
        self.vouchers: list[str] = []
        self.proofs: dict[str, object] = {}

    @initialize()
    def enrol_two(self) -> None:
        for name in ("Ann A", "Bob B"):
            m = self.svc.enrol(name, "2580", self.now)
            self.members.append(m.number)
            self.proofs[m.number] = self.svc.verify_pin(m.number, "2580", self.now)

    def _tick(self) -> None:
        self.now += timedelta(seconds=7)

    @rule(who=st.integers(0, 1), nights=st.integers(0, 9), room=amounts, fnb=amounts)
    def post_stay(self, who: int, nights: int, room: str, fnb: str) -> None:
        self._tick()
        folio = f"F{len(self.folios)}"
        try:
            self.svc.post_stay(
                self.members[who],
                folio,
                self.now,
                nights=nights,
                revenue={Outlet.ROOM: room, Outlet.FNB: fnb},
            )
            self.folios.append(folio)
        except NodeError:
            pass

    @rule(i=st.integers(0, 50))
    def void_stay(self, i: int) -> None:
        if self.folios:
            with contextlib.suppress(NodeError):
                self.svc.void_stay(self.folios[i % len(self.folios)], self.now, STAFF, "test")

    @rule(who=st.integers(0, 1), reward=st.sampled_from(["LATE-CO", "BREAKFAST", "SPA-60", "UPGRADE"]))
    def redeem(self, who: int, reward: str) -> None:
        self._tick()
        m = self.members[who]
        try:
            proof = self.svc.verify_pin(m, "2580", self.now)
            self.vouchers.append(self.svc.redeem(proof, reward, self.now).voucher)
        except NodeError:
            pass
        self.svc.record_contact(self.now)

    @rule(i=st.integers(0, 50), use=st.booleans())
    def settle_voucher(self, i: int, use: bool) -> None:
        if self.vouchers:
            code = self.vouchers[i % len(self.vouchers)]
            try:
                if use:
                    self.svc.use_voucher(code, self.now, STAFF)
                else:
                    self.svc.void_voucher(code, self.now, STAFF, "test")
            except NodeError:
                pass

    @rule(who=st.integers(0, 1), pts=st.integers(-20_000, 20_000))
    def adjust(self, who: int, pts: int) -> None:
        with contextlib.suppress(NodeError):
            self.svc.adjust(self.members[who], pts, "test", self.now, STAFF)

    @invariant()
    def books_balance(self) -> None:
        events = self.svc.outbox()
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1)), "seq must be gapless and increasing"
        for m in self.members:
            row = self.svc.replica.member(m)
            assert row is not None
            assert row.points >= 0
            from_events = sum(points_delta(e["type"], e["data"]) for e in events if e["member"] == m)
            assert row.points == from_events == self.svc.replica.points_from_ledger(m)

    def teardown(self) -> None:
        self.svc.close()


TestNodeMachine = NodeMachine.TestCase
TestNodeMachine.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_outbox_table_has_one_row_per_seq(node: NodeService, now) -> None:
    node.enrol("A B", "2580", now)
    conn = sqlite3.connect(node.replica.path)
    assert conn.execute("SELECT count(*), count(DISTINCT seq) FROM outbox").fetchone() == (1, 1)
