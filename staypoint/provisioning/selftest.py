"""``staypoint provision selftest``: exercise the node's devices, print a pass/fail table.

Reads ``[hardware]`` from ``node.toml`` and builds the same drivers the kiosk uses
(``staypoint.kiosk.hardware.factory``). Each check is independent: a missing PIN pad
does not hide a printer out of paper. Checks:

- card reader: the driver starts and reports ``ok``; with ``--interactive`` the
  technician taps a card within the timeout;
- PIN pad: the port opens and the pad reports ``ok`` (``none``: the on-screen keypad is
  used, which passes); with ``--interactive`` the technician types a PIN on it;
- printer: status ``ok``, then a test page is printed (paper out / offline fail here).

On a production node (``[node] mode = "production"``, which enrolment writes; demo and
development configs have no mode, or ``"demo"`` / ``"dev"``) a simulated device is a
failure of its own, with one line saying what to set: a kiosk on a simulated printer
tells the guest "Printed" with no printer there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staypoint.edge import nodeconfig
from staypoint.edge.nodeconfig import load_node_toml
from staypoint.kiosk.hardware import factory
from staypoint.kiosk.hardware.reader.base import CardReader

__all__ = ["CheckResult", "format_table", "is_production", "load_hardware", "run_selftest"]

#: ``[node] mode`` values; anything but "production" allows simulated devices.
MODES = nodeconfig.MODES


@dataclass(frozen=True)
class CheckResult:
    """One line of the table."""

    device: str
    driver: str
    check: str
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "device": self.device,
            "driver": self.driver,
            "check": self.check,
            "ok": self.ok,
            "detail": self.detail,
        }


def load_hardware(config: Path) -> dict[str, Any]:
    """The ``[hardware]`` (or ``[devices]``) table of ``node.toml``, every key with its default,
    checked by the node's one loader (an unknown section or key is a ValueError naming it)."""
    return load_node_toml(config).hardware.as_dict()


def is_production(config: Path) -> bool:
    """True when ``config``'s ``[node] mode`` is ``"production"`` (an enrolled board)."""
    return load_node_toml(config).node.mode == "production"


_REAL_DRIVERS = {
    "reader": ("card reader", "pcsc or evdev (provision enrol --reader)"),
    "pinpad": ("PIN pad", "serial, or none for the on-screen keypad (--pinpad)"),
    "printer": ("printer", "escpos with printer_url (--printer usb:|serial:|network:)"),
}


def _simulated(hw: Mapping[str, Any], key: str) -> CheckResult | None:
    if str(hw.get(key, "sim")) != "sim":
        return None
    device, fix = _REAL_DRIVERS[key]
    return CheckResult(
        device, "sim", "config", False, f"simulated {device} in a production node.toml: set {key} to {fix}"
    )


