"""The kiosk's and the desk's line to the node's sync agent: a local Unix socket.

On a board the kiosk and the sync agent are separate services, and only the agent holds
the MQTT connection. The kiosk (and ``staypoint redeem`` / ``value spend`` given a node
config) asks head office through the agent for an online authorisation with a hold, and
asks the agent for the link's real state, over a socket the agent serves
(``staypoint.edge.sync.link``). This side knows nothing of MQTT: it speaks one JSON line
per request and reads one JSON line back, within a short deadline. Anything that goes
wrong (no agent, a refusal at the socket, a slow answer, garbage) is "no answer": the
offline limits decide, exactly as with :class:`~staypoint.edge.service.OfflineOnly`.

Wire format (one request per connection, each line at most :data:`MAX_LINE` bytes)::

    -> {"op": "status"}
    <- {"ok": true, "online": bool, "connected": bool, "answered_s": float|null,
        "known_current_at": iso|null, "session": int}
    -> {"op": "authorise", "member": str, "points": int, "reward": str, "timeout": float}
    -> {"op": "authorise", "kind": "value", "member": str, "amount": str, "timeout": float}
       (a stored-value payment: ``amount`` a decimal string such as "120.50")
    <- {"ok": true, "hold": str|null}            (null: head office did not answer in time)
    <- {"ok": false, "denied": str}              (head office said no, with its reason)
    <- {"ok": false, "error": str}               (the request was refused: bad input, not allowed)
    -> {"op": "first_pin", "member": str, "code": str, "pin_hash": str, "timeout": float}
       (an imported member's first PIN: ``code`` head office's one-time code, normalised;
       ``pin_hash`` the new PIN as ``loyalty.pins.hash_pin`` stores it: the PIN stays here)
    <- {"ok": true, "set": true}                 (head office set it: ``pin.set`` is on its way)
    <- {"ok": true, "set": null}                 (no answer in time, or the link is down)
    <- {"ok": false, "denied": str, "code": str} (head office said no: wrong code, used, ...)
    -> {"op": "member", "card_hash": str, "timeout": float}   or
    -> {"op": "member", "member": str, "timeout": float}
       (a partial replica: a member it does not hold, fetched from head office into the replica)
    <- {"ok": true, "found": true}               (in the replica now: read it again)
    <- {"ok": true, "found": false}              (head office has no such member)
    <- {"ok": true, "found": null}               (no answer in time, or the link is down)
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from staypoint.edge import nodeconfig
from staypoint.edge.nodeconfig import NodeToml
from staypoint.edge.service import AuthorisationDenied, FirstPinAnswer, Hold

#: The longest request or answer line, newline included: requests are a few hundred bytes.
MAX_LINE = 4096
#: AF_UNIX paths are limited to 108 bytes (107 and a NUL) by the kernel's sockaddr_un.
MAX_SOCKET_PATH = 107
#: How long the agent may take past the authorisation's own timeout to say "no answer".
REPLY_MARGIN_S = 0.5
#: The least a first PIN waits for head office (a code checked and an event booked, not a hold).
FIRST_PIN_TIMEOUT_S = 5.0
#: The longest the agent waits on a client's behalf (``edge.sync.link.MAX_AUTH_TIMEOUT_S``).
MAX_WAIT_S = 10.0


def default_socket_path(db: Path) -> Path:
    """Where the agent serves its socket when node.toml names none: beside the replica."""
    return db.with_name(db.name + ".agent.sock")


#: What ``[kiosk] authoriser`` may name: head office through the agent, or never online.
AUTHORISERS = nodeconfig.AUTHORISERS


@dataclass(frozen=True)
class LinkSettings:
    """The agent link as node.toml sets it, for the kiosk and the desk's commands."""

    authoriser: str  # "agent" or "offline"
    socket: Path
    timeout: float  # [sync] auth_timeout: the agent's own wait for head office

    def link(self) -> AgentLink | None:
        """The authoriser and link-state source, or None when configured offline-only."""
        return AgentLink(self.socket, timeout=self.timeout) if self.authoriser == "agent" else None


def link_settings(config: NodeToml, db: Path) -> LinkSettings:
    """``[kiosk] authoriser``, ``[sync] link_socket`` and ``[sync] auth_timeout`` of a checked
    node.toml (:mod:`staypoint.edge.nodeconfig`); ``db`` is its replica."""
    socket_path = config.sync.link_socket or default_socket_path(db)
    return LinkSettings(config.kiosk.authoriser, socket_path, config.sync.auth_timeout)


