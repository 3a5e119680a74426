"""Shared fixtures: a fixed clock and a freshly initialised node replica."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings

from staypoint.edge.service import NodeService, StaffProof
from staypoint.loyalty.program import default_program_text

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# Property tests check what a rule does, not how fast one example runs: hypothesis' default
# 200 ms deadline per example fails them on a loaded machine (a loaded run caught it).
settings.register_profile("staypoint", deadline=None)
settings.load_profile("staypoint")


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeService]:
    svc = NodeService.init_node(
        tmp_path / "node.db", "sha-lobby-01", "SHA", default_program_text(), NOW, member_blocks=[42]
    )
    yield svc
    svc.close()


@pytest.fixture
def desk() -> StaffProof:
    return StaffProof("desk-7", "Desk Seven", "staff")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under scripts/check (STAYPOINT_NO_SKIPS=1) a skipped test is a failure.

    Tests skip when a real part (mosquitto, pcscd, socat, PostgreSQL, chromium) is missing,
    which is right on a laptop; in CI the bootstrap installs them all, so a skip there means
    a real part silently stopped being tested.
    """
    import os

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("STAYPOINT_NO_SKIPS") == "1" and skipped and session.exitstatus == 0:
        for report in skipped:
            print(f"\nnot allowed under scripts/check: skipped {report.nodeid}: {report.longrepr}")
        session.exitstatus = 1
