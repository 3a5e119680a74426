"""The hardware self-test over the simulators and a pty printer with no paper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from staypoint.provisioning.selftest import format_table, run_selftest


def test_all_simulated_devices_pass() -> None:
    results = run_selftest({"reader": "sim", "pinpad": "sim", "printer": "sim"})
    assert all(r.ok for r in results), format_table(results)
    assert [(r.device, r.check) for r in results] == [
        ("card reader", "status"),
        ("PIN pad", "status"),
        ("printer", "status"),
        ("printer", "test page"),
    ]


def test_interactive_reports_a_card_never_tapped() -> None:
    # The simulated PIN pad "types" its default PIN; nobody taps the simulated reader.
    results = run_selftest({"reader": "sim", "pinpad": "sim", "printer": "sim"}, interactive=True, timeout=1)
    by_check = {(r.device, r.check): r for r in results}
    assert not by_check[("card reader", "tap")].ok
    assert by_check[("PIN pad", "entry")].ok


def test_faults_fail_with_reasons() -> None:
    results = run_selftest(
        {
            "reader": "evdev",
            "pinpad": "serial",
            "pinpad_port": "/dev/nonexistent-pad",
            "printer": "escpos",
            "printer_url": "serial:/dev/nonexistent-printer",
        }
    )
    table = format_table(results)
    assert not any(r.ok for r in results), table
    assert "needs evdev_device" in table
    assert table.splitlines()[0].split()[:4] == ["DEVICE", "DRIVER", "CHECK", "RESULT"]
    assert table.splitlines()[-1].endswith("failed")


def test_cli_table_and_exit_status(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('[node]\ndb = "node.db"\n[hardware]\nreader = "sim"\npinpad = "none"\nprinter = "sim"\n')
    res = subprocess.run(
        [sys.executable, "-m", "staypoint.provisioning.cli", "provision", "selftest", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "PASS" in res.stdout and "test page" in res.stdout and "0 failed" in res.stdout
    cfg.write_text(
        '[hardware]\nreader = "sim"\npinpad = "none"\nprinter = "escpos"\nprinter_url = "tcp://127.0.0.1:9"\n'
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "staypoint.provisioning.cli",
            "provision",
            "selftest",
            "--config",
            str(cfg),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert '"ok": false' in res.stdout
