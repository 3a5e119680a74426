"""The staff enrol form takes a friend's referral code (Pilot): a typo is one line in place,
a member's code goes out as ``member.referred`` with the enrolment."""

from __future__ import annotations

import json

from textual.widgets import Input

from staypoint.edge.service import NodeService
from staypoint.kiosk.app import Devices
from staypoint.loyalty.referral_codes import referral_code
from tests.kiosk.conftest import BEN, SMALL, number
from tests.kiosk.test_staff import Build, act, open_task, staff_sign_in


async def test_enrol_with_a_friends_code(build: Build, devices: Devices, service: NodeService) -> None:
    app = build()
    code = referral_code(number(BEN))
    async with app.run_test(size=SMALL) as pilot:
        await staff_sign_in(pilot, devices)
        await open_task(pilot, "enrol", name="Mei Lin", pin="2580", referred_by="ZZZZ-ZZZZ")
        assert "not a referral code" in await act(pilot)
        before = service.replica.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        app.screen.query_one("#f-referred_by", Input).value = code.lower()  # corrected in place
        result = await act(pilot)
        assert "Enrolled Mei L." in result and f"referred by code {code}" in result
    rows = service.replica.conn.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
    assert len(rows) == before + 2
    referred = json.loads(rows[-1][0])
    assert referred["type"] == "member.referred"
    assert referred["data"]["referrer"] == number(BEN) and referred["data"]["code"] == code
