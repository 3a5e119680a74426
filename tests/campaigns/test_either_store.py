"""The daily campaigns on either store: the same run sends the same mail through a real SMTP
server (aiosmtpd) on a SQLite ledger and on a PostgreSQL one, and a re-run sends nothing."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from staypoint.central.campaigns.engine import run_daily
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import open_profiles
from staypoint.central.seed import seed_docs
from staypoint.central.store import open_ledger_store
from staypoint.cli.main import main as staypoint
from staypoint.loyalty.program import default_program, default_program_text
from tests.campaigns.conftest import BIRTHDAY, NOW, Mailbox

pytest_plugins = ["tests.pg_fixtures"]


def _chain(store: str, profiles: str, n: int) -> None:
    ledger = Ledger(open_ledger_store(store))
    ledger.publish_program(default_program_text(), NOW)
    docs = seed_docs(default_program(), n, NOW)
    ledger.import_members(docs)
    ledger.store.close()
    p = open_profiles(profiles, store)
    at = "2026-01-01T00:00:00.000Z"
    for i, d in enumerate(docs):
        zh = i % 2 == 1
        p.upsert(
            d["number"],
            at=at,
            full_name="王小明" if zh else f"Alice{i} Smith",
            email=f"guest{i}@example.com",
            birth_date=date(1990, 11, 23),
            language="zh" if zh else "en",
            joined=date(2024, 3, 1),
        )
        p.set_consent(d["number"], "email", True, source="kiosk", at=at)
    p.close()


def _config(tmp: Path, port: int) -> Path:
    cfg = tmp / "campaigns.toml"
    cfg.write_text(
        '[settings]\nquiet_start = "21:00"\nquiet_end = "09:00"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsender = "rewards@staypoint.example"\ntimeout = 10\n'
        + BIRTHDAY,
        encoding="utf-8",
    )
    return cfg


def _mail(box: Mailbox) -> list[tuple[str, str, str]]:
    with box.lock:
        return sorted((to, str(m["Subject"]), str(m["Message-ID"])) for to, m in box.messages)


def _run(kind: str, tmp: Path, request: pytest.FixtureRequest, port: int) -> tuple[str, str | None, Path]:
    if kind == "sqlite":
        store, profiles = f"sqlite://{tmp / 'ledger.db'}", str(tmp / "profiles.db")
    else:
        store, profiles = request.getfixturevalue("pg_url"), None  # profiles: the ledger's database
    _chain(store, profiles or store, 6)
    return store, profiles, _config(tmp, port)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_same_run_sends_the_same_mail_once(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    smtp: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    box, port = smtp
    store, profiles, cfg = _run(kind, tmp_path, request, port)
    report: dict[str, Any] = run_daily(NOW, store=store, profiles=profiles, config_path=cfg, quiet=True)
    assert report["claimed"] == {"BDAY": 6} and report["delivered"] == {"sent": 6}
    assert report["bonus_events"] == 6
    sent = _mail(box)
    # The same six messages on both stores (addresses, subjects, the Message-IDs derived from
    # member and occasion), checked against the SQLite run's figures.
    assert [to for to, _s, _m in sent] == [f"guest{i}@example.com" for i in range(6)]
    assert len({m for _t, _s, m in sent}) == 6
    again = run_daily(NOW, store=store, profiles=profiles, config_path=cfg, quiet=True)
    assert again["claimed"] == {"BDAY": 0} and again["delivered"] == {} and _mail(box) == sent
    ledger = Ledger(open_ledger_store(store))
    try:
        assert ledger.store.high_water("campaigns", 1) == 6  # one bonus per member, once
    finally:
        ledger.store.close()


def test_same_messages_on_both_stores(
    tmp_path: Path, request: pytest.FixtureRequest, smtp: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    box, port = smtp
    runs = []
    for kind in ("sqlite", "postgresql"):
        d = tmp_path / kind
        d.mkdir()
        store, profiles, cfg = _run(kind, d, request, port)
        run_daily(NOW, store=store, profiles=profiles, config_path=cfg, quiet=True)
        runs.append(_mail(box))
        with box.lock:
            box.messages.clear()
    assert runs[0] == runs[1] and len(runs[0]) == 6


def test_central_jobs_on_postgresql_as_a_user_runs_it(
    tmp_path: Path,
    pg_url: str,
    smtp: tuple[Mailbox, int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    box, port = smtp
    _chain(pg_url, pg_url, 4)
    cfg = _config(tmp_path, port)
    argv = [
        "central",
        "jobs",
        "--store",
        pg_url,
        "--profiles",
        pg_url,
        "--campaigns",
        str(cfg),
        "--now",
        "2026-11-23T10:00:00Z",
        "--json",
        "--quiet",
    ]
    assert staypoint(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["campaigns"]["delivered"] == {"sent": 4} and box.count() == 4
    assert staypoint(argv) == 0
    assert json.loads(capsys.readouterr().out)["campaigns"]["delivered"] == {} and box.count() == 4


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_referral_bonuses_are_paid_once_on_either_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A friend referred at a desk, then a first stay: both bonuses once, on either ledger
    (the pass read the ledger's tables through a SQLite connection, and did not run on
    PostgreSQL)."""
    from staypoint.central.referrals import rules
    from staypoint.loyalty.program import Outlet
    from staypoint.loyalty.referral_codes import referral_code
    from tests.sync.nodes import Node

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = f"sqlite://{tmp_path / 'ledger.db'}" if kind == "sqlite" else request.getfixturevalue("pg_url")
    profiles = str(tmp_path / "profiles.db") if kind == "sqlite" else None
    _chain(store, profiles or store, 1)
    desk = Node(tmp_path, "sha-lobby-01", "SHA", 1, now=NOW)
    ada = desk.svc.enrol("Ada L", "2580", NOW).number
    bob = desk.svc.enrol("Bob K", "1357", NOW, referred_by=referral_code(ada)).number
    desk.svc.post_stay(bob, "F-1", NOW, nights=2, revenue={Outlet.ROOM: "300.00"})
    ledger = Ledger(open_ledger_store(store))
    ledger.register_node(desk.node, desk.svc.keys.public_hex(), "SHA")
    assert ledger.ingest(desk.node, desk.pending(), NOW).rejected == 0
    before = {m: int(ledger.member(m)["points"]) for m in (ada, bob)}  # type: ignore[index]
    ledger.store.close()

    first = run_daily(NOW, store=store, profiles=profiles, quiet=True)
    again = run_daily(NOW, store=store, profiles=profiles, quiet=True)
    assert first["referrals"] == {"awarded": 1} and again["referrals"] == {"awarded": 0}
    ledger = Ledger(open_ledger_store(store))
    try:
        r = rules(default_program())
        after = {m: int(ledger.member(m)["points"]) for m in (ada, bob)}  # type: ignore[index]
        assert after == {ada: before[ada] + r.referrer_points, bob: before[bob] + r.referred_points}
    finally:
        ledger.store.close()
