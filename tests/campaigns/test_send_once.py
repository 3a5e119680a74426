"""Campaigns over a real SMTP server: once per member and occasion, whatever happens to the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from staypoint.central.campaigns import store as st
from staypoint.central.campaigns.config import load_config
from staypoint.central.campaigns.engine import CampaignJob, run_daily, unsubscribe, unsubscribe_token
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.store_sqlite import SqliteLedgerStore
from tests.campaigns.conftest import NOW, Chain, Mailbox, make_chain
from tests.waits import wait_until


def _run(chain: Chain, now: datetime = NOW, *, dry_run: bool = False) -> dict:
    return run_daily(
        now,
        ledger_db=chain.ledger_db,
        profiles_db=chain.profiles_db,
        config_path=chain.config,
        dry_run=dry_run,
    )


def _spawn(chain: Chain, now: datetime = NOW) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "staypoint.central.campaigns",
            "--db",
            str(chain.ledger_db),
            "--profiles",
            str(chain.profiles_db),
            "--config",
            str(chain.config),
            "--now",
            now.isoformat(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )


def _sends(chain: Chain) -> dict[str, dict]:
    db = st.CampaignDb(chain.ledger_db)
    try:
        return {r["member"]: r for r in db.sends()}
    finally:
        db.close()


def test_birthday_once_to_consenting_never_to_opted_out(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    chain = make_chain(tmp_path, 6)
    chain.write_config(port)
    profiles = ProfileStore(chain.profiles_db)
    opted_out, never = chain.members[4], chain.members[5]
    profiles.set_consent(opted_out, "email", False, source="unsubscribe-link", at="2026-06-01T00:00:00Z")
    profiles.upsert(never, at="2026-06-01T00:00:00Z", email="nobody@example.com")
    profiles.conn.execute("UPDATE profiles SET consent_email = 0 WHERE member = ?", (never,))

    dry = _run(chain, dry_run=True)
    assert dry["campaigns"]["BDAY"]["counts"]["email"] == 4
    assert dry["campaigns"]["BDAY"]["counts"]["no_consent"] == 2
    assert len(dry["campaigns"]["BDAY"]["samples"]) == 3
    assert box.count() == 0 and _sends(chain) == {}, "a dry run sends and logs nothing"

    report = _run(chain)
    assert report["delivered"] == {"sent": 4, "no_consent": 2}
    assert box.count() == 4
    for i in range(4):
        [msg] = box.to(f"guest{i}@example.com")
        assert msg["List-Unsubscribe"].startswith("<https://")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        plain = msg.get_body(preferencelist=("plain",))
        assert plain is not None and chain.members[i] in plain.get_content()
    assert box.to("guest4@example.com") == [] and box.to("nobody@example.com") == []

    # The bonus reached the ledger as an event of the campaigns stream, once per member.
    ledger = Ledger(SqliteLedgerStore(chain.ledger_db))
    before = {m: ledger.member(m)["points"] for m in chain.members}  # type: ignore[index]

    again = _run(chain)
    assert again["claimed"] == {"BDAY": 0}
    assert box.count() == 4, "a re-run sends nothing more"
    assert {m: ledger.member(m)["points"] for m in chain.members} == before  # type: ignore[index]
    assert ledger.store.high_water(st.CAMPAIGN_NODE, st.CAMPAIGN_EPOCH) == 6  # 6 bonuses, no more
    ledger.store.close()
    # The opt-out is recorded with its source.
    assert profiles.consent_log(opted_out)[-1][1:3] == (False, "unsubscribe-link")
    profiles.close()


def test_zh_and_en_templates_render_member_fields(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    chain = make_chain(tmp_path, 2)
    chain.write_config(port)
    job = CampaignJob(chain.ledger_db, chain.profiles_db, load_config(chain.config))
    try:
        en = job.preview("BDAY", chain.members[0], NOW)
        zh = job.preview("BDAY", chain.members[1], NOW)
    finally:
        job.close()
    assert en.subject == "Happy birthday, Alice0!"
    assert "Dear Alice0" in en.text and chain.members[0] in en.text and "500 points" in en.text
    assert zh.subject == "王小明，生日快乐！"
    assert "亲爱的王小明" in zh.text and "500 积分" in zh.text and chain.members[1] in zh.text
    assert "10,001" in zh.text  # the member's balance, formatted
    _run(chain)
    [got] = box.to("guest1@example.com")
    assert got["Subject"] == "王小明，生日快乐！"


def test_unsubscribe_link_records_opt_out(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, 1)
    profiles = ProfileStore(chain.profiles_db)
    m = chain.members[0]
    assert not unsubscribe(profiles, "s3", m, "email", "forged", "2026-11-23T10:00:00Z")
    assert unsubscribe(
        profiles, "s3", m, "email", unsubscribe_token("s3", m, "email"), "2026-11-23T10:00:00Z"
    )
    p = profiles.get(m)
    assert p is not None and not p.consent_email
    assert profiles.consent_log(m)[-1] == ("email", False, "unsubscribe-link", "2026-11-23T10:00:00Z")
    profiles.close()


def test_two_jobs_at_once_send_once_per_member(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    box.delay = 0.01
    chain = make_chain(tmp_path, 30)
    chain.write_config(port)
    procs = [_spawn(chain), _spawn(chain)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for i in range(30):
        assert len(box.to(f"guest{i}@example.com")) == 1
    assert box.count() == 30
    assert all(r["status"] == st.SENT for r in _sends(chain).values())


def test_sigkilled_job_restarted_never_sends_twice(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    box.delay = 0.4  # every "250" comes late: the kill lands inside a hand-over
    chain = make_chain(tmp_path, 12)
    chain.write_config(port)
    proc = _spawn(chain)
    wait_until(lambda: box.count() >= 4, 60, "four mails handed over")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    box.delay = 0.0
    restarted = _spawn(chain)
    _out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    sends = _sends(chain)
    uncertain = [m for m, r in sends.items() if r["status"] == st.UNCERTAIN]
    assert len(uncertain) == 1, "the send cut off mid-hand-over is listed, not repeated"
    for i, m in enumerate(chain.members):
        got = len(box.to(f"guest{i}@example.com"))
        assert got <= 1, f"member {m} got {got} messages"
        if m in uncertain:
            assert "cut off" in sends[m]["outcome"]
        else:
            assert sends[m]["status"] == st.SENT and got == 1
    db = st.CampaignDb(chain.ledger_db)
    assert [r["member"] for r in db.uncertain()] == uncertain
    assert db.resolve_uncertain(
        uncertain[0], sends[uncertain[0]]["occasion"], True, "2026-11-23T11:00:00Z", "ops"
    )
    db.close()
    # A third run changes nothing.
    _run(chain)
    assert box.count() == 12


def test_bounced_address_stops_being_mailed(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    box.bounce.add("guest1@example.com")
    chain = make_chain(tmp_path, 3)
    chain.write_config(port, campaigns=_BDAY_AND_ANNIV)
    first = _run(chain)
    assert first["delivered"]["bounced"] == 1
    profiles = ProfileStore(chain.profiles_db)
    p = profiles.get(chain.members[1])
    assert p is not None and p.email_bounced
    # The anniversary a few months later: the bounced address is not tried again.
    later = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)
    box.bounce.clear()
    second = _run(chain, later)
    assert second["delivered"] == {"sent": 2, "no_consent": 1}
    assert box.to("guest1@example.com") == []
    db = st.CampaignDb(chain.ledger_db)
    anniv = {r["member"]: r for r in db.sends(campaign="ANNIV")}
    assert anniv[chain.members[1]]["outcome"] == "bounced address"
    db.close()
    profiles.close()


_BDAY_AND_ANNIV = """
[[campaign]]
code = "BDAY"
trigger = "birthday"
channels = ["email"]

