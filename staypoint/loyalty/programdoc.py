"""What every section parser of the programme document shares: its error and the unknown-key rule.

``program.py`` parses the core sections and ``rates.py`` the online ones, both from the one
TOML document that :func:`staypoint.loyalty.program.parse_program` reads once; this module
imports neither, so each can use it. Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any


class ProgramError(ValueError):
    """A programme document is malformed: names the source, the field and the problem."""

    def __init__(self, source: str, fld: str, problem: str) -> None:
        super().__init__(f"{source}: {fld}: {problem}")
        self.source = source
        self.field = fld
        self.problem = problem


def brief(value: object) -> str:
    """``value`` short enough to quote in a one-line error (a 4,000-digit number is valid TOML)."""
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}... ({len(text)} characters)"


def check_keys(source: str, path: str, table: Mapping[str, Any], known: Collection[str]) -> None:
    """Refuse a key of ``table`` (at ``path``; "" for the document) that is not in ``known``,
    naming it and the nearest known key: a typo must not quietly fall back to a default."""
    for key in table:
        if key in known:
            continue
        near = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
        what = "section" if not path else "key"
        hint = f"did you mean {near[0]}?" if near else f"one of: {', '.join(sorted(known))}"
        shown = key if key.isprintable() and len(key) <= 40 else brief(repr(key))
        raise ProgramError(source, f"{path}.{shown}" if path else shown, f"unknown {what} ({hint})")
