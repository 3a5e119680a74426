"""The lobby kiosk: a Textual touchscreen app over the node's service API and its devices.

Built by :func:`make_app`, which tests, the benchmark, ``staypoint kiosk`` and
``staypoint demo`` all share. Time comes from an injected clock; every blocking call
(scrypt, SQLite, the printer) runs on the app's service thread (one long-lived thread,
:data:`SERVICE_THREADS`, not a new thread per call); devices come in through the
Protocols of :mod:`staypoint.kiosk.hardware`.

Why one long-lived thread: a PIN check is scrypt with N=2**14, r=8, i.e. a 16 MiB scratch
buffer. glibc serves a thread's mallocs from one of up to 8×cores arenas and, once a
16 MiB block has been freed, keeps later ones of that size in the arena instead of
returning them to the OS. A new thread per call spreads PIN checks over ever more arenas,
each keeping its 16 MiB: resident memory grew by about 48 MB over 1,000 guests. With one
long-lived thread it is one 16 MiB buffer, reached on the first PIN check and reused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from textual import events, work
from textual.app import App
from textual.message import Message
from textual.reactive import var

from staypoint.edge.agent_link import LinkSource
from staypoint.edge.replica import MemberRow
from staypoint.edge.service import MemberSummary, NodeService, PinProof, Redemption
from staypoint.kiosk.hardware.errors import DeviceError
from staypoint.kiosk.hardware.pinpad.base import PinPad
from staypoint.kiosk.hardware.printer.base import Printer, VoucherSlip
from staypoint.kiosk.hardware.reader.base import CardRead, CardReader
from staypoint.kiosk.hardware.status import DeviceStatus
from staypoint.kiosk.screens.attract import AttractScreen
from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.screens.dashboard import DashboardScreen
from staypoint.kiosk.screens.first_pin import FirstPinScreen
from staypoint.kiosk.screens.pin import PinScreen
from staypoint.kiosk.session import (
    Clock,
    Health,
    PrintOutcome,
    Session,
    read_health,
    slip_for,
    write_devices_file,
)
from staypoint.kiosk.widgets.democards import DemoCard
from staypoint.localtime import zone
from staypoint.loyalty.events import parse_iso


@dataclass
class Devices:
    """The kiosk's devices; ``pinpad`` None means the on-screen keypad takes PINs."""

    reader: CardReader | None = None
    pinpad: PinPad | None = None
    printer: Printer | None = None

    def all(self) -> list[Any]:
        """The fitted devices, for health checks."""
        return [d for d in (self.reader, self.pinpad, self.printer) if d is not None]


class CardTapped(Message):
    """A card reached the reader (posted on the loop the reader runs on)."""

    def __init__(self, read: CardRead) -> None:
        super().__init__()
        self.read = read


class HealthRead(Message):
    """Fresh link and device health from a worker thread."""

    def __init__(self, health: Health) -> None:
        super().__init__()
        self.health = health


#: Threads that run the blocking calls. One: the replica serialises its SQL behind one lock
#: anyway, and a second thread would be started by ThreadPoolExecutor at a random moment
#: (when a call is submitted just before the first thread reports itself idle), adding its
#: own 16 MiB arena whenever that happens. A printer call holds the thread for at most its
#: driver's timeout.
SERVICE_THREADS = 1


