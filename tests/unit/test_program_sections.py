"""Every section of the programme is parsed and checked in one place (parse_program, issue 16):
a bad [[rates]] plan or [referrals] section is refused when the programme is loaded or
published, in one line naming the section and the key, not when a quote is first asked."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central import referrals
from staypoint.central.ledger import Ledger
from staypoint.central.store import open_ledger_store
from staypoint.loyalty.program import (
    ProgramError,
    ReferralRules,
    default_program,
    default_program_text,
    parse_program,
)
from staypoint.loyalty.rates import parse_online_rules, quote

RATE = """
[[rates]]
code = "MEMBER-RATE"
name = "Member rate"
discount = "{discount}"
"""


def with_rate(discount: str) -> str:
    return default_program_text() + RATE.format(discount=discount)


def test_the_online_sections_and_referrals_are_in_the_program() -> None:
    program = parse_program(
        with_rate("0.10") + "\n[referrals]\nreferrer_points = 2500\nreferred_points = 750\n"
    )
    assert [r.code for r in program.rates] == ["MEMBER-RATE"] and program.rates[0].discount == Decimal("0.10")
    assert parse_online_rules(program) is program.online
    assert referrals.rules(program) == ReferralRules(2500, 750)
    q = quote(
        program.online,
        tier="MEMBER",
        prop="SHA",
        room_type="DLX",
        arrival=date(2026, 12, 1),
        nights=2,
        public_rate=Decimal("200.00"),
        today=date(2026, 11, 1),
    )
    assert q.member_rate == Decimal("180.00") and q.plan == "MEMBER-RATE"
    # None of them: the public rate, the default bonuses.
    assert default_program().rates == () and referrals.rules(default_program()) == ReferralRules()


@pytest.mark.parametrize("discount", ["1.5", "-0.5", "1", "lots"])
def test_a_discount_outside_0_to_100_percent_is_refused_when_parsed(discount: str) -> None:
    with pytest.raises(ProgramError) as err:
        parse_program(with_rate(discount), "p.toml")
    assert str(err.value).startswith("p.toml: rates[0].discount: "), err.value
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "\n[referrals]\nreferer_points = 2500\n",
            "p.toml: referrals.referer_points: unknown key (did you mean referrer_points?)",
        ),
        (
            "\n[referals]\nreferrer_points = 2500\n",
            "p.toml: referals: unknown section (did you mean referrals?)",
        ),
        (
            "\n[referrals]\nreferrer_points = -5\n",
            "p.toml: referrals.referrer_points: must be at least 0, got -5",
        ),
        (
            '\n[referrals]\nreferred_points = "1000"\n',
            "p.toml: referrals.referred_points: must be a whole number, got '1000'",
        ),
        (
            '\n[[rates]]\ncode = "X"\nname = "X"\ndiscont = "0.1"\n',
            "p.toml: rates[0].discont: unknown key (did you mean discount?)",
        ),
        (
            "\n[channels]\ndirect_bonuss = 5\n",
            "p.toml: channels.direct_bonuss: unknown key (did you mean direct_bonus?)",
        ),
        (
            '\n[[partners]]\ncode = "SKY"\nname = "Sky"\nratio = "2"\ndaily_cap = 10\nmin_point = 1\n',
            "p.toml: partners[0].min_point: unknown key (did you mean min_points?)",
        ),
    ],
)
def test_a_typo_or_bad_value_in_an_optional_section_is_refused(extra: str, message: str) -> None:
    with pytest.raises(ProgramError) as err:
        parse_program(default_program_text() + extra, "p.toml")
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "lockout_minutes = 30",
            "lockout_minute = 30",
            "pin.lockout_minute: unknown key (did you mean lockout_minutes?)",
        ),
        (
            "voucher_days = 30",
            "voucher_day = 30",
            "rewards[0].voucher_day: unknown key (did you mean voucher_days?)",
        ),
        ('currency = "EUR"', 'curency = "EUR"', "program.curency: unknown key (did you mean currency?)"),
        ("warn_days = 90", "warn_dayz = 90", "expiry.warn_dayz: unknown key (did you mean warn_days?)"),
        (
            'per_spend_value = "200.00"',
            'per_spend_value = "-1"',
            "offline_limits.per_spend_value: must be positive, got -1",
        ),
    ],
)
def test_a_typo_in_a_core_section_is_refused(old: str, new: str, message: str) -> None:
    text = default_program_text()
    assert old in text
    with pytest.raises(ProgramError) as err:
        parse_program(text.replace(old, new, 1), "p.toml")
    assert str(err.value) == f"p.toml: {message}"


def test_the_offline_value_limits_are_read_from_the_programme() -> None:
    text = default_program_text().replace('per_spend_value = "200.00"', 'per_spend_value = "150.00"')
    assert parse_program(text).offline.per_spend_value == Decimal("150.00")


@pytest.mark.parametrize(
    "bad", [with_rate("1.5"), with_rate("-0.5"), default_program_text() + "\n[referrals]\nbonus = 1\n"]
)
def test_the_ledger_refuses_to_publish_a_bad_section(tmp_path: Path, bad: str) -> None:
    ledger = Ledger(open_ledger_store(f"sqlite:///{tmp_path / 'ledger.db'}"))
    try:
        with pytest.raises(ProgramError):
            ledger.publish_program(bad, datetime.now(UTC))
        assert ledger.store.latest_program_version() is None
    finally:
        ledger.store.close()


@pytest.mark.parametrize(("discount", "problem"), [("1.5", "got 1.5"), ("-0.5", "got -0.5")])
def test_central_publish_refuses_a_bad_discount_in_one_line(
    tmp_path: Path, discount: str, problem: str
) -> None:
    program = tmp_path / "program.toml"
    program.write_text(with_rate(discount))
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    exe = Path(sys.executable).parent / "staypoint"
    res = subprocess.run(
        [str(exe), "central", "publish", "--store", store, str(program)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0
    assert res.stderr.splitlines() == [
        f"staypoint: {program}: rates[0].discount: must be from 0 to below 1, {problem}"
    ], res.stderr
    program.write_text(with_rate("0.15"))
    res = subprocess.run(
        [str(exe), "central", "publish", "--store", store, str(program)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
