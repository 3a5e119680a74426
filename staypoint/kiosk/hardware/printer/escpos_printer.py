"""ESC/POS voucher printer through python-escpos.

The transport is chosen by a URL-ish string:

* ``serial:/dev/ttyUSB0?baudrate=19200`` (also a pty path; ``timeout=`` seconds),
* ``tcp://host:9100`` (raw TCP, "JetDirect"),
* ``usb:04b8:0202`` (vendor:product, hex).

Add ``status=0`` to the query to turn off paper-status queries for a printer
or cable that cannot talk back. A job is laid out on escpos's ``Dummy`` first
and sent in one write, so a layout or encoding error never leaves half a
voucher in the printer. A line with any non-ASCII character (a Chinese, Cyrillic or
accented name, a property's display name) is sent as a raster image of the line
(``GS v 0``, drawn by :mod:`.raster`) instead of text in a code page the printer may not
be in; ASCII lines stay text.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from staypoint.kiosk.hardware.errors import PaperOut, PrinterOffline
from staypoint.kiosk.hardware.printer import raster
from staypoint.kiosk.hardware.printer.base import VoucherSlip
from staypoint.kiosk.hardware.status import DeviceState, DeviceStatus

log = logging.getLogger(__name__)

#: DLE EOT 4: transmit paper sensor status (real-time status, ESC/POS).
PAPER_STATUS_QUERY = b"\x10\x04\x04"
#: In the DLE EOT 4 answer, bits 5-6 set = roll paper end; bits 2-3 = near end.
PAPER_END_BITS = 0x60
PAPER_NEAR_END_BITS = 0x0C
QR_SIZE = 5  # module size in dots: about 30 mm for a ~200-char token at 203 dpi


@dataclass(frozen=True, slots=True)
class PrinterTarget:
    """A parsed printer URL."""

    transport: str  # serial | tcp | usb
    address: str  # device path, host, or "VID:PID"
    port: int = 9100
    baudrate: int = 19200
    timeout: float = 1.0
    status_query: bool = True


def parse_printer_url(url: str) -> PrinterTarget:
    """Parse ``serial:/dev/x?baudrate=...``, ``tcp://host:port``, ``usb:VID:PID``."""
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise ValueError(f"printer_url {url!r}: expected serial:..., tcp://... or usb:VID:PID")
    path, _, query = rest.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    status_query = params.get("status", "1") not in ("0", "false", "no")
    timeout = float(params.get("timeout", "1.0"))
    if scheme == "serial":
        if not path:
            raise ValueError(f"printer_url {url!r}: serial needs a device path")
        return PrinterTarget(
            "serial",
            path,
            baudrate=int(params.get("baudrate", "19200")),
            timeout=timeout,
            status_query=status_query,
        )
    if scheme == "tcp":
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"printer_url {url!r}: tcp needs a host")
        return PrinterTarget(
            "tcp",
            parts.hostname,
            port=parts.port or 9100,
            timeout=timeout,
            status_query=status_query,
        )
    if scheme == "usb":
        vid, _, pid = path.partition(":")
        try:
            int(vid, 16), int(pid, 16)
        except ValueError:
            raise ValueError(f"printer_url {url!r}: usb needs hex VID:PID") from None
        return PrinterTarget("usb", f"{vid}:{pid}", timeout=timeout, status_query=status_query)
    raise ValueError(f"printer_url {url!r}: unknown transport {scheme!r} (serial, tcp, usb)")


def text_line(
    p: Any,
    text: str,
    *,
    align: str = "left",
    bold: bool = False,
    double: bool = False,
    font: str | None = None,
) -> None:
    """One line: text when it is ASCII, else a raster image of it as wide as the paper.

    Leaves the printer in the style ``p.set`` gives (the caller sets the next style).
    """
    if double:
        p.set(align=align, bold=bold, double_width=True, double_height=True)
    else:
        p.set(align=align, bold=bold, normal_textsize=True)
    if not raster.needs_raster(text):
        p.textln(text)
        return
    image = raster.render_line(
        text,
        width=raster.width_dots(p.profile.profile_data),
        height=raster.DOUBLE_PX if double else raster.NORMAL_PX,
        align="center" if align == "center" else "left",
        bold=bold,
        font=font,
    )
    # The image is as wide as the paper and aligned inside itself: no ESC a for it.
    p.set(align="left")
    p._raw(raster.raster_command(image))


def layout_voucher(p: Any, slip: VoucherSlip, font: str | None = None) -> None:
    """Lay ``slip`` out on any python-escpos printer object ``p`` (``font``: for raster lines)."""
    from escpos.constants import QR_ECLEVEL_M

    text_line(p, slip.property_name, align="center", bold=True, double=True, font=font)
    text_line(p, slip.reward_name, align="center", font=font)
    p.ln()
    text_line(p, f"Member: {slip.member_name} {slip.masked_member_number}", font=font)
    p.set(align="left", bold=False, normal_textsize=True)
    p.textln(f"Valid until: {slip.expires}")
    p.textln(f"Issued: {slip.issued_at}")
    p.ln()
    p.set(align="center", bold=True, double_width=True, double_height=True)
    p.textln(slip.code)
    p.set(align="center", bold=False, normal_textsize=True)
    # Native QR (GS ( k): the printer rasterises it; no image library, few bytes.
    p.qr(slip.qr_payload, ec=QR_ECLEVEL_M, size=QR_SIZE, native=True)
    p.ln()
    p.set(align="left")
    p.cut()


