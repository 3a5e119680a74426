"""Fake members for demos and benchmarks, loaded the way a head-office snapshot would be.

Seeded members arrive as if from head office's directory: no outbox events (the node did
not create them), one opening-balance line each in the ledger so balances still equal the
sum of their history. To make seeding a million members a matter of seconds, not of a
million scrypt runs, every seeded member shares one PIN hash (PIN ``1234``); a real member
always gets their own salt.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

from staypoint.edge.service import NodeService
from staypoint.loyalty import member_numbers, pins, tiers
from staypoint.loyalty.events import iso

SEED_PIN = "1234"
SEED_BLOCK_BASE = 9000  # blocks 9000-9999: demo and benchmark data, never real members
FIRST = (
    "Anna",
    "Ben",
    "Chloé",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kai",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tomás",
    "Uma",
    "Viktor",
    "Wei",
    "Xenia",
    "Yusuf",
    "Zoë",
    "Li",
    "Mei",
    "Sofia",
    "Noah",
)
LAST = "ABCDEFGHIJKLMNOPRSTVWYZ"


def demo_card_uid(index: int) -> str:
    """The card UID of seeded member ``index``: 7 bytes, like a MIFARE DESFire card."""
    return hashlib.sha256(f"staypoint-demo-card-{index}".encode()).hexdigest()[:14].upper()


def seeded_number(index: int) -> str:
    block, serial = divmod(index, member_numbers.SERIALS_PER_BLOCK)
    return member_numbers.make_number(SEED_BLOCK_BASE + block, serial)


def seed_members(
    service: NodeService,
    count: int,
    now: datetime,
    *,
    rng_seed: int = 7,
    batch: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add ``count`` seeded members after those already seeded; returns how many there are now.

    ``progress`` is called with the number of members each committed batch added (the CLI
    passes a bar's ``advance``; edge draws nothing itself)."""
    program = service.program
    replica = service.replica
    rng = random.Random(rng_seed)
    pin_hash = pins.hash_pin(SEED_PIN, os.urandom(16))
    today = now.date()
    window = tiers.window_start(program.window, today).isoformat()
    tier_weights = [60, 25, 11, 4][: len(program.tiers)]
    at = iso(now)
    start = int(replica.meta("seeded_members") or 0)

    def rows(lo: int, hi: int) -> Iterator[tuple[tuple[Any, ...], tuple[str, str, str], tuple[Any, ...]]]:
        for i in range(lo, hi):
            number = seeded_number(i)
            tier = rng.choices(program.tiers, tier_weights)[0]
            nights = tier.nights + rng.randint(0, 9)
            points = rng.randint(0, 40_000)
            last = date.fromordinal(today.toordinal() - rng.randint(0, 700)).isoformat()
            name = f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]}."
            member = (
                number,
                name,
                tier.code,
                points,
                f"{rng.randint(0, 300)}.00",
                window,
                nights,
                nights * 1000,
                last,
                pin_hash,
                0,
                None,
                0,
                at,
                service.property,
            )
            card = (service.keys.card_hash(demo_card_uid(i)), number, at)
            ledger = (f"seed-{i}", number, at, "opening.balance", points, None, "Balance brought forward")
            yield member, card, ledger

    for lo in range(start, start + count, batch):
        hi = min(lo + batch, start + count)
        chunk = list(rows(lo, hi))
        with replica.write():
            replica.insert_members(m for m, _, _ in chunk)
            replica.insert_cards(c for _, c, _ in chunk)
            replica.insert_ledger_rows(ln for _, _, ln in chunk)
            replica.set_meta("seeded_members", hi)
        if progress is not None:
            progress(hi - lo)
    return start + count
