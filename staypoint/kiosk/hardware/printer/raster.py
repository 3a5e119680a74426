"""Text in any script for an ESC/POS printer: one line drawn as a 1-bit image.

A receipt printer in its default mode knows one single-byte code page; a Chinese, Arabic
or Cyrillic name sent as text prints junk unless the right (model-specific) mode is
selected first. Drawing the line with Pillow and a font that has the glyphs, and sending
it as a raster image (``GS v 0``), prints the same on every ESC/POS printer. ASCII lines
stay text: fewer bytes, the printer's own crisp font.

The font is the first of :data:`FONT_CANDIDATES` that exists (Debian's
``fonts-wqy-zenhei`` or ``fonts-noto-cjk``, installed by ``scripts/bootstrap``), else what
``fc-match`` finds for Chinese; with none, Pillow's own font (Latin only) and a warning.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Dots across the printable width when the printer profile does not say: 58 mm paper at
#: 203 dpi, which also fits on 80 mm paper.
DEFAULT_WIDTH_DOTS = 384
#: Line heights in dots: ESC/POS font A is 24 dots high, double height 48.
NORMAL_PX = 24
DOUBLE_PX = 48

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


def needs_raster(text: str) -> bool:
    """True when ``text`` cannot go to the printer as plain ASCII."""
    return not text.isascii()


@functools.lru_cache(maxsize=4)
def find_font(preferred: str | None = None) -> str | None:
    """Path of a font with CJK glyphs (``preferred`` first), or None."""
    for path in (preferred, *FONT_CANDIDATES):
        if path and Path(path).is_file():
            return path
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        out = subprocess.run(
            [fc_match, "-f", "%{file}", ":lang=zh"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out if out and Path(out).is_file() and not out.endswith((".pfb", ".pcf.gz")) else None


@functools.lru_cache(maxsize=16)
def _font(path: str | None, size: int) -> Any:
    from PIL import ImageFont

    if path is None:
        log.warning(
            "no font with CJK glyphs found (install fonts-wqy-zenhei): non-Latin names print as boxes"
        )
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def render_line(
    text: str,
    *,
    width: int = DEFAULT_WIDTH_DOTS,
    height: int = NORMAL_PX,
    align: str = "left",
    bold: bool = False,
    font: str | None = None,
) -> Any:
    """``text`` drawn black on white, ``width`` × ``height`` dots (mode ``"1"``).

    The font size shrinks until the line fits the width; ``align`` is left or center.
    """
    from PIL import Image, ImageDraw

    path = find_font(font)
    stroke = 1 if bold else 0
    size = max(8, height - 2)
    face = _font(path, size)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    while True:
        left, top, right, bottom = probe.textbbox((0, 0), text, font=face, stroke_width=stroke)
        if (right - left <= width and bottom - top <= height) or size <= 8:
            break
        size -= 1
        face = _font(path, size)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    x = (width - (right - left)) // 2 - left if align == "center" else -left
    y = (height - (bottom - top)) // 2 - top
    draw.text((x, y), text, font=face, fill=0, stroke_width=stroke, stroke_fill=0)
    return img.point(lambda v: 0 if v < 128 else 255, mode="1")


def raster_command(image: Any) -> bytes:
    """``GS v 0`` (print raster bit image, normal scale) for a mode ``"1"`` image.

    Rows of ``ceil(width / 8)`` bytes, most significant bit leftmost, 1 = a black dot. Built
    here rather than by python-escpos's ``image()``, which prints a warning to stdout (the
    kiosk's console) when the profile has no paper width.
    """
    img = image.convert("1")
    width, height = img.size
    row_bytes = (width + 7) // 8
    # In mode "1" PIL packs 1 = white; the printer wants 1 = black: invert.
    packed: bytes = img.point(lambda v: 255 - v, mode="1").tobytes()
    if height > 0xFFFF or row_bytes > 0xFFFF:
        raise ValueError("raster line too large")
    header = b"\x1dv0\x00" + bytes([row_bytes & 0xFF, row_bytes >> 8, height & 0xFF, height >> 8])
    return header + packed


def width_dots(profile_data: dict[str, Any]) -> int:
    """The printable width from a python-escpos profile, else :data:`DEFAULT_WIDTH_DOTS`."""
    pixels = profile_data.get("media", {}).get("width", {}).get("pixels")
    return pixels if isinstance(pixels, int) and pixels > 0 else DEFAULT_WIDTH_DOTS
