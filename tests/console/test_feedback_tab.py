"""The Feedback tab under Pilot: lowest scores and highest tiers first, a low score from the
top tier alarmed and flagged until closed, follow-up with who and when (docs/console.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable, Static

from staypoint.central.console.app import ConsoleApp, DeskScreen
from staypoint.central.console.desk import Desk
from staypoint.central.console.feedback import FeedbackView
from tests.api.conftest import NOW, Api
from tests.console.helpers import sign_in
from tests.console.test_console import SIZE


def _feedback(api: Api, member: str, stars: int, tags: list[str], comment: str) -> None:
    token = api.login(member)
    r = api.client.post(
        "/v1/me/feedback", json={"stars": stars, "tags": tags, "comment": comment}, headers=api.h(token=token)
    )
    assert r.status_code in (200, 201), r.text


async def test_feedback_ranked_alerted_and_followed_up(desk_api: tuple[Desk, Api]) -> None:
    desk, api = desk_api
    ada = desk.search("ada@example.com")[0]["member"]  # a Member
    vip = api.enrol("Victor Platinum")
    api.stay(vip, "F-VIP", room="15000")  # 150,000 points: Platinum, the top tier
    assert api.ledger.member(vip)["tier"] == "PLATINUM"
    _feedback(api, ada, 2, ["noise"], "street noise all night")
    _feedback(api, vip, 5, ["friendly staff"], "lovely")
    _feedback(api, vip, 1, ["dirty room"], "hair in the bath")
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "clerk-1")
        screen = app.screen
        assert isinstance(screen, DeskScreen)
        screen.query_one("TabbedContent").active = "feedback"  # type: ignore[attr-defined]
        await pilot.pause()
        view = screen.query_one(FeedbackView)
        table = screen.query_one("#fb-table", DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        # The alert first, then the lowest score, then the highest tier.
        assert [(r[0], len(r[1]), r[2]) for r in rows] == [
            ("ALERT", 1, "PLATINUM"),
            ("", 2, "MEMBER"),
            ("", 5, "PLATINUM"),
        ]
        assert "1 low score" in str(screen.query_one("#fb-alerts", Static).render())
        alarms = [a for a in api.ledger.store.alarms() if a["kind"] == "feedback_low_score"]
        assert len(alarms) == 1 and vip in alarms[0]["detail"]

        view.selected = str(table.coordinate_to_cell_key((0, 0)).row_key.value)
        screen.query_one("#fb-note").value = "called, room comped"  # type: ignore[attr-defined]
        await pilot.click("#fb-contacted")
        await pilot.pause()
        assert table.get_row_at(0)[7:9] == ["contacted", "clerk-1"]
        await pilot.click("#fb-closed")
        await pilot.pause()
        assert "no open alerts" in str(screen.query_one("#fb-alerts", Static).render())
        assert table.get_row_at(0)[0] == ""  # closed: no longer flagged, ranked by score again

        screen.query_one("#fb-tier").value = "MEMBER"  # type: ignore[attr-defined]
        await pilot.click("#fb-filter")
        await pilot.pause()
        assert table.row_count == 1 and table.get_row_at(0)[6] == "street noise all night"
    # Pulled again: nothing new, no second alarm.
    assert [a["kind"] for a in api.ledger.store.alarms()].count("feedback_low_score") == 1


def test_feedback_report(desk_api: tuple[Desk, Api], tmp_path: Path) -> None:
    """`staypoint report feedback_by_tier`: the same feedback, ranked, with its tags."""
    desk, api = desk_api
    ada = desk.search("ada@example.com")[0]["member"]
    _feedback(api, ada, 2, ["noise"], "street noise")
    _feedback(api, ada, 4, ["noise", "clean room"], "")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "staypoint.cli.main",
            "report",
            "feedback_by_tier",
            "--store",
            f"sqlite://{tmp_path / 'ledger.db'}",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    report = body.get("feedback_by_tier", body)
    assert report["rows"][0][1:5] == ["MEMBER", 2, "3.00", 1] or report["rows"][0][1:5] == [
        "MEMBER",
        2,
        3.0,
        1,
    ]
    assert report["rows"][0][5].startswith("noise (2)")
