"""The agent's side of the node-local socket (``staypoint.edge.agent_link`` is the other).

The kiosk and the desk's commands run in other processes than the agent; they ask it for
an online authorisation (head office places a hold) and for the link's real state. The
socket is the permission boundary, checked twice: the file is mode 0660 (owner and the
configured group), and each connection's peer credentials (``SO_PEERCRED``: the kernel's
word, not the client's) must name an allowed uid or gid. Root is not allowed unless listed:
the desk's shell commands run as the service user, and a root process can read the
replica anyway, but should not speak for the kiosk by default.

Every request is one bounded line read within a deadline; anything else (garbage, too
long, too slow, wrong types, a peer not allowed) is one counted drop (``link_*`` in the
agent's ``dropped``, so the health document carries it), one log line, and a one-line
``{"ok": false, "error"}`` when the peer is still listening. Connections are served by a
bounded number of threads; past it a connection is closed at once.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import math
import os
import socket
import stat
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staypoint.edge.agent_link import MAX_LINE, MAX_SOCKET_PATH, encode
from staypoint.edge.service import AuthorisationDenied, Hold
from staypoint.loyalty import bounds, first_pin_codes, pins

if TYPE_CHECKING:
    from staypoint.edge.sync.agent import SyncAgent

log = logging.getLogger("staypoint.sync.link")

MAX_CLIENTS = 16  # concurrent connections: a kiosk and a few desk commands need two or three
READ_TIMEOUT_S = 1.0  # a request line must arrive within this, or the connection goes
MAX_AUTH_TIMEOUT_S = 10.0  # the longest a client may ask the agent to wait for head office
MAX_FIELD = 64  # member numbers and reward codes are short; anything longer is not one
MAX_POINTS = 10**9
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class LinkError(Exception):
    """The socket cannot be served (path too long, in use by a live agent, group unknown)."""


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, as the kernel recorded at connect."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


class LinkServer:
    """Serves ``status``, ``authorise``, ``first_pin`` and ``member`` for one agent on a Unix socket
    at ``path``."""

    def __init__(
        self,
        agent: SyncAgent,
        path: Path,
        *,
        group: str | None = None,
        allowed_uids: Iterable[int] = (),
        allowed_gids: Iterable[int] = (),
        mode: int = 0o660,
    ) -> None:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise LinkError(f"{path}: a Unix socket path must be at most {MAX_SOCKET_PATH} bytes")
        self.agent = agent
        self.path = path
        self.mode = mode
        self.gid: int | None = None
        if group is not None:
            try:
                self.gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise LinkError(f"link group {group!r} does not exist") from None
        self.allowed_uids = {os.geteuid(), *allowed_uids}
        self.allowed_gids = set(allowed_gids) | ({self.gid} if self.gid is not None else set())
        self.served: Counter[str] = Counter()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind (replacing a stale socket file, never a live agent's), set permissions, serve."""
        self._clear_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind under a umask that leaves no moment where the socket is wider than its mode.
        old = os.umask(0o777 & ~self.mode)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)
        if self.gid is not None:
            os.chown(self.path, -1, self.gid)
        listener.listen(MAX_CLIENTS)
        listener.settimeout(0.2)  # so stop() is noticed
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="agent-link", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and remove the socket file (requests in flight finish on their own)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._listener is not None:
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise LinkError(f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(0.5)
            probe.connect(str(self.path))
        except OSError:
            os.unlink(self.path)  # left by an agent that died: nobody answers on it
            return
        finally:
            probe.close()
        raise LinkError(f"{self.path}: another agent is serving this socket")

    # -- serving --------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)  # e.g. out of file descriptors: do not spin
                continue
            if not self._slots.acquire(blocking=False):
                self._drop("busy", "too many connections")
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="agent-link-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                answer = self._answer(conn)
                if answer is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(encode(answer))
        except Exception:  # a bug here must cost one request, never the agent
            log.exception("agent link: request failed")
            self.agent.dropped["link_error"] += 1
        finally:
            self._slots.release()

    def _answer(self, conn: socket.socket) -> dict[str, Any] | None:
        try:
            pid, uid, gid = peer_credentials(conn)
        except OSError:
            return self._refuse("peer", "no peer credentials")
        if uid not in self.allowed_uids and gid not in self.allowed_gids:
            return self._refuse("not_allowed", f"uid {uid} gid {gid} (pid {pid}) may not use the agent")
        line = self._read_line(conn)
        if line is None:
            return None  # already counted; the peer is gone or too slow
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, ValueError):
            return self._refuse("malformed", "not JSON")
        if not isinstance(request, dict):
            return self._refuse("wrong_type", "a request is a JSON object")
        op = request.get("op")
        if op == "status":
            self.served["status"] += 1
            return {"ok": True, **self.agent.link_state()}
        if op == "authorise":
            return self._authorise(request)
        if op == "first_pin":
            return self._first_pin(request)
        if op == "member":
            return self._member(request)
        return self._refuse("unknown_op", "op must be 'status', 'authorise', 'first_pin' or 'member'")

    def _read_line(self, conn: socket.socket) -> bytes | None:
        deadline = time.monotonic() + READ_TIMEOUT_S
        buf = b""
        while b"\n" not in buf:
            if len(buf) >= MAX_LINE:
                self._refuse("oversized", f"a request line is at most {MAX_LINE} bytes")
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                self._refuse("slow", "no request line in time")
                return None
            conn.settimeout(left)
            try:
                chunk = conn.recv(MAX_LINE)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                self._refuse("short", "the connection closed before a full line")
                return None
            buf += chunk
        line, _ = buf.split(b"\n", 1)
        if len(line) >= MAX_LINE:
            self._refuse("oversized", f"a request line is at most {MAX_LINE} bytes")
            return None
        return line

    def _authorise(self, request: dict[str, Any]) -> dict[str, Any]:
        member, reward, points, timeout = (request.get(k) for k in ("member", "reward", "points", "timeout"))
        kind = request.get("kind", "points")
        if kind == "value":
            return self._authorise_value(member, request.get("amount"), timeout)
        asked = _member_and_timeout(member, timeout)
        if (
            kind != "points"
            or asked is None
            or not isinstance(reward, str)
            or not 0 < len(reward) <= MAX_FIELD
            or isinstance(points, bool)
            or not isinstance(points, int)
            or not 0 < points <= MAX_POINTS
        ):
            return self._refuse(
                "wrong_type", "authorise needs member, reward, points > 0 and 0 < timeout <= 10"
            )
        self.served["authorise"] += 1
        number, wait = asked
        return self._ask(lambda: self.agent.request_authorisation(number, points, reward, wait))

    def _ask(self, call: Callable[[], Hold | None]) -> dict[str, Any]:
        """Head office's answer to one authorisation, counted: a hold, a refusal or none."""
        try:
            hold = call()
        except AuthorisationDenied as exc:
            self.served["denied"] += 1
            return {"ok": False, "denied": str(exc)}
        if hold is None:
            self.served["no_answer"] += 1
        return {"ok": True, "hold": hold.id if hold else None}

    def _authorise_value(self, member: Any, amount: Any, timeout: Any) -> dict[str, Any]:
        """A stored-value payment: ``amount`` a decimal string within the programme's bounds."""
        try:
            bound = self.agent.service.program.bounds.money_per_event
            value = bounds.money(amount, "amount", bound) if isinstance(amount, str) else None
        except bounds.BoundError:
            value = None
        asked = _member_and_timeout(member, timeout)
        if value is None or asked is None:
            return self._refuse(
                "wrong_type", "authorise (value) needs member, an amount within bounds and 0 < timeout <= 10"
            )
        self.served["authorise_value"] += 1
        number, wait = asked
        return self._ask(lambda: self.agent.request_value_authorisation(number, value, wait))

    def _first_pin(self, request: dict[str, Any]) -> dict[str, Any]:
        """An imported member's first PIN: a well-formed code and a standard PIN hash only
        (neither is ever logged: a refusal names the field, never its value)."""
        code, pin_hash = request.get("code"), request.get("pin_hash")
        asked = _member_and_timeout(request.get("member"), request.get("timeout"))
        try:
            typed = first_pin_codes.parse(code) if isinstance(code, str) else None
        except first_pin_codes.CodeFormatError:
            typed = None
        if (
            asked is None
            or typed is None
            or not isinstance(pin_hash, str)
            or not pins.is_standard_hash(pin_hash)
        ):
            return self._refuse(
                "wrong_type", "first_pin needs member, a first-use code, a PIN hash and 0 < timeout <= 10"
            )
        self.served["first_pin"] += 1
        number, wait = asked
        answer = self.agent.request_first_pin(number, typed, pin_hash, wait)
        if answer is None:
            self.served["no_answer"] += 1
            return {"ok": True, "set": None}
        if answer.ok:
            return {"ok": True, "set": True}
        self.served["denied"] += 1
        return {"ok": False, "denied": answer.reason, "code": answer.code}

    def _member(self, request: dict[str, Any]) -> dict[str, Any]:
        """A member this partial replica does not hold, fetched by card hash or by number."""
        card, number = request.get("card_hash"), request.get("member")
        by_card = isinstance(card, str) and 0 < len(card) <= 128 and number is None
        by_number = card is None and isinstance(number, str)
        asked = _member_and_timeout(number if by_number else "card", request.get("timeout"))
        if asked is None or not (by_card or by_number):
            return self._refuse(
                "wrong_type", "member needs a card hash or a member number and 0 < timeout <= 10"
            )
        self.served["member"] += 1
        found = self.agent.request_member(
            card if by_card else None, asked[0] if by_number else None, asked[1]
        )
        if found is None:
            self.served["no_answer"] += 1
        return {"ok": True, "found": found}

    def _refuse(self, reason: str, detail: str) -> dict[str, Any]:
        self._drop(reason, detail)
        return {"ok": False, "error": detail}

    def _drop(self, reason: str, detail: str) -> None:
        with self._log_lock:
            self.agent.dropped[f"link_{reason}"] += 1
            n = self.agent.dropped[f"link_{reason}"]
        if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th...: a flood must not fill the journal
            log.warning("agent link: refused (%s): %s [%d so far]", reason, detail, n)


def _member_and_timeout(member: Any, timeout: Any) -> tuple[str, float] | None:
    """The member number and timeout of an authorisation request, if they are ones it may carry."""
    if (
        isinstance(member, str)
        and 0 < len(member) <= MAX_FIELD
        and not isinstance(timeout, bool)
        and isinstance(timeout, int | float)
        and math.isfinite(timeout)
        and 0 < timeout <= MAX_AUTH_TIMEOUT_S
    ):
        return member, float(timeout)
    return None
