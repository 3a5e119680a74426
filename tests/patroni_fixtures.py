"""A real Patroni cluster on loopback: one etcd, two PostgreSQL 15 members, synchronous mode.

    from tests.patroni_fixtures import PatroniCluster, require_patroni

    cluster = PatroniCluster(tmp_dir).start()      # Leader + Sync Standby, or AssertionError
    url = cluster.url("staypoint")                  # both members, target_session_attrs=read-write
    old = cluster.kill_leader()                     # SIGKILL its Patroni and its postmaster
    cluster.wait_leader(other_than=old)             # the standby promoted
    cluster.stop()

Everything runs on 127.0.0.1 with ports picked free at start, in a folder of the caller's,
owned by the ``postgres`` user when run as root (PostgreSQL refuses root). Processes are
started directly (``Popen(user=...)``, so the PID is Patroni's own, not a shell's) and stopped
by PID. ``fsync=off``: tests only (a SIGKILL of processes loses nothing the OS holds).
The DCS timings are the shortest Patroni accepts (``loop_wait + 2 * retry_timeout <= ttl``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.waits import wait_until

PG_BIN = Path(os.environ.get("STAYPOINT_PG_BIN", "/usr/lib/postgresql/15/bin"))
PATRONI = shutil.which("patroni")
ETCD = shutil.which("etcd")
HOST = "127.0.0.1"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 4


def require_patroni() -> None:
    """Skip (a failure under scripts/check) when Patroni, etcd or PostgreSQL is missing."""
    missing = [
        name
        for name, ok in (
            ("patroni (Debian package patroni)", PATRONI),
            ("etcd (Debian package etcd-server)", ETCD),
            ("PostgreSQL 15 server binaries (Debian package postgresql-15)", (PG_BIN / "postgres").exists()),
        )
        if not ok
    ]
    if missing:
        pytest.skip("not installed: " + ", ".join(missing) + " (scripts/bootstrap installs them)")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Member:
    name: str
    directory: Path
    pg_port: int
    api_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def config(self) -> Path:
        return self.directory / "patroni.yml"

    def api(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET on this member's REST API: (status, JSON body); (0, {}) when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.api_port}{path}", timeout=2) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                return err.code, json.loads(body or b"{}")
            except ValueError:
                return err.code, {}
        except (OSError, ValueError):
            return 0, {}

    def postmaster_pid(self) -> int | None:
        """The live postmaster of this member's data folder (a stale pid file's PID is not it)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"postgres" in cmdline and str(self.data).encode() in cmdline else None


