"""A programme published by any path reaches every connected node within one ticker tick.

Real Mosquitto, a real node agent, head office as production runs it (``central serve`` in
its own process). The node stays connected to the broker throughout, so it never asks for a
resync by itself: only head office's fan-out can bring it the new programme.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.program import default_program_text
from tests.mqtt_fixtures import MosquittoBroker, office_command
from tests.sync.conftest import Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
TICK = 2.0  # `central serve`'s fan-out ticker (HeadOffice.tick_seconds)


def _program(version: int) -> str:
    text, n = re.subn(r"(?m)^version = 1$", f"version = {version}", default_program_text(), count=1)
    assert n == 1
    return text


@pytest.fixture
def fleet(fresh_mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Fleet]:
    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db", synchronous="NORMAL"))
    ledger.publish_program(default_program_text(), now())
    f = Fleet(fresh_mosquitto, tmp_path, ledger)
    try:
        yield f
    finally:
        f.close()


def _serve(fleet: Fleet, tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*office_command(fleet.broker, fleet.directory / "ledger.db"), *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "office.log", "ab"),
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)


def _version(fleet: Fleet, node: str) -> int:
    return fleet.nodes[node].service.program.version


def test_a_programme_given_to_central_serve_reaches_a_connected_node_within_a_tick(
    fleet: Fleet, tmp_path: Path
) -> None:
    office = _serve(fleet, tmp_path)
    try:
        fleet.add_node("sha-lobby-01")
        fleet.settle()
        agent = fleet.nodes["sha-lobby-01"].agent
        assert agent is not None
        resyncs = agent.stats["resyncs"]
        _stop(office)

        # Head office restarts with a new programme; the node's broker link never dropped.
        doc = tmp_path / "program-v2.toml"
        doc.write_text(_program(2))
        office = _serve(fleet, tmp_path, "--program", str(doc))
        wait_until(lambda: fleet.ledger.store.latest_program_version() == 2, 30, "v2 in the ledger")
        # Within one tick of a connected head office (plus its start-up): no other change came.
        wait_until(lambda: _version(fleet, "sha-lobby-01") == 2, 10 + 2 * TICK, "v2 on the node")
        assert agent.online.is_set()
        assert agent.stats["resyncs"] - resyncs <= 1  # applied, or one resync for a gap

        # Published from another process while head office runs (the console's editor,
        # `central jobs` publishing a programme whose date came): the ticker carries it.
        other = Ledger(SqliteLedgerStore(fleet.directory / "ledger.db"))
        try:
            other.publish_program(_program(3), now())
        finally:
            other.store.close()
        wait_until(lambda: _version(fleet, "sha-lobby-01") == 3, 4 * TICK, "v3 on the node")
    finally:
        _stop(office)
