"""The stored-value liability report, by hand, with an open value overdraft; local-day filters.

    member  home  value events (all through the real ledger)
    E       SHA   +100.00 top-up; 30.00 spent online
    F       SHA   +50.00 top-up; 40.00 + 30.00 spent offline at two nodes -> -20.00, an open overdraft

By hand: balances SHA 70.00 (E) and -20.00 (F) -> outstanding 50.00 over 2 members;
top-ups 2 for 150.00; spends online 1 for 30.00, offline 2 for 70.00; open overdrafts 1 for -20.00.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.reports.cli import report_figures
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.localtime import zone
from staypoint.loyalty.program import default_program_text
from tests.reports.test_reports import Feed

E, F = "9000000043", "9000000050"


@pytest.fixture(scope="module")
def wallets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("stored-value") / "ledger.db"
    ledger = Ledger(SqliteLedgerStore(db))
    ledger.publish_program(default_program_text(), datetime(2025, 1, 1, tzinfo=UTC))
    one, two = Feed(ledger, "n1"), Feed(ledger, "n2")
    # F enrols at 20:00 UTC on 31 January: 1 February, 04:00, in Shanghai.
    for member, at in ((E, "2025-01-10T09:00:00"), (F, "2025-01-31T20:00:00")):
        one(
            "member.enrolled",
            member,
            at,
            {
                "name": member,
                "display_name": member,
                "tier": "MEMBER",
                "pin_hash": "x",
                "home_property": "SHA",
            },
        )
    one("value.topped_up", E, "2025-02-01T10:00:00", {"amount": "100.00"})
    one("value.spent", E, "2025-02-02T10:00:00", {"amount": "30.00"})
    one("value.topped_up", F, "2025-02-01T10:00:00", {"amount": "50.00"})
    # Two offline nodes each let F spend what the wallet held: the second spend overdraws it.
    one("value.spent", F, "2025-02-03T10:00:00", {"amount": "40.00"}, auth="offline")
    two("value.spent", F, "2025-02-03T10:05:00", {"amount": "30.00"}, auth="offline")
    ledger.store.close()
    return db


def test_stored_value_liability_with_an_open_overdraft(wallets: Path) -> None:
    r = report_figures(wallets, ["stored_value"])["stored_value"]
    assert r.columns == ["measure", "property", "tier", "count", "amount"]
    assert ["balance", "SHA", "MEMBER", 2, Decimal("50.00")] in r.rows
    assert ["top_ups", "", "", 2, Decimal("150.00")] in r.rows
    assert ["spends_online", "", "", 1, Decimal("30.00")] in r.rows
    assert ["spends_offline", "", "", 2, Decimal("70.00")] in r.rows
    assert ["open_overdrafts", "", "", 1, Decimal("-20.00")] in r.rows
    h = r.headline
    assert h["outstanding"] == Decimal("50.00") and h["members_with_balance"] == 2
    assert h["open_overdrafts"] == 1 and h["overdrawn"] == Decimal("-20.00")
    # The period filters the movements, not the balances now.
    later = report_figures(wallets, ["stored_value"], start=date(2025, 2, 3))["stored_value"]
    assert ["top_ups", "", "", 0, Decimal("0.00")] in later.rows
    assert ["spends_offline", "", "", 2, Decimal("70.00")] in later.rows


def test_from_and_to_are_the_propertys_local_days_with_tz(wallets: Path) -> None:
    feb, mar, sha = date(2025, 2, 1), date(2025, 3, 1), zone("Asia/Shanghai")
    utc = report_figures(wallets, ["growth"], start=feb, end=mar)["growth"]
    local = report_figures(wallets, ["growth"], start=feb, end=mar, tz=sha)["growth"]
    # F enrolled on 31 January in UTC, on 1 February in Shanghai.
    assert utc.headline["new_members"] == 0
    assert local.headline["new_members"] == 1
