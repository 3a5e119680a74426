from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.loyalty.program import (
    Outlet,
    ProgramError,
    default_program,
    default_program_text,
    load_program,
    parse_program,
)


def test_default_programme_is_staypoint_rewards() -> None:
    p = default_program()
    assert p.name == "Staypoint Rewards"
    assert [(t.name, t.nights, t.multiplier) for t in p.tiers] == [
        ("Member", 0, Decimal("1.0")),
        ("Silver", 10, Decimal("1.1")),
        ("Gold", 25, Decimal("1.25")),
        ("Platinum", 50, Decimal("1.5")),
    ]
    assert p.earn[Outlet.ROOM] == 10 and p.earn[Outlet.FNB] == 5 and p.earn[Outlet.SPA] == 5
    costs = {r.code: r.points for r in p.rewards}
    assert costs == {"LATE-CO": 2500, "BREAKFAST": 3000, "SPA-60": 8000, "UPGRADE": 10000}
    upgrade = p.reward("UPGRADE")
    assert upgrade is not None and upgrade.min_tier == "GOLD"
    assert p.expiry.months_without_activity == 24


def _mutate(old: str, new: str) -> str:
    text = default_program_text()
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        ('multiplier = "1.1"', "multiplier = 1.1", "tiers[1].multiplier", "not floats"),
        ('min_tier = "GOLD"', 'min_tier = "DIAMOND"', "rewards[3].min_tier", "unknown tier"),
        ("points = 2500\n", "points = -5\n", "rewards[0].points", "at least 1"),
        ('window = "calendar_year"', 'window = "fortnight"', "qualification.window", "unknown value"),
        ('outlet = "spa"', 'outlet = "casino"', "promotions[0].outlet", "unknown value"),
        ("nights = 25", "nights = 5", "tiers[2].nights", "rank order"),
        ('currency = "EUR"', 'currency = "euro"', "program.currency", "ISO 4217"),
        ("length = 4", "length = 2", "pin.length", "at least 4"),
    ],
)
def test_errors_name_the_file_the_field_and_the_problem(
    tmp_path: Path, old: str, new: str, field: str, problem: str
) -> None:
    f = tmp_path / "chain.toml"
    f.write_text(_mutate(old, new))
    with pytest.raises(ProgramError) as err:
        load_program(f)
    assert err.value.source == str(f)
    assert err.value.field == field
    assert problem in str(err.value)
    assert str(err.value).startswith(f"{f}: {field}: ")


def test_missing_section_and_bad_toml_are_reported() -> None:
    with pytest.raises(ProgramError, match=r"^p\.toml: pinx: unknown section \(did you mean pin\?\)$"):
        parse_program(default_program_text().replace("[pin]", "[pinx]"), "p.toml")
    with pytest.raises(ProgramError, match="pin: missing table"):
        parse_program(
            default_program_text().replace("[pin]\nlength = 4\nmax_tries = 5\nlockout_minutes = 30\n", ""),
            "p.toml",
        )
    with pytest.raises(ProgramError, match="not valid TOML"):
        parse_program("[program\nname=", "p.toml")


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="cannot read"):
        load_program(tmp_path / "missing.toml")
