"""Rate quotes under ``[rates_policy]`` (issue 14 item 7): which plan groups stack, in what
order, with a floor; every plan applied named with its amount, and the currency; a bad policy
refused when the programme is parsed, naming the field. And the qualification basis
(``[qualification] qualify_on``): base points leave out the tier uplift and promotions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from staypoint.loyalty.earning import qualifying_points, stay_points
from staypoint.loyalty.program import Outlet, ProgramError, QualifyOn, default_program_text, parse_program
from staypoint.loyalty.rates import Combine, quote

PLANS = """
[[rates]]
code = "MEMBER-RATE"
name = "Member rate"
group = "member"
discount = "0.10"
by_tier = { GOLD = "0.15" }

[[rates]]
code = "VIP-WINTER"
name = "VIP winter"
group = "vip"
discount = "0.20"
tiers = ["GOLD", "PLATINUM"]

[[rates]]
code = "LM-48H"
name = "Last minute"
group = "last_minute"
discount = "0.30"
"""


def program(policy: str, plans: str = PLANS):  # type: ignore[no-untyped-def]
    return parse_program(default_program_text() + policy + plans, "p.toml")


def ask(p, tier: str = "GOLD", public: str = "200.00", nights: int = 2):  # type: ignore[no-untyped-def]
    return quote(
        p.online,
        tier=tier,
        prop="SHA",
        room_type="DLX",
        arrival=date(2026, 12, 1),
        nights=nights,
        public_rate=Decimal(public),
        today=date(2026, 11, 1),
        currency=p.currency,
    )


def test_without_a_policy_the_best_single_plan_wins_and_is_the_only_one_named() -> None:
    p = program("")
    assert p.online.policy.combine is Combine.BEST
    q = ask(p)
    assert q.member_rate == Decimal("140.00") and q.plan == "LM-48H"
    assert [(a.code, a.amount) for a in q.applied] == [("LM-48H", Decimal("60.00"))]
    assert q.currency == p.currency and q.total == Decimal("280.00") and q.saving == Decimal("120.00")


def test_multiply_applies_each_group_in_stack_order_and_names_each_with_its_amount() -> None:
    p = program('[rates_policy]\nstack = ["member", "vip", "last_minute"]\ncombine = "multiply"\n')
    q = ask(p)
    # 200 × 0.85 = 170; × 0.80 = 136; × 0.70 = 95.20
    assert [(a.code, a.group, a.discount, a.amount) for a in q.applied] == [
        ("MEMBER-RATE", "member", Decimal("0.15"), Decimal("30.00")),
        ("VIP-WINTER", "vip", Decimal("0.20"), Decimal("34.00")),
        ("LM-48H", "last_minute", Decimal("0.30"), Decimal("40.80")),
    ]
    assert q.member_rate == Decimal("95.20") and not q.floored
    assert sum(a.amount for a in q.applied) == q.public_rate - q.member_rate
    # A tier the VIP plan is not for: the other two stack.
    assert [a.code for a in ask(p, tier="MEMBER").applied] == ["MEMBER-RATE", "LM-48H"]


def test_the_floor_cuts_the_plan_that_crosses_it_and_later_ones_are_not_named() -> None:
    p = program(
        '[rates_policy]\nstack = ["member", "vip", "last_minute"]\ncombine = "multiply"\nfloor_percent = 60\n'
    )
    q = ask(p)
    assert q.member_rate == Decimal("120.00") and q.floored
    assert [(a.code, a.amount) for a in q.applied] == [
        ("MEMBER-RATE", Decimal("30.00")),
        ("VIP-WINTER", Decimal("34.00")),
        ("LM-48H", Decimal("16.00")),
    ]
    # best mode honours the floor too
    best = ask(program("[rates_policy]\nfloor_percent = 80\n"))
    assert best.member_rate == Decimal("160.00") and best.floored and best.applied[0].code == "LM-48H"


def test_a_group_left_out_of_the_stack_only_competes_within_it() -> None:
    p = program(
        '[rates_policy]\nstack = ["last_minute", "member"]\ncombine = "multiply"\n',
        PLANS[: PLANS.index('[[rates]]\ncode = "VIP')] + PLANS[PLANS.index('[[rates]]\ncode = "LM') :],
    )
    assert [a.code for a in ask(p).applied] == ["LM-48H", "MEMBER-RATE"]  # the stack's order


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ('[rates_policy]\ncombine = "add"\n', "p.toml: rates_policy.combine: one of: best, multiply"),
        ('[rates_policy]\ncombine = "multiply"\n', 'p.toml: rates_policy.stack: combine = "multiply" needs'),
        ('[rates_policy]\nstack = ["member", "member"]\n', "p.toml: rates_policy.stack: names a group twice"),
        ('[rates_policy]\nstack = ["Member"]\n', "p.toml: rates_policy.stack[0]: a group name"),
        (
            "[rates_policy]\nfloor_percent = 150\n",
            "p.toml: rates_policy.floor_percent: a percentage from 0 to 100",
        ),
        ("[rates_policy]\nfloor_percent = 5.5\n", "p.toml: rates_policy.floor_percent: a percentage"),
        (
            '[rates_policy]\nstak = ["member"]\n',
            "p.toml: rates_policy.stak: unknown key (did you mean stack?)",
        ),
        (
            '[rates_policy]\nstack = ["member", "vip"]\n',
            "p.toml: rates[2].group: 'last_minute' is not in rates_policy.stack",
        ),
    ],
)
def test_a_bad_policy_is_refused_at_parse_naming_the_field(policy: str, message: str) -> None:
    with pytest.raises(ProgramError) as err:
        program(policy)
    assert str(err.value).startswith(message), err.value


def test_a_bad_group_on_a_plan_is_refused() -> None:
    with pytest.raises(ProgramError) as err:
        program("", '[[rates]]\ncode = "X"\nname = "X"\ngroup = "no spaces"\n')
    assert str(err.value).startswith("p.toml: rates[0].group: a group name"), err.value


@given(
    st.lists(st.integers(0, 99), min_size=0, max_size=4),
    st.integers(0, 100),
    st.decimals(min_value=0, max_value=100000, places=2),
)
def test_never_above_public_never_below_floor_and_amounts_sum_to_the_saving(
    discounts: list[int], floor: int, public: Decimal
) -> None:
    groups = [f"g{i}" for i in range(len(discounts))]
    plans = "".join(
        f'[[rates]]\ncode = "P{i}"\nname = "P{i}"\ngroup = "{g}"\ndiscount = "{Decimal(d) / 100}"\n'
        for i, (g, d) in enumerate(zip(groups, discounts, strict=True))
    )
    stack = ", ".join(f'"{g}"' for g in groups)
    combine = "multiply" if groups else "best"
    p = program(f'[rates_policy]\nstack = [{stack}]\ncombine = "{combine}"\nfloor_percent = {floor}\n', plans)
    q = ask(p, public=str(public), nights=3)
    assert q.member_rate <= q.public_rate
    assert q.member_rate >= (public * floor / 100).quantize(Decimal("0.01"), "ROUND_CEILING").min(public)
    assert sum((a.amount for a in q.applied), Decimal(0)) == q.public_rate - q.member_rate
    assert all(a.amount > 0 for a in q.applied) and q.total == q.member_rate * 3


# -- the qualification basis ------------------------------------------------------------------

PROMO = """
[[promotions]]
code = "DOUBLE"
name = "Double points"
starts = "2026-01-01"
ends = "2026-12-31"
outlet = "room"
multiplier = "2"

