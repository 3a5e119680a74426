"""Fake member records at head office for tests and benchmarks (block 9000+, shared PIN hash)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from staypoint.loyalty import member_numbers, pins, tiers
from staypoint.loyalty.events import iso
from staypoint.loyalty.program import Program

SEED_BLOCK_BASE = 9000
SEED_PIN = "1234"


def seed_docs(program: Program, count: int, now: datetime, *, start: int = 0) -> list[dict[str, Any]]:
    """``count`` member records; one scrypt run for all of them (PIN 1234), not a million."""
    pin_hash = pins.hash_pin(SEED_PIN, os.urandom(16))
    window = tiers.window_start(program.window, now.date()).isoformat()
    at = iso(now)
    docs = []
    for i in range(start, start + count):
        block, serial = divmod(i, member_numbers.SERIALS_PER_BLOCK)
        docs.append(
            {
                "number": member_numbers.make_number(SEED_BLOCK_BASE + block, serial),
                "name": f"Guest {i % 997} {chr(65 + i % 26)}.",
                "tier": program.base_tier.code,
                "points": 10_000 + i % 5000,
                "stored_value": "0.00",
                "window_start": window,
                "qual_nights": 0,
                "qual_points": 0,
                "last_activity": now.date().isoformat(),
                "pin_hash": pin_hash,
                "blocked": False,
                "enrolled_at": at,
                "home_property": "SEED",
                "cards": [],
                "folded": {},
            }
        )
    return docs
