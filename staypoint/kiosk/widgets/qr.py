"""A QR code drawn with half-block characters (segno's terminal renderer)."""

from __future__ import annotations

import io

import segno
from textual.widgets import Static


def qr_text(payload: str) -> str:
    """The QR for ``payload`` as lines of ▀▄█, two modules per character row."""
    buf = io.StringIO()
    segno.make(payload, error="l").terminal(out=buf, compact=True, border=1)
    # segno pads lines for a terminal; trailing blanks would only widen the widget.
    return "\n".join(line.rstrip("\n") for line in buf.getvalue().splitlines())


def qr_rows(payload: str) -> int:
    """How many character rows the QR needs."""
    return len(qr_text(payload).splitlines())


class QrCode(Static):
    """Dark modules on a white background, whatever the theme, so a phone can scan it."""

    def __init__(self, payload: str, *, id: str | None = None) -> None:
        super().__init__(qr_text(payload), id=id, classes="qr", markup=False)
        self.payload = payload
