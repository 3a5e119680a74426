"""A revoked node's vouchers (issue 12 item 5), on both ledger stores.

Before, a revocation reached the broker and head office's ingest, and nothing told the
nodes: they went on honouring vouchers the revoked node issued afterwards, by code and by
token. Now the revocation is a change like any other, and in every snapshot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store import LedgerStore
from staypoint.edge import sync_store
from staypoint.edge.service import StaffProof, VoucherRejected
from staypoint.loyalty.program import Outlet, default_program_text
from tests.sync.nodes import NOW, Node

pytest_plugins = ["tests.pg_fixtures"]

REVOKED_AT = NOW + timedelta(hours=1)
LATER = NOW + timedelta(hours=2)
CLERK = StaffProof("s1", "Sam", "supervisor")


def redeem(node: Node, member: str, now: datetime) -> tuple[str, str]:
    """An offline redemption here: the voucher's (code, token)."""
    node.svc.record_contact(now)
    r = node.svc.redeem(node.svc.verify_pin(member, "2580", now), "LATE-CO", now, online=False)
    return r.voucher, r.token


def test_a_revoked_nodes_later_vouchers_are_refused_and_its_earlier_ones_honoured(
    store: LedgerStore, tmp_path: Path
) -> None:
    # Head office runs without the revoked-nodes file here, so it still books the node's
    # later redemption: the worst case for the other nodes, which then hold its record too.
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW)
    r, b = Node(tmp_path, "sha-lobby-09", "SHA", 9), Node(tmp_path, "sha-lobby-02", "SHA", 2)
    ledger.register_node(r.node, r.svc.keys.public_hex(), "SHA")
    m = r.svc.enrol("Ada L", "2580", NOW).number
    r.svc.post_stay(m, "F1", NOW, nights=3, revenue={Outlet.ROOM: Decimal("300")})
    r.svc.adjust(m, 5000, "goodwill", NOW, CLERK)
    before = redeem(r, m, NOW)
    ledger.ingest(r.node, r.pending(), NOW)
    changes = ledger.revoke_node(r.node, REVOKED_AT)
    assert [(c.kind, c.body) for c in changes] == [
        ("revocation", {"node": r.node, "at": "2026-11-23T11:00:00.000Z"})
    ]
    after = redeem(r, m, LATER)  # the revoked board goes on issuing
    unbooked = redeem(r, m, LATER + timedelta(minutes=1))
    ledger.ingest(r.node, r.pending()[:-1], LATER)  # the last one never reaches head office
    b.receive(ledger)

    for code_or_token in before:
        assert b.svc.verify_voucher(code_or_token, LATER).valid
    for code_or_token in after:
        with pytest.raises(VoucherRejected, match=r"after its revocation at 2026-11-23T11:00:00.000Z"):
            b.svc.verify_voucher(code_or_token, LATER)
    with pytest.raises(VoucherRejected, match=r"head office never booked this voucher"):
        b.svc.verify_voucher(unbooked[1], LATER)
    with pytest.raises(VoucherRejected, match=r"after its revocation"):
        b.svc.use_voucher(after[0], LATER, CLERK)
    assert b.svc.use_voucher(before[0], LATER, CLERK).status == "used"
    # Head office, which refuses the revoked node's events, lists each use of its vouchers.
    listing = Ledger(store, revoked={r.node})
    assert listing.ingest(b.node, b.pending(), LATER).applied == 1
    assert [a["kind"] for a in store.alarms()].count("revoked_node_voucher") == 1

    # A node that starts afresh hears of the revocation in its snapshot.
    c = Node(tmp_path, "sha-lobby-03", "SHA", 3)
    c.receive(ledger)
    assert c.svc.replica.node_revoked_at(r.node) == "2026-11-23T11:00:00.000Z"
    with pytest.raises(VoucherRejected, match=r"after its revocation"):
        c.svc.verify_voucher(after[1], LATER)
    assert c.svc.verify_voucher(before[1], LATER).status == "used"  # at b, above: no refusal


def test_a_revocation_sent_twice_keeps_the_first_time(store: LedgerStore, tmp_path: Path) -> None:
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW)
    b = Node(tmp_path, "sha-lobby-02", "SHA", 2)
    ledger.revoke_node("sha-lobby-09", REVOKED_AT)
    b.receive(ledger)
    ledger.revoke_node("sha-lobby-09", LATER)
    b.receive(ledger)
    assert b.svc.replica.node_revoked_at("sha-lobby-09") == "2026-11-23T11:00:00.000Z"
    with pytest.raises(sync_store.ChangeError, match="revocation time"), b.svc.replica.write():
        sync_store.apply_changes(
            b.svc.replica.conn, [{"kind": "revocation", "body": {"node": "x", "at": "soon"}}], {}
        )