def _one_line(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_detail(status: Any) -> str:
    return _one_line(f"{status.state}" + (f": {status.detail}" if status.detail else ""))


#: How long the reader check waits for the driver's first look at its device (the PC/SC
#: monitor's first pass over pcscd and the readers; an evdev device opening). A reader that
#: is there answers at once; one that is not costs this much of the self-test.
READER_SETTLE_S = 3.0


async def _wait_for_tap(reader: CardReader, got: asyncio.Future[str], timeout: float) -> str:
    """The tap check's detail: ``read``, a misread during the wait (no use waiting on), or
    ``no card read`` once the timeout passes."""
    loop = asyncio.get_running_loop()
    deadline, misreads = loop.time() + timeout, reader.garbled
    while not got.done() and reader.garbled == misreads and loop.time() < deadline:
        await asyncio.wait([got], timeout=0.05)
    if got.done():
        return "read"
    if reader.garbled > misreads:
        return "a card was on the reader but could not be read"
    return "no card read"


def _check_reader(hw: Mapping[str, Any], interactive: bool, timeout: float) -> list[CheckResult]:
    driver = str(hw.get("reader", "sim"))
    try:
        reader = factory.make_reader(hw)
    except Exception as err:  # the driver's own message is what the technician needs
        return [CheckResult("card reader", driver, "open", False, _one_line(str(err)))]

    async def check() -> list[CheckResult]:
        # Started as the kiosk starts it: a driver's status says what its monitor saw, and a
        # PC/SC monitor not yet started says "not started" however healthy the reader.
        loop = asyncio.get_running_loop()
        got: asyncio.Future[str] = loop.create_future()

        def on_read(read: Any) -> None:
            if not got.done():
                got.set_result(str(read.uid or read.member_number))

        try:
            await reader.start(on_read)
        except Exception as err:
            return [CheckResult("card reader", driver, "start", False, _one_line(str(err)))]
        try:
            deadline = loop.time() + READER_SETTLE_S
            status = reader.status()
            while not status.ok and loop.time() < deadline:
                await asyncio.sleep(0.05)
                status = reader.status()
            out = [CheckResult("card reader", driver, "status", status.ok, _status_detail(status))]
            if interactive and status.ok:
                print(f"Tap a card on the reader within {timeout:g} s...", flush=True)
                detail = await _wait_for_tap(reader, got, timeout)
                out.append(CheckResult("card reader", driver, "tap", detail == "read", detail))
            return out
        finally:
            await reader.stop()

    return asyncio.run(check())


def _check_pinpad(hw: Mapping[str, Any], interactive: bool, timeout: float) -> list[CheckResult]:
    driver = str(hw.get("pinpad", "sim"))
    try:
        pad = factory.make_pinpad(hw)
    except Exception as err:
        return [CheckResult("PIN pad", driver, "open", False, _one_line(str(err)))]
    if pad is None:
        return [CheckResult("PIN pad", driver, "status", True, "none configured: on-screen keypad")]
    try:
        # probe() asks the pad itself; status() alone only says what the last exchange saw.
        probe = getattr(pad, "probe", None)
        status = asyncio.run(probe()) if probe is not None else pad.status()
        out = [CheckResult("PIN pad", driver, "status", status.ok, _status_detail(status))]
        if interactive and status.ok:
            print(f"Type any 4 digits on the PIN pad within {timeout:g} s...", flush=True)
            pin = asyncio.run(pad.read_pin("SELF TEST", 4, timeout))
            out.append(
                CheckResult(
                    "PIN pad", driver, "entry", pin is not None, "digits received" if pin else "nothing typed"
                )
            )
        return out
    finally:
        pad.close()


def _check_printer(hw: Mapping[str, Any]) -> list[CheckResult]:
    driver = str(hw.get("printer", "sim"))
    try:
        printer = factory.make_printer(hw)
    except Exception as err:
        return [CheckResult("printer", driver, "open", False, _one_line(str(err)))]
    probe = getattr(printer, "probe", None)
    status = probe() if probe is not None else printer.status()
    out = [CheckResult("printer", driver, "status", status.ok, _status_detail(status))]
    try:
        printer.print_test_page()
        out.append(CheckResult("printer", driver, "test page", True, "printed: check the slip"))
    except Exception as err:  # PaperOut, PrinterOffline, OSError: all a fail with its reason
        out.append(
            CheckResult("printer", driver, "test page", False, _one_line(str(err) or type(err).__name__))
        )
    return out


Check = Callable[[Mapping[str, Any]], list[CheckResult]]


def run_selftest(
    hardware: Mapping[str, Any],
    *,
    interactive: bool = False,
    timeout: float = 20.0,
    production: bool = False,
) -> list[CheckResult]:
    """Run every check on the devices ``hardware`` names; never raises for a device fault.

    ``production``: a simulated device fails (one ``config`` line, its checks not run).
    """
    checks: list[tuple[str, Callable[[], list[CheckResult]]]] = [
        ("reader", lambda: _check_reader(hardware, interactive, timeout)),
        ("pinpad", lambda: _check_pinpad(hardware, interactive, timeout)),
        ("printer", lambda: _check_printer(hardware)),
    ]
    out: list[CheckResult] = []
    for key, check in checks:
        refused = _simulated(hardware, key) if production else None
        out.extend([refused] if refused is not None else check())
    return out


def format_table(results: list[CheckResult]) -> str:
    """A plain table a technician reads on a serial console (no colour, no box drawing)."""
    rows = [("DEVICE", "DRIVER", "CHECK", "RESULT", "DETAIL")]
    rows += [(r.device, r.driver, r.check, "PASS" if r.ok else "FAIL", r.detail) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows
    ]
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(line.rstrip() for line in lines)
