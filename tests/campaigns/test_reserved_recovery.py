"""What a dead job's reserved rows become: sent later (process died) or uncertain (machine died)."""

from __future__ import annotations

import socket
from pathlib import Path

from staypoint.central.campaigns import store as st
from staypoint.central.campaigns.config import load_config
from staypoint.central.campaigns.engine import CampaignJob
from tests.campaigns.conftest import make_chain


def test_reserved_rows_of_a_dead_owner(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, 3)
    chain.write_config(1)
    host, boot = socket.gethostname(), st.boot_id()
    # pid 1's start time never matches "0": these owners are dead.
    same_boot = f"{host}:1:0:{boot}"
    other_boot = f"{host}:1:0:not-{boot}"
    db = st.CampaignDb(chain.ledger_db)
    with db.tx() as conn:
        for member, owner, status in (
            (chain.members[0], same_boot, st.RESERVED),  # process killed: nothing lost
            (chain.members[1], other_boot, st.RESERVED),  # machine restarted: marks may be lost
            (chain.members[2], other_boot, st.HANDING),
        ):
            conn.execute(
                "INSERT INTO cmp_sends (member, occasion, campaign, status, owner, claimed_at) "
                "VALUES (?, 'BDAY:2026', 'BDAY', ?, ?, '2026-11-23T10:00:00.000Z')",
                (member, status, owner),
            )
    job = CampaignJob(chain.ledger_db, chain.profiles_db, load_config(chain.config))
    try:
        assert job.recover() == {"uncertain": 2, "taken_over": 1}
        rows = {r["member"]: r for r in db.sends()}
        assert rows[chain.members[0]]["status"] == st.PENDING and rows[chain.members[0]]["owner"] == job.owner
        assert rows[chain.members[1]]["status"] == st.UNCERTAIN
        assert "went down with the machine" in rows[chain.members[1]]["outcome"]
        assert rows[chain.members[2]]["status"] == st.UNCERTAIN
    finally:
        job.close()
        db.close()
