"""Names in any script on an ESC/POS printer: raster lines (GS v 0) on the wire, never raw GB18030.

The bytes are taken from a real pty (socat) as the printer would receive them; the raster
commands are parsed here from the ESC/POS definition (GS v 0 m xL xH yL yH d1...dk: xL+256·xH
bytes per row, yL+256·yH rows, MSB leftmost, 1 = a black dot) and turned back into images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from staypoint.kiosk.hardware.printer.base import VoucherSlip
from staypoint.kiosk.hardware.printer.escpos_printer import PAPER_STATUS_QUERY, EscposPrinter
from staypoint.kiosk.hardware.printer.raster import DEFAULT_WIDTH_DOTS, find_font
from staypoint.kiosk.hardware.printer.sim import PrinterSink

from .conftest import PtyPair

Image = pytest.importorskip("PIL.Image")

SLIP = VoucherSlip(
    property_name="Staypoint Harbour",
    reward_name="Late check-out 14:00",
    member_name="林美玲",
    member_number="7001234567",
    code="HK7M-2QX9-RT4P",
    qr_payload="SPV1." + "A" * 40,
    expires="2026-12-31",
    issued_at="2026-11-23 10:00",
)


@dataclass
class Raster:
    width: int  # dots
    height: int
    image: Image.Image  # mode "1", black = printed dot

    def ink(self) -> int:
        return self.image.convert("L").tobytes().count(0)

    def ink_columns(self) -> int:
        px = self.image.load()
        return sum(any(px[x, y] == 0 for y in range(self.height)) for x in range(self.width))


def rasters(wire: bytes) -> list[Raster]:
    """Every GS v 0 image in ``wire``, decoded."""
    out, at = [], 0
    while (at := wire.find(b"\x1dv0", at)) >= 0:
        mode = wire[at + 3]
        assert mode == 0, "normal-scale raster expected"
        row_bytes = wire[at + 4] + 256 * wire[at + 5]
        rows = wire[at + 6] + 256 * wire[at + 7]
        data = wire[at + 8 : at + 8 + row_bytes * rows]
        assert len(data) == row_bytes * rows, "raster data cut short"
        img = Image.new("1", (row_bytes * 8, rows), 1)
        px = img.load()
        for y in range(rows):
            for xb in range(row_bytes):
                byte = data[y * row_bytes + xb]
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        px[xb * 8 + bit, y] = 0
        out.append(Raster(row_bytes * 8, rows, img))
        at += 8 + len(data)
    return out


def without_rasters(wire: bytes) -> bytes:
    """``wire`` with the image data cut out (what is left is commands and text)."""
    out, at = bytearray(), 0
    while (start := wire.find(b"\x1dv0", at)) >= 0:
        out += wire[at:start]
        n = (wire[start + 4] + 256 * wire[start + 5]) * (wire[start + 6] + 256 * wire[start + 7])
        at = start + 8 + n
    return bytes(out + wire[at:])


@pytest.fixture
def sink_and_printer(pty_pair: PtyPair) -> Iterator[tuple[PrinterSink, EscposPrinter]]:
    sink = PrinterSink(pty_pair.b)
    printer = EscposPrinter(f"serial:{pty_pair.a}?baudrate=19200&timeout=0.5")
    try:
        yield sink, printer
    finally:
        printer.close()
        sink.close()


needs_cjk_font = pytest.mark.skipif(
    find_font() is None, reason="no CJK font (scripts/bootstrap installs fonts-wqy-zenhei)"
)


@pytest.mark.integration
@needs_cjk_font
def test_chinese_member_name_is_a_raster_line(sink_and_printer: tuple[PrinterSink, EscposPrinter]) -> None:
    sink, printer = sink_and_printer
    printer.print_voucher(SLIP)
    wire = sink.capture()
    assert wire.startswith(PAPER_STATUS_QUERY)
    text = without_rasters(wire)
    # No raw GB18030 (nor UTF-8, Big5) bytes of the name, and no code-page guess for it.
    for codec in ("gb18030", "utf-8", "big5"):
        assert SLIP.member_name.encode(codec) not in wire
    assert b"\x1c&" not in text and b"\x1b\x52" not in text  # no FS & (Kanji mode), no ESC R
    # The ASCII lines stay text.
    for line in (b"Staypoint Harbour\n", b"Late check-out 14:00\n", b"HK7M-2QX9-RT4P\n", b"Issued: "):
        assert line in text
    assert b"Member:" not in text  # the whole member line is the image
    (line,) = rasters(wire)
    assert (line.width, line.height) == (DEFAULT_WIDTH_DOTS, 24)  # paper width, one text line high
    assert line.ink() > 200  # something is drawn...
    assert line.ink_columns() > 100  # ...across "Member: 林美玲 ******4567", not a dot
    # The image sits where the member line was: after the reward, before the dates.
    assert wire.index(b"Late check-out") < wire.index(b"\x1dv0") < wire.index(b"Valid until")


@pytest.mark.integration
@needs_cjk_font
def test_other_scripts_and_display_name(sink_and_printer: tuple[PrinterSink, EscposPrinter]) -> None:
    sink, printer = sink_and_printer
    slip = replace(SLIP, property_name="港湾酒店", reward_name="Поздний выезд", member_name="José Núñez")
    printer.print_voucher(slip)
    wire = sink.capture()
    found = rasters(wire)
    # Property name (double height), reward, member line: each one raster line.
    assert [(r.width, r.height) for r in found] == [(DEFAULT_WIDTH_DOTS, 48), *[(DEFAULT_WIDTH_DOTS, 24)] * 2]
    assert all(r.ink() > 100 for r in found)
    # The double-size property name is centred: ink on both sides of the middle, margins blank.
    title = found[0]
    px = title.image.load()
    cols = [x for x in range(title.width) if any(px[x, y] == 0 for y in range(title.height))]
    assert cols[0] > 40 and cols[-1] < title.width - 40 and cols[0] < title.width // 2 < cols[-1]
    assert all(b < 0x80 for b in without_rasters(wire).split(b"\x1d(k")[0])


def test_ascii_slip_has_no_raster() -> None:
    from staypoint.kiosk.hardware.printer.escpos_printer import render_voucher

    job = render_voucher(replace(SLIP, member_name="Mei Lin"))
    assert b"\x1dv0" not in job and b"Member: Mei Lin ******4567\n" in job
