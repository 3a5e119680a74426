"""What a node asks head office to decide, on both ledger stores (issue 12, item 3 and 5).

A node never takes back points a member has spent, and never blocks a member. Before, the
void was refused at the desk and recorded nowhere, and a node could block anyone fleet-wide;
now the node asks, head office's staff see it and decide, and the decision reaches the
fleet as the member's record.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.reviews import ReviewDesk, ReviewError
from staypoint.central.store import LedgerStore
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge.service import NodeService, NotAllowed, StaffProof
from staypoint.loyalty.program import Outlet, default_program_text
from tests.sync.nodes import NOW, Node

pytest_plugins = ["tests.pg_fixtures"]

BOSS = StaffProof("s1", "Sam", "supervisor")
DESK = StaffProof("d1", "Dee", "staff")


def _ledger(store: LedgerStore) -> Ledger:
    ledger = Ledger(store)
    ledger.publish_program(default_program_text(), NOW)
    return ledger


def _spent_stay(node: Node) -> tuple[str, int]:
    """A member whose 4-night stay earned points, most of them spent on a reward."""
    m = node.svc.enrol("Ada L", "2580", NOW).number
    stay = node.svc.post_stay(m, "F1", NOW, nights=4, revenue={Outlet.ROOM: Decimal("720")})
    node.svc.record_contact(NOW)
    node.svc.redeem(node.svc.verify_pin(m, "2580", NOW), "LATE-CO", NOW, online=False)
    return m, stay.points


def test_a_void_of_spent_points_goes_to_head_office_and_settles_as_a_debt(
    store: LedgerStore, tmp_path: Path
) -> None:
    ledger = _ledger(store)
    a = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    ledger.register_node(a.node, a.svc.keys.public_hex(), "SHA")
    m, earned = _spent_stay(a)
    balance = a.svc.summary(m, NOW).points
    assert balance < earned

    asked = a.svc.void_stay("F1", NOW, BOSS, "posted to the wrong guest")
    assert asked.type == "stay.void_requested" and asked.data["points"] == earned
    assert a.svc.summary(m, NOW).points == balance  # nothing taken at the desk
    with pytest.raises(NotAllowed, match="already with head office"):
        a.svc.void_stay("F1", NOW, BOSS, "again")

    a.send(ledger)
    [review] = ledger.reviews()
    assert (review["kind"], review["member"], review["node"]) == ("void_requested", m, a.node)
    assert f"{earned:,} points" in review["detail"] and "wrong guest" in review["detail"]
    assert ledger.member(m)["points"] == balance  # type: ignore[index]

    desk = ReviewDesk(ledger)
    after = desk.settle(asked.id, "clara", NOW)
    assert after["points"] == balance - earned < 0 and after["blocked"] and after["qual_nights"] == 0
    assert {d["kind"] for d in store.open_overdrafts()} == {"void_after_spend"}
    assert ledger.reviews() == []
    with pytest.raises(ReviewError, match="no open review"):
        desk.settle(asked.id, "dave", NOW)  # a second clerk books nothing more
    assert ledger.member(m)["points"] == balance - earned  # type: ignore[index]

    a.receive(ledger)  # the node hears it as the member's record: spending held
    shown = a.svc.summary(m, NOW)
    assert shown.points == balance - earned and shown.blocked


def test_a_node_reports_and_head_office_blocks_a_node_cannot_block(
    store: LedgerStore, tmp_path: Path
) -> None:
    ledger = _ledger(store)
    a = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    ledger.register_node(a.node, a.svc.keys.public_hex(), "SHA")
    m = a.svc.enrol("Ada L", "2580", NOW).number
    reported = a.svc.report_member(m, "five cards tried in ten minutes", NOW, DESK)
    a.send(ledger)
    forged = a.forge("member.blocked", m, {"reason": "the node decides", "staff": "d1"})
    assert ledger.ingest(a.node, [forged], NOW).rejected == 1
    assert store.quarantined()[-1]["kind"] == "not_permitted"
    assert not ledger.member(m)["blocked"]  # type: ignore[index]
    [review] = ledger.reviews()
    assert review["kind"] == "reported" and "five cards" in review["detail"]
    assert review["event_id"] == reported.id and forged["id"] != reported.id

    desk = ReviewDesk(ledger)
    desk.block(m, "card testing", "clara", NOW, review=reported.id)
    assert ledger.member(m)["blocked"] and ledger.reviews() == []  # type: ignore[index]
    a.receive(ledger)  # the fleet hears it as the member's record
    assert a.svc.summary(m, NOW).blocked

    # A debt settled meanwhile does not lift staff's hold; unblocking does.
    a.svc.adjust(m, 100, "goodwill", NOW, BOSS)
    a.send(ledger)
    assert ledger.member(m)["blocked"]  # type: ignore[index]
    desk.unblock(m, "spoke to the guest", "clara", NOW)
    assert not ledger.member(m)["blocked"]  # type: ignore[index]
    with pytest.raises(ReviewError, match="not held"):
        desk.unblock(m, "again", "clara", NOW)


def test_head_office_staff_decide_from_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = _ledger(SqliteLedgerStore(db))
    a = Node(tmp_path, "sha-lobby-01", "SHA", 1)
    ledger.register_node(a.node, a.svc.keys.public_hex(), "SHA")
    m, _ = _spent_stay(a)
    node_db = tmp_path / "sha-lobby-01.db"
    a.svc.add_staff("s9", "Sue", "supervisor", "4826")
    a.svc.close()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "staypoint.cli.main", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    void = run(
        "stay", "void", "--db", str(node_db), "F1", "--reason", "wrong guest", "--staff", "s9",
        "--staff-pin", "4826", "--json", "--now", "2026-11-23T10:00:00Z",
    )  # fmt: skip
    assert void.returncode == 0, void.stderr
    assert json.loads(void.stdout)["void_requested"] == "F1"
    a.svc = NodeService.open(node_db)  # the same board, after the command
    r = ledger.ingest(a.node, a.pending(), NOW)
    assert r.applied == 4 and r.rejected == 0, (r, ledger.quarantine())
    ledger.store.close()

    listed = run("central", "reviews", "--db", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    [review] = json.loads(listed.stdout)
    assert review["kind"] == "void_requested" and review["member"] == m
    done = run("central", "reviews", "--db", str(db), "--settle", review["event_id"], "--by", "clara")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"settled {review['event_id']}: member {m} at ")
    again = run("central", "reviews", "--db", str(db), "--settle", review["event_id"])
    assert again.returncode != 0 and again.stderr.count("\n") == 1 and "no open review" in again.stderr
    assert run("central", "reviews", "--db", str(db)).stdout.strip() == "nothing to decide"


def test_head_office_stream_names_are_never_node_ids() -> None:
    from staypoint.provisioning.pki import is_node_id

    assert not any(is_node_id(n) for n in ("console", "console-2", "web", "web-3", "pms-sha"))
    assert is_node_id("sha-lobby-01") and is_node_id("consoles-01")
