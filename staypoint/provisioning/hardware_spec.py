"""The technician's device choices on ``provision enrol``, turned into ``[hardware]`` keys.

=========================================  ==============================================
``--printer usb:04b8:0202``                ``printer = "escpos"``, ``printer_url = "usb:04b8:0202"``
``--printer serial:/dev/ttyUSB0[:19200]``  ``printer_url = "serial:/dev/ttyUSB0?baudrate=19200"``
``--printer network:10.0.0.5[:9100]``      ``printer_url = "tcp://10.0.0.5:9100"``
``--printer sim``                          ``printer = "sim"`` (demo only: the self-test fails it)
``--reader pcsc[:NAME]``                   ``reader = "pcsc"`` (``reader_name``: part of the name)
``--reader evdev:/dev/input/by-id/...``    ``reader = "evdev"``, ``evdev_device``
``--pinpad serial:/dev/ttyUSB1[:9600]``    ``pinpad = "serial"``, ``pinpad_port``, ``pinpad_baudrate``
``--pinpad none``                          the kiosk's on-screen keypad
=========================================  ==============================================

Every bad spec raises :class:`ValueError` with one line that names the flag and shows the
accepted forms.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["PRINTER_FORMS", "parse_pinpad", "parse_printer", "parse_reader", "simulated_devices"]

PRINTER_FORMS = "usb:VID:PID, serial:/dev/ttyX[:baud], network:host[:port] or sim"
READER_FORMS = "pcsc[:reader name], evdev:/dev/input/..., or sim"
PINPAD_FORMS = "serial:/dev/ttyX[:baud], none (on-screen keypad) or sim"

_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_BAUDS = {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200}

Hardware = dict[str, str | int]


def _device_and_baud(flag: str, spec: str, rest: str, default: int, forms: str) -> tuple[str, int]:
    """``/dev/ttyX`` or ``/dev/ttyX:BAUD``."""
    path, baud = rest, default
    head, sep, tail = rest.rpartition(":")
    if sep and tail.isdigit():
        path, baud = head, int(tail)
        if baud not in _BAUDS:
            raise ValueError(
                f"{flag} {spec!r}: baud rate {baud} is not one of {', '.join(map(str, sorted(_BAUDS)))}"
            )
    if not path.startswith("/dev/") or len(path) <= 5 or any(c.isspace() or c in "?#\"'" for c in path):
        raise ValueError(f"{flag} {spec!r}: expected a device path such as /dev/ttyUSB0 ({forms})")
    return path, baud


def parse_printer(spec: str) -> Hardware:
    """``--printer`` → the printer keys of ``[hardware]``."""
    kind, sep, rest = spec.strip().partition(":")
    if kind == "sim" and not sep:
        return {"printer": "sim"}
    if kind == "usb" and sep:
        vid, _, pid = rest.partition(":")
        if not (_HEX4.fullmatch(vid) and _HEX4.fullmatch(pid)):
            raise ValueError(
                f"--printer {spec!r}: usb needs VID:PID as 4 hex digits each, e.g. usb:04b8:0202"
            )
        return {"printer": "escpos", "printer_url": f"usb:{vid.lower()}:{pid.lower()}"}
    if kind == "serial" and sep:
        path, baud = _device_and_baud("--printer", spec, rest, 19200, PRINTER_FORMS)
        return {"printer": "escpos", "printer_url": f"serial:{quote(path)}?baudrate={baud}"}
    if kind == "network" and sep:
        host, port = rest, 9100
        head, colon, tail = rest.rpartition(":")
        if colon and tail.isdigit() and not head.endswith(":"):
            host, port = head, int(tail)
        if not _HOST.fullmatch(host) or not 0 < port < 65536:
            raise ValueError(f"--printer {spec!r}: expected network:HOST[:PORT], e.g. network:10.0.0.5:9100")
        return {"printer": "escpos", "printer_url": f"tcp://{host}:{port}"}
    raise ValueError(f"--printer {spec!r}: expected {PRINTER_FORMS}")


def parse_reader(spec: str) -> Hardware:
    """``--reader`` → the reader keys of ``[hardware]``."""
    kind, sep, rest = spec.strip().partition(":")
    if kind == "sim" and not sep:
        return {"reader": "sim"}
    if kind == "pcsc":
        if sep and not rest.strip():
            raise ValueError(f"--reader {spec!r}: pcsc:NAME needs part of the reader's name, or just pcsc")
        return {"reader": "pcsc", "reader_name": rest.strip()} if sep else {"reader": "pcsc"}
    if kind == "evdev" and sep:
        if not rest.startswith("/dev/input/") or len(rest) <= len("/dev/input/") or " " in rest:
            raise ValueError(
                f"--reader {spec!r}: evdev needs the input device, e.g. evdev:/dev/input/by-id/...-event-kbd"
            )
        return {"reader": "evdev", "evdev_device": rest}
    raise ValueError(f"--reader {spec!r}: expected {READER_FORMS}")


def parse_pinpad(spec: str) -> Hardware:
    """``--pinpad`` → the PIN pad keys of ``[hardware]``."""
    kind, sep, rest = spec.strip().partition(":")
    if kind in ("sim", "none") and not sep:
        return {"pinpad": kind}
    if kind == "serial" and sep:
        path, baud = _device_and_baud("--pinpad", spec, rest, 9600, PINPAD_FORMS)
        return {"pinpad": "serial", "pinpad_port": path, "pinpad_baudrate": baud}
    raise ValueError(f"--pinpad {spec!r}: expected {PINPAD_FORMS}")


def simulated_devices(hardware: dict[str, object]) -> list[str]:
    """Which devices of a ``[hardware]`` table are simulators (missing keys default to sim)."""
    names = {"reader": "card reader", "pinpad": "PIN pad", "printer": "printer"}
    return [label for key, label in names.items() if str(hardware.get(key, "sim")) == "sim"]
