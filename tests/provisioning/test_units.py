"""systemd units: `systemd-analyze verify` passes on each; the committed copies match."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from staypoint.provisioning.render import UNITS, unit_text

ROOT = Path(__file__).resolve().parents[2]
ANALYZE = shutil.which("systemd-analyze")
VENV_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", UNITS)
def test_committed_unit_matches_template(name: str) -> None:
    assert (ROOT / "systemd" / name).read_text() == unit_text(name), f"re-copy {name} into systemd/"


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (apt-get install systemd)")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this checkout's console
    # scripts (same arguments), since /usr/bin/staypoint exists only on an installed board.
    text = unit_text(name)
    for prog in ("staypoint", "litestream"):
        exe = VENV_BIN / prog
        if not exe.exists():
            pytest.skip(f"{exe} not installed in this venv")
        text = text.replace(f"/usr/bin/{prog} ", f"{exe} ")
    unit = tmp_path / name
    unit.write_text(text)
    res = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


def test_hardening_is_there() -> None:
    for name in UNITS:
        text = unit_text(name)
        for line in (
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "Restart=on-failure",
            "StateDirectory=",
            "ConfigurationDirectory=",
            "User=",
        ):
            assert line in text, f"{name} lacks {line}"
    sync = unit_text("staypoint-sync.service")
    assert "Type=notify" in sync and "WatchdogSec=" in sync
    kiosk = unit_text("staypoint-kiosk.service")
    # The kiosk needs its serial, USB printer and input devices; nothing else.
    assert (
        not any(ln.startswith("PrivateDevices") for ln in kiosk.splitlines())
        and "DevicePolicy=closed" in kiosk
    )
    assert {ln for ln in kiosk.splitlines() if ln.startswith("DeviceAllow=")} == {
        "DeviceAllow=/dev/tty1 rw",
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-ttyACM rw",
        "DeviceAllow=char-ttyS rw",
        "DeviceAllow=char-usb_device rw",
        "DeviceAllow=char-usb rw",
        "DeviceAllow=char-input r",
    }
    assert "SupplementaryGroups=dialout lp input tty" in kiosk
