"""A job that runs some campaigns (the console's Send runs one) takes only their rows: another
campaign's due retries and a dead owner's pending rows stay for a job that runs that campaign,
instead of being held, undelivered, by a process that may live for days."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from staypoint.central.campaigns import store as st
from staypoint.central.campaigns.config import Campaign, load_config
from staypoint.central.campaigns.engine import CampaignJob
from tests.campaigns.conftest import NOW, Mailbox, make_chain


def test_a_job_of_one_campaign_leaves_the_others_rows_alone(
    tmp_path: Path, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    chain = make_chain(tmp_path, 3)
    chain.write_config(port)  # BDAY: every member's birthday is today
    config = load_config(chain.config)
    dead = f"{socket.gethostname()}:1:0:{st.boot_id()}"  # pid 1 never started at "0": dead
    db = st.CampaignDb(chain.ledger_db)
    with db.tx() as conn:
        conn.execute(
            "INSERT INTO cmp_sends (member, occasion, campaign, status, owner, claimed_at, next_at) "
            "VALUES (?, 'BDAY:2026', 'BDAY', ?, NULL, '2026-11-23T09:00:00.000Z', "
            "'2026-11-23T09:30:00.000Z')",
            (chain.members[0], st.RETRY),
        )
        conn.execute(
            "INSERT INTO cmp_sends (member, occasion, campaign, status, owner, claimed_at) "
            "VALUES (?, 'BDAY:2026', 'BDAY', ?, ?, '2026-11-23T09:00:00.000Z')",
            (chain.members[1], st.PENDING, dead),
        )
    other = Campaign("OTHER", "anniversary", channels=("email",))  # nobody's anniversary today
    job = CampaignJob(chain.ledger_db, chain.profiles_db, replace(config, campaigns=(other,)))
    try:
        report = job.run_daily(NOW)
        assert report["recovered"] == {"uncertain": 0, "taken_over": 0} and report["delivered"] == {}
        rows = {r["member"]: r for r in db.sends()}
        assert rows[chain.members[0]]["status"] == st.RETRY and rows[chain.members[0]]["owner"] is None
        assert rows[chain.members[1]]["status"] == st.PENDING and rows[chain.members[1]]["owner"] == dead
    finally:
        job.close()
    # The job that runs BDAY takes both over and sends them (and the third member's), once.
    job = CampaignJob(chain.ledger_db, chain.profiles_db, config)
    try:
        report = job.run_daily(NOW + timedelta(minutes=1))
        assert report["recovered"]["taken_over"] == 1 and report["delivered"] == {"sent": 3}
    finally:
        job.close()
        db.close()
    assert sorted(a for a, _m in box.messages) == sorted(f"guest{i}@example.com" for i in range(3))
