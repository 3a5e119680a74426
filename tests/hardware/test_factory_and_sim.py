"""Factory choices, config errors, simulators, and the light-import promise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from staypoint.kiosk.hardware import HardwareConfig, make_pinpad, make_printer, make_reader
from staypoint.kiosk.hardware.pinpad.base import PinPad
from staypoint.kiosk.hardware.printer.base import Printer
from staypoint.kiosk.hardware.reader.base import CardRead, CardReader
from staypoint.kiosk.hardware.reader.sim import SimReader


def test_defaults_are_simulators() -> None:
    reader = make_reader(HardwareConfig())
    assert isinstance(reader, SimReader) and isinstance(reader, CardReader)
    assert isinstance(make_printer({}), Printer)
    pad = make_pinpad({"pinpad": "sim"})
    assert isinstance(pad, PinPad)
    assert pad is not None
    pad.close()
    assert make_pinpad({"pinpad": "none"}) is None


def test_real_drivers_built_without_touching_devices() -> None:
    r = make_reader({"reader": "pcsc", "reader_name": "ACS"})
    assert type(r).__name__ == "PcscReader"
    assert type(make_reader({"reader": "evdev", "evdev_device": "/dev/input/x"})).__name__ == (
        "EvdevWedgeReader"
    )
    assert type(make_pinpad({"pinpad": "serial", "pinpad_port": "loop://"})).__name__ == ("SerialPinPad")
    assert type(make_printer({"printer": "escpos", "printer_url": "tcp://10.0.0.9"})).__name__ == (
        "EscposPrinter"
    )


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"reader": "nfc"}, "unknown reader driver 'nfc'"),
        ({"reader": "evdev"}, "needs evdev_device"),
        ({"reader": "evdev", "evdev_device": "/x", "evdev_mode": "hex"}, "evdev_mode"),
    ],
)
def test_bad_reader_config(cfg: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        make_reader(cfg)


def test_bad_pinpad_and_printer_config() -> None:
    with pytest.raises(ValueError, match="unknown pinpad driver 'usb'"):
        make_pinpad({"pinpad": "usb"})
    with pytest.raises(ValueError, match="unknown printer driver 'pdf'"):
        make_printer({"printer": "pdf"})
    with pytest.raises(ValueError, match="needs printer_url"):
        make_printer({"printer": "escpos"})
    with pytest.raises(ValueError, match="unknown transport"):
        make_printer({"printer": "escpos", "printer_url": "lpt:1"})


async def test_sim_reader_tap() -> None:
    reader = SimReader()
    reads: list[CardRead] = []
    await reader.start(reads.append)
    assert reader.tap(uid="04a1b2c3")
    assert reader.tap(member_number="7001234567")
    assert not reader.tap(uid="123")  # garbled: counted, dropped
    await reader.stop()
    assert [r.uid or r.member_number for r in reads] == ["04A1B2C3", "7001234567"]
    assert reader.garbled == 1


def test_sim_factory_imports_no_device_library() -> None:
    code = (
        "import sys\n"
        "from staypoint.kiosk.hardware import make_reader, make_pinpad, make_printer\n"
        "make_reader({}); make_printer({}); make_pinpad({'pinpad': 'none'})\n"
        "make_pinpad({'pinpad': 'sim'}).close()\n"
        "bad = [m for m in ('smartcard', 'evdev', 'escpos', 'serial') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
