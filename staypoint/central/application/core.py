"""What every head-office use case stands on: the ledger, the profile store, the side tables,
head office's event streams (``sources.py``), the running programme and a member's record.

One ``OfficeCore`` is shared by the parts (``access``, ``members``, ``rates``, ``stays``,
``redemptions``, ``partners``, ``value``); no part imports another.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from staypoint.central.application.sources import EventSources
from staypoint.central.application.state import SideStore
from staypoint.central.errors import NotFound, Unavailable
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import Profiles
from staypoint.loyalty.program import Program
from staypoint.loyalty.rates import OnlineRules, parse_online_rules


class OfficeCore:
    """One ledger, one profile store and head office's side tables, with the event streams."""

    def __init__(self, ledger: Ledger, profiles: Profiles, side: SideStore, *, suffix: str = "") -> None:
        self.ledger = ledger
        self.profiles = profiles
        self.side = side
        self.suffix = suffix
        self.sources = EventSources(ledger, suffix=suffix)
        self._stock_cache: tuple[float, dict[str, int]] = (0.0, {})

    def program(self) -> Program:
        program = self.ledger.current_program()
        if program is None:
            raise Unavailable("no programme has been published yet", "no_program")
        return program

    def online_rules(self) -> OnlineRules:
        return parse_online_rules(self.program())

    def member(self, number: str) -> dict[str, Any]:
        """Head office's record of ``number``; none is a ``NotFound``."""
        m = self.ledger.member(number)
        if m is None:
            raise NotFound(f"no member {number}", "unknown_member")
        return m

    def stock_left(self, program: Program) -> dict[str, int]:
        """Vouchers left of each reward with a stock (voucher counts re-read at most every 5 s)."""
        if not any(r.stock is not None for r in program.rewards):
            return {}
        stamp, counts = self._stock_cache
        if time.monotonic() - stamp > 5:
            counts = self.ledger.store.voucher_counts()
            self._stock_cache = (time.monotonic(), counts)
        return {r.code: r.stock - counts.get(r.code, 0) for r in program.rewards if r.stock is not None}

    def forget_stock(self) -> None:
        """After a redemption: the next look at the stock reads the counts again."""
        self._stock_cache = (0.0, {})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
