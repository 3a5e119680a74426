"""A worker process for the concurrency and crash tests: runs operations on a node file."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from staypoint.edge.service import NodeError, NodeService, StaffProof
from staypoint.loyalty.program import Outlet

STAFF = StaffProof("w", "Worker", "supervisor")


def run(db: Path, tag: str, count: int, members: list[str]) -> None:
    svc = NodeService.open(db)
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    proofs = {m: svc.verify_pin(m, "2580", now) for m in members}
    i = 0
    while count < 0 or i < count:
        m = members[i % len(members)]
        now_i = now + timedelta(milliseconds=i)
        try:
            if i % 3 == 2:
                svc.redeem(proofs[m], "LATE-CO", now_i)
                svc.record_contact(now_i)
            else:
                svc.post_stay(m, f"{tag}-{i}", now_i, nights=1, revenue={Outlet.ROOM: "250.00"})
        except NodeError:
            pass
        i += 1
        if count < 0 and i % 10 == 0:
            print(i, flush=True)


if __name__ == "__main__":
    run(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","))
