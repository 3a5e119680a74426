"""``provision serve`` / ``revoke`` take the ledger as every head-office command does: ``--store
URL`` (SQLite or PostgreSQL), ``--db PATH``, and the older ``--ledger PATH``; a ledger that is
not there is one line, not a new empty ledger."""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store import open_ledger_store
from staypoint.loyalty.program import default_program_text
from staypoint.provisioning import cli

pytest_plugins = ["tests.pg_fixtures"]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="staypoint")
    cli.register(parser.add_subparsers(dest="cmd"))
    return parser.parse_args(["provision", *argv])


def _ledger(url: str) -> None:
    """What ``central serve`` leaves: a ledger with a programme."""
    store = open_ledger_store(url)
    try:
        Ledger(store).publish_program(default_program_text(), datetime.now(UTC))
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_serve_and_revoke_open_the_ledger_a_store_url_names(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite://{tmp_path}/ledger.db" if kind == "sqlite" else request.getfixturevalue("pg_url")
    _ledger(url)
    for argv in (("serve", "--store", url), ("revoke", "--node", "n", "--store", url)):
        store = cli._ledger_store(_args(*argv))
        assert store is not None
        try:
            assert store.latest_program_version() == 1
        finally:
            store.close()


def test_db_and_the_older_ledger_option_are_sqlite_paths(tmp_path: Path) -> None:
    _ledger(f"sqlite://{tmp_path}/ledger.db")
    for option in ("--db", "--ledger"):
        store = cli._ledger_store(_args("serve", option, str(tmp_path / "ledger.db")))
        assert store is not None and store.latest_program_version() == 1
        store.close()
    assert cli._ledger_store(_args("serve")) is None  # no ledger: --program or the default


def test_a_ledger_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "staypoint.provisioning.cli",
            "provision",
            "ca",
            "init",
            "--state",
            str(state),
        ],
        check=True,
        capture_output=True,
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "staypoint.provisioning.cli",
            "provision",
            "serve",
            "--state",
            str(state),
            "--store",
            f"sqlite://{tmp_path}/missing.db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"staypoint: no ledger at {tmp_path}/missing.db: check --store (a read command creates nothing)"
    ]
    assert not (tmp_path / "missing.db").exists()
