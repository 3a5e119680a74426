"""Pytest plugin: a real PostgreSQL 15 (Debian's binaries) on a Unix socket, one per session.

    pytest_plugins = ["tests.pg_fixtures"]

    def test_x(pg_url): ...          # a fresh, empty database for this test

``pg_server`` (session) starts ``initdb`` + ``pg_ctl`` as the ``postgres`` user in a temp
folder (fsync off: tests only) and stops it by ``pg_ctl stop`` at the end. Tests are
skipped when the server binaries are not installed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from staypoint.central import pg


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    if not pg.available():
        pytest.skip("PostgreSQL server binaries not installed (Debian package postgresql-15)")
    # A short path: Unix socket paths are limited to ~107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="sp-pg-"))
    server = pg.PgServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
        pg.remove_tree(directory)


@pytest.fixture
def pg_url(pg_server: pg.PgServer) -> Iterator[str]:
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
