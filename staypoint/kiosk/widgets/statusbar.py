"""The always-visible bottom line: head-office link and device trouble."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from staypoint.kiosk.session import Health, describe_age

if TYPE_CHECKING:
    from staypoint.kiosk.app import KioskApp


class StatusBar(Static):
    """Mirrors ``KioskApp.health``; every screen docks one at the bottom."""

    def on_mount(self) -> None:
        """Follow the app's health for as long as this screen lives."""
        app: KioskApp = self.app  # type: ignore[assignment]
        self.watch(app, "health", self.show, init=True)

    def show(self, health: Health | None) -> None:
        """Render the link state first (it decides what a guest may do), then device faults."""
        text = Text()
        if health is None:
            text.append(" ● checking… ", style="bold")
        elif health.online:
            text.append(" ● Online ", style="bold green")
        else:
            text.append(" ● Offline ", style="bold yellow")
            text.append(f"head office last heard {describe_age(health.staleness_s)} ago ")
        trouble = health.trouble if health else []
        self.set_class(bool(trouble), "-trouble")
        self.set_class(health is not None and not health.online, "-offline")
        for phrase in trouble:
            text.append(" ⚠ " + phrase.capitalize() + " ", style="bold red")
        self.update(text)