@dataclass
class PatroniCluster:
    directory: Path
    user: str = "sp"
    scope: str = ""
    members: list[Member] = field(default_factory=list)
    etcd: subprocess.Popen[bytes] | None = None
    etcd_port: int = 0

    def _owner(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        pw = pwd.getpwnam("postgres")
        return pw.pw_uid, pw.pw_gid

    def _prepare(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        if owner is not None:
            os.chown(path, *owner)
            for parent in path.parents:  # the postgres user must reach its folder
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o011)

    def start(self, timeout: float = 60.0) -> PatroniCluster:
        require_patroni()
        self.scope = self.scope or f"sp-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        client, peer, *rest = free_ports(6)
        self.etcd_port = client
        etcd_dir = self.directory / "etcd"
        self._prepare(self.directory)
        self._prepare(etcd_dir)
        assert ETCD is not None and PATRONI is not None
        self.etcd = subprocess.Popen(
            [
                ETCD,
                "--name=e1",
                f"--data-dir={etcd_dir / 'data'}",
                f"--listen-client-urls=http://{HOST}:{client}",
                f"--advertise-client-urls=http://{HOST}:{client}",
                f"--listen-peer-urls=http://{HOST}:{peer}",
                f"--initial-advertise-peer-urls=http://{HOST}:{peer}",
                f"--initial-cluster=e1=http://{HOST}:{peer}",
                "--initial-cluster-state=new",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(etcd_dir / "etcd.log", "ab"),  # noqa: SIM115 - the child keeps it
            env={**os.environ, "ETCD_UNSUPPORTED_ARCH": "", "ETCDCTL_API": "3"},
        )
        for i in range(2):
            member = Member(f"m{i + 1}", self.directory / f"m{i + 1}", rest[2 * i], rest[2 * i + 1])
            self._prepare(member.directory)
            member.config.write_text(self._config(member))
            self.members.append(member)
        wait_until(self._etcd_up, 15, "etcd to answer", interval=0.2)
        for member in self.members:
            self._start_member(member)
        self.wait_healthy(timeout)
        return self

    def _start_member(self, member: Member) -> None:
        assert PATRONI is not None
        owner = self._owner()
        log = open(member.directory / "patroni.log", "ab")  # noqa: SIM115 - the child keeps it
        member.proc = subprocess.Popen(
            [PATRONI, str(member.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=member.directory,
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
            env={**os.environ, "HOME": str(member.directory), "PGPASSFILE": str(member.directory / "pgpass")},
        )

    def _config(self, m: Member) -> str:
        config = {
            "scope": self.scope,
            "name": m.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"{HOST}:{m.api_port}", "connect_address": f"{HOST}:{m.api_port}"},
            "etcd3": {"hosts": [f"{HOST}:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL,
                    "loop_wait": LOOP_WAIT,
                    "retry_timeout": RETRY_TIMEOUT,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": False,
                        "parameters": {
                            "synchronous_commit": "on",
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "max_wal_senders": 5,
                            "max_replication_slots": 5,
                            "wal_keep_size": "64MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, {"auth": "trust"}],
                "pg_hba": [
                    "local all all trust",
                    f"host all all {HOST}/32 trust",
                    f"host replication all {HOST}/32 trust",
                ],
            },
            "postgresql": {
                "listen": f"{HOST}:{m.pg_port}",
                "connect_address": f"{HOST}:{m.pg_port}",
                "data_dir": str(m.data),
                "bin_dir": str(PG_BIN),
                "pgpass": str(m.directory / "pgpass"),
                "authentication": {
                    "superuser": {"username": self.user, "password": "sp"},
                    "replication": {"username": "replicator", "password": "rep"},
                },
                "parameters": {
                    "unix_socket_directories": str(m.directory),
                    "fsync": "off",
                    "full_page_writes": "off",
                    "max_connections": 100,
                },
            },
        }
        return json.dumps(config, indent=1)  # JSON is YAML

    # -- state ------------------------------------------------------------------------------
    def _etcd_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.etcd_port}/health", timeout=1) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def roles(self) -> dict[str, str]:
        """Member name -> role as its REST API tells it (``primary``, ``replica``, ``?``)."""
        out = {}
        for m in self.members:
            _, body = m.api("/patroni")
            out[m.name] = str(body.get("role", "?"))
        return out

    def leader(self) -> Member | None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None and m.api("/primary")[0] == 200:
                return m
        return None

    def _healthy(self) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        return any(m is not leader and m.api("/sync")[0] == 200 for m in self.members)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        wait_until(self._healthy, timeout, "a Leader and a Sync Standby", interval=0.2)

    def wait_leader(self, other_than: Member | None = None, timeout: float = 60.0) -> Member:
        def promoted() -> Member | None:
            m = self.leader()
            return m if m is not None and m is not other_than else None

        return wait_until(promoted, timeout, "a new leader", interval=0.2)

    def url(self, dbname: str = "postgres") -> str:
        """Both members, as an operator writes it: libpq finds the one that takes writes."""
        hosts = ",".join(f"{HOST}:{m.pg_port}" for m in self.members)
        return f"postgresql://{self.user}@{hosts}/{dbname}?target_session_attrs=read-write"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    # -- faults -----------------------------------------------------------------------------
    def kill_leader(self) -> Member:
        """The primary's machine dies: SIGKILL its Patroni, then its postmaster.

        (Killing only the postmaster is no failover: its Patroni restarts it and stays leader.)
        """
        leader = self.leader()
        assert leader is not None, "no leader to kill"
        pid = leader.postmaster_pid()
        assert leader.proc is not None
        os.kill(leader.proc.pid, signal.SIGKILL)
        leader.proc.wait(5)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leader

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for m in self.members:
            path = m.directory / "patroni.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {m.name} ---")
            out.extend(text)
        return "\n".join(out)

    def stop(self) -> None:
        for m in self.members:
            _stop(m.proc, signal.SIGTERM, 20)
            pid = m.postmaster_pid()  # a postmaster whose Patroni was killed lives on
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _stop(self.etcd)
