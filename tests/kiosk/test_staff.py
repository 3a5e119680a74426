"""Staff mode: card + PIN, each desk task, roles, the node status page."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input

from staypoint.edge import sync_store
from staypoint.edge.service import NodeService, PinLocked, StaffProof, WrongPin
from staypoint.kiosk.app import Devices, KioskApp
from staypoint.kiosk.hardware.printer.sim import SimPrinter
from staypoint.kiosk.hardware.reader.sim import SimReader
from staypoint.kiosk.screens.attract import AttractScreen
from staypoint.kiosk.screens.staff import StaffMenuScreen
from staypoint.kiosk.screens.staff_status import StaffStatusScreen
from staypoint.loyalty import roles
from staypoint.loyalty.roles import Task
from tests.kiosk.conftest import ANNA, BEN, NOW, SMALL, STAFF_CARD, TECH_CARD, number
from tests.kiosk.helpers import keypad, settle, text_of, wait_until

Build = Callable[..., KioskApp]


async def staff_sign_in(
    pilot: Pilot[None], devices: Devices, uid: str = STAFF_CARD, pin: str = "2468"
) -> None:
    assert isinstance(devices.reader, SimReader)
    devices.reader.tap(uid=uid)
    await settle(pilot)
    await keypad(pilot, pin)
    assert isinstance(pilot.app.screen, StaffMenuScreen)


async def open_task(pilot: Pilot[None], task: str, **values: str) -> None:
    await pilot.click(f"#task-{task}")
    await settle(pilot)
    for name, value in values.items():
        pilot.app.screen.query_one(f"#f-{name}", Input).value = value


async def act(pilot: Pilot[None], action: str = "go") -> str:
    # A Button ignores a second press during its 0.2 s pressed effect (double-tap guard):
    # wait for the effect to end rather than for a time.
    button = pilot.app.screen.query_one(f"#do-{action}", Button)
    await wait_until(pilot, lambda: not button.has_class("-active"), "the pressed effect", settled=False)
    await pilot.click(f"#do-{action}")
    await settle(pilot)
    return text_of(pilot.app, "#result")  # type: ignore[arg-type]


async def back(pilot: Pilot[None]) -> None:
    await pilot.click("#back")
    await settle(pilot)


async def test_wrong_staff_pin(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        assert isinstance(devices.reader, SimReader)
        devices.reader.tap(uid=STAFF_CARD)
        await settle(pilot)
        await keypad(pilot, "1111")
        assert "tries left" in text_of(app, "#staff-prompt")


async def test_desk_tasks(build: Build, devices: Devices, service: NodeService) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await staff_sign_in(pilot, devices)
        # post a stay
        await open_task(pilot, "stay", member=number(BEN), folio="F-77", nights="3", room="450.00", fnb="20")
        assert "Posted F-77" in await act(pilot)
        assert service.summary(number(BEN), NOW).points > 6_168
        await back(pilot)
        # enrol, with the card tapped while the form is open
        await open_task(pilot, "enrol", name="Mei Lin", pin="2580")
        assert isinstance(devices.reader, SimReader)
        devices.reader.tap(uid="04A1B2C3D4E5F6")
        await settle(pilot)
        assert app.screen.query_one("#f-card", Input).value == "04A1B2C3D4E5F6"
        result = await act(pilot)
        assert "Enrolled Mei L." in result and "card bound" in result
        mei = service.member_by_card("04A1B2C3D4E5F6")
        assert mei.name == "Mei L."
        await back(pilot)
        # bind a replacement card
        await open_task(pilot, "bind", member=mei.number, card="04A1B2C3D4E5F7")
        assert "Card bound" in await act(pilot)
        assert service.member_by_card("04A1B2C3D4E5F7").number == mei.number
        await back(pilot)
        # top up, and a refusal shown in place
        await open_task(pilot, "topup", member=mei.number, amount="50.00")
        assert "50.00" in await act(pilot)
        app.screen.query_one("#f-amount", Input).value = "5000"
        assert "between" in await act(pilot)
        await back(pilot)
        # unlock a locked member
        for _ in range(5):
            with contextlib.suppress(WrongPin, PinLocked):
                service.verify_pin(number(ANNA), "0000", NOW)
        await open_task(pilot, "unlock", member=number(ANNA))
        assert "unlocked" in await act(pilot)
        service.verify_pin(number(ANNA), "1234", NOW)
        await back(pilot)


async def test_vouchers_verify_use_void_and_reprint(
    build: Build, devices: Devices, service: NodeService
) -> None:
    proof = service.verify_pin(number(ANNA), "1234", NOW)
    first = service.redeem(proof, "LATE-CO", NOW)
    second = service.redeem(proof, "BREAKFAST", NOW)
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await staff_sign_in(pilot, devices)
        await open_task(pilot, "voucher", code=first.voucher)
        assert "issued: valid" in await act(pilot, "verify")
        assert "used: already used" in await act(pilot, "use")
        assert "cannot be used" in await act(pilot, "use")
        # a scanned QR token works the same way
        app.screen.query_one("#f-code", Input).value = second.token
        app.screen.query_one("#f-reason", Input).value = "guest changed plans"
        assert "voided" in await act(pilot, "void")
        assert service.verify_voucher(second.voucher, NOW).status == "voided"
        await back(pilot)
        await pilot.click("#task-reprint")
        await settle(pilot)
        assert "Reprinted voucher" in text_of(app, "#staff-message")
        assert isinstance(devices.printer, SimPrinter)
        assert devices.printer.slips[-1].code.replace("-", "") == second.voucher
        await pilot.click("#sign-out")
        await settle(pilot)
        assert isinstance(app.screen, AttractScreen)


async def test_roles_limit_tasks(build: Build, devices: Devices, service: NodeService) -> None:
    service.add_staff("clerk", "Clerk", "staff", "4321", card_uid="5AFF0003")
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await staff_sign_in(pilot, devices, "5AFF0003", "4321")
        assert not app.screen.query("#task-unlock")
        await open_task(pilot, "voucher")
        assert not app.screen.query("#do-void")  # voids are for supervisors
        await back(pilot)
        await pilot.click("#sign-out")
        await settle(pilot)
        await staff_sign_in(pilot, devices, TECH_CARD, "1357")
        assert not app.screen.query("#task-stay") and app.screen.query("#task-exit")


#: Where the kiosk offers each task of the role table: (menu button, or a button on the screen
#: that menu button opens). Tasks not here are the command line's alone.
KIOSK_PLACES: dict[Task, tuple[str, str | None]] = {
    Task.POST_STAY: ("stay", None),
    Task.ENROL: ("enrol", None),
    Task.BIND_CARD: ("bind", None),
    Task.TOP_UP: ("topup", None),
    Task.USE_VOUCHER: ("voucher", None),
    Task.VOID_VOUCHER: ("voucher", "#do-void"),
    Task.REPRINT: ("reprint", None),
    Task.UNLOCK: ("unlock", None),
    Task.NODE_STATUS: ("status", None),
    Task.PRINTER_TEST: ("status", "#test-page"),
    Task.CLOSE_KIOSK: ("exit", None),
}
CLI_ONLY = {Task.VOID_STAY, Task.ADJUST, Task.ADD_STAFF, Task.REPORT_MEMBER}
ROLE_CARDS = {
    roles.STAFF: ("5AFF0003", "4321"),  # added by the test
    roles.SUPERVISOR: (STAFF_CARD, "2468"),
    roles.TECHNICIAN: (TECH_CARD, "1357"),
}


@pytest.mark.parametrize("role", roles.STAFF_ROLES)
async def test_the_staff_menu_offers_exactly_what_the_role_table_allows(
    build: Build, devices: Devices, service: NodeService, role: str
) -> None:
    assert set(KIOSK_PLACES) | CLI_ONLY == set(Task), "a task of the role table has no place"
    service.add_staff("clerk", "Clerk", roles.STAFF, "4321", card_uid="5AFF0003")
    allowed = roles.tasks_for(role)
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        await staff_sign_in(pilot, devices, *ROLE_CARDS[role])
        shown = {str(b.id).removeprefix("task-") for b in app.screen.query("#staff-tasks Button")}
        # "spend" (pay from stored value, the member's PIN authorising it) shares TOP_UP's role rule.
        assert shown == {
            KIOSK_PLACES[t][0] for t in allowed if t in KIOSK_PLACES and KIOSK_PLACES[t][1] is None
        } | ({"spend"} if Task.TOP_UP in allowed else set())
        # Buttons inside a task's screen follow the table too.
        for task, (menu, inner) in KIOSK_PLACES.items():
            if inner is None or menu not in shown:
                continue
            await pilot.click(f"#task-{menu}")
            await settle(pilot)
            assert bool(app.screen.query(inner)) == (task in allowed), (role, task)
            await pilot.click("#back")
            await settle(pilot)


async def test_node_status_page(build: Build, devices: Devices, service: NodeService) -> None:
    # One event head office quarantined: the technician sees it, with the reason.
    desk = StaffProof("desk-1", "Dana", "staff")
    service.enrol("Quinn Q", "2580", datetime.now(UTC), staff=desk)
    with service.replica.write():
        seq = int(service.replica.conn.execute("SELECT max(seq) FROM outbox").fetchone()[0] or 0)
        if seq:
            quarantine = {
                "node": service.node_id,
                "epoch": 1,
                "seq": seq,
                "id": "x",
                "reason": "nights out of bounds",
            }
            sync_store.apply_changes(
                service.replica.conn,
                [{"kind": "quarantine", "key": "k", "version": 1, "body": quarantine}],
                {},
            )
    app = build()
    assert isinstance(devices.printer, SimPrinter)
    devices.printer.paper_out = True
    async with app.run_test(size=SMALL) as pilot:
        await staff_sign_in(pilot, devices, TECH_CARD, "1357")
        await pilot.click("#task-status")
        await settle(pilot)
        assert isinstance(app.screen, StaffStatusScreen)
        status = text_of(app, "#node-status")
        assert "demo-lobby-01" in status and "Outbox" in status and "last contact" in status
        assert seq and "Refused by HQ" in status and "nights out of bounds" in status
        devices_text = text_of(app, "#device-status")
        assert "reader" in devices_text and "paper_out" in devices_text
        assert app.screen.query_one("#test-page", Button)
        await pilot.click("#test-page")
        await settle(pilot)
        assert "Printer out of paper" in text_of(app, "#status-bar")
        await pilot.click("#back")
        await settle(pilot)
        await pilot.click("#task-exit")
        await pilot.pause()
    assert app.return_code in (0, None)


async def test_staff_lock_out_message(build: Build, devices: Devices, service: NodeService) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        assert isinstance(devices.reader, SimReader)
        devices.reader.tap(uid=STAFF_CARD)
        await settle(pilot)
        for _ in range(5):
            await keypad(pilot, "0000")
        try:
            service.staff_login("2468", NOW, card_uid=STAFF_CARD)
            raise AssertionError("staff card should be locked")
        except PinLocked:
            pass
        await keypad(pilot, "2468")
        assert "locked" in text_of(app, "#staff-prompt")


async def test_device_states_are_left_for_the_heartbeat(build, devices, service) -> None:  # type: ignore[no-untyped-def]
    import json

    from staypoint.edge.sync.heartbeat import read_devices

    app = build()
    async with app.run_test(size=(100, 30)) as pilot:
        devices.printer.paper_out = True
        app.check_health()
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
    path = service.replica.path.with_name("devices.json")
    assert json.loads(path.read_text())["devices"]["printer"]["state"] == "paper_out"
    states = {d.kind: d.state for d in read_devices(path)}
    assert states["printer"] == "paper_out" and states["reader"] == "ok"
