"""The node service enforces the role table: what a role may not do is refused, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from staypoint.edge import service as service_module
from staypoint.edge.service import NodeError, NodeService, NotAllowed, StaffProof
from staypoint.loyalty import roles
from staypoint.loyalty.program import Outlet
from staypoint.loyalty.roles import Task
from tests.edge.test_operations import file_digest

CLERK = StaffProof("desk-7", "Desk Seven", roles.STAFF)
SUP = StaffProof("sup", "Sup", roles.SUPERVISOR)
TECH = StaffProof("tech", "Tech", roles.TECHNICIAN)


@pytest.fixture
def desk_day(node: NodeService, now: datetime) -> dict[str, str]:
    """A member with points, a posted stay and an unused voucher: something for every task."""
    m = node.enrol("Lena Marr", "2580", now).number
    node.post_stay(m, "F0", now, nights=3, revenue={Outlet.ROOM: "900.00"})  # pays for the voucher
    red = node.redeem(node.verify_pin(m, "2580", now), "LATE-CO", now)
    node.post_stay(m, "F1", now, nights=3, revenue={Outlet.ROOM: "300.00"})  # the one to void
    return {"member": m, "folio": "F1", "voucher": red.voucher}


def calls(node: NodeService, now: datetime, d: dict[str, str]) -> dict[Task, Callable[[StaffProof], object]]:
    """Every staff-taking method of the service, keyed by its task in the role table."""
    m = d["member"]
    return {
        Task.ENROL: lambda s: node.enrol("New Guest", "1234", now, staff=s),
        Task.BIND_CARD: lambda s: node.bind_card(m, "04AABBCCDD", now, s),
        Task.UNLOCK: lambda s: node.unlock(m, now, s),
        Task.POST_STAY: lambda s: node.post_stay(
            m, "F2", now, nights=1, revenue={Outlet.ROOM: "90"}, staff=s
        ),
        Task.VOID_STAY: lambda s: node.void_stay(d["folio"], now, s, "wrong guest"),
        Task.USE_VOUCHER: lambda s: node.use_voucher(d["voucher"], now, s),
        Task.VOID_VOUCHER: lambda s: node.void_voucher(d["voucher"], now, s, "changed plans"),
        Task.TOP_UP: lambda s: node.top_up(m, "50.00", now, s),
        Task.ADJUST: lambda s: node.adjust(m, 100, "goodwill", now, s),
        Task.ADD_STAFF: lambda s: node.add_staff("new-1", "New", roles.STAFF, "4444", by=s),
        Task.REPORT_MEMBER: lambda s: node.report_member(m, "card testing", now, s),
    }


def test_a_plain_staff_member_cannot_unlock(
    node: NodeService, now: datetime, desk_day: dict[str, str]
) -> None:
    before = file_digest(node)
    with pytest.raises(NotAllowed, match="needs a supervisor"):
        node.unlock(desk_day["member"], now, CLERK)
    assert file_digest(node) == before
    node.unlock(desk_day["member"], now, SUP)
    assert node.outbox()[-1]["data"]["staff"] == "sup"


def test_a_technicians_adjustment_is_refused_over_its_ceiling(
    node: NodeService, now: datetime, desk_day: dict[str, str]
) -> None:
    assert roles.TABLE[roles.TECHNICIAN].ceiling(Task.ADJUST) == 0
    before = file_digest(node)
    for points in (1, -1, 40_000):
        with pytest.raises(NotAllowed, match="technician may not adjust"):
            node.adjust(desk_day["member"], points, "goodwill", now, TECH)
    assert file_digest(node) == before


def test_a_supervisor_adjusts_up_to_the_ceiling_and_no_further(
    node: NodeService, now: datetime, desk_day: dict[str, str]
) -> None:
    ceiling = roles.TABLE[roles.SUPERVISOR].ceiling(Task.ADJUST)
    m = desk_day["member"]
    balance = node.adjust(m, ceiling, "goodwill", now, SUP)
    before = file_digest(node)
    with pytest.raises(NotAllowed, match=f"at most {ceiling:,} at once: more is for head office"):
        node.adjust(m, ceiling + 1, "goodwill", now, SUP)
    with pytest.raises(NotAllowed, match="at most"):
        node.adjust(m, -(ceiling + 1), "correction", now, SUP)
    assert file_digest(node) == before
    assert node.adjust(m, -ceiling, "correction", now, SUP) == balance - ceiling


@pytest.mark.parametrize(
    "who", [CLERK, SUP, TECH, StaffProof("x", "X", roles.LOCAL_ROOT)], ids=lambda s: s.role
)
def test_every_staff_method_follows_the_table(
    node: NodeService, now: datetime, desk_day: dict[str, str], who: StaffProof
) -> None:
    table = calls(node, now, desk_day)
    # The service's staff-taking methods and the table's member and set-up tasks are the same set.
    kiosk_only = {Task.REPRINT, Task.NODE_STATUS, Task.PRINTER_TEST, Task.CLOSE_KIOSK}
    assert set(table) == set(Task) - kiosk_only
    for task, call in table.items():
        if roles.allows(who.role, task, 100):
            try:
                call(who)
            except NodeError as exc:  # an earlier call may have used the voucher up: fine
                assert not isinstance(exc, NotAllowed), (task, exc)
            continue
        before = file_digest(node)
        with pytest.raises(NotAllowed):
            call(who)
        assert file_digest(node) == before, task


def test_an_unknown_role_may_do_nothing(node: NodeService, now: datetime, desk_day: dict[str, str]) -> None:
    with pytest.raises(NotAllowed, match="unknown staff role 'clerk'"):
        node.top_up(desk_day["member"], "50.00", now, StaffProof("c", "C", "clerk"))


def test_staff_roles_come_from_the_table(node: NodeService) -> None:
    assert service_module.STAFF_ROLES is roles.STAFF_ROLES
    with pytest.raises(service_module.BadInput, match="role is one of"):
        node.add_staff("r", "R", roles.LOCAL_ROOT, "4444")  # the shell is not an account
    node.add_staff("t2", "T", roles.TECHNICIAN, "4444", by=TECH)