def encode(value: dict[str, Any]) -> bytes:
    """One line of the wire format."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True)
class LinkStatus:
    """The head-office link as the agent sees it (or why it could not be asked)."""

    online: bool
    connected: bool
    answered_s: float | None = None  # since the broker last answered (connect or echo)
    known_current_at: str | None = None  # the replica was last known to be head office's
    problem: str = ""  # why offline, for staff: "no sync agent", "broker not connected"

    @classmethod
    def unreachable(cls, problem: str) -> LinkStatus:
        """The agent could not be asked: the kiosk is offline, whatever the broker says."""
        return cls(False, False, problem=problem)


class LinkSource(Protocol):
    """Where the kiosk reads the link's state (an :class:`AgentLink`, or a test's stand-in)."""

    def status(self) -> LinkStatus: ...


class AgentLink:
    """The service's ``Authoriser`` (and the link-state source) over the agent's socket."""

    def __init__(self, path: Path, *, timeout: float = 2.0, status_timeout: float = 0.5) -> None:
        self.path = path
        self.timeout = timeout
        self.status_timeout = status_timeout

    def _ask(self, request: dict[str, Any], deadline_s: float) -> dict[str, Any] | None:
        """One request, one answer; None for anything but a well-formed answer in time."""
        deadline = time.monotonic() + deadline_s
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(deadline_s)
                sock.connect(str(self.path))
                sock.sendall(encode(request))
                buf = b""
                while b"\n" not in buf:
                    left = deadline - time.monotonic()
                    if left <= 0 or len(buf) > MAX_LINE:
                        return None
                    sock.settimeout(left)
                    chunk = sock.recv(MAX_LINE)
                    if not chunk:
                        return None
                    buf += chunk
        except OSError:  # no socket, refused, permission, timeout: all "no answer"
            return None
        try:
            answer = json.loads(buf.split(b"\n", 1)[0])
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def authorise(self, member: str, points: int, reward: str, now: datetime) -> Hold | None:
        """Ask head office through the agent; None lets the offline limits decide."""
        return self._authorise({"member": member, "points": points, "reward": reward})

    def authorise_value(self, member: str, amount: Decimal, now: datetime) -> Hold | None:
        """A hold on stored value for a payment, the same way; None: the offline limits decide."""
        return self._authorise({"kind": "value", "member": member, "amount": f"{amount:.2f}"})

    def _authorise(self, request: dict[str, Any]) -> Hold | None:
        answer = self._ask(
            {"op": "authorise", **request, "timeout": self.timeout}, self.timeout + REPLY_MARGIN_S
        )
        if answer is None:
            return None
        if answer.get("ok") is True:
            hold = answer.get("hold")
            return Hold(hold) if isinstance(hold, str) and hold else None
        denied = answer.get("denied")
        if isinstance(denied, str):
            raise AuthorisationDenied(denied or "head office declined")
        return None  # refused at the socket: judged offline, as with no agent at all

    def ask_first_pin(self, member: str, code: str, pin_hash: str) -> FirstPinAnswer | None:
        """Head office's answer to an imported member's first PIN; None: no answer (offline)."""
        wait = min(max(self.timeout, FIRST_PIN_TIMEOUT_S), MAX_WAIT_S)
        request = {"op": "first_pin", "member": member, "code": code, "pin_hash": pin_hash, "timeout": wait}
        answer = self._ask(request, wait + REPLY_MARGIN_S)
        if answer is None:
            return None
        if answer.get("ok") is True:
            return FirstPinAnswer(True) if answer.get("set") is True else None
        if "denied" in answer:
            return FirstPinAnswer.refused(answer.get("denied"), answer.get("code"))
        return None  # refused at the socket: as with no agent at all

    def fetch_member(self, card_hash: str | None, number: str | None) -> bool | None:
        """A member this partial replica does not hold, fetched into it through the agent (by
        card hash or number). True: read the replica again; False: head office has none;
        None: no answer (offline, or no agent)."""
        request: dict[str, Any] = {"op": "member", "timeout": self.timeout}
        if card_hash is not None:
            request["card_hash"] = card_hash
        else:
            request["member"] = number
        answer = self._ask(request, self.timeout + REPLY_MARGIN_S)
        if answer is None or answer.get("ok") is not True:
            return None
        found = answer.get("found")
        return found if isinstance(found, bool) else None

    def status(self) -> LinkStatus:
        """The agent's real connection state; offline when the agent cannot be asked."""
        answer = self._ask({"op": "status"}, self.status_timeout)
        if answer is None:
            return LinkStatus.unreachable("the sync agent is not answering")
        if answer.get("ok") is not True:
            error = answer.get("error")
            return LinkStatus.unreachable(str(error)[:200] if error else "the sync agent refused")
        online, connected = answer.get("online"), answer.get("connected")
        answered = answer.get("answered_s")
        current = answer.get("known_current_at")
        return LinkStatus(
            online=online is True,
            connected=connected is True,
            answered_s=float(answered)
            if isinstance(answered, int | float) and not isinstance(answered, bool)
            else None,
            known_current_at=current if isinstance(current, str) else None,
            problem=""
            if online is True
            else ("broker not answering" if connected else "broker not connected"),
        )