[[promotions]]
code = "HELLO"
name = "Welcome bonus"
starts = "2026-01-01"
ends = "2026-12-31"
outlet = "room"
bonus = 500
"""


def basis(qualify_on: str | None):  # type: ignore[no-untyped-def]
    text = default_program_text()
    if qualify_on is not None:
        text = text.replace(
            'window = "calendar_year"', f'window = "calendar_year"\nqualify_on = "{qualify_on}"', 1
        )
    return parse_program(text + PROMO, "p.toml")


def test_base_points_leave_out_the_tier_uplift_and_every_promotion() -> None:
    all_p, base_p = basis(None), basis("base_points")
    assert all_p.qualify_on is QualifyOn.ALL_POINTS and base_p.qualify_on is QualifyOn.BASE_POINTS
    revenue = {Outlet.ROOM: Decimal("1000.00"), Outlet.FNB: Decimal("100.00")}
    earned = stay_points(base_p, "GOLD", revenue, date(2026, 6, 1))
    rate_room, rate_fnb = base_p.earn[Outlet.ROOM], base_p.earn[Outlet.FNB]
    base = int(Decimal("1000.00") * rate_room + Decimal("100.00") * rate_fnb)
    assert earned.base == base and earned.points > base
    assert qualifying_points(base_p, earned) == base
    # all_points: as before, everything but the fixed bonuses
    assert qualifying_points(all_p, earned) == earned.points - earned.bonus and earned.bonus >= 500


def test_a_bad_basis_is_refused_naming_the_field() -> None:
    with pytest.raises(ProgramError) as err:
        basis("nights")
    assert str(err.value).startswith("p.toml: qualification.qualify_on: unknown value 'nights'"), err.value
