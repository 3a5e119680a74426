"""What every kiosk screen shares: the status bar, touch tracking and service calls.

Service calls block (scrypt, SQLite), so :meth:`KioskScreen.call` runs them on the app's
service threads (:attr:`KioskApp.service_pool`) and hands the result back to a callback
on the UI thread through a message: the screen's widgets are only ever touched from the
event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen

from staypoint.kiosk.widgets.democards import DemoCards
from staypoint.kiosk.widgets.statusbar import StatusBar

if TYPE_CHECKING:
    from staypoint.edge.service import NodeService
    from staypoint.kiosk.app import KioskApp
    from staypoint.kiosk.hardware.reader.base import CardRead

OnOk = Callable[[Any], None]
OnError = Callable[[Exception], None]


class ServiceDone(Message):
    """A worker's result (or error) on its way back to the UI thread."""

    def __init__(
        self, result: Any, error: Exception | None, on_ok: OnOk, on_error: OnError, generation: int
    ) -> None:
        super().__init__()
        self.result = result
        self.error = error
        self.on_ok = on_ok
        self.on_error = on_error
        self.generation = generation


class KioskScreen(Screen[Any]):
    """Base of every full kiosk screen."""

    #: Screens that show a member's data; the idle timeout removes them all.
    MEMBER_DATA: ClassVar[bool] = True
    #: Screens where the demo's card panel is useful (a card can be tapped there).
    SHOW_DEMO_CARDS: ClassVar[bool] = False
    #: Built once by the app and reused for every guest (blanked when the guest leaves).
    REUSED: ClassVar[bool] = False

    #: Bumped by :meth:`forget_pending`: answers of calls made before it are dropped.
    _generation: int = 0

    @property
    def kiosk(self) -> KioskApp:
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    @property
    def service(self) -> NodeService:
        """The node's service API (blocking: use :meth:`call`)."""
        return self.kiosk.service

    def compose(self) -> ComposeResult:
        with Vertical(id="body"):
            yield from self.compose_body()
        if self.SHOW_DEMO_CARDS and self.kiosk.demo_cards:
            yield DemoCards(self.kiosk.demo_cards)
        yield StatusBar(id="status-bar")

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets."""
        yield from ()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        """Any touch keeps the session alive."""
        self.kiosk.touched()

    def card_read(self, read: CardRead) -> bool:
        """A card was presented while this screen is on top; True when it was used."""
        return False

    # -- blocking work ---------------------------------------------------------------------

    def call(self, fn: Callable[[], Any], on_ok: OnOk, on_error: OnError | None = None) -> None:
        """Run ``fn`` in a thread; ``on_ok(result)`` or ``on_error(exc)`` then runs on the UI thread."""
        self._run_blocking(fn, on_ok, on_error or self.show_error, self._generation)

    def forget_pending(self) -> None:
        """Drop every answer still on its way: a reused screen's next guest must never see them."""
        self._generation += 1
        self.workers.cancel_group(self, "service")

    @work(exclusive=True, exit_on_error=False, group="service")
    async def _run_blocking(
        self, fn: Callable[[], Any], on_ok: OnOk, on_error: OnError, generation: int
    ) -> None:
        # A newer call replacing this one (exclusive) cancels this task: the answer is dropped.
        try:
            result, error = await self.kiosk.blocking(fn), None
        except Exception as exc:  # NodeError, DeviceError, or a bug: shown, never a crash
            result, error = None, exc
        self.post_message(ServiceDone(result, error, on_ok, on_error, generation))

    def on_service_done(self, message: ServiceDone) -> None:
        """Back on the UI thread: hand the answer to its callback (unless the guest has gone since)."""
        message.stop()
        if message.generation != self._generation:
            return
        if message.error is None:
            message.on_ok(message.result)
        else:
            message.on_error(message.error)

    def show_error(self, error: Exception) -> None:
        """Default: a toast with the service's own one-line message."""
        self.notify(str(error), severity="error", timeout=6)
