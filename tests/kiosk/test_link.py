"""The kiosk's link state comes from the sync agent's socket, not from the replica's age."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from staypoint.edge.agent_link import AgentLink, LinkStatus
from staypoint.edge.service import NodeService
from staypoint.kiosk.app import KioskApp
from staypoint.kiosk.config import ConfigError, parse_config
from tests.kiosk.conftest import NOW, SMALL, Clock
from tests.kiosk.helpers import text_of

Build = Callable[..., KioskApp]


class StubLink:
    """Stands in for the agent: says what the test wants."""

    def __init__(self, online: bool) -> None:
        self.state = LinkStatus(
            online, online, 0.1 if online else None, problem="" if online else "broker not connected"
        )

    def status(self) -> LinkStatus:
        return self.state


async def test_a_quiet_connected_link_shows_online_however_old_the_last_message(
    build: Build, clock: Clock
) -> None:
    clock.now = NOW + timedelta(hours=1)  # the old guess: an hour unheard is offline
    app = build(link=StubLink(True))
    async with app.run_test(size=SMALL):
        assert "Online" in text_of(app, "#status-bar")


async def test_no_agent_answering_is_offline_even_with_a_fresh_replica(
    build: Build, tmp_path: Path, service: NodeService
) -> None:
    link = AgentLink(tmp_path / "nobody.sock")
    assert not service.status(NOW)["staleness_s"]  # freshly confirmed
    app = build(link=link)
    async with app.run_test(size=SMALL):
        assert "Offline" in text_of(app, "#status-bar")


def test_no_agent_means_offline_limits_at_once(service: NodeService, tmp_path: Path) -> None:
    link = AgentLink(tmp_path / "nobody.sock", timeout=2.0)
    started = time.monotonic()
    assert link.authorise("0001000009", 2500, "LATE-CO", NOW) is None
    assert time.monotonic() - started < 0.5


def test_the_kiosk_config_chooses_the_authoriser(tmp_path: Path) -> None:
    cfg = parse_config('[node]\ndb = "n.db"\n', "node.toml", tmp_path)
    assert cfg.link is not None and cfg.link.authoriser == "agent"
    assert cfg.link.socket == tmp_path / "n.db.agent.sock" and cfg.link.timeout == 2.0
    cfg = parse_config(
        '[node]\ndb = "n.db"\n[kiosk]\nauthoriser = "offline"\n[sync]\nlink_socket = "s"\nauth_timeout = 1\n',
        "node.toml",
        tmp_path,
    )
    assert cfg.link is not None and cfg.link.link() is None and cfg.link.socket == tmp_path / "s"
    for bad in ('[kiosk]\nauthoriser = "mqtt"\n', "[sync]\nauth_timeout = 0\n", "[sync]\nlink_socket = 3\n"):
        with pytest.raises(ConfigError, match=r"authoris|auth_timeout|link_socket"):
            parse_config('[node]\ndb = "n.db"\n' + bad, "node.toml", tmp_path)
