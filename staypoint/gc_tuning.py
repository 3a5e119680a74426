"""The garbage collector's settings for Staypoint's long-running services.

CPython runs a young collection every 700 net allocations and, every hundred of those, a
full one that walks every tracked object in the process. Head office's ingest holds a
group's events, bodies and member records (tens of thousands of objects, none in a cycle)
until the group commits, so with the defaults the collector keeps walking them and the
modules, programme and caches loaded at start, and frees next to nothing: measured, a
tenth of head office's apply time (docs/sync.md, What the contract costs).

A service calls ``tune_for_throughput`` once, after it has loaded what it keeps: what is
alive then is frozen out of every later collection, and the young generation is collected
every ``YOUNG_ALLOCATIONS`` allocations. Garbage in cycles still goes, a little later: the
memory that waits for it is bounded by that count (a few MB at most).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_ALLOCATIONS = 50_000  # net allocations between young collections (CPython's default: 700)
OLDER_EVERY = (20, 100)  # young collections per middle one, middle ones per full one


def tune_for_throughput() -> None:
    """Freeze what the process holds now and collect the young generation less often."""
    gc.collect()  # what is garbage at start goes now, not into the frozen set
    gc.freeze()
    gc.set_threshold(YOUNG_ALLOCATIONS, *OLDER_EVERY)


@contextmanager
def tuned_for_throughput() -> Iterator[None]:
    """``tune_for_throughput`` for a while, then the interpreter's settings again (a bench that
    measures one service's path among others)."""
    before = gc.get_threshold()
    tune_for_throughput()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
