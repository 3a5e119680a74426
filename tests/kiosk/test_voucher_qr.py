"""The voucher QR as the guest's phone sees it: taken from the rendered screen, decoded by zxing-cpp.

The screen is read back from Textual's compositor (what a terminal would be sent): every
cell's character and its foreground/background colours. A half-block cell is two square
pixels (``▀`` paints the top half in the foreground colour, ``▄`` the bottom, ``█`` both,
anything else shows the background), so the screen becomes a bitmap with one pixel per QR
module, which a real decoder reads like a camera frame.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from rich.console import Console
from rich.segment import Segment
from textual.app import App

from staypoint.kiosk.app import Devices, KioskApp
from staypoint.kiosk.hardware.printer.sim import SimPrinter
from staypoint.kiosk.hardware.reader.sim import SimReader
from staypoint.kiosk.screens.dashboard import DashboardScreen
from staypoint.kiosk.screens.pin import PinScreen
from staypoint.kiosk.screens.voucher import VoucherScreen
from staypoint.kiosk.widgets.qr import QUIET_ZONE, qr_matrix, qr_text
from tests.kiosk.conftest import ANNA, LARGE, SMALL, card
from tests.kiosk.helpers import keypad, settle

zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp not installed (pip install zxing-cpp)")
Image = pytest.importorskip("PIL.Image")

Build = Callable[..., KioskApp]


def screen_cells(app: App[object]) -> list[list[tuple[str, tuple[int, int, int], tuple[int, int, int]]]]:
    """Every cell of the current screen as (character, foreground RGB, background RGB)."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    lines = Segment.split_and_crop_lines(console.render(update, console.options), width, pad=True)
    white, black = (255, 255, 255), (0, 0, 0)
    grid = []
    for line in lines:
        row = []
        for seg in line:
            if seg.control:
                continue
            style = seg.style
            fg = tuple(style.color.get_truecolor()) if style and style.color else white
            bg = tuple(style.bgcolor.get_truecolor()) if style and style.bgcolor else black
            if style and style.reverse:
                fg, bg = bg, fg
            row.extend((ch, tuple(fg), tuple(bg)) for ch in seg.text)
        grid.append(row[:width])
    return grid[:height]


def screen_bitmap(app: App[object], scale: int = 6) -> Image.Image:
    """The screen as a greyscale image, one pixel per half cell (a QR module), scaled up."""
    grid = screen_cells(app)
    width, rows = len(grid[0]), len(grid)
    img = Image.new("L", (width, rows * 2), 0)
    px = img.load()
    for y, row in enumerate(grid):
        for x, (ch, fg, bg) in enumerate(row):
            top = fg if ch in "▀█" else bg
            bottom = fg if ch in "▄█" else bg
            px[x, 2 * y] = sum(top) // 3
            px[x, 2 * y + 1] = sum(bottom) // 3
    return img.resize((width * scale, rows * 2 * scale), Image.Resampling.NEAREST)


def read(img: Image.Image) -> list[object]:
    """What a phone camera finds: dark-on-light symbols only (no inverted-image retry)."""
    return list(zxingcpp.read_barcodes(img, try_invert=False))


def decode(img: Image.Image) -> list[str]:
    return [r.text for r in read(img)]


async def to_voucher(pilot, devices: Devices) -> VoucherScreen:  # type: ignore[no-untyped-def]
    assert isinstance(devices.reader, SimReader)
    devices.reader.tap(uid=card(ANNA))
    await settle(pilot)
    assert isinstance(pilot.app.screen, PinScreen)
    await keypad(pilot, "1234")
    assert isinstance(pilot.app.screen, DashboardScreen)
    await pilot.click("#rewards")
    await settle(pilot)
    await pilot.click("#reward-LATE-CO")
    await settle(pilot)
    await pilot.click("#yes")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, VoucherScreen)
    return screen


async def test_large_panel_qr_decodes_to_the_signed_token(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=LARGE) as pilot:
        screen = await to_voucher(pilot, devices)
        assert isinstance(devices.printer, SimPrinter)
        slip = devices.printer.slips[-1]
        assert screen.query_one("#voucher-qr").payload == slip.qr_payload  # type: ignore[attr-defined]
        assert decode(screen_bitmap(app)) == [slip.qr_payload]


async def test_small_panel_qr_is_a_full_qr_of_the_code(build: Build, devices: Devices) -> None:
    app = build()
    async with app.run_test(size=SMALL) as pilot:
        screen = await to_voucher(pilot, devices)
        assert isinstance(devices.printer, SimPrinter)
        slip = devices.printer.slips[-1]
        found = read(screen_bitmap(app))
        assert [r.text for r in found] == [slip.code]  # type: ignore[attr-defined]
        # A full QR (phones read it), not Micro QR, which segno picks for short text by default.
        assert [r.format for r in found] == [zxingcpp.BarcodeFormat.QRCode]  # type: ignore[attr-defined]
        assert screen.query_one("#voucher-qr").payload == slip.code  # type: ignore[attr-defined]


def test_swapped_colours_would_not_scan() -> None:
    """Without the inverted-image retry the decoder reads only dark-on-light, as phones do."""
    matrix = qr_matrix("HK7M-2QX9-RT4P")
    size = len(matrix)
    good = Image.new("L", (size, size))
    good.putdata([0 if dark else 255 for row in matrix for dark in row])
    inverted = Image.new("L", (size, size))
    inverted.putdata([255 if dark else 0 for row in matrix for dark in row])

    def big(img: Image.Image) -> Image.Image:
        return img.resize((size * 8, size * 8), Image.Resampling.NEAREST)

    assert decode(big(good)) == ["HK7M-2QX9-RT4P"]
    assert decode(big(inverted)) == []


def test_quiet_zone_is_four_light_modules() -> None:
    matrix = qr_matrix("HK7M-2QX9-RT4P")
    assert len(matrix) >= 21 + 2 * QUIET_ZONE  # version 1 at least: no 11..17-module Micro QR
    for row in (*matrix[:QUIET_ZONE], *matrix[-QUIET_ZONE:]):
        assert not any(row)
    for row in matrix:
        assert not any(row[:QUIET_ZONE]) and not any(row[-QUIET_ZONE:])
    # Top text row is all light (two quiet-zone module rows per character row).
    assert set(qr_text("HK7M-2QX9-RT4P").splitlines()[0]) == {" "}
