"""A report's month is the property's month: the programme's [[properties]] time zones.

Two nodes enrol a member each at 23:30Z on 31 December 2026: one at Berlin (UTC+1, already
1 January there), one at a property the programme does not list (UTC). Growth counts the
first in January 2027 and the second in December 2026; a stay counts in its arrival's month.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.reports import projection
from staypoint.central.reports.cli import report_figures
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.program import ProgramError, default_program_text, parse_program
from tests.reports.test_reports import Feed

BERLIN, ELSEWHERE = "9000000001", "9000000019"


def _enrol(feed: Feed, member: str, prop: str, at: str) -> None:
    feed(
        "member.enrolled",
        member,
        at,
        {"name": member, "display_name": member, "tier": "MEMBER", "pin_hash": "x", "home_property": prop},
    )


def test_growth_counts_an_enrolment_in_the_month_of_its_property(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = Ledger(SqliteLedgerStore(db))
    ledger.publish_program(default_program_text(), datetime(2026, 1, 1, tzinfo=UTC))
    ledger.register_node("ber-lobby-01", "00" * 32, "BER")
    ledger.register_node("zzz-lobby-01", "00" * 32, "ZZZ")
    _enrol(Feed(ledger, "ber-lobby-01"), BERLIN, "BER", "2026-12-31T23:30:00")
    _enrol(Feed(ledger, "zzz-lobby-01"), ELSEWHERE, "ZZZ", "2026-12-31T23:30:00")
    ledger.store.close()

    growth = report_figures(db, ["growth"])["growth"]
    months = {row[1]: row[0] for row in growth.rows}  # property -> month
    assert months == {"BER": "2027-01", "ZZZ": "2026-12"}


def test_a_month_in_the_middle_is_utc_s_and_the_edges_are_the_zone_s() -> None:
    assert projection.local_month("2026-12-31T23:30:00.000Z", "Europe/Berlin") == "2027-01"
    assert projection.local_month("2027-01-01T03:00:00.000Z", "America/New_York") == "2026-12"
    assert projection.local_month("2026-12-31T23:30:00.000Z", None) == "2026-12"
    assert projection.local_month("2026-12-31T23:30:00.000Z", "Not/AZone") == "2026-12"
    assert projection.local_month(None, "Europe/Berlin") is None


def test_the_programme_names_each_property_s_zone_once() -> None:
    program = parse_program(default_program_text())
    assert program.timezone_of("SHA") == "Asia/Shanghai" and program.timezone_of("NOPE") is None
    paris = '\n[[properties]]\ncode = "PAR"\nname = "Paris"\ntimezone = "Europe/Pariss"\n'
    bad = default_program_text() + paris
    with pytest.raises(ProgramError, match=r"properties\[6\]\.timezone: unknown time zone 'Europe/Pariss'"):
        parse_program(bad)
    twice = default_program_text() + '\n[[properties]]\ncode = "SHA"\nname = "Again"\ntimezone = "UTC"\n'
    with pytest.raises(ProgramError, match="duplicate property 'SHA'"):
        parse_program(twice)
