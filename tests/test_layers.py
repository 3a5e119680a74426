"""The layering, proved in a fresh interpreter: import every module of a layer, then look at
``sys.modules``. Pure rules import no I/O; the node no UI or head office, and outside its sync
agent no MQTT; the kiosk no MQTT or head office, and its device libraries only when a driver
starts; head office no node or kiosk code; the desk CLI starts without the UI, MQTT or web stack.
The import-linter contracts in pyproject.toml say the same statically (the last test runs them).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import staypoint

ROOT = Path(__file__).resolve().parents[1]

DEVICES = ["serial", "smartcard", "evdev", "escpos", "PIL"]
ABOVE_THE_NODE = ["staypoint.kiosk", "staypoint.central", "staypoint.provisioning", "staypoint.cli"]
WEB = ["fastapi", "starlette", "uvicorn", "psycopg", "psycopg_pool", "httpx", "jinja2", "apprise"]

#: (layer, sub-packages not imported with it, modules that must not be loaded).
LAYERS: list[tuple[str, tuple[str, ...], list[str]]] = [
    (
        "staypoint.loyalty",
        (),
        [
            *["sqlite3", "socket", "ssl", "subprocess", "asyncio", "threading", "textual", "rich", "paho"],
            *DEVICES,
            *WEB,
            "staypoint.edge",
            *ABOVE_THE_NODE,
        ],
    ),
    (
        "staypoint.edge",
        ("staypoint.edge.sync",),
        [
            *["textual", "rich", "paho", "ssl", "staypoint.edge.sync", "staypoint.mqtt_tls"],
            *DEVICES,
            *WEB,
            *ABOVE_THE_NODE,
        ],
    ),
    (
        "staypoint.edge.sync",
        (),
        ["textual", "rich", *DEVICES, *WEB, "staypoint.kiosk", "staypoint.central", "staypoint.provisioning"],
    ),
    (
        "staypoint.kiosk",
        (),
        # Device libraries are imported inside the driver that opens the device, so the demo
        # runs on a laptop without pcscd, evdev or a serial port.
        ["paho", *DEVICES, *WEB, "staypoint.central", "staypoint.edge.sync", "staypoint.provisioning"],
    ),
    (
        "staypoint.central",
        (),
        [*DEVICES, "segno", "staypoint.edge", "staypoint.kiosk", "staypoint.cli"],
    ),
    (
        # Head office's use cases load no web stack and no HTTP adapter: the console, the desks
        # and the jobs run them without FastAPI.
        "staypoint.central.application",
        (),
        [*DEVICES, *WEB, "pydantic", "segno", "staypoint.central.api", "staypoint.edge", "staypoint.kiosk"],
    ),
    (
        "staypoint.provisioning",
        (),
        ["textual", "fastapi", "uvicorn", "psycopg", "staypoint.cli"],
    ),
    (
        "staypoint.cli",
        (),
        # 'staypoint member show' on a board starts without the UI, MQTT or the web stack.
        ["textual", "paho", "fastapi", "uvicorn", "psycopg"],
    ),
]


@pytest.mark.parametrize(("package", "skip", "forbidden"), LAYERS, ids=[layer[0] for layer in LAYERS])
def test_imports_stay_in_their_layer(package: str, skip: tuple[str, ...], forbidden: list[str]) -> None:
    # pkgutil.walk_packages would import a skipped sub-package to look inside it: walk by hand.
    code = (
        "import importlib, pkgutil, sys\n"
        "def walk(name):\n"
        f"    if any(name == s or name.startswith(s + '.') for s in {skip!r}):\n"
        "        return\n"
        "    mod = importlib.import_module(name)\n"
        "    for m in pkgutil.iter_modules(getattr(mod, '__path__', [])):\n"
        "        walk(name + '.' + m.name)\n"
        f"walk({package!r})\n"
        "print('\\n'.join(sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    loaded = set(res.stdout.split())
    assert package in loaded
    found = sorted(name for name in forbidden if any(m == name or m.startswith(name + ".") for m in loaded))
    assert found == [], f"{package} loads {found}"


def test_every_layer_is_checked() -> None:
    """A new top-level package of staypoint/ gets a row above."""
    packages = {f"staypoint.{m.name}" for m in pkgutil.iter_modules(staypoint.__path__) if m.ispkg}
    assert packages <= {layer[0] for layer in LAYERS}


def test_import_linter_contracts_hold() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(exe)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
