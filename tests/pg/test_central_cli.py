"""Every central command run as a user runs it (``main(argv)``), on a SQLite URL and on a real
PostgreSQL URL holding the same chain: the same figures come out (issue 13 item 4).

The two ledgers are filled through the API with the same requests at the same (fixed) clock,
so everything but event ids matches; the commands print no event id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from staypoint.central import cli as central_cli
from staypoint.central.console import cli as console_cli
from staypoint.central.reports import cli as reports_cli
from staypoint.entry import run_group
from tests.api.conftest import Clock, build_api

pytest_plugins = ["tests.pg_fixtures"]

pytestmark = pytest.mark.timeout(300)


def _fill(url: str, folder: Path) -> str:
    """A small chain: members, stays (one with no member), a claim; returns the side URL."""
    api = build_api(url, folder, Clock())
    try:
        ada = api.enrol("Ada Lovelace", email="ada@example.com")
        bo = api.enrol("Bo Li", email="bo@example.com")
        for n, member in enumerate([ada, bo, ada, None]):
            r = api.stay(member, f"F-{n}", room=str(300 + 100 * n))
            assert r.status_code in (200, 201), r.text
        return str(api.services.side.url)
    finally:
        api.client.close()
        api.services.side.close()
        api.services.profiles.close()
        api.ledger.store.close()


def _run(capsys: pytest.CaptureFixture[str], fn: Callable[[list[str]], int], argv: list[str]) -> str:
    assert fn(argv) == 0
    return capsys.readouterr().out


def _report_main(argv: list[str]) -> int:
    return run_group(reports_cli.register, argv)


def _central(argv: list[str]) -> int:
    return central_cli.main(["central", *argv])


def _figures(capsys: pytest.CaptureFixture[str], chain: dict[str, Any]) -> dict[str, Any]:
    store = chain["store"]
    out: dict[str, Any] = {}
    out["stats"] = json.loads(_run(capsys, _central, ["stats", "--store", store, "--json"]))
    out["quarantine"] = json.loads(_run(capsys, _central, ["quarantine", "--store", store, "--json"]))
    cache = ["--cache", str(chain["folder"] / "reports.db")]
    out["report"] = json.loads(
        _run(capsys, _report_main, ["report", "all", "--store", store, *cache, "--format", "json"])
    )
    jobs = [
        "jobs",
        "--store",
        store,
        "--now",
        "2027-03-01T03:00:00Z",
        "--side",
        chain["side"],
        "--profiles",
        chain["profiles"],
        "--json",
    ]
    out["jobs"] = json.loads(_run(capsys, _central, jobs))
    out["jobs"].pop("campaigns", None)  # the daily campaigns are SQLite only (documented)
    out["stats_after_jobs"] = json.loads(_run(capsys, _central, ["stats", "--store", store, "--json"]))
    out["report_after_jobs"] = json.loads(
        _run(capsys, _report_main, ["report", "points", "--store", store, *cache, "--format", "json"])
    )
    os.environ["STAYPOINT_STAFF_PASSWORD"] = "correct horse"
    added = ["--store", store, "--side", chain["side"], "--profiles", chain["profiles"]]
    out["add_staff"] = _run(
        capsys, console_cli.main, [*added, "--add-staff", "clara", "Clara Clerk", "clerk"]
    )
    return out


def test_central_commands_give_the_same_figures_on_sqlite_and_postgresql(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    on: dict[str, dict[str, Any]] = {}
    for kind, url in (("sqlite", f"sqlite://{tmp_path / 'ledger.db'}"), ("postgresql", pg_url)):
        folder = tmp_path / kind
        folder.mkdir()
        side = _fill(url, folder)
        chain = {"store": url, "side": side, "profiles": str(folder / "profiles.db"), "folder": folder}
        on[kind] = _figures(capsys, chain)
    sqlite, pg = on["sqlite"], on["postgresql"]
    assert sqlite["stats"]["events"] > 0 and sqlite["report"]["points"]["headline"]["issued"] > 0
    for key in sqlite:
        assert sqlite[key] == pg[key], key
    # And again on PostgreSQL: the report cache picks up only what is new (nothing here).
    again = json.loads(
        _run(
            capsys,
            _report_main,
            [
                "report",
                "all",
                "--format",
                "json",
                "--store",
                pg_url,
                "--cache",
                str(tmp_path / "postgresql" / "reports.db"),
            ],
        )
    )
    assert again == pg["report"] | {"points": again["points"]}
    assert again["points"] == pg["report_after_jobs"]["points"]


def test_the_db_alias_is_the_sqlite_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(f"sqlite://{tmp_path / 'ledger.db'}", tmp_path)
    by_url = _run(capsys, _central, ["stats", "--store", f"sqlite:{tmp_path / 'ledger.db'}", "--json"])
    by_path = _run(capsys, _central, ["stats", "--db", str(tmp_path / "ledger.db"), "--json"])
    assert json.loads(by_url) == json.loads(by_path)
    report = _run(capsys, _report_main, ["report", "points", "--db", str(tmp_path / "ledger.db")])
    assert "issued" in report


@pytest.mark.parametrize(
    "argv",
    [
        ["central", "stats", "--store", "sqlite:{tmp}/typo.db"],
        ["central", "stats", "--db", "{tmp}/typo.db"],
        ["central", "jobs", "--store", "sqlite:///{tmp}/typo.db", "--now", "2027-01-01T00:00:00Z"],
        ["central", "quarantine", "--store", "sqlite:{tmp}/typo.db"],
        ["report", "all", "--store", "sqlite:{tmp}/typo.db"],
        ["report", "all", "--db", "{tmp}/typo.db"],
        ["console", "--store", "sqlite:{tmp}/typo.db", "--side", "sqlite:{tmp}/s.db", "--profiles", "p.db"],
        [
            "console",
            "--web",
            "--store",
            "sqlite:{tmp}/typo.db",
            "--side",
            "sqlite:{tmp}/s.db",
            "--profiles",
            "p",
        ],
        ["central", "stats", "--store", "mysql://db/ledger"],
        ["central", "stats", "--store", "postgresql://sp@/x?host={tmp}/no-server"],
        ["central", "stats", "--store", "postgresql://a b"],
        ["report", "all", "--store", "ftp:ledger"],
        ["central", "jobs", "--store", "sqlite:{tmp}/typo.db", "--now", "yesterday"],
    ],
)
def test_a_missing_ledger_or_a_bad_url_is_one_line(tmp_path: Path, argv: list[str]) -> None:
    import subprocess
    import sys

    staypoint = Path(sys.executable).with_name("staypoint")
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = subprocess.run([str(staypoint), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("staypoint: "), r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "typo.db").exists()  # a read command creates no empty ledger


def test_a_postgresql_database_without_a_ledger_is_refused_by_read_commands(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _central(["stats", "--store", pg_url])
    assert "no ledger in" in str(exc.value)
