"""PC/SC card reader through pyscard.

Two pieces:

* :class:`PcscCardMonitor` watches the readers and notifies observers with
  pyscard's own ``CardObserver.update(observable, (added, removed))`` call, so
  a plain pyscard ``CardObserver`` works with it and :class:`PcscReader` works
  with pyscard's ``CardMonitor``. We do not use pyscard's ``CardMonitor`` by
  default because it is a process-wide singleton whose thread stops for good
  on ``SCARD_E_NO_SERVICE`` (pcscd restarted) and only notices a stop request
  after its 60 s wait; ours re-establishes the PC/SC context and is one object
  per reader, injected, never global.
* :class:`PcscReader` is the :class:`CardReader`: on insert it asks for the UID
  (``FF CA 00 00 00``); when that is refused (contact card) it selects the
  Staypoint application and reads the member number from its file. The card
  layout is in docs/hardware.md.

pyscard is imported only here, and only when a monitor starts, so a laptop
without pcscd can import the package and run the simulators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from staypoint.kiosk.hardware.errors import ReaderUnavailable
from staypoint.kiosk.hardware.reader.base import (
    CardRead,
    OnRead,
    is_valid_member_number,
    is_valid_uid,
)
from staypoint.kiosk.hardware.status import DeviceState, DeviceStatus

log = logging.getLogger(__name__)

#: PC/SC pseudo-APDU "GET DATA": UID of a contactless card (PC/SC part 3, 3.2.2.1.3).
GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]
#: Staypoint's proprietary application id: F0 (proprietary, not registered) + "STAYPT".
STAYPOINT_AID = bytes.fromhex("F0535441595054")
SELECT_AID = [0x00, 0xA4, 0x04, 0x00, len(STAYPOINT_AID), *STAYPOINT_AID]
#: READ BINARY of the selected application's member-number file from offset 0, Le=0 (up to 256).
READ_MEMBER_FILE = [0x00, 0xB0, 0x00, 0x00, 0x00]
SW_OK = (0x90, 0x00)
#: Reads of one tap before it counts as garbled: a card entering the field at an angle, or a
#: reader still powering it, fails its first exchange and answers the next.
READ_ATTEMPTS = 3
READ_RETRY_S = 0.15


class CardObserverLike(Protocol):
    """pyscard's ``CardObserver`` shape."""

    def update(self, observable: object, handlers: tuple[list[Any], list[Any]]) -> None:
        """``handlers`` is ``(added_cards, removed_cards)``."""
        ...


