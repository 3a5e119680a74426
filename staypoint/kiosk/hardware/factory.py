"""Build the configured drivers from a plain config.

Each driver module is imported only when it is chosen, so choosing ``sim``
never imports pyscard, evdev or python-escpos.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from staypoint.kiosk.hardware.pinpad.base import PinPad
    from staypoint.kiosk.hardware.printer.base import Printer
    from staypoint.kiosk.hardware.reader.base import CardReader

READERS = ("pcsc", "evdev", "sim")
PINPADS = ("serial", "sim", "none")
PRINTERS = ("escpos", "sim")


@dataclass(frozen=True)
class HardwareConfig:
    """The ``[hardware]`` section of a node's config.

    reader: ``pcsc`` (``reader_name``: substring of the PC/SC reader name, empty = any),
    ``evdev`` (``evdev_device``: ``/dev/input/by-id/...``, ``evdev_mode``: auto|member|uid),
    ``sim``. pinpad: ``serial`` (``pinpad_port``: a device path or pyserial URL,
    ``pinpad_baudrate``), ``sim``, ``none`` (the kiosk's on-screen keypad is used).
    printer: ``escpos`` (``printer_url``: ``serial:/dev/ttyUSB0?baudrate=19200`` |
    ``tcp://host:9100`` | ``usb:04b8:0202``, ``printer_profile``), ``sim``.
    """

    reader: str = "sim"
    reader_name: str = ""
    evdev_device: str = ""
    evdev_mode: str = "auto"
    pinpad: str = "sim"
    pinpad_port: str = ""
    pinpad_baudrate: int = 9600
    printer: str = "sim"
    printer_url: str = ""
    printer_profile: str = ""
    printer_font: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


Config = HardwareConfig | Mapping[str, Any]


def _get(cfg: Config, key: str, default: Any = "") -> Any:
    data = asdict(cfg) if isinstance(cfg, HardwareConfig) else cfg
    value = data.get(key, default)
    return default if value is None else value


def _choice(cfg: Config, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = str(_get(cfg, key, default))
    if value not in allowed:
        raise ValueError(
            f"hardware config: unknown {key} driver {value!r}; expected one of {', '.join(allowed)}"
        )
    return value


def _required(cfg: Config, key: str, driver_key: str, driver: str) -> str:
    value = str(_get(cfg, key, ""))
    if not value:
        raise ValueError(f"hardware config: {driver_key} = {driver!r} needs {key}")
    return value


def make_reader(cfg: Config) -> CardReader:
    """The card reader named by ``cfg.reader``."""
    kind = _choice(cfg, "reader", READERS, "sim")
    if kind == "pcsc":
        from staypoint.kiosk.hardware.reader.pcsc import PcscReader

        return PcscReader(reader_name=str(_get(cfg, "reader_name")) or None)
    if kind == "evdev":
        from staypoint.kiosk.hardware.reader.evdev_wedge import EvdevWedgeReader, WedgeMode

        mode = str(_get(cfg, "evdev_mode", "auto"))
        if mode not in ("auto", "member", "uid"):
            raise ValueError(f"hardware config: unknown evdev_mode {mode!r}; expected auto, member or uid")
        return EvdevWedgeReader.from_device(
            _required(cfg, "evdev_device", "reader", kind), mode=cast(WedgeMode, mode)
        )
    from staypoint.kiosk.hardware.reader.sim import SimReader

    return SimReader()


def make_pinpad(cfg: Config) -> PinPad | None:
    """The PIN pad named by ``cfg.pinpad``; None for ``none`` (use the on-screen keypad)."""
    kind = _choice(cfg, "pinpad", PINPADS, "sim")
    if kind == "none":
        return None
    if kind == "serial":
        from staypoint.kiosk.hardware.pinpad.serial_pinpad import SerialPinPad

        return SerialPinPad(
            _required(cfg, "pinpad_port", "pinpad", kind),
            baudrate=int(_get(cfg, "pinpad_baudrate", 9600)),
        )
    from staypoint.kiosk.hardware.pinpad.sim import SimPinPad

    return SimPinPad()


def make_printer(cfg: Config) -> Printer:
    """The voucher printer named by ``cfg.printer``."""
    kind = _choice(cfg, "printer", PRINTERS, "sim")
    if kind == "escpos":
        from staypoint.kiosk.hardware.printer.escpos_printer import EscposPrinter

        return EscposPrinter(
            _required(cfg, "printer_url", "printer", kind),
            profile=str(_get(cfg, "printer_profile")) or None,
            font=str(_get(cfg, "printer_font")) or None,
        )
    from staypoint.kiosk.hardware.printer.sim import SimPrinter

    return SimPrinter()
