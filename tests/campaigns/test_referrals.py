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


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from staypoint.cli.main import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _sync(node_db: Path, ledger_db: Path, now: datetime) -> None:
    """The node's outbox upstream, as the sync agent sends it."""
    import json
    import sqlite3

    conn = sqlite3.connect(node_db)
    bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    conn.close()
    ledger = Ledger(SqliteLedgerStore(ledger_db))
    ledger.ingest(bodies[0]["node"], bodies, now)
    ledger.store.close()


def test_desk_referral_bonus_once_after_first_stay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: the desk enrols a friend with a member's code, head office's fold links them,
    the daily job pays both bonuses after the friend's first stay, once, never again on a re-run."""
    chain = make_chain(tmp_path, 1)
    node = str(tmp_path / "node.db")
    at = lambda t: ["--now", iso(t)]  # noqa: E731
    desk = ["--staff", "desk-1", "--staff-pin", "4826"]
    init = [
        "node",
        "init",
        "--db",
        node,
        "--node",
        "sha-lobby-01",
        "--property",
        "SHA",
        "--member-block",
        "1",
    ]
    assert _cli(capsys, *init, *at(NOW))[0] == 0
    _cli(
        capsys,
        "staff",
        "add",
        "--db",
        node,
        "desk-1",
        "--name",
        "Dee",
        "--role",
        "staff",
        "--pin",
        "4826",
        "--local-root",
        *at(NOW),
    )
    code, out, _ = _cli(
        capsys,
        "member",
        "enrol",
        "--db",
        node,
        "--name",
        "Mei Lin",
        "--pin",
        "2580",
        "--json",
        *desk,
        *at(NOW),
    )
    assert code == 0
    ref = __import__("json").loads(out)["member"]
    from staypoint.loyalty.referral_codes import referral_code as offline_code

    # A typo in the friend's code is one line at the desk, and nothing is enrolled.
    typo = offline_code(ref)[:-1] + ("A" if offline_code(ref)[-1] != "A" else "B")
    code, out, err = _cli(
        capsys,
        "member",
        "enrol",
        "--db",
        node,
        "--name",
        "Friend",
        "--pin",
        "2580",
        "--referred-by",
        typo,
        *desk,
        *at(NOW),
    )
    assert code != 0 and err.count("\n") == 1 and "not a referral code" in err and "Traceback" not in err
    code, out, err = _cli(
        capsys,
        "member",
        "enrol",
        "--db",
        node,
        "--name",
        "Friend",
        "--pin",
        "2580",
        "--json",
        "--referred-by",
        offline_code(ref).lower(),
        *desk,
        *at(NOW),
    )
    assert code == 0, err
    friend = __import__("json").loads(out)["member"]
    _sync(Path(node), chain.ledger_db, NOW)
    ledger = Ledger(SqliteLedgerStore(chain.ledger_db))
    assert ledger.member(friend)["referred_by"] == ref  # type: ignore[index]
    ledger.store.close()

    run = lambda t: run_daily(t, ledger_db=chain.ledger_db, profiles_db=chain.profiles_db)  # noqa: E731
    assert run(NOW)["referrals"] == {"awarded": 0}, "no stay yet, no bonus"
    stay_at = NOW + timedelta(days=3)
    code, _, err = _cli(
        capsys,
        "stay",
        "post",
        "--db",
        node,
        friend,
        "--folio",
        "F-1",
        "--nights",
        "2",
        "--room",
        "300.00",
        *desk,
        *at(stay_at),
    )
    assert code == 0, err
    _sync(Path(node), chain.ledger_db, stay_at)
    before = _points(chain.ledger_db, ref), _points(chain.ledger_db, friend)
    assert run(NOW + timedelta(days=4))["referrals"] == {"awarded": 1}
    after = _points(chain.ledger_db, ref), _points(chain.ledger_db, friend)
    assert (after[0] - before[0], after[1] - before[1]) == (1000, 1000)  # the programme's defaults
    assert run(NOW + timedelta(days=4))["referrals"] == {"awarded": 0}, "a re-run pays nothing"
    _stay(chain.ledger_db, friend, 1, NOW + timedelta(days=10))
    assert run(NOW + timedelta(days=11))["referrals"] == {"awarded": 0}, "one reward per referred member"
    assert (_points(chain.ledger_db, ref), _points(chain.ledger_db, friend) - 1000) == after


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