def layout_test_page(p: Any) -> None:
    """A short self-test page."""
    p.set(align="center", bold=True)
    p.textln("Staypoint printer test")
    p.set(align="left", bold=False, normal_textsize=True)
    p.textln("0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    p.qr("STAYPOINT-TEST", size=QR_SIZE, native=True)
    p.cut()


def render(layout: Any, *args: Any, profile: str | None = None) -> bytes:
    """Bytes of a job laid out by ``layout(p, *args)`` on escpos's Dummy."""
    from escpos.printer import Dummy

    dummy = Dummy(profile=profile)
    layout(dummy, *args)
    return bytes(dummy.output)


def render_voucher(slip: VoucherSlip, profile: str | None = None, font: str | None = None) -> bytes:
    """The exact bytes :class:`EscposPrinter` sends for ``slip`` (after the status query)."""
    return render(layout_voucher, slip, font, profile=profile)


class EscposPrinter:
    """:class:`Printer` over python-escpos; reopens the transport after any failure."""

    def __init__(self, url: str, *, profile: str | None = None, font: str | None = None) -> None:
        self.url = url
        self.target = parse_printer_url(url)  # ValueError on a bad URL, at startup
        self.profile = profile
        self.font = font  # a font file for lines in other scripts; default: raster.find_font()
        self._printer: Any = None
        self._lock = threading.Lock()
        self._status = DeviceStatus("printer", "escpos", DeviceState.OK, "not yet used")

    # ---- public API ----------------------------------------------------------
    def print_voucher(self, slip: VoucherSlip) -> None:
        """Check paper, then send the whole voucher in one write."""
        self._print(render_voucher(slip, self.profile, self.font))

    def print_test_page(self) -> None:
        """Print the self-test page."""
        self._print(render(layout_test_page, profile=self.profile))

    def probe(self) -> DeviceStatus:
        """Query the printer now (periodic health check); updates :meth:`status`."""
        with self._lock:
            with contextlib.suppress(PaperOut, PrinterOffline):
                self._check_paper(self._ensure_open())
            return self._status

    def status(self) -> DeviceStatus:
        """Last known health."""
        return self._status

    def close(self) -> None:
        """Close the transport; it is reopened on next use."""
        with self._lock:
            self._drop()

    # ---- internals -----------------------------------------------------------
    def _print(self, job: bytes) -> None:
        with self._lock:
            p = self._ensure_open()
            self._check_paper(p)
            try:
                p._raw(job)
                flush = getattr(getattr(p, "device", None), "flush", None)
                if callable(flush):
                    flush()
            except Exception as err:  # transport-specific errors, all meaning "gone"
                raise self._offline(f"write failed: {err}") from err
            self._set(DeviceState.OK)

    def _set(self, state: DeviceState, detail: str = "") -> None:
        self._status = DeviceStatus("printer", "escpos", state, detail)

    def _offline(self, detail: str) -> PrinterOffline:
        self._drop()
        self._set(DeviceState.OFFLINE, detail)
        return PrinterOffline(f"printer {self.url}: {detail}")

    def _drop(self) -> None:
        p, self._printer = self._printer, None
        if p is not None:
            with contextlib.suppress(Exception):
                p.close()

    def _ensure_open(self) -> Any:
        if self._printer is not None:
            return self._printer
        t = self.target
        try:
            from escpos import printer as ep

            p: Any
            if t.transport == "serial":
                # dsrdtr off: USB-serial adapters and ptys rarely wire DSR/DTR.
                p = ep.Serial(
                    t.address,
                    baudrate=t.baudrate,
                    timeout=t.timeout,
                    dsrdtr=False,
                    profile=self.profile,
                )
            elif t.transport == "tcp":
                p = ep.Network(t.address, port=t.port, timeout=t.timeout, profile=self.profile)
            else:
                vid, pid = (int(x, 16) for x in t.address.split(":"))
                p = ep.Usb(vid, pid, timeout=int(t.timeout * 1000), profile=self.profile)
            p.open()
        except Exception as err:  # DeviceNotFoundError, OSError, USBError...
            raise self._offline(f"cannot open: {err}") from err
        self._printer = p
        return p

    def _check_paper(self, p: Any) -> None:
        if not self.target.status_query:
            return
        # escpos's paper_status() reports "plenty of paper" when nothing answers,
        # which would hide an offline printer: query and read the bits ourselves.
        try:
            if self.target.transport == "serial":
                # escpos's Serial._read asks for 16 bytes and so always waits the
                # full timeout; the answer is one byte, so read exactly one.
                p.device.reset_input_buffer()
                p.device.write(PAPER_STATUS_QUERY)
                answer = p.device.read(1)
            else:
                answer = p.query_status(PAPER_STATUS_QUERY)
        except Exception as err:
            raise self._offline(f"status query failed: {err}") from err
        if not answer:
            raise self._offline("no answer to paper status query (DLE EOT 4)")
        if answer[0] & PAPER_END_BITS == PAPER_END_BITS:
            self._set(DeviceState.PAPER_OUT, "paper roll empty")
            raise PaperOut(f"printer {self.url}: paper roll empty")
        if answer[0] & PAPER_NEAR_END_BITS == PAPER_NEAR_END_BITS:
            log.warning("printer %s: paper near end", self.url)
        self._set(DeviceState.OK)
