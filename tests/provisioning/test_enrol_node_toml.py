"""Enrolment as a technician runs it writes a complete node.toml (issue 13, item 2).

The board is enrolled by the CLI, one process per command, against a real Mosquitto and
head office's enrolment service; then the node.toml it wrote is used as is: Litestream
runs on the config the unit runs (``litestream replicate -config <litestream.yml>``), and
``staypoint node restore --config node.toml`` brings the replica back from that backup.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from staypoint.edge import backup
from staypoint.edge.service import NodeService
from staypoint.edge.sync import heartbeat
from staypoint.edge.sync.config import load_node_config
from staypoint.kiosk.config import load_config
from staypoint.kiosk.hardware.pinpad.device_sim import PinPadDevice
from staypoint.kiosk.hardware.printer.sim import PrinterSink
from staypoint.provisioning.hardware_spec import parse_pinpad, parse_printer, parse_reader
from staypoint.provisioning.render import NodeLayout, unit_text
from tests.hardware.conftest import PtyPair
from tests.provisioning.conftest import Office, enrol_tls_dir
from tests.waits import wait_until

HOTEL = "Staypoint Harbour 港湾酒店"


def run(*args: str, module: str = "staypoint.cli.main") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)


def provision(*args: str) -> subprocess.CompletedProcess[str]:
    return run("provision", *args, module="staypoint.provisioning.cli")


def enrol_cli(office: Office, root: Path, node: str, *flags: str) -> subprocess.CompletedProcess[str]:
    enrol_tls_dir(office, root)
    token = office.state.tokens.create(node, "SHA", dt.timedelta(hours=2))
    return provision(
        "enrol", "--broker", office.address, "--token", token, "--root", str(root), "--timeout", "20", *flags
    )


def test_enrol_writes_a_node_toml_that_restores_from_a_real_litestream_backup(
    office: Office, tmp_path: Path
) -> None:
    node = "toml-lobby-01"
    root = tmp_path / "board"
    target = tmp_path / "offsite" / node
    res = enrol_cli(
        office,
        root,
        node,
        "--printer",
        "serial:/dev/ttyUSB0:38400",
        "--reader",
        "pcsc:ACS ACR122U",
        "--pinpad",
        "serial:/dev/ttyUSB1",
        "--hotel-name",
        HOTEL,
        "--backup",
        target.as_uri(),
    )
    assert res.returncode == 0, res.stderr
    layout = NodeLayout(root)
    cfg = tomllib.loads(layout.node_toml.read_text("utf-8"))

    # Production, the technician's devices, the hotel's name, the backup.
    assert cfg["node"]["mode"] == "production" and cfg["node"]["id"] == node
    assert cfg["node"]["timezone"] == "Asia/Shanghai"  # SHA's, from the programme's [[properties]]
    assert cfg["hardware"] == {
        "reader": "pcsc",
        "reader_name": "ACS ACR122U",
        "pinpad": "serial",
        "pinpad_port": "/dev/ttyUSB1",
        "pinpad_baudrate": 9600,
        "printer": "escpos",
        "printer_url": "serial:/dev/ttyUSB0?baudrate=38400",
    }
    assert cfg["kiosk"]["property_name"] == HOTEL
    assert load_config(layout.node_toml).property_name == HOTEL  # what the kiosk shows
    assert cfg["backup"]["replica"] == target.as_uri()

    # The unit's Litestream config is node.toml's [backup], word for word.
    assert "-config /etc/staypoint/litestream.yml" in unit_text("staypoint-litestream.service")
    assert layout.litestream == root.resolve() / "etc" / "staypoint" / "litestream.yml"
    bcfg = backup.load_backup_config(layout.node_toml)
    assert bcfg.db == layout.db and bcfg.litestream_config == layout.litestream
    assert layout.litestream.read_text() == backup.render_config(bcfg)
    # The backup folder is outside /var/backups/staypoint: the unit gets to write it.
    dropin = layout.units_dir / "staypoint-litestream.service.d" / "backup.conf"
    assert f"ReadWritePaths={target.parent}" in dropin.read_text()
    # The agent measures the backup's lag from that folder (the heartbeat's litestream_lag_s).
    sync = load_node_config(layout.node_toml)
    assert sync.sync.backup_dir == target

    # Litestream, started as the unit starts it, backs the enrolled replica up.
    litestream = subprocess.Popen(
        [backup.litestream_binary(), "replicate", "-config", str(layout.litestream)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = backup.BackupConfig(tmp_path / "probe.db", bcfg.replica_url, tmp_path / "probe.yml")
    try:

        def backed_up() -> bool:
            try:
                backup.restore(probe, force=True)
            except backup.BackupError:
                return False
            return True

        wait_until(backed_up, 30, "Litestream to back the enrolled replica up")
        lag = heartbeat.litestream_lag_s(layout.db, sync.sync.backup_dir)
        assert lag is not None and lag >= 0
    finally:
        litestream.send_signal(signal.SIGTERM)
        litestream.wait(10)

    # The SD card dies: the technician's restore, exactly as docs/technician.md has it.
    for suffix in ("", "-wal", "-shm"):
        layout.db.with_name(layout.db.name + suffix).unlink(missing_ok=True)
    res = run("node", "restore", "--config", str(layout.node_toml), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["db"] == str(layout.db)
    svc = NodeService.open(layout.db, keys_dir=layout.keys)
    try:
        assert svc.node_id == node
    finally:
        svc.close()


def test_a_simulated_device_fails_the_selftest_of_an_enrolled_board(office: Office, tmp_path: Path) -> None:
    root = tmp_path / "demo-board"
    res = enrol_cli(office, root, "toml-lobby-02", "--printer", "sim", "--reader", "sim")
    assert res.returncode == 0, res.stderr
    layout = NodeLayout(root)
    # No --hotel-name and head office sent none: nothing made up, the kiosk shows the code.
    assert "property_name" not in tomllib.loads(layout.node_toml.read_text())["kiosk"]
    # No --backup: head office's answer names the replica.
    assert tomllib.loads(layout.node_toml.read_text())["backup"]["replica"].endswith("/toml-lobby-02")
    res = provision("selftest", "--config", str(layout.node_toml))
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert any(
        "printer" in ln and "FAIL" in ln and "simulated printer in a production node.toml" in ln
        for ln in lines
    ), res.stdout
    assert any("card reader" in ln and "FAIL" in ln and "simulated card reader" in ln for ln in lines)
    # The same devices in a demo config pass, as before.
    demo = tmp_path / "demo.toml"
    demo.write_text('[node]\nmode = "demo"\n[hardware]\nreader = "sim"\npinpad = "none"\nprinter = "sim"\n')
    res = provision("selftest", "--config", str(demo))
    assert res.returncode == 0, res.stdout


@pytest.fixture
def pty_pair_factory(tmp_path: Path) -> Iterator[Callable[[str], PtyPair]]:
    if shutil.which("socat") is None:
        pytest.skip("socat binary not installed")
    made: list[PtyPair] = []

    def make(name: str) -> PtyPair:
        folder = tmp_path / name
        folder.mkdir()
        made.append(PtyPair(folder))
        return made[-1]

    yield make
    for pair in made:
        pair.close()


@pytest.mark.integration
def test_production_selftest_passes_a_pty_printer_and_pin_pad(
    pty_pair_factory: Callable[[str], PtyPair], tmp_path: Path
) -> None:
    printer_pty, pad_pty = pty_pair_factory("printer"), pty_pair_factory("pad")
    sink = PrinterSink(printer_pty.b)
    pad = PinPadDevice.on_url(pad_pty.b).start()
    hardware = {
        **parse_reader("evdev:/dev/input/by-id/usb-reader-event-kbd"),
        **parse_pinpad(f"serial:/dev/{Path(pad_pty.a).name}"),
        **parse_printer("serial:/dev/ttyUSB0"),
    }
    # The specs only take /dev paths; the test's ptys live in its folder.
    hardware["pinpad_port"] = pad_pty.a
    hardware["printer_url"] = f"serial:{printer_pty.a}?baudrate=19200&timeout=0.5"
    cfg = tmp_path / "node.toml"
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in hardware.items())
    cfg.write_text(f'[node]\nmode = "production"\ndb = "node.db"\n[hardware]\n{body}\n')
    try:
        res = provision("selftest", "--config", str(cfg), "--json")
        rows = {(r["device"], r["check"]): r for r in json.loads(res.stdout)}
        assert rows[("printer", "status")]["ok"], rows
        assert rows[("printer", "test page")]["ok"], rows
        assert rows[("PIN pad", "status")]["ok"], rows
        assert b"Staypoint printer test" in sink.capture()  # the page reached the pty
        # This machine has no /dev/input: the only failure is the reader, and not as "simulated".
        failed = [r for r in rows.values() if not r["ok"]]
        assert [r["device"] for r in failed] == ["card reader"] and "simulated" not in failed[0]["detail"]
        assert res.returncode == 1
    finally:
        pad.stop()
        sink.close()


@pytest.mark.parametrize(
    ("flag", "spec", "message"),
    [
        ("--printer", "usb:4b8:202", "4 hex digits"),
        ("--printer", "lpt1", "expected usb:VID:PID"),
        ("--printer", "serial:ttyUSB0", "device path"),
        ("--printer", "serial:/dev/ttyUSB0:12345", "baud rate 12345"),
        ("--printer", "network:", "network:HOST[:PORT]"),
        ("--reader", "nfc", "expected pcsc"),
        ("--reader", "evdev:/tmp/kbd", "evdev needs the input device"),
        ("--pinpad", "usb:1:2", "expected serial:"),
        ("--backup", "ftp://x/y", "unknown scheme 'ftp'"),
        ("--backup", "relative/dir", "absolute path"),
    ],
)
def test_bad_choices_are_one_line_and_write_nothing(
    flag: str, spec: str, message: str, tmp_path: Path
) -> None:
    args = {"--printer": "sim", flag: spec}
    flat = [x for kv in args.items() for x in kv]
    root = tmp_path / "board"
    res = provision("enrol", "--broker", "127.0.0.1:1", "--token", "n-1.x", "--root", str(root), *flat)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert message in res.stderr and flag in res.stderr, res.stderr
    assert not root.exists()


def test_device_specs() -> None:
    assert parse_printer("usb:04B8:0202") == {"printer": "escpos", "printer_url": "usb:04b8:0202"}
    assert parse_printer("serial:/dev/ttyACM0") == {
        "printer": "escpos",
        "printer_url": "serial:/dev/ttyACM0?baudrate=19200",
    }
    assert parse_printer("network:10.0.0.5") == {"printer": "escpos", "printer_url": "tcp://10.0.0.5:9100"}
    assert parse_printer("network:printer.lan:9101")["printer_url"] == "tcp://printer.lan:9101"
    assert parse_printer("sim") == {"printer": "sim"}
    assert parse_reader("pcsc") == {"reader": "pcsc"}
    assert parse_reader("evdev:/dev/input/event3") == {"reader": "evdev", "evdev_device": "/dev/input/event3"}
    assert parse_pinpad("serial:/dev/ttyUSB1:19200") == {
        "pinpad": "serial",
        "pinpad_port": "/dev/ttyUSB1",
        "pinpad_baudrate": 19200,
    }
    assert parse_pinpad("none") == {"pinpad": "none"}
    assert backup.check_replica_url("/var/backups/staypoint/x") == "file:///var/backups/staypoint/x"
    assert backup.check_replica_url("s3://bucket/sha-lobby-01") == "s3://bucket/sha-lobby-01"
