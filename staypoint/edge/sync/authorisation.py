"""Online authorisation and the link's real state.

A kiosk thread asks for a hold (points for a redemption, money for a payment), or for an
imported member's first PIN to be set with head office's one-time code; the request
goes through a queue to the agent's thread, which publishes it (MQTT 5 request/response) and
matches the answer by its correlation data. The link's state is measured, not guessed: an
echo sent on the node's own topic and read back through the broker.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from staypoint.edge.service import AuthorisationDenied, FirstPinAnswer, Hold
from staypoint.edge.sync.context import AgentContext, dumps, int_field
from staypoint.loyalty.events import iso


@dataclass
class AuthCall:
    """One question to head office, waited for by the thread that asked it."""

    correlation: bytes
    payload: dict[str, Any]  # the request as head office reads it (kind points, value or first_pin)
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None


class Authorisation:
    """Holds asked of head office, and whether the broker is answering at all."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self._calls: queue.Queue[AuthCall] = queue.Queue()
        self._waiting: dict[bytes, AuthCall] = {}
        # The link's real state (monotonic times): when the broker last answered us, and the
        # echoes in flight (their numbers), so a stray message on the topic proves nothing.
        self.answered = 0.0
        self.echo_sent = 0.0
        self._echo_n = 0
        self._echo_at = 0.0
        self._echoes: deque[int] = deque(maxlen=8)
        self.echo_rtts: deque[float] = deque(maxlen=1000)
        #: Stores a fetched member's record in the replica (the agent sets it to the
        #: downstream's); True when it is there.
        self.store_member: Callable[[dict[str, Any]], bool] | None = None

    # -- the link's real state ------------------------------------------------------------------

    def on_connect(self) -> None:
        """The CONNACK is the broker's answer; echoes of the last connection prove nothing."""
        self.answered = self.echo_sent = time.monotonic()
        self._echoes.clear()

    def echo_if_due(self, now: float) -> None:
        """Send an echo every ``echo_interval``."""
        if now - self.echo_sent >= self.ctx.config.echo_interval:
            self._send_echo(now)

    def _send_echo(self, now: float) -> None:
        self.echo_sent = now
        self._echo_n += 1
        self._echoes.append(self._echo_n)
        self._echo_at = now
        self.ctx.client.publish(self.ctx.topic("echo"), dumps({"n": self._echo_n}), qos=0)

    def on_echo(self, body: dict[str, Any]) -> None:
        """An echo back through the broker: it answered."""
        n = int_field(body, "n")
        if n is None or n not in self._echoes:
            self.ctx.drop("stale_echo")
            return
        now = time.monotonic()
        self.answered = now
        if n == self._echo_n:
            self.echo_rtts.append(now - self._echo_at)

    def link_online(self) -> bool:
        """Connected, and the broker answered within echo_interval + echo_timeout."""
        if not self.ctx.online.is_set():
            return False
        config = self.ctx.config
        return time.monotonic() - self.answered <= config.echo_interval + config.echo_timeout

    def link_state(self) -> dict[str, Any]:
        """What the kiosk shows (any thread): the real connection, not the age of a message."""
        connected = self.ctx.online.is_set()
        answered = round(time.monotonic() - self.answered, 3) if connected else None
        current = self.ctx.known_current_at
        return {
            "online": self.link_online(),
            "connected": connected,
            "answered_s": answered,
            "known_current_at": iso(current) if current is not None else None,
            "session": self.ctx.session,
        }

    # -- online authorisation -------------------------------------------------------------------

    def request_authorisation(self, member: str, points: int, reward: str, timeout: float) -> Hold | None:
        """Ask head office for a hold on points for a redemption (from any thread). None: no
        answer in time; raises when it says no."""
        return self._ask_office(
            {"kind": "points", "member": member, "points": points, "reward": reward}, timeout
        )

    def request_value_authorisation(self, member: str, amount: Decimal, timeout: float) -> Hold | None:
        """Ask head office for a hold on stored value for a payment, the same way."""
        return self._ask_office({"kind": "value", "member": member, "amount": f"{amount:.2f}"}, timeout)

    def request_first_pin(
        self, member: str, code: str, pin_hash: str, timeout: float
    ) -> FirstPinAnswer | None:
        """Ask head office to set an imported member's first PIN with its one-time code (the
        PIN travels hashed). None: no answer in time, or the link known down."""
        answer = self._ask_raw(
            {"kind": "first_pin", "member": member, "code": code, "pin_hash": pin_hash}, timeout
        )
        if answer is None:
            return None
        if answer.get("ok") is True:
            return FirstPinAnswer(True)
        return FirstPinAnswer.refused(answer.get("reason"), answer.get("code"))

    def request_member(self, card_hash: str | None, number: str | None, timeout: float) -> bool | None:
        """Fetch a member this partial replica does not hold, by card hash or number, into the
        replica (one round trip; head office holds them here from now on). True: it is in the
        replica now; False: head office has no such member; None: no answer in time."""
        payload: dict[str, Any] = {"kind": "member"}
        if card_hash is not None:
            payload["card_hash"] = card_hash
        else:
            payload["number"] = number
        answer = self._ask_raw(payload, timeout)
        if answer is None:
            return None
        return answer.get("ok") is True and answer.get("stored") is True

    def _ask_office(self, payload: dict[str, Any], timeout: float) -> Hold | None:
        answer = self._ask_raw(payload, timeout)
        if answer is None:
            return None
        if answer.get("ok") is True and isinstance(answer.get("hold"), str):
            return Hold(str(answer["hold"]))
        reason = answer.get("reason")
        raise AuthorisationDenied(reason if isinstance(reason, str) else "head office declined")

    def _ask_raw(self, payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """One request to head office, its answer; None when the link is down or it is too slow."""
        if not self.link_online():
            return None  # no wait when the link is known down: the offline limits decide now
        call = AuthCall(uuid.uuid4().bytes, payload)
        self._calls.put(call)
        if not call.done.wait(timeout) or call.answer is None:
            self._waiting.pop(call.correlation, None)
            self.ctx.stats["auth_timeouts"] += 1
            return None
        return call.answer

    def send_queued(self) -> None:
        """Publish the requests other threads queued (on the agent's thread)."""
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            self._send_auth(call)

    def _send_auth(self, call: AuthCall) -> None:
        ctx = self.ctx
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = ctx.topic("auth/response")
        props.CorrelationData = call.correlation
        self._waiting[call.correlation] = call
        info = ctx.client.publish(ctx.topic("auth/request"), dumps(call.payload), qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._waiting.pop(call.correlation, None)
            call.done.set()

    def on_auth_response(self, body: dict[str, Any], msg: mqtt.MQTTMessage) -> None:
        """Head office's answer, handed to the thread waiting for it (if it still is)."""
        correlation = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        call = self._waiting.pop(bytes(correlation), None) if correlation is not None else None
        if call is None:
            self.ctx.drop("stale_auth")  # answered after the kiosk gave up: the hold just expires
            return
        self.ctx.contact()
        if call.payload.get("kind") == "member":
            # Stored here, on the agent's thread, before the asking thread wakes: it re-reads
            # the replica and finds the member.
            record = body.get("member")
            stored = isinstance(record, dict) and self.store_member is not None and self.store_member(record)
            body = {"ok": body.get("ok") is True, "stored": stored}
        call.answer = body
        call.done.set()

    def fail_pending_calls(self) -> None:
        """The connection is gone: every waiting caller gets no answer now (offline limits)."""
        for call in list(self._waiting.values()):
            call.done.set()
        self._waiting.clear()
        while True:
            try:
                self._calls.get_nowait().done.set()
            except queue.Empty:
                return
