"""The marketing role under Pilot: build, preview and save a segment, preview a one-off
campaign's message and dry-run it, and read a report in the Reports tab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Button, DataTable, Input, Select, TabbedContent

from staypoint.central.campaigns.segments import Segments
from staypoint.central.console.app import ConsoleApp, DeskScreen
from staypoint.central.console.desk import Desk
from tests.api.conftest import NOW, Api
from tests.console.conftest import PASSWORD
from tests.console.helpers import sign_in, text_of

pytest_plugins = ["tests.pg_fixtures"]

SIZE = (140, 44)


async def test_marketing_builds_a_segment_previews_a_campaign_and_reads_reports(
    desk_api: tuple[Desk, Api], tmp_path: Path
) -> None:
    desk, api = desk_api
    bob = api.enrol("Bob Builder", email="bob@example.com")
    api.stay(bob, "F-2", room="900")
    app = ConsoleApp(desk, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "mkt-1")
        screen = app.screen
        assert isinstance(screen, DeskScreen)
        assert screen.query("#marketing") and screen.query("#reports") and not screen.query("#claims")
        screen.query_one(TabbedContent).active = "marketing"
        await pilot.pause()
        screen.query_one("#seg-points", Input).value = "lots"
        screen.query_one("#seg-preview", Button).press()
        await pilot.pause()
        assert "whole number" in text_of(screen, "#seg-msg")
        screen.query_one("#seg-points", Input).value = "1"
        screen.query_one("#seg-preview", Button).press()
        await pilot.pause()
        assert text_of(screen, "#seg-msg").startswith("2 members in this segment")
        assert screen.query_one("#seg-sample", DataTable).row_count == 2
        screen.query_one("#seg-code", Input).value = "big-spenders"
        screen.query_one("#seg-save", Button).press()
        await pilot.pause()
        assert "saved big-spenders version 1" in text_of(screen, "#seg-msg")
        paths = (Path(desk.ledger.store.path), Path(desk.services.profiles.path))  # type: ignore[attr-defined]
        segs = Segments(*paths)
        assert segs.versions("big-spenders")[0][2] == "mkt-1" and segs.get("big-spenders").points_min == 1
        segs.close()
        screen.query_one("#cmp-code", Input).value = "SPRING"
        screen.query_one("#cmp-subject", Input).value = "Spring at {{ programme }}, {{ first_name }}"
        screen.query_one("#cmp-preview", Button).press()
        await pilot.pause()
        out = text_of(screen, "#cmp-out")
        assert "Subject: Spring at" in out and ("Ada" in out or "Bob" in out)
        screen.query_one("#cmp-subject", Input).value = "{{ nonsense }}"
        screen.query_one("#cmp-preview", Button).press()
        await pilot.pause()
        assert "template error" in text_of(screen, "#cmp-out")
        screen.query_one("#cmp-subject", Input).value = ""
        screen.query_one("#cmp-dry", Button).press()
        await pilot.pause()
        assert "dry run, nothing sent: occasions 2" in text_of(screen, "#cmp-out")
        app.save_screenshot(str(tmp_path / "marketing.svg"))  # docs/img/console-marketing.svg

        screen.query_one(TabbedContent).active = "reports"
        await pilot.pause()
        screen.query_one("#rpt-name", Select).value = "growth"
        screen.query_one("#rpt-show", Button).press()
        await pilot.pause()
        table = screen.query_one("#rpt-table", DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels == ["Month", "Property", "Tier", "New members"]
        assert table.row_count >= 1 and "New members: 2" in text_of(screen, "#rpt-headline")
        screen.query_one("#rpt-from", Input).value = "soon"
        screen.query_one("#rpt-show", Button).press()
        await pilot.pause()
        assert "YYYY-MM-DD" in text_of(screen, "#rpt-headline")


async def test_the_marketing_tab_works_on_a_postgresql_ledger(
    request: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Segments and a message preview on a PostgreSQL ledger (the tab said "SQLite only")."""
    from staypoint.central.claims import ClaimsQueue
    from tests.api.conftest import Clock, build_api

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    api = build_api(str(request.getfixturevalue("pg_url")), tmp_path, Clock())
    desk = Desk(api.services, ClaimsQueue(api.services))
    desk.add_staff("mkt-1", "Mia Marketing", "marketing", PASSWORD)
    for i, name in enumerate(("Ada Lovelace", "Bob Builder")):
        m = api.enrol(name, email=f"guest{i}@example.com")
        api.stay(m, f"F-{i}", room="900")
    app = ConsoleApp(desk, clock=lambda: NOW)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await sign_in(pilot, "mkt-1")
            screen = app.screen
            screen.query_one(TabbedContent).active = "marketing"
            await pilot.pause()
            screen.query_one("#seg-points", Input).value = "1"
            screen.query_one("#seg-preview", Button).press()
            await pilot.pause()
            assert text_of(screen, "#seg-msg").startswith("2 members in this segment")
            screen.query_one("#seg-code", Input).value = "big-spenders"
            screen.query_one("#seg-save", Button).press()
            await pilot.pause()
            assert "saved big-spenders version 1" in text_of(screen, "#seg-msg")
    finally:
        api.client.close()
