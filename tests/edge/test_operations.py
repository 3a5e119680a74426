"""The node's operations, each seen the way a guest or a clerk would notice it."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.edge.service import (
    BadInput,
    NodeService,
    NotAllowed,
    OfflineLimitReached,
    PinLocked,
    RedemptionRefused,
    StaffProof,
    UnknownCard,
    UnknownMember,
    VoucherRejected,
    WrongPin,
)
from staypoint.loyalty.program import Outlet
from staypoint.loyalty.roles import SUPERVISOR, TABLE, Task

#: Voids, unlocks and adjustments are supervisors' tasks (staypoint.loyalty.roles).
SUP = StaffProof("sup", "Sup", SUPERVISOR)


def give(node: NodeService, member: str, points: int, now: datetime) -> None:
    """Points for a test's set-up, in adjustments no larger than a supervisor may make."""
    step = TABLE[SUPERVISOR].ceiling(Task.ADJUST)
    while points > 0:
        node.adjust(member, min(step, points), "test set-up", now, SUP)
        points -= step


def file_digest(svc: NodeService) -> str:
    """Logical content of the replica: every table's rows, for 'nothing changed' checks."""
    conn = svc.replica.conn
    h = hashlib.sha256()
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
        for row in conn.execute(f"SELECT * FROM {name} ORDER BY 1"):
            h.update(repr(row).encode())
    return h.hexdigest()


def test_enrol_then_show(node: NodeService, now, desk) -> None:
    m = node.enrol("Anna Keller", "4321", now, card_uid="04 A2 3F 11 22 33 44", staff=desk)
    assert len(m.number) == 10 and m.number.startswith("0042")
    assert m.name == "Anna K."  # the replica keeps a display name only
    s = node.summary(m.number, now)
    assert (s.tier, s.points, s.qualifying_nights) == ("MEMBER", 0, 0)
    assert s.next_tier_message.startswith("10 more nights to Silver")
    assert node.member_by_card("04a23f11223344").number == m.number
    assert node.outbox()[0]["type"] == "member.enrolled"
    # the card UID never appears in the clear
    assert "04A23F11223344" not in node.outbox()[0]["data"].get("card_hash", "")


def test_stay_earns_upgrades_and_voids(node: NodeService, now, desk) -> None:
    m = node.enrol("Ben Ito", "1111", now)
    r = node.post_stay(m.number, "F1", now, nights=12, revenue={Outlet.ROOM: "1500.00", Outlet.FNB: "99.99"})
    assert r.points == 15000 + 499  # 499.95 rounds down once
    assert (r.tier_before, r.tier_after) == ("MEMBER", "SILVER")
    s = node.summary(m.number, now)
    assert s.tier == "SILVER" and s.qualifying_nights == 12
    assert "13 more nights to Gold" in s.next_tier_message
    with pytest.raises(BadInput, match="already posted"):
        node.post_stay(m.number, "F1", now, nights=1, revenue={Outlet.ROOM: "10"})
    node.void_stay("F1", now, SUP, "wrong guest")
    s = node.summary(m.number, now)
    assert s.points == 0 and s.qualifying_nights == 0
    assert s.tier == "SILVER"  # downgrades wait for the window's end
    types = [e["type"] for e in node.outbox()]
    assert types[-1] == "stay.voided" and node.outbox()[-1]["data"]["points"] == r.points


def test_redeem_issues_a_signed_voucher_and_refusals_change_nothing(node: NodeService, now, desk) -> None:
    m = node.enrol("Chloe Day", "2580", now)
    node.post_stay(m.number, "F9", now, nights=3, revenue={Outlet.ROOM: "300.00"})
    proof = node.verify_pin(m.number, "2580", now)
    before = file_digest(node)
    with pytest.raises(RedemptionRefused, match="needs Gold"):
        node.redeem(proof, "UPGRADE", now)
    with pytest.raises(RedemptionRefused, match="needs 5,000 more points"):
        node.redeem(proof, "SPA-60", now)
    with pytest.raises(RedemptionRefused, match="no reward"):
        node.redeem(proof, "CASINO", now)
    assert file_digest(node) == before
    red = node.redeem(proof, "late-co", now)
    assert red.balance == 500 and red.auth == "offline" and red.limits_profile == "standard-2026"
    info = node.verify_voucher(red.token, now)
    assert info.valid and info.reward == "LATE-CO" and info.member == m.number
    assert node.verify_voucher(red.voucher.lower(), now).valid
    used = node.use_voucher(red.voucher, now, desk)
    assert used.status == "used" and not used.valid
    with pytest.raises(VoucherRejected, match="already used"):
        node.use_voucher(red.voucher, now, desk)


def test_voiding_a_voucher_returns_points_and_stock(node: NodeService, now, desk) -> None:
    m = node.enrol("Dora Fox", "2580", now)
    give(node, m.number, 9000, now)
    stock = node.replica.stock("SPA-60")
    red = node.redeem(node.verify_pin(m.number, "2580", now), "SPA-60", now)
    assert node.replica.stock("SPA-60") == stock - 1
    node.void_voucher(red.voucher, now, SUP, "guest changed plans")
    assert node.summary(m.number, now).points == 9000
    assert node.replica.stock("SPA-60") == stock


