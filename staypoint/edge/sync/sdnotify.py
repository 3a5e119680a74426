"""A tiny, dependency-free ``sd_notify`` client (after nobodd's helper).

systemd passes a ``Type=notify`` service the path of an ``AF_UNIX`` datagram socket in
``$NOTIFY_SOCKET``; the service writes ``READY=1`` once it serves, ``WATCHDOG=1`` at least
every ``WatchdogSec`` (systemd restarts it otherwise) and ``STOPPING=1`` on the way out.
Outside systemd the variable is unset and every call is a cheap no-op returning False, so
the same code runs in tests, on a laptop and under the service manager.

Deliberately free of any Staypoint import, so any of Staypoint's services can use it; it
lives beside the sync agent, the one service that runs as Type=notify.
"""

from __future__ import annotations

import os
import socket

__all__ = ["Notifier", "notify", "ready", "status", "stopping", "watchdog_ping", "watchdog_usec"]


class Notifier:
    """Sends state strings to the socket named by ``$NOTIFY_SOCKET`` (or ``address``)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")

    @property
    def enabled(self) -> bool:
        """True when there is a socket to talk to."""
        return bool(self.address)

    def _sockaddr(self) -> str | bytes:
        # A leading "@" names a socket in Linux's abstract namespace: a NUL byte on the wire.
        if self.address.startswith("@"):
            return "\0" + self.address[1:]
        return self.address

    def notify(self, message: str) -> bool:
        """Send ``message`` (e.g. ``"READY=1"``); False when not under systemd or it failed.

        Errors are swallowed on purpose: a missing notification socket must never stop the
        service it is reporting on (systemd will notice the silence itself).
        """
        if not self.enabled:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._sockaddr())
                sock.sendall(message.encode("utf-8"))
            return True
        except OSError:
            return False

    def ready(self) -> bool:
        """``READY=1``: start-up is complete (``Type=notify`` units wait for this)."""
        return self.notify("READY=1")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutting down cleanly."""
        return self.notify("STOPPING=1")

    def watchdog_ping(self) -> bool:
        """``WATCHDOG=1``: still alive; send more often than every ``WatchdogSec``."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=...``: one line shown by ``systemctl status``."""
        return self.notify("STATUS=" + text.replace("\n", " "))


def watchdog_usec() -> int | None:
    """The watchdog period systemd asked for (``$WATCHDOG_USEC``), or None when off.

    Honours ``$WATCHDOG_PID`` as systemd's ``sd_watchdog_enabled`` does: the period is for
    that process only. Ping at half of it.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit():
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec)


def notify(message: str) -> bool:
    """Send ``message`` to ``$NOTIFY_SOCKET``."""
    return Notifier().notify(message)


def ready() -> bool:
    """``READY=1`` to ``$NOTIFY_SOCKET``."""
    return Notifier().ready()


def stopping() -> bool:
    """``STOPPING=1`` to ``$NOTIFY_SOCKET``."""
    return Notifier().stopping()


def watchdog_ping() -> bool:
    """``WATCHDOG=1`` to ``$NOTIFY_SOCKET``."""
    return Notifier().watchdog_ping()


def status(text: str) -> bool:
    """``STATUS=text`` to ``$NOTIFY_SOCKET``."""
    return Notifier().status(text)
