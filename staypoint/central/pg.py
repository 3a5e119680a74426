"""PostgreSQL helpers: pick a ledger store from a URL, and run a throw-away server for tests.

``open_ledger_store`` (re-exported from ``store.py``, where it lives) is the one place
configuration chooses the store; everything above it sees only ``LedgerStore``.

:class:`PgServer` starts Debian's PostgreSQL 15 from its binaries on a Unix socket in a
folder of its own (no TCP port to collide on), as the ``postgres`` user when run as root
(``initdb`` refuses root). Tests and the benchmark use it; production runs a managed server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from staypoint.central.store import StoreConfigError, open_ledger_store

PG_BIN = Path(os.environ.get("STAYPOINT_PG_BIN", "/usr/lib/postgresql/15/bin"))


# The store opener lives in ``store.py`` (one home); these names stay for older imports.
__all__ = ["PgServer", "StoreConfigError", "available", "open_ledger_store"]


def available() -> bool:
    """True when the PostgreSQL server binaries are installed."""
    return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()


@dataclass
class PgServer:
    """A private PostgreSQL cluster in ``directory`` listening only on a Unix socket there."""

    directory: Path
    user: str = "sp"
    fsync: bool = False  # False: tests only (fsync, synchronous_commit, full_page_writes off)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            # initdb refuses root; the cluster belongs to the postgres system user.
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in cmd)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> PgServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.directory, pw.pw_uid, pw.pw_gid)
            # The socket folder must be reachable by the postgres user all the way down.
            for parent in self.directory.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o011)
        if not (self.data / "PG_VERSION").exists():
            self._run(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                self.user,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )
        opts = f"-k {self.socket_dir} -c listen_addresses= -c max_connections=200"
        if self.fsync:  # production durability, said explicitly (a benchmark's config may not differ)
            opts += " -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        else:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.directory / "log"),
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.socket_dir}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.split("/")[-1].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
