"""An imported member's first PIN, set at the kiosk with head office's one-time code.

A member imported from a property system has no PIN; head office mailed them a one-time code
(``staypoint/central/first_pin.py``). Only head office can check that code, so setting the
first PIN is always online: the node checks what it can (the member has no PIN, the code's
shape, the PIN's format under the programme's policy), hashes the PIN here exactly as a node
hashes any PIN (:func:`staypoint.loyalty.pins.hash_pin`: scrypt, a fresh salt), and asks head
office through its :class:`FirstPinChannel` (on a board the sync agent's socket,
``edge/agent_link.py``) with the member number, the code and that hash. The PIN itself never
leaves the node. Head office checks the code and books a ``pin.set`` event; the PIN then
reaches every node, this one included, with the member's record (the normal fan-out): nothing
is written here. No channel, no answer in time, or the link down: :class:`FirstPinOffline`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from staypoint.edge.operations.core import NodeCore, require_utc
from staypoint.edge.operations.errors import BadInput, NodeError
from staypoint.loyalty import first_pin_codes, pins

#: The longest reason or code read back from head office (anything longer is cut).
MAX_REASON = 200
MAX_CODE = 32


@dataclass(frozen=True)
class FirstPinAnswer:
    """Head office's answer: the PIN was set, or why not (``reason`` one line, ``code`` stable)."""

    ok: bool
    reason: str = ""
    code: str = ""

    @classmethod
    def refused(cls, reason: object, code: object) -> FirstPinAnswer:
        """A refusal as read off the wire: bounded, and never empty."""
        text = reason[:MAX_REASON] if isinstance(reason, str) and reason else "head office said no"
        return cls(False, text, code[:MAX_CODE] if isinstance(code, str) else "refused")


@runtime_checkable
class FirstPinChannel(Protocol):
    """How a node asks head office to set a first PIN. None: no answer (offline, or too slow)."""

    def ask_first_pin(self, member: str, code: str, pin_hash: str) -> FirstPinAnswer | None: ...


class FirstPinRefused(NodeError):
    """Head office answered no: a wrong code (tries left), used, expired, void, none issued."""

    code = "first_pin_refused"

    def __init__(self, answer: FirstPinAnswer) -> None:
        super().__init__(answer.reason)
        self.reason_code = answer.code


class FirstPinOffline(NodeError):
    """Head office could not be asked, or did not answer in time."""

    code = "first_pin_offline"


OFFLINE = "Setting a first PIN needs head office; please ask at the desk"


@dataclass(frozen=True)
class FirstPinSet:
    """Head office set the PIN; ``pin_hash`` is the form it sends down to every node."""

    member: str
    pin_hash: str


class FirstPins:
    """The node's side of a first PIN: checks, the hash, one question to head office."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core

    def _channel(self) -> FirstPinChannel | None:
        channel = self.core.authoriser
        return channel if isinstance(channel, FirstPinChannel) else None

    def can_ask_first_pin(self) -> bool:
        """True when this node has a way to head office at all (not an offline-only kiosk)."""
        return self._channel() is not None

    def set_first_pin(self, member: str, code: str, pin: str, now: datetime) -> FirstPinSet:
        """Ask head office to set ``member``'s first PIN with their one-time ``code``.

        Blocking (scrypt, then up to the link's timeout): call from a worker thread. Raises
        BadInput (a PIN already, a code or PIN of the wrong shape: head office is not asked, so
        no try is spent), FirstPinRefused (head office's no) or FirstPinOffline."""
        require_utc(now)
        row = self.core.resolve_member(member)
        if row.pin_hash:
            raise BadInput("this membership has a PIN already: sign in with it")
        try:
            typed = first_pin_codes.parse(code)
        except first_pin_codes.CodeFormatError as exc:
            raise BadInput(str(exc)) from None
        try:
            pins.check_format(pin, self.core.program.pin)
        except pins.PinFormatError as exc:
            raise BadInput(str(exc)) from None
        channel = self._channel()
        if channel is None:
            raise FirstPinOffline(OFFLINE)
        pin_hash = pins.hash_pin(pin, os.urandom(16))  # slow (scrypt); the PIN stays here
        answer = channel.ask_first_pin(row.number, typed, pin_hash)
        if answer is None:
            raise FirstPinOffline(OFFLINE)
        if not answer.ok:
            raise FirstPinRefused(answer)
        return FirstPinSet(row.number, pin_hash)
