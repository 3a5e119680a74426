"""The layering of the design, proved: pure rules import no I/O, the node no UI or MQTT."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("staypoint.loyalty", ["sqlite3", "textual", "paho", "socket", "serial", "staypoint.edge"]),
        ("staypoint.edge.service", ["textual", "paho", "staypoint.kiosk", "staypoint.central"]),
        ("staypoint.kiosk.app", ["paho", "staypoint.central", "staypoint.edge.sync"]),
    ],
)
def test_imports_stay_in_their_layer(package: str, forbidden: list[str]) -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "if hasattr(pkg, '__path__'):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print('\\n'.join(sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    loaded = set(res.stdout.split())
    for name in forbidden:
        assert not any(m == name or m.startswith(name + ".") for m in loaded), f"{package} imports {name}"


def test_import_linter_contracts_hold() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(exe)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
