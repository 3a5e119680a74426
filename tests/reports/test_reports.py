"""Reports against figures computed by hand on a small fixed chain, and the HTML page offline.

The chain (programme: default, MEMBER tier, no promotion in 2025; room 10 pts/EUR, F&B 5):

    member  enrolled     home   stays (arrival, nights, revenue)
    A       2025-01-10   SHA    03-01 2n room 200      | 03-21 1n room 100 + F&B 50
    B       2025-01-20   SHA    03-05 1n room 150
    C       2025-02-05   BJS    03-10 3n room 300 (BJS) | 04-09 1n room 120 | 05-19 1n room 80
    D       2025-03-15   BJS    (none); +500 points by adjustment

    C redeems BREAKFAST (3,000 points); B's 1,500 points expire.

By hand:
- growth: 2025-01: 2, 2025-02: 1, 2025-03: 1 (4 members)
- repeat: 3 members stayed, 2 of them twice or more -> 2/3 = 0.6667;
  days between stays: A 20; C 30 and 40 -> (20+30+40)/3 = 30.0
- balances: A 2,000+1,250 = 3,250; B 0; C 5,000-3,000 = 2,000; D 500 -> outstanding 5,750
- liability: 5,750 x 0.005 = 28.75; breakage 1,500/(3,000+1,500) = 0.3333;
  expected 28.75 x 0.6667 = 19.17
- revenue share (property totals SHA 2025-03 1,000.00, BJS 2025-03 1,200.00):
  SHA March 200+150+150 = 500 -> 0.5000; BJS March 300 -> 0.2500; together 800/2,200 = 0.3636
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.reports import projection
from staypoint.central.reports.cli import report_figures
from staypoint.central.reports.render import as_html, render
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.events import Event, iso, uuid7
from staypoint.loyalty.program import default_program_text

A, B, C, D = "9000000001", "9000000019", "9000000027", "9000000035"


class Feed:
    """Events of one node, numbered in order, ingested by the real ledger."""

    def __init__(self, ledger: Ledger, node: str = "n1") -> None:
        self.ledger, self.node, self.seq = ledger, node, 0

    def __call__(
        self, kind: str, member: str, at: str, data: dict[str, Any], auth: str | None = None
    ) -> None:
        self.seq += 1
        ts = datetime.fromisoformat(at).replace(tzinfo=UTC)
        ev = Event(self.node, 1, self.seq, uuid7(ts), iso(ts), kind, member, 1, data, auth)
        res = self.ledger.ingest(self.node, [ev.to_dict()], ts)
        assert res.applied == 1, res


def _stay(feed: Feed, member: str, prop: str, arrival: str, nights: int, room: str, fnb: str = "0") -> None:
    arr = date.fromisoformat(arrival)
    pts = int(Decimal(room) * 10 + Decimal(fnb) * 5)
    revenue = {"room": room} | ({"fnb": fnb} if fnb != "0" else {})
    feed(
        "stay.posted",
        member,
        f"{(arr + timedelta(days=nights)).isoformat()}T11:00:00",
        {
            "folio": f"F-{member}-{arrival}",
            "property": prop,
            "arrival": arrival,
            "departure": (arr + timedelta(days=nights)).isoformat(),
            "nights": nights,
            "revenue": revenue,
            "points": pts,
            "qualifying_points": pts,
            "tier": "MEMBER",
            "tier_after": "MEMBER",
            "promotions": [],
        },
    )


def build_chain(db: Path) -> None:
    ledger = Ledger(SqliteLedgerStore(db))
    ledger.publish_program(default_program_text(), datetime(2025, 1, 1, tzinfo=UTC))
    feed = Feed(ledger)
    for member, day, prop in (
        (A, "2025-01-10", "SHA"),
        (B, "2025-01-20", "SHA"),
        (C, "2025-02-05", "BJS"),
        (D, "2025-03-15", "BJS"),
    ):
        feed(
            "member.enrolled",
            member,
            f"{day}T09:00:00",
            {
                "name": member,
                "display_name": member,
                "tier": "MEMBER",
                "pin_hash": "x",
                "home_property": prop,
            },
        )
    _stay(feed, A, "SHA", "2025-03-01", 2, "200.00")
    _stay(feed, B, "SHA", "2025-03-05", 1, "150.00")
    _stay(feed, C, "BJS", "2025-03-10", 3, "300.00")
    _stay(feed, A, "SHA", "2025-03-21", 1, "100.00", "50.00")
    _stay(feed, C, "BJS", "2025-04-09", 1, "120.00")
    _stay(feed, C, "BJS", "2025-05-19", 1, "80.00")
    feed("points.adjusted", D, "2025-05-01T10:00:00", {"points": 500, "reason": "goodwill", "staff": "s1"})
    feed(
        "points.redeemed",
        C,
        "2025-06-01T10:00:00",
        {
            "reward": "BREAKFAST",
            "points": 3000,
            "hold": None,
            "voucher": "V-1",
            "serial": 1,
            "expires": "2025-08-30",
            "token": "t",
            "limits": None,
        },
        auth="offline",
    )
    feed(
        "feedback.recorded",
        A,
        "2025-03-23T10:00:00",
        {"stars": 5, "tags": [], "context": "dashboard", "property": "SHA"},
    )
    feed(
        "feedback.recorded",
        C,
        "2025-03-13T10:00:00",
        {"stars": 3, "tags": [], "context": "dashboard", "property": "BJS"},
    )
    feed("points.expired", B, "2025-12-01T00:00:00", {"points": 1500})
    ledger.store.close()
    conn = projection.connect(db)
    projection.import_property_revenue(
        conn, "property,month,revenue\nSHA,2025-03,1000.00\nBJS,2025-03,1200.00\n"
    )
    conn.close()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("reports") / "ledger.db"
    build_chain(db)
    return db


def test_growth_by_month_and_property(chain: Path) -> None:
    r = report_figures(chain, ["growth"])["growth"]
    assert r.headline["new_members"] == 4
    assert r.headline["by_month"] == [["2025-01", 2, 2], ["2025-02", 1, 3], ["2025-03", 1, 4]]
    assert ["2025-01", "SHA", "MEMBER", 2] in r.rows
    only_bjs = report_figures(chain, ["growth"], property="BJS")["growth"]
    assert only_bjs.headline["new_members"] == 2


def test_repeat_rate_and_days_between(chain: Path) -> None:
    r = report_figures(chain, ["repeat"])["repeat"].headline
    assert r["members_with_stays"] == 3 and r["repeat_members"] == 2
    assert r["repeat_rate"] == Decimal("0.6667")
    assert r["avg_days_between_stays"] == Decimal("30.0")


def test_points_and_liability(chain: Path) -> None:
    got = report_figures(chain, ["points", "liability"])
    p = got["points"].headline
    assert p["outstanding"] == 5750
    assert p["issued"] == 2000 + 1250 + 1500 + 3000 + 1200 + 800 + 500
    assert p["redeemed"] == 3000 and p["expired"] == 1500
    li = got["liability"].headline
    assert li["outstanding_points"] == 5750
    assert li["gross_liability"] == Decimal("28.75")
    assert li["breakage_rate"] == Decimal("0.3333")
    assert li["expected_liability"] == Decimal("19.17")


def test_member_revenue_share(chain: Path) -> None:
    r = report_figures(chain, ["revenue_share"])["revenue_share"]
    rows = {(row[0], row[1]): row for row in r.rows}
    assert rows[("SHA", "2025-03")][2:] == [Decimal("500.00"), Decimal("1000.00"), Decimal("0.5000")]
    assert rows[("BJS", "2025-03")][2:] == [Decimal("300.00"), Decimal("1200.00"), Decimal("0.2500")]
    assert rows[("BJS", "2025-04")][3] is None  # no imported total for April
    assert r.headline["member_share"] == Decimal("0.3636")


def test_other_reports_have_figures(chain: Path) -> None:
    got = report_figures(chain)
    assert got["redemptions"].rows == [["BREAKFAST", "meal", 1, 3000, None]]
    assert got["exposure"].rows[0][:2] == ["n1", 3000]
    fb = {(r[0], r[1]): r[3] for r in got["feedback"].rows}
    assert fb[("property", "SHA")] == Decimal("5.00") and fb[("property", "BJS")] == Decimal("3.00")
    spend = {r[0]: r[3] for r in got["spend_by_tier"].rows}
    assert spend["MEMBER"] == Decimal("166.66")  # 1,000.00 over 6 stays, rounded down to the cent
    for fmt in ("table", "csv", "json"):
        assert "liability" in render(got, fmt).lower()


def test_projection_is_incremental(chain: Path, tmp_path: Path) -> None:
    conn = projection.connect(chain)
    projection.refresh(conn)  # whether or not another test's report ran first (xdist)
    assert projection.refresh(conn) == {"events": 0, "changes": 0}  # nothing new since the last refresh
    conn.close()


def test_html_page_offline_in_headless_chromium(chain: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium not installed")
    page_path = tmp_path / "report.html"
    page_path.write_text(as_html(report_figures(chain), subtitle="test chain"), encoding="utf-8")
    url = page_path.as_uri()
    requests: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page()

        def route(r: Any) -> None:
            requests.append(r.request.url)
            if r.request.url == url:
                r.continue_()
            else:
                r.abort()

        page.route("**/*", route)
        page.goto(url)
        charts = page.locator("svg.chart").count()
        marks = page.locator("svg.chart .mark").count()
        liability = page.locator("#liability").inner_text()
        browser.close()
    assert requests == [url], f"the page asked for more than itself: {requests}"
    assert charts >= 10 and marks >= 20
    assert "19.17" in liability
