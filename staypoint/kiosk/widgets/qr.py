"""A QR code drawn with half-block characters, dark modules in the text colour.

Each character cell holds two modules, one above the other: ``█`` both dark, ``▀`` top
dark, ``▄`` bottom dark, a space both light. The widget's stylesheet rule (``.qr`` in
``kiosk.tcss``) paints the text black on white, so dark modules come out dark and the
quiet zone light, as a phone's scanner expects. Always a full QR code (never a Micro QR,
which phone scanners do not read), with the standard 4-module quiet zone.
"""

from __future__ import annotations

import segno
from textual.widgets import Static

#: Light modules around the symbol (ISO/IEC 18004 asks for 4).
QUIET_ZONE = 4

_CELLS = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}


def qr_matrix(payload: str) -> list[list[bool]]:
    """The modules of the full QR for ``payload`` (True = dark), quiet zone included."""
    code = segno.make_qr(payload, error="l", boost_error=True)
    return [[bool(m) for m in row] for row in code.matrix_iter(scale=1, border=QUIET_ZONE)]


def qr_text(payload: str) -> str:
    """The QR for ``payload`` as lines of ▀▄█ and spaces, two modules per character row."""
    rows = qr_matrix(payload)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))  # one more light row of quiet zone
    return "\n".join(
        "".join(_CELLS[top, bottom] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[::2], rows[1::2], strict=True)
    )


def qr_rows(payload: str) -> int:
    """How many character rows the QR needs."""
    return len(qr_text(payload).splitlines())


class QrCode(Static):
    """Dark modules on a white background, whatever the theme, so a phone can scan it."""

    def __init__(self, payload: str, *, id: str | None = None) -> None:
        super().__init__(qr_text(payload), id=id, classes="qr", markup=False)
        self.payload = payload
