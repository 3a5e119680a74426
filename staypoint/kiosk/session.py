"""What the kiosk remembers between screens, and the node's health as the status bar shows it.

A :class:`Session` lives from a good PIN to the end of the guest's visit; the app drops it
(and every screen that showed its data) on "Done" or after the idle timeout, so nothing
of one guest is left for the next.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from staypoint.edge.agent_link import LinkSource
from staypoint.edge.service import MemberSummary, NodeService, PinProof
from staypoint.kiosk.hardware.printer.base import VoucherSlip
from staypoint.kiosk.hardware.status import DeviceState, DeviceStatus
from staypoint.localtime import stamp
from staypoint.loyalty.vouchers import format_code

Clock = Callable[[], datetime]


@dataclass
class Session:
    """One guest's visit: the PIN proof and the last summary read for them."""

    proof: PinProof
    summary: MemberSummary

    @property
    def member(self) -> str:
        """The member's number."""
        return self.proof.member


@dataclass(frozen=True)
class Health:
    """Head-office link and device health, as of ``checked_at``."""

    online: bool
    staleness_s: int | None
    outbox_depth: int
    devices: tuple[DeviceStatus, ...] = ()
    link_problem: str = ""  # why the agent says offline ("broker not connected"), for staff

    @property
    def trouble(self) -> list[str]:
        """One short phrase per device that is not OK ("printer out of paper")."""
        words = {
            DeviceState.PAPER_OUT: "out of paper",
            DeviceState.MISSING: "missing",
            DeviceState.OFFLINE: "offline",
        }
        return [f"{d.kind} {words.get(d.state, d.state.value)}" for d in self.devices if not d.ok]

    def printer_trouble(self) -> bool:
        """True when the printer is known to be unable to print."""
        return any(d.kind == "printer" and not d.ok for d in self.devices)


def describe_age(seconds: int | None) -> str:
    """A staleness in words a guest understands ("3 h", "5 min")."""
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def read_health(
    service: NodeService,
    statuses: Sequence[Any],
    now: datetime,
    offline_after_s: float,
    link: LinkSource | None = None,
) -> Health:
    """Blocking (SQLite, the agent's socket): call from a worker thread, or once before the first paint.

    With a ``link`` the state shown is the agent's real broker connection (connected and
    answered), so a quiet link stays online; ``staleness_s`` is then the age of the replica's
    last confirmation by head office. Without one (a kiosk configured offline-only, tests),
    the old guess from that age stands.
    """
    status = service.status(now)
    staleness = status["staleness_s"]
    problem = ""
    if link is not None:
        state = link.status()
        online, problem = state.online, state.problem
    else:
        online = staleness is not None and staleness <= offline_after_s
    devices = tuple(s.status() for s in statuses if s is not None)
    return Health(online, staleness, int(status["outbox_depth"]), devices, problem)


def write_devices_file(path: Path, devices: Sequence[DeviceStatus], at: float) -> None:
    """Leave the devices' states for the sync agent's heartbeat (``heartbeat.read_devices``).

    The devices belong to the kiosk's process and the heartbeat to the agent's; a small
    file written by temp + rename is the whole interface between them, so neither imports
    the other and a half-written file is never read.
    """
    doc = {
        "at": at,
        "devices": {
            str(d.kind): {"driver": str(d.driver), "state": str(d.state.value), "detail": d.detail}
            for d in devices
        },
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full disk must not take the kiosk down; the heartbeat says "offline"


@dataclass(frozen=True)
class PrintOutcome:
    """A voucher slip and whether it came out of the printer; the slip is kept for a reprint."""

    slip: VoucherSlip
    printed: bool
    problem: str = ""


def slip_for(
    property_name: str,
    reward_name: str,
    member_name: str,
    member_number: str,
    code: str,
    token: str,
    expires: date,
    issued_at: datetime,
    tz: tzinfo | None = None,
) -> VoucherSlip:
    """The printed slip's fields, formatted once for screen and paper alike.

    ``issued_at`` is the instant (UTC); the slip shows it in the property's zone ``tz``.
    """
    return VoucherSlip(
        property_name=property_name,
        reward_name=reward_name,
        member_name=member_name,
        member_number=member_number,
        code=format_code(code),
        qr_payload=token,
        expires=f"{expires:%d %b %Y}",
        issued_at=stamp(issued_at, tz),
    )


def sentence(text: str) -> str:
    """First letter up, the rest untouched (``str.capitalize`` would turn "UTC" into "utc")."""
    return text[:1].upper() + text[1:]
