"""Shared kiosk fixtures: one demo replica per session, copied per test (seeding is the slow part)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from staypoint.cli.demo import prepare
from staypoint.edge.seed import demo_card_uid, seeded_number
from staypoint.edge.service import NodeService
from staypoint.kiosk.app import Devices, KioskApp, make_app
from staypoint.kiosk.hardware.printer.sim import SimPrinter
from staypoint.kiosk.hardware.reader.sim import SimReader

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
#: An 800×480 panel is 100×30 cells with an 8×16 console font; 1280×800 is 160×50.
SMALL = (100, 30)
LARGE = (160, 50)

#: Seeded members used by the tests (see staypoint.edge.seed; rng_seed 7 makes them fixed).
ANNA = 0  # Member tier, 25,875 points, some expiring
BEN = 1  # Member tier, 6,168 points: not enough for the spa
FARID = 5  # Gold: may redeem the upgrade
STAFF_CARD = "5AFF0001"  # supervisor "frontdesk", PIN 2468
TECH_CARD = "5AFF0002"  # technician, PIN 1357


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded demo replica, built once; tests get copies."""
    directory = tmp_path_factory.mktemp("demo-template")
    prepare(directory, NOW, members=200)
    return directory


@pytest.fixture
def service(demo_template: Path, tmp_path: Path) -> Iterator[NodeService]:
    """A fresh copy of the demo node for this test."""
    for item in demo_template.iterdir():
        target = tmp_path / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    svc = NodeService.open(tmp_path / "demo-node.db")
    yield svc
    svc.close()


class Clock:
    """A settable clock: tests move time on to make the replica stale."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def devices() -> Devices:
    return Devices(reader=SimReader(), pinpad=None, printer=SimPrinter())


@pytest.fixture
def build(service: NodeService, devices: Devices, clock: Clock) -> Callable[..., KioskApp]:
    """make_app with test defaults: fixed clock, still offers strip, no health polling."""

    def _build(**options: object) -> KioskApp:
        options.setdefault("offers_rotate_s", 0)
        options.setdefault("health_interval_s", 0)
        idle = float(options.pop("idle_timeout", 30))  # type: ignore[arg-type]
        return make_app(service, devices, clock, idle, **options)

    return _build


def card(index: int) -> str:
    """The seeded member's card UID."""
    return demo_card_uid(index)


def number(index: int) -> str:
    """The seeded member's number."""
    return seeded_number(index)