class PcscCardMonitor:
    """Watches PC/SC readers in one thread, surviving pcscd restarts.

    ``reader_filter`` (a substring of the reader name) limits which readers are
    watched. ``available``/``detail`` describe the service and reader; they feed
    :meth:`PcscReader.status`.
    """

    def __init__(
        self,
        reader_filter: str | None = None,
        *,
        poll_ms: int = 250,
        retry_s: float = 0.5,
    ) -> None:
        self.reader_filter = reader_filter
        self._poll_ms = poll_ms
        self._retry_s = retry_s
        self._observers: list[CardObserverLike] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = False
        self.detail = "not started"
        self.cards: list[Any] = []  # pyscard Card objects currently present

    # pyscard-compatible observer API (CardMonitor uses these names).
    def addObserver(self, observer: CardObserverLike) -> None:
        """Register an observer; it is told at once about cards already present."""
        with self._lock:
            self._observers.append(observer)
            present = list(self.cards)
        if present:
            observer.update(self, (present, []))

    def deleteObserver(self, observer: CardObserverLike) -> None:
        """Unregister an observer."""
        with self._lock, contextlib.suppress(ValueError):
            self._observers.remove(observer)

    def start(self) -> None:
        """Start the monitoring thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pcsc-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; returns within about one poll interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _notify(self, added: list[Any], removed: list[Any]) -> None:
        if not added and not removed:
            return
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            try:
                observer.update(self, (added, removed))
            except Exception:  # an observer's bug must not kill the reader thread
                log.exception("card observer %r failed", observer)

    def _set(self, available: bool, detail: str) -> None:
        if (available, detail) != (self.available, self.detail):
            log.info("pcsc: %s", detail or "reader available")
        self.available, self.detail = available, detail

    def _run(self) -> None:
        from smartcard import scard
        from smartcard.Card import Card

        ctx: Any = None
        states: dict[str, int] = {}
        present: dict[str, Any] = {}  # reader -> Card

        def drop_all() -> None:
            removed = list(present.values())
            present.clear()
            states.clear()
            self.cards = []
            self._notify([], removed)

        def release() -> None:
            nonlocal ctx
            if ctx is not None:
                with contextlib.suppress(Exception):
                    scard.SCardReleaseContext(ctx)
            ctx = None

        while not self._stop.is_set():
            if ctx is None:
                hr, new_ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if hr != scard.SCARD_S_SUCCESS:
                    self._set(False, f"PC/SC service unavailable (0x{hr & 0xFFFFFFFF:08X})")
                    drop_all()
                    self._stop.wait(self._retry_s)
                    continue
                ctx = new_ctx
            hr, names = scard.SCardListReaders(ctx, [])
            if hr == scard.SCARD_E_NO_READERS_AVAILABLE:
                names = []
            elif hr != scard.SCARD_S_SUCCESS:
                # pcscd went away (NO_SERVICE / SERVICE_STOPPED...): the context is dead.
                self._set(False, f"PC/SC service lost (0x{hr & 0xFFFFFFFF:08X})")
                release()
                drop_all()
                self._stop.wait(self._retry_s)
                continue
            names = [n for n in names if not self.reader_filter or self.reader_filter in n]
            if not names:
                self._set(
                    False,
                    f"no reader matching {self.reader_filter!r}"
                    if self.reader_filter
                    else "no reader connected",
                )
                drop_all()
                self._stop.wait(self._retry_s)
                continue
            self._set(True, "")
            for gone in [r for r in states if r not in names]:
                states.pop(gone)
                if gone in present:
                    self._notify([], [present.pop(gone)])
            query = [(n, states.get(n, scard.SCARD_STATE_UNAWARE)) for n in names]
            hr, new_states = scard.SCardGetStatusChange(ctx, self._poll_ms, query)
            if hr == scard.SCARD_E_TIMEOUT:
                continue
            if hr != scard.SCARD_S_SUCCESS:
                self._set(False, f"PC/SC status failed (0x{hr & 0xFFFFFFFF:08X})")
                release()
                drop_all()
                self._stop.wait(self._retry_s)
                continue
            added: list[Any] = []
            removed: list[Any] = []
            for name, event_state, atr in new_states:
                states[name] = event_state & ~scard.SCARD_STATE_CHANGED
                has_card = bool(event_state & scard.SCARD_STATE_PRESENT) and not (
                    event_state & scard.SCARD_STATE_MUTE
                )
                if has_card and name not in present:
                    present[name] = Card(name, list(atr))
                    added.append(present[name])
                elif not has_card and name in present:
                    removed.append(present.pop(name))
            self.cards = list(present.values())
            self._notify(added, removed)
        release()


class PcscReader:
    """Member-card reader over PC/SC.

    ``monitor`` is injected (tests and the kiosk build one per reader); by
    default one is created for ``reader_name``. The reader is itself a
    pyscard-style observer (``update(observable, (added, removed))``).
    """

    def __init__(
        self,
        monitor: PcscCardMonitor | None = None,
        *,
        reader_name: str | None = None,
    ) -> None:
        self._owns_monitor = monitor is None
        self.monitor = monitor or PcscCardMonitor(reader_name)
        self.reader_name = reader_name
        self.garbled = 0
        self.reads = 0
        self.removals = 0
        self.card_present = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_read: OnRead | None = None

    async def start(self, on_read: OnRead) -> None:
        """Register with the monitor (starting it when we own it)."""
        try:
            import smartcard.scard  # noqa: F401  # fail here, clearly, not in the monitor thread
        except ImportError as err:
            raise ReaderUnavailable("reader = 'pcsc' needs pyscard (extra 'hardware')") from err
        self._loop = asyncio.get_running_loop()
        self._on_read = on_read
        self.monitor.start()
        # addObserver may read cards already present: keep that off the event loop.
        await asyncio.to_thread(self.monitor.addObserver, self)

    async def stop(self) -> None:
        """Unregister; stop the monitor when we own it."""
        self.monitor.deleteObserver(self)
        self._on_read = None
        if self._owns_monitor:
            await asyncio.to_thread(self.monitor.stop)

    def status(self) -> DeviceStatus:
        """``ok`` while pcscd is up and the reader is connected, else ``missing``."""
        if self.monitor.available:
            return DeviceStatus("reader", "pcsc", DeviceState.OK, "")
        return DeviceStatus("reader", "pcsc", DeviceState.MISSING, self.monitor.detail)

    # Called by the monitor thread (pyscard CardObserver signature).
    def update(self, observable: object, handlers: tuple[list[Any], list[Any]]) -> None:
        """Read each inserted card and hand good reads to the event loop."""
        added, removed = handlers
        for card in removed:
            if self._wanted(card):
                self.removals += 1
                self.card_present = False
        for card in added:
            if not self._wanted(card):
                continue
            self.card_present = True
            read = self.read_card(card)
            for _ in range(READ_ATTEMPTS - 1):
                if read is not None:
                    break
                time.sleep(READ_RETRY_S)  # the monitor's own thread: the event loop is not held
                read = self.read_card(card)
            if read is None:
                self.garbled += 1
                log.warning("pcsc: a card on %s could not be read in %d attempts", card.reader, READ_ATTEMPTS)
                continue
            self.reads += 1
            loop, on_read = self._loop, self._on_read
            if loop is not None and on_read is not None and not loop.is_closed():
                loop.call_soon_threadsafe(on_read, read)

    def _wanted(self, card: Any) -> bool:
        return not self.reader_name or self.reader_name in str(card.reader)

    def read_card(self, card: Any) -> CardRead | None:
        """UID first; if the card refuses GET DATA, the member-number file. None if garbled."""
        from smartcard.Exceptions import SmartcardException

        source = f"pcsc:{card.reader}"
        connection = card.createConnection()
        try:
            connection.connect()
            data, sw1, sw2 = connection.transmit(GET_UID)
            if (sw1, sw2) == SW_OK:
                uid = bytes(data).hex().upper()
                return CardRead(uid=uid, source=source) if is_valid_uid(uid) else None
            number = _read_member_file(connection)
            if number is None or not is_valid_member_number(number):
                return None
            return CardRead(member_number=number, source=source)
        except SmartcardException as err:
            # Card pulled mid-read, mute card, reader gone: a misread, never an app error.
            log.info("pcsc: unreadable card on %s: %s", card.reader, err)
            return None
        finally:
            with contextlib.suppress(Exception):
                connection.disconnect()
            release = getattr(connection, "release", None)
            if release is not None:
                with contextlib.suppress(Exception):
                    release()


def _transmit(connection: Any, apdu: Sequence[int]) -> tuple[list[int], int, int]:
    """Transmit handling T=0's 61xx (GET RESPONSE) and 6Cxx (wrong Le) answers."""
    data, sw1, sw2 = connection.transmit(list(apdu))
    if sw1 == 0x6C:
        data, sw1, sw2 = connection.transmit([*apdu[:4], sw2])
    while sw1 == 0x61:
        more, sw1, sw2 = connection.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
        data = list(data) + list(more)
    return list(data), sw1, sw2


def _read_member_file(connection: Any) -> str | None:
    _, sw1, sw2 = _transmit(connection, SELECT_AID)
    if (sw1, sw2) != SW_OK:
        return None
    data, sw1, sw2 = _transmit(connection, READ_MEMBER_FILE)
    if (sw1, sw2) != SW_OK:
        return None
    raw = bytes(data).rstrip(b"\x00\xff")  # files are padded to their allocated size
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None
