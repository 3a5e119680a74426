"""ESC/POS printer over a real pty pair: the wire bytes against ESC/POS commands stated here.

The expected commands are spelled out from the ESC/POS reference (not produced by the code
under test), so a layout that drifts, loses a command or changes order fails.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from staypoint.kiosk.hardware.errors import PaperOut, PrinterOffline
from staypoint.kiosk.hardware.printer.base import VoucherSlip
from staypoint.kiosk.hardware.printer.escpos_printer import (
    PAPER_STATUS_QUERY,
    EscposPrinter,
    parse_printer_url,
    render_voucher,
)
from staypoint.kiosk.hardware.printer.sim import PAPER_END, PrinterSink, SimPrinter
from staypoint.kiosk.hardware.status import DeviceState

from .conftest import PtyPair

SLIP = VoucherSlip(
    property_name="Staypoint Harbour",
    reward_name="Late check-out 14:00",
    member_name="Anna K.",
    member_number="7001234567",
    code="HK7M-2QX9-RT4P",
    qr_payload="SPV1." + "A" * 40 + "." + "x9_-" * 22,  # long, like a signed token
    expires="2026-12-31",
    issued_at="2026-11-23 10:00",
)


def qr_store_data(job: bytes) -> bytes:
    """The data of the first ``GS ( k`` store command (cn=0x31 QR, fn=0x50 store)."""
    start = job.index(b"\x1d(k")
    while True:
        p_l, p_h = job[start + 3], job[start + 4]
        length = p_l + 256 * p_h
        body = job[start + 5 : start + 5 + length]
        if body[:2] == b"1P":
            return body[3:]  # after cn, fn, m=0x30
        start = job.index(b"\x1d(k", start + 5 + length)


ESC, GS = b"\x1b", b"\x1d"
BOLD_ON, BOLD_OFF = ESC + b"E\x01", ESC + b"E\x00"
CENTER, LEFT = ESC + b"a\x01", ESC + b"a\x00"
DOUBLE = ESC + b"!\x30"  # print mode: double height (0x10) + double width (0x20)
NORMAL = ESC + b"!\x00"


def qr_commands(payload: bytes) -> list[bytes]:
    """GS ( k for a model-2 QR, module 5 dots, EC level M, then print (ESC/POS fn 165-181)."""
    n = len(payload) + 3
    return [
        GS + b"(k\x04\x00" + b"1A2\x00",  # fn 165: select model 2
        GS + b"(k\x03\x00" + b"1C\x05",  # fn 167: module size 5
        GS + b"(k\x03\x00" + b"1E1",  # fn 169: error correction M (0x31)
        GS + b"(k" + bytes([n & 0xFF, n >> 8]) + b"1P0" + payload,  # fn 180: store the data
        GS + b"(k\x03\x00" + b"1Q0",  # fn 181: print the symbol
    ]


def assert_in_order(wire: bytes, parts: list[bytes]) -> None:
    at = 0
    for part in parts:
        found = wire.find(part, at)
        assert found >= 0, f"{part!r} missing after offset {at}"
        at = found + len(part)


#: The voucher for SLIP, top to bottom, as the printer must receive it.
EXPECTED_VOUCHER = [
    PAPER_STATUS_QUERY,  # DLE EOT 4 before the job
    DOUBLE,
    BOLD_ON,
    CENTER,
    b"Staypoint Harbour\n",
    NORMAL,
    BOLD_OFF,
    CENTER,
    b"Late check-out 14:00\n",
    b"\n",
    LEFT,
    b"Member: Anna K. ******4567\n",
    b"Valid until: 2026-12-31\n",
    b"Issued: 2026-11-23 10:00\n",
    DOUBLE,
    BOLD_ON,
    CENTER,
    b"HK7M-2QX9-RT4P\n",
    NORMAL,
    BOLD_OFF,
    *qr_commands(SLIP.qr_payload.encode()),
    GS + b"V\x00",  # full cut, last
]


def test_layout_contains_code_and_native_qr() -> None:
    job = render_voucher(SLIP)
    assert SLIP.code.encode() in job
    assert b"Staypoint Harbour" in job
    assert b"******4567" in job and b"7001234567" not in job  # number masked on paper
    assert qr_store_data(job) == SLIP.qr_payload.encode()
    assert job.endswith(b"\x1dV\x00") or b"\x1dV" in job[-8:]  # cut


def test_parse_printer_urls() -> None:
    t = parse_printer_url("serial:/dev/ttyUSB0?baudrate=38400")
    assert (t.transport, t.address, t.baudrate, t.status_query) == ("serial", "/dev/ttyUSB0", 38400, True)
    t = parse_printer_url("tcp://10.0.0.5:9101?status=0")
    assert (t.transport, t.address, t.port, t.status_query) == ("tcp", "10.0.0.5", 9101, False)
    assert parse_printer_url("usb:04b8:0202").address == "04b8:0202"
    for bad in ("lpt1", "ftp://x", "usb:zz:1", "serial:"):
        with pytest.raises(ValueError):
            parse_printer_url(bad)


@pytest.fixture
def sink_and_printer(pty_pair: PtyPair) -> Iterator[tuple[PrinterSink, EscposPrinter]]:
    sink = PrinterSink(pty_pair.b)
    printer = EscposPrinter(f"serial:{pty_pair.a}?baudrate=19200&timeout=0.5")
    try:
        yield sink, printer
    finally:
        printer.close()
        sink.close()


@pytest.mark.integration
def test_print_voucher_over_pty(sink_and_printer: tuple[PrinterSink, EscposPrinter]) -> None:
    sink, printer = sink_and_printer
    printer.print_voucher(SLIP)
    wire = sink.capture()
    assert wire.startswith(PAPER_STATUS_QUERY)
    assert_in_order(wire, EXPECTED_VOUCHER)
    assert wire.endswith(GS + b"V\x00")
    assert wire.count(PAPER_STATUS_QUERY) == 1  # one status query, then one job
    assert GS + b"v0" not in wire  # an ASCII slip is all text: no raster image
    assert wire == PAPER_STATUS_QUERY + render_voucher(SLIP)  # the bytes render_voucher promises
    assert SLIP.code.encode() in wire
    assert qr_store_data(wire) == SLIP.qr_payload.encode()
    assert printer.status().state is DeviceState.OK


@pytest.mark.integration
def test_paper_out(sink_and_printer: tuple[PrinterSink, EscposPrinter]) -> None:
    sink, printer = sink_and_printer
    sink.paper_status = PAPER_END
    with pytest.raises(PaperOut):
        printer.print_voucher(SLIP)
    assert printer.status().state is DeviceState.PAPER_OUT
    assert sink.capture(idle_s=0.2, max_s=1) == PAPER_STATUS_QUERY  # nothing else was sent
    sink.paper_status = 0x12  # roll replaced
    printer.print_voucher(SLIP)
    assert printer.status().state is DeviceState.OK


@pytest.mark.integration
def test_silent_printer_is_offline(pty_pair: PtyPair) -> None:
    sink = PrinterSink(pty_pair.b, answer=False)
    printer = EscposPrinter(f"serial:{pty_pair.a}?timeout=0.3")
    try:
        with pytest.raises(PrinterOffline):
            printer.print_voucher(SLIP)
        assert printer.status().state is DeviceState.OFFLINE
        sink.answer = True  # printer switched back on: next use reopens and prints
        printer.print_voucher(SLIP)
        assert printer.status().state is DeviceState.OK
    finally:
        printer.close()
        sink.close()


def test_missing_port_is_offline() -> None:
    printer = EscposPrinter("serial:/nonexistent/ttyPRN")
    with pytest.raises(PrinterOffline):
        printer.print_test_page()
    assert printer.probe().state is DeviceState.OFFLINE


def test_sim_printer() -> None:
    p = SimPrinter()
    p.print_voucher(SLIP)
    assert p.slips == [SLIP]
    p.paper_out = True
    with pytest.raises(PaperOut):
        p.print_voucher(SLIP)
    assert p.status().state is DeviceState.PAPER_OUT
    assert p.slips == [SLIP]


def test_qr_helper_understands_length_prefix() -> None:
    data = b"x" * 300
    cmd = b"\x1d(k" + struct.pack("<H", len(data) + 3) + b"1P0" + data
    assert qr_store_data(cmd) == data