class KioskApp(App[None], inherit_bindings=False):
    """The kiosk. No bindings at all (``inherit_bindings=False``): no ctrl+q for a guest."""

    CSS_PATH = "kiosk.tcss"
    TITLE = "Staypoint"
    ENABLE_COMMAND_PALETTE = False
    AUTO_FOCUS = None
    ALLOW_SELECT = False

    #: Head-office link and device health; every StatusBar follows it.
    health: var[Health | None] = var(None, always_update=True)

    def __init__(
        self,
        service: NodeService,
        devices: Devices,
        clock: Clock,
        *,
        idle_timeout: float = 30.0,
        property_name: str | None = None,
        timezone: str | tzinfo | None = None,
        offline_after_s: float = 120.0,
        offers_rotate_s: float = 6.0,
        health_interval_s: float = 5.0,
        demo_cards: Sequence[DemoCard] = (),
        attract_offers: Sequence[str] = (),
        pin_length: int = 4,
        link: LinkSource | None = None,
    ) -> None:
        super().__init__()
        #: The sync agent's socket: the link state shown is its real connection state.
        self.link = link
        self.service = service
        self.devices = devices
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.property_name = property_name or service.property
        #: The property's zone ([node] timezone): times are kept in UTC and shown in it.
        self.tz: tzinfo = timezone if isinstance(timezone, tzinfo) else zone(timezone)
        self.offline_after_s = offline_after_s
        self.offers_rotate_s = offers_rotate_s
        self.health_interval_s = health_interval_s
        self.demo_cards = tuple(demo_cards)
        self.attract_offers = tuple(attract_offers)
        self.pin_length = pin_length
        self.session: Session | None = None
        #: When the kiosk was last touched, on the injected clock (tests move it on).
        self._last_touch = clock()
        #: Every blocking call (service, printer, health, housekeeping) runs here; see the module's docstring.
        self.service_pool = ThreadPoolExecutor(SERVICE_THREADS, thread_name_prefix="kiosk-service")
        # The three screens every guest passes through are built once, at start-up, and
        # reused: composing them per tap cost more than everything else on the way to the
        # dashboard. They are blanked when the guest leaves (see end_session).
        self.attract_screen = AttractScreen()
        self.pin_screen = PinScreen()
        self.dashboard_screen = DashboardScreen()

    # -- devices, as the screens see them ----------------------------------------------------

    @property
    def pinpad(self) -> PinPad | None:
        """The PIN pad, when one is fitted."""
        return self.devices.pinpad

    def now(self) -> datetime:
        """The injected clock's time (aware UTC)."""
        return self.clock()

    # -- lifecycle --------------------------------------------------------------------------

    async def on_mount(self) -> None:
        """Health first (the status bar's first paint is real), then the screens, the reader, attract."""
        self.health = read_health(
            self.service, self.devices.all(), self.now(), self.offline_after_s, self.link
        )
        self.install_screen(self.attract_screen, "attract")
        self.install_screen(self.pin_screen, "pin")
        self.install_screen(self.dashboard_screen, "dashboard")
        # Compose the PIN screen and the dashboard now (empty), not on the first guest's tap.
        with self.batch_update():
            await self.push_screen(self.pin_screen)
            await self.switch_screen(self.dashboard_screen)
            await self.switch_screen(self.attract_screen)
        if self.devices.reader is not None:
            try:
                await self.devices.reader.start(self._on_card)
            except DeviceError as exc:  # the status bar shows the reader as missing
                self.log.warning(f"card reader: {exc}")
        if self.health_interval_s > 0:
            self.set_interval(self.health_interval_s, self.check_health)
        self.set_interval(max(0.05, min(1.0, self.idle_timeout / 4)), self._check_idle)

    async def on_unmount(self) -> None:
        """Release the devices; let a call still running finish before the service is closed."""
        if self.devices.reader is not None:
            await self.devices.reader.stop()
        if self.devices.pinpad is not None:
            self.devices.pinpad.close()
        self.service_pool.shutdown(wait=True, cancel_futures=True)
        # After the last print job: an ESC/POS printer left open is flushed by python-escpos at
        # garbage collection, when its device may be gone (an I/O error at exit).
        close_printer = getattr(self.devices.printer, "close", None)
        if callable(close_printer):
            close_printer()

    async def blocking(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on a service thread and await its result."""
        return await asyncio.get_running_loop().run_in_executor(self.service_pool, fn, *args)

    # -- touches and the idle timeout --------------------------------------------------------

    def touched(self) -> None:
        """Someone is using the kiosk: restart the idle countdown."""
        self._last_touch = self.clock()

    async def on_event(self, event: events.Event) -> None:
        """A key or a touch anywhere counts as activity (screens also report MouseDown)."""
        if isinstance(event, events.Key | events.MouseDown):
            self.touched()
        await super().on_event(event)

    def _check_idle(self) -> None:
        idle_s = (self.clock() - self._last_touch).total_seconds()
        # A clock stepped back (NTP on a board without a real-time clock) counts as idle:
        # a guest's data never outlives a step, whichever way it goes.
        if 0 <= idle_s < self.idle_timeout:
            return
        if self.session is not None or not isinstance(self.screen, AttractScreen):
            self.end_session()

    def end_session(self) -> None:
        """Forget the guest: the session goes, the reused screens are blanked, the rest popped."""
        self.session = None
        self.pin_screen.forget()
        self.dashboard_screen.forget()
        while len(self.screen_stack) > 1 and not isinstance(self.screen, AttractScreen):
            self.pop_screen()
        if isinstance(self.screen, AttractScreen):
            self.screen.say("")
        self.touched()
        self.idle_maintenance()

    def ask_pin(self, member: MemberRow) -> None:
        """A member identified: the PIN screen, filled for them, replaces identify (if open).

        A member with no PIN yet (imported) gets "Set your PIN" instead (screens/first_pin.py)."""
        if not member.pin_hash:
            self._offer_first_pin(member)
            return
        pin = self.pin_screen
        pin.prepare(member)
        if self.screen is pin:
            return
        if isinstance(self.screen, AttractScreen):
            self.push_screen(pin)
        else:  # the identify screen goes: it held the typed number
            self.switch_screen(pin)
        self.touched()

    def _offer_first_pin(self, member: MemberRow) -> None:
        self.pin_screen.forget()
        screen = FirstPinScreen(member)
        if isinstance(self.screen, AttractScreen):
            self.push_screen(screen)
        else:  # identify (it held the typed number) or the PIN screen goes
            self.switch_screen(screen)
        self.touched()

    def cancel_pin(self) -> None:
        """Cancel on the PIN screen (or on the PIN pad): back to attract, the name blanked."""
        self.pin_screen.forget()
        if self.screen is self.pin_screen:
            self.pop_screen()

    def start_session(self, proof: PinProof, summary: MemberSummary) -> None:
        """A good PIN: the dashboard, filled before it is shown, takes the PIN screen's place."""
        self.session = Session(proof, summary)
        dashboard = self.dashboard_screen
        dashboard.show(summary)
        stack = self.screen_stack
        if self.screen is self.pin_screen and isinstance(stack[-2], AttractScreen):
            self.switch_screen(dashboard)  # one screen change, no attract repaint in between
        else:
            while len(self.screen_stack) > 1 and not isinstance(self.screen, AttractScreen):
                self.pop_screen()
            self.push_screen(dashboard)
        self.pin_screen.forget()
        self.touched()

    @work(exclusive=True, exit_on_error=False, group="maintenance")
    async def idle_maintenance(self) -> None:
        """Back on attract: the node's housekeeping (a passive WAL checkpoint), off the UI thread.

        It runs when a guest has just left, so it never lands on a guest's own operation.
        """
        try:
            await self.blocking(self.service.maintenance)
        except Exception as exc:  # housekeeping must never take the kiosk down
            self.log.warning(f"maintenance: {exc}")

    # -- cards ---------------------------------------------------------------------------------

    def _on_card(self, read: CardRead) -> None:
        # Readers call back on the loop; a message keeps the handling in order with touches.
        self.post_message(CardTapped(read))

    def on_card_tapped(self, message: CardTapped) -> None:
        """Give the tap to the screen on top, if it wants one."""
        self.touched()
        screen = self.screen
        if isinstance(screen, KioskScreen):
            screen.card_read(message.read)

    def demo_tap(self, uid: str) -> None:
        """The demo panel's buttons: present a card to the simulated reader."""
        tap = getattr(self.devices.reader, "tap", None)
        if tap is not None:
            tap(uid=uid)
        else:  # no simulated reader: hand the read over directly
            self.post_message(CardTapped(CardRead(uid=uid, source="demo")))

    # -- health --------------------------------------------------------------------------------

    def device_statuses(self) -> list[DeviceStatus]:
        """Each fitted device's last known health (cheap, no I/O)."""
        return [d.status() for d in self.devices.all()]

    def check_health(self) -> None:
        """Periodic: read link and device health off the UI thread."""
        self._read_health_worker()

    @work(exclusive=True, exit_on_error=False, group="health")
    async def _read_health_worker(self) -> None:
        self.post_message(HealthRead(await self.blocking(self._read_health)))

    def _read_health(self) -> Health:
        health = read_health(self.service, self.devices.all(), self.now(), self.offline_after_s, self.link)
        write_devices_file(self.service.replica.path.with_name("devices.json"), health.devices, time.time())
        return health

    def on_health_read(self, message: HealthRead) -> None:
        """Publish to every status bar."""
        self.health = message.health

    # -- printing (blocking: called from worker threads) ----------------------------------------

    def print_slip(self, slip: VoucherSlip) -> PrintOutcome:
        """Print one slip; a fault is reported, never raised, and the slip is kept."""
        printer = self.devices.printer
        if printer is None:
            return PrintOutcome(slip, False, "this kiosk has no printer")
        try:
            printer.print_voucher(slip)
            outcome = PrintOutcome(slip, True)
        except DeviceError as exc:
            outcome = PrintOutcome(slip, False, _printer_problem(exc))
        # The status bar should show the fault (or its end) now, not at the next poll.
        self.post_message(HealthRead(self._read_health()))
        return outcome

    def print_redemption(self, red: Redemption, member_name: str, now: datetime) -> PrintOutcome:
        """The voucher of a fresh redemption."""
        slip = slip_for(
            self.property_name,
            red.reward_name,
            member_name,
            red.member,
            red.voucher,
            red.token,
            red.expires,
            now,
            self.tz,
        )
        return self.print_slip(slip)

    def reprint_last_voucher(self) -> PrintOutcome | None:
        """Staff: the node's newest voucher again (None when there is none)."""
        rec = self.service.last_voucher()
        if rec is None:
            return None
        member = self.service.resolve_member(str(rec["member"]))
        reward = self.service.program.reward(str(rec["reward"]))
        slip = slip_for(
            self.property_name,
            reward.name if reward else str(rec["reward"]),
            member.name,
            member.number,
            str(rec["code"]),
            str(rec["token"]),
            datetime.fromisoformat(str(rec["expires"])).date(),
            parse_iso(str(rec["issued_at"])),
            self.tz,
        )
        return self.print_slip(slip)

    def print_test_page(self) -> str:
        """Technician: a self-test page."""
        if self.devices.printer is None:
            return "no printer fitted"
        try:
            self.devices.printer.print_test_page()
        except DeviceError as exc:
            return f"test page failed: {_printer_problem(exc)}"
        finally:
            self.post_message(HealthRead(self._read_health()))
        return "test page printed"


def _printer_problem(exc: DeviceError) -> str:
    from staypoint.kiosk.hardware.errors import PaperOut

    return "the printer is out of paper" if isinstance(exc, PaperOut) else "the printer is not answering"


def make_app(
    service: NodeService,
    devices: Devices,
    clock: Clock,
    idle_timeout: float = 30.0,
    **options: Any,
) -> KioskApp:
    """Build the kiosk app. Reads the programme once (offers strip, PIN length) before the loop starts."""
    program = service.program
    options.setdefault("attract_offers", [o.name for o in program.offers])
    options.setdefault("pin_length", program.pin.length)
    return KioskApp(service, devices, clock, idle_timeout=idle_timeout, **options)


def demo_cards_for(service: NodeService, indexes: Sequence[int] = (0, 1, 5, 6)) -> list[DemoCard]:
    """A few seeded members' cards (different tiers and balances) and the demo's staff cards."""
    from staypoint.edge.seed import demo_card_uid

    cards = []
    for i in indexes:
        uid = demo_card_uid(i)
        try:
            row = service.member_by_card(uid)
        except Exception:  # a replica seeded with fewer members: skip that card
            continue
        cards.append(DemoCard(f"{row.name} · {row.tier.title()}", uid))
    cards.append(DemoCard("Front desk (staff)", "5AFF0001"))
    cards.append(DemoCard("Technician (staff)", "5AFF0002"))
    cards.append(DemoCard("Unknown card", "04DEADBEEF0001"))
    return cards


def run_demo_kiosk(db_path: Path, now: datetime) -> None:
    """``staypoint demo``: the kiosk on simulated devices with a "Tap a demo card" panel."""
    from staypoint.kiosk.hardware.printer.sim import SimPrinter
    from staypoint.kiosk.hardware.reader.sim import SimReader

    service = NodeService.open(db_path)
    start, t0 = now, time.monotonic()

    def clock() -> datetime:
        # The demo's time starts at the moment it was prepared and runs at real speed.
        return start + timedelta(seconds=time.monotonic() - t0)

    # No simulated PIN pad: it would type a fixed PIN by itself; the newcomer types on screen.
    devices = Devices(reader=SimReader(), pinpad=None, printer=SimPrinter())
    try:
        make_app(service, devices, clock, demo_cards=demo_cards_for(service)).run()
    finally:
        service.close()


def run_kiosk(config_path: Path) -> None:
    """``staypoint kiosk --config node.toml``: the real devices named in the config."""
    app = build_kiosk(config_path)
    try:
        app.run()
    finally:
        app.service.close()


def build_kiosk(config_path: Path) -> KioskApp:
    """The app ``staypoint kiosk --config`` runs, not yet running (tests drive it headless).

    Its service is open: close ``app.service`` after the app ends.
    """
    from datetime import UTC

    from staypoint.kiosk.config import load_config
    from staypoint.kiosk.hardware.factory import make_pinpad, make_printer, make_reader

    cfg = load_config(config_path)
    try:
        devices = Devices(make_reader(cfg.hardware), make_pinpad(cfg.hardware), make_printer(cfg.hardware))
    except ValueError as exc:
        from staypoint.kiosk.config import ConfigError

        raise ConfigError(f"{config_path}: {exc}") from None
    # The kiosk holds no MQTT connection: it asks head office through the sync agent's
    # socket (an authorisation with a hold, and the link's real state), unless configured
    # offline-only. With no agent answering, the offline limits decide, as before.
    link = cfg.link.link() if cfg.link is not None else None
    service = NodeService.open(cfg.db, keys_dir=cfg.keys_dir, authoriser=link)
    try:
        return make_app(
            service,
            devices,
            lambda: datetime.now(UTC),
            cfg.idle_timeout_s,
            property_name=cfg.property_name,
            timezone=cfg.timezone,
            offline_after_s=cfg.offline_after_s,
            offers_rotate_s=cfg.offers_rotate_s,
            link=link,
        )
    except BaseException:
        service.close()
        raise