def test_expired_voucher_is_not_valid(node: NodeService, now) -> None:
    m = node.enrol("Eve Gray", "2580", now)
    node.post_stay(m.number, "F2", now, nights=3, revenue={Outlet.ROOM: "300.00"})
    red = node.redeem(node.verify_pin(m.number, "2580", now), "LATE-CO", now)
    later = now + timedelta(days=31)
    info = node.verify_voucher(red.voucher, later)
    assert info.status == "expired" and not info.valid


def test_wrong_pin_to_lock_out_then_timeout_or_unlock(node: NodeService, now, desk) -> None:
    m = node.enrol("Finn Hall", "2580", now)
    for left in (4, 3, 2, 1):
        with pytest.raises(WrongPin) as err:
            node.verify_pin(m.number, "0000", now)
        assert err.value.tries_left == left
    with pytest.raises(WrongPin, match="now locked"):
        node.verify_pin(m.number, "0000", now)
    with pytest.raises(PinLocked):
        node.verify_pin(m.number, "2580", now)  # even the right PIN, while locked
    assert node.summary(m.number, now).locked
    node.verify_pin(m.number, "2580", now + timedelta(minutes=31))  # the lock-out ran out
    for _ in range(5):
        with pytest.raises((WrongPin, PinLocked)):
            node.verify_pin(m.number, "9999", now)
    node.unlock(m.number, now, SUP)
    assert node.verify_pin(m.number, "2580", now).member == m.number


def test_bad_input_is_caught_before_any_lookup(node: NodeService, now) -> None:
    m = node.enrol("Gus Ives", "2580", now)
    typo = m.number[:-1] + str((int(m.number[-1]) + 1) % 10)
    with pytest.raises(BadInput, match="check digit"):
        node.summary(typo, now)
    from staypoint.loyalty.member_numbers import make_number

    with pytest.raises(UnknownMember):
        node.summary(make_number(42, 99_999), now)
    with pytest.raises(UnknownCard):
        node.member_by_card("DEADBEEF")
    with pytest.raises(BadInput, match="hex"):
        node.member_by_card("not-a-uid")
    with pytest.raises(BadInput, match="4 digits"):
        node.enrol("X", "12", now)
    with pytest.raises(BadInput):
        node.post_stay(m.number, "F", now, nights=2, revenue={Outlet.ROOM: "12.345"})
    with pytest.raises(BadInput, match="future"):
        node.post_stay(m.number, "F", now, nights=2, revenue={Outlet.ROOM: "1"}, arrival=date(2027, 1, 1))


def test_stored_value_top_up_and_spend(node: NodeService, now, desk) -> None:
    m = node.enrol("Hana Jo", "2580", now)
    assert node.top_up(m.number, "150.00", now, desk) == Decimal("150.00")
    proof = node.verify_pin(m.number, "2580", now)
    assert node.spend(proof, "49.99", now) == Decimal("100.01")
    with pytest.raises(NotAllowed, match="not enough"):
        node.spend(proof, "100.02", now)
    with pytest.raises(BadInput, match="between"):
        node.top_up(m.number, "5.00", now, desk)
    assert node.summary(m.number, now).stored_value == Decimal("100.01")


def test_offline_limits_bound_what_a_stale_or_busy_node_gives(node: NodeService, now) -> None:
    m = node.enrol("Ivo Kim", "2580", now)
    give(node, m.number, 40_000, now)
    proof = node.verify_pin(m.number, "2580", now)
    for _ in range(3):
        node.redeem(proof, "BREAKFAST", now)
    with pytest.raises(OfflineLimitReached, match="at most 3 rewards in a row"):
        node.redeem(proof, "LATE-CO", now)
    node.record_contact(now)  # head office reached: counters start again
    node.redeem(proof, "BREAKFAST", now)
    stale = now + timedelta(hours=73)
    with pytest.raises(OfflineLimitReached, match="offline too long"):
        node.redeem(node.verify_pin(m.number, "2580", stale), "LATE-CO", stale)


def test_claim_feedback_and_staff(node: NodeService, now) -> None:
    m = node.enrol("Jon Lee", "2580", now)
    node.record_claim(m.number, "F-77", date(2026, 11, 1), date(2026, 11, 3), now, note="forgot card")
    node.record_feedback(m.number, 5, ["friendly staff", "quiet"], now)
    with pytest.raises(BadInput):
        node.record_feedback(m.number, 6, [], now)
    node.add_staff("ana", "Ana", "supervisor", "9876", card_uid="5AFF00AA")
    assert node.is_staff_card("5aff00aa")
    assert node.staff_login("9876", now, card_uid="5AFF00AA").role == "supervisor"
    with pytest.raises(WrongPin):
        node.staff_login("0000", now, card_uid="5AFF00AA")
    types = [e["type"] for e in node.outbox()]
    assert types[-2:] == ["claim.recorded", "feedback.recorded"]


def test_reopen_keeps_everything(tmp_path: Path, now) -> None:
    from staypoint.loyalty.program import default_program_text

    db = tmp_path / "n.db"
    svc = NodeService.init_node(db, "n1", "P", default_program_text(), now)
    m = svc.enrol("Kay Moe", "2580", now)
    svc.close()
    again = NodeService.open(db)
    assert again.summary(m.number, now).name == "Kay M."
    with pytest.raises(BadInput, match="already belongs to node"):
        NodeService.init_node(db, "n2", "P", default_program_text(), now)
