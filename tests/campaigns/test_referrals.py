"""Referrals: both bonuses once, after the friend's first stay; self-referral and loops refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from staypoint.central import referrals
from staypoint.central.campaigns.engine import run_daily
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.events import Event, iso, uuid7
from tests.campaigns.conftest import NOW, make_chain


def _stay(db: Path, member: str, seq: int, day: datetime) -> None:
    ledger = Ledger(SqliteLedgerStore(db))
    ev = Event(
        "n1",
        1,
        seq,
        uuid7(day),
        iso(day),
        "stay.posted",
        member,
        1,
        {
            "folio": f"F{seq}",
            "property": "SHA",
            "arrival": (day - timedelta(days=1)).date().isoformat(),
            "departure": day.date().isoformat(),
            "nights": 1,
            "revenue": {"room": "100.00"},
            "points": 1000,
            "qualifying_points": 1000,
            "tier": "MEMBER",
            "tier_after": "MEMBER",
            "promotions": [],
        },
    )
    assert ledger.ingest("n1", [ev.to_dict()], day).applied == 1
    ledger.store.close()


def _points(db: Path, member: str) -> int:
    ledger = Ledger(SqliteLedgerStore(db))
    try:
        return int(ledger.member(member)["points"])  # type: ignore[index]
    finally:
        ledger.store.close()


def test_bonus_once_after_first_stay(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, 3)
    ref, friend = chain.members[0], chain.members[2]
    profiles = ProfileStore(chain.profiles_db)
    code = referrals.referral_code(profiles, ref, iso(NOW))
    assert code == referrals.referral_code(profiles, ref, iso(NOW)), "a member keeps one code"
    assert len(code) == 9 and code[4] == "-" and not set(code) & set("01OIL")
    from staypoint.loyalty.referral_codes import referral_code as offline_code

    assert code == offline_code(ref), "the kiosk shows the same code without asking head office"
    assert referrals.link(profiles, friend, code.lower(), iso(NOW)) == ref
    profiles.close()
    before = _points(chain.ledger_db, ref), _points(chain.ledger_db, friend)
    run = lambda at: run_daily(at, ledger_db=chain.ledger_db, profiles_db=chain.profiles_db)  # noqa: E731
    assert run(NOW)["referrals"] == {"awarded": 0}, "no stay yet, no bonus"
    _stay(chain.ledger_db, friend, 1, NOW + timedelta(days=3))
    assert run(NOW + timedelta(days=4))["referrals"] == {"awarded": 1}
    after = _points(chain.ledger_db, ref), _points(chain.ledger_db, friend)
    assert after[0] - before[0] == 1000  # the programme's default referrer bonus
    assert after[1] - before[1] == 1000 + 1000  # the stay's points and the referred bonus
    _stay(chain.ledger_db, friend, 2, NOW + timedelta(days=10))
    assert run(NOW + timedelta(days=11))["referrals"] == {"awarded": 0}, "one reward per referred member"
    assert _points(chain.ledger_db, ref) == after[0]


def test_self_referral_and_loops_refused(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, 3)
    a, b, c = chain.members
    profiles = ProfileStore(chain.profiles_db)
    at = iso(NOW)
    with pytest.raises(referrals.ReferralError, match="own"):
        referrals.link(profiles, a, referrals.referral_code(profiles, a, at), at)
    referrals.link(profiles, b, referrals.referral_code(profiles, a, at), at)  # a -> b
    referrals.link(profiles, c, referrals.referral_code(profiles, b, at), at)  # b -> c
    with pytest.raises(referrals.ReferralError, match="loop"):
        referrals.link(profiles, a, referrals.referral_code(profiles, c, at), at)  # c -> a closes the loop
    with pytest.raises(referrals.ReferralError, match="already"):
        referrals.link(profiles, c, referrals.referral_code(profiles, a, at), at)
    # Same e-mail address as the referrer: the same person under a second number.
    profiles.upsert(a, at=at, email="shared@example.com")
    d_member = "9000000999"
    profiles.upsert(d_member, at=at, full_name="D", phone="+8613800000000")
    profiles.upsert(b, at=at, phone="+8613800000000")
    with pytest.raises(referrals.ReferralError, match="own"):
        referrals.link(profiles, d_member, referrals.referral_code(profiles, b, at), at)
    with pytest.raises(referrals.ReferralError, match="not a referral code"):
        referrals.link(profiles, d_member, "ZZZZ-ZZZZ", at)  # a typo: the check character catches it
    from staypoint.loyalty.member_numbers import make_number
    from staypoint.loyalty.referral_codes import referral_code as offline_code

    with pytest.raises(referrals.ReferralError, match="not known"):  # well-formed, nobody's
        referrals.link(profiles, d_member, offline_code(make_number(7777, 1)), at)
    profiles.close()


def test_referral_rules_from_programme_section() -> None:
    from staypoint.loyalty.program import default_program_text, parse_program

    prog = parse_program(
        default_program_text() + "\n[referrals]\nreferrer_points = 2500\nreferred_points = 750\n"
    )
    assert referrals.rules(prog) == referrals.ReferralRules(2500, 750)
    _ = datetime.now(UTC)
