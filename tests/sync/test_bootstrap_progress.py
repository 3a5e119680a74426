"""A bootstrap's snapshot reports its progress: the agent's callback with rising counts, and the
CLI's bar only on a terminal."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest

from staypoint.central import server
from staypoint.central.ledger import Ledger
from staypoint.central.seed import seed_docs
from staypoint.central.server import resync_parts
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge import sync_store
from staypoint.edge.service import NodeService
from staypoint.edge.sync import agent as agent_mod
from staypoint.edge.sync.agent import SyncAgent, SyncConfig
from staypoint.loyalty.program import default_program_text, parse_program
from staypoint.progress import CountBar

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NODE = "sha-lobby-01"


@pytest.fixture
def node_and_office(tmp_path: Path) -> Iterator[tuple[NodeService, Ledger]]:
    service = NodeService.init_node(tmp_path / "node.db", NODE, "SHA", default_program_text(), NOW)
    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"))
    ledger.publish_program(default_program_text(), NOW)
    ledger.import_members(seed_docs(parse_program(default_program_text(), "default"), 400, NOW))
    yield service, ledger
    ledger.store.close()
    service.close()


def test_the_snapshot_calls_progress_with_rising_counts(
    node_and_office: tuple[NodeService, Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, ledger = node_and_office
    calls: list[tuple[int, bool]] = []
    pem = Path("none.pem")
    with mock.patch.object(agent_mod, "use_fleet_tls"):  # no broker: only the handler runs
        agent = SyncAgent(
            service,
            SyncConfig(NODE, "localhost", 8883, pem, pem, pem),
            clock=lambda: NOW,
            progress=lambda n, done: calls.append((n, done)),
        )
    session = uuid.uuid4().hex
    agent._resync = agent_mod._Resync(session, time.monotonic() + 60)
    mode, to, found = ledger.resync(0)
    rows = list(found)
    assert mode == "snapshot"
    chunk = server.chunk_changes
    monkeypatch.setattr(server, "chunk_changes", lambda changes: chunk(changes, 8 * 1024))  # several parts
    parts = list(resync_parts(session, mode, 0, to, rows))
    for payload in parts:
        agent._on_resync_part(json.loads(payload))
    counts = [n for n, _ in calls]
    assert len(calls) == len(parts) >= 3, len(parts)
    assert counts == sorted(counts) and len(set(counts)) == len(counts) and counts[0] > 0
    assert [done for _, done in calls] == [False] * (len(calls) - 1) + [True]
    assert counts[-1] == len(rows) == agent.stats["resync_changes"]
    assert sync_store.applied_version(service.replica.conn) == to
    agent.replica.close()


def test_no_bar_when_not_a_terminal() -> None:
    out = io.StringIO()  # a pipe, a log file, systemd's journal: not a terminal
    bar = CountBar("resync", stream=out)
    for n in (10, 20, 30):
        bar(n, False)
    bar(40, True)
    assert not bar.drawn and out.getvalue() == ""


def test_a_bar_on_a_terminal_unless_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("STAYPOINT_QUIET", raising=False)
    shown = Tty()
    bar = CountBar("resync: changes applied", stream=shown)
    bar(10, False)
    bar(40, True)
    assert bar.drawn and "resync: changes applied" in shown.getvalue() and "40/40" in shown.getvalue()
    quiet = Tty()
    hushed = CountBar("resync", stream=quiet, quiet=True)
    hushed(5, True)
    assert not hushed.drawn and quiet.getvalue() == ""