[[campaign]]
code = "ANNIV"
trigger = "anniversary"
channels = ["email"]
"""


def test_quiet_hours_delay_not_drop(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    chain = make_chain(tmp_path, 1)
    chain.write_config(port)
    profiles = ProfileStore(chain.profiles_db)
    profiles.upsert(chain.members[0], at="2026-01-01T00:00:00Z", time_zone="Asia/Shanghai")
    profiles.close()
    late = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai, still the birthday there
    report = _run(chain, late)
    assert report["delivered"] == {"delayed": 1} and box.count() == 0
    row = _sends(chain)[chain.members[0]]
    assert row["status"] == st.DELAYED and row["next_at"] == "2026-11-24T01:00:00.000Z"  # 09:00 local
    job = CampaignJob(chain.ledger_db, chain.profiles_db, load_config(chain.config))
    try:
        assert job.send_due(datetime(2026, 11, 24, 0, 30, tzinfo=UTC))["delivered"] == {}
        assert job.send_due(datetime(2026, 11, 24, 1, 30, tzinfo=UTC))["delivered"] == {"sent": 1}
    finally:
        job.close()
    assert len(box.to("guest0@example.com")) == 1


def test_failed_send_retried_with_backoff(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, 1, birthday=date(1980, 11, 23))
    from tests.campaigns.conftest import free_port

    chain.write_config(free_port())  # nobody listens: connection refused, nothing handed over
    report = _run(chain)
    assert report["delivered"] == {"retry": 1}
    row = _sends(chain)[chain.members[0]]
    assert row["status"] == st.RETRY and row["next_at"] == "2026-11-23T10:15:00.000Z"
    assert row["attempts"] == 1
