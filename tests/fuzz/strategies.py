"""Shared Hypothesis settings and generators of hostile input for the fuzz tests.

Every fuzz test is derandomised with no example database, so CI runs the same examples each
time (and a failure seen once is seen again); the example counts keep each test well under
20 s on two cores.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# Characters that have broken parsers and terminals: controls, NUL, a lone surrogate (what
# Python makes of argv bytes that are not UTF-8), right-to-left and zero-width marks, quotes.
AWKWARD = "\x00\n\r\t\x1b\x7f\udcff\u202e\u200b\ufeff\"'\\[]{}=#.,:;-_ 0123456789eE+"

nasty_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=AWKWARD, max_size=20),
    st.sampled_from(["", " ", "-", "--", "0", "-1", "1e400", "nan", "inf", "-0", "9" * 400, "𝟘𝟙", "١٢٣"]),
)

huge_ints = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**53, 2**63 - 1, 2**63, 10**20, -(2**63) - 1]),
)

# -- TOML -------------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    # JSON's string escapes are TOML's basic-string escapes, except that JSON writes a lone
    # surrogate as \udcff, which TOML refuses: exactly the kind of garbage wanted here.
    return json.dumps(text)


toml_scalar = st.one_of(
    huge_ints.map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: (
            "nan" if f != f else ("inf" if f == float("inf") else "-inf" if f == float("-inf") else repr(f))
        )
    ),
    st.booleans().map(lambda b: "true" if b else "false"),
    nasty_text.map(_toml_string),
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.isoformat(timespec="seconds")
    ),
    st.sampled_from(["1e400", '"1e400"', '"-1"', '"0"', '""', "0x7fffffffffffffff", "[[[[[[[[1]]]]]]]]"]),
)

bare_keys = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)

toml_value = st.recursive(
    toml_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(bare_keys, inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=8,
)


@st.composite
def toml_documents(draw: st.DrawFn, tables: tuple[str, ...] = ()) -> str:
    """A TOML document of random tables (some named like the real ones) and random values."""
    names = st.one_of(st.sampled_from(tables), bare_keys) if tables else bare_keys
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        header = draw(names)
        lines.append(
            draw(st.sampled_from([f"[{header}]", f"[[{header}]]", f"{header} = {draw(toml_value)}"]))
        )
        for key, value in draw(st.dictionaries(bare_keys, toml_value, max_size=4)).items():
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


@st.composite
def mutated_lines(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few of its ``key = value`` lines given random values, deleted or garbled:
    the input that reaches deepest into a validator."""
    lines = text.splitlines()
    assignments = [i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.sampled_from(assignments))
        key = lines[i].split("=", 1)[0]
        how = draw(st.sampled_from(["value", "value", "value", "delete", "garble"]))
        if how == "value":
            lines[i] = f"{key}= {draw(toml_value)}"
        elif how == "delete":
            lines[i] = ""
        else:
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + draw(st.text(alphabet=AWKWARD, max_size=5)) + lines[i][cut:]
    return "\n".join(lines) + "\n"


# -- JSON -------------------------------------------------------------------------------------

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)
json_value: st.SearchStrategy[Any] = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)),
    max_leaves=10,
)


@st.composite
def mutated_json(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with some fields given random values, dropped, or joined by unknown ones."""
    out = dict(valid)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["value", "value", "drop", "add"]))
        if how == "add" or not out:
            out[draw(nasty_text)] = draw(json_value)
        elif how == "drop":
            out.pop(draw(st.sampled_from(sorted(out))))
        else:
            key = draw(st.sampled_from(sorted(out)))
            if isinstance(out[key], dict) and out[key] and draw(st.booleans()):
                out[key] = draw(mutated_json(out[key]))
            else:
                out[key] = draw(
                    st.one_of(json_value, st.sampled_from(["1e400", "-1", "0", "99999999999", "2026-02-30"]))
                )
    return out
