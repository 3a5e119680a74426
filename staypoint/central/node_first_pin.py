"""First PINs asked by a node: an imported member's "Set your PIN" at the kiosk, answered on the broker.

The kiosk's node asks on its authorisation topic (``sp/v1/node/<id>/auth/request``, MQTT 5
request/response, ``{"kind": "first_pin", "member", "code", "pin_hash"}``); head office's MQTT
service (``central/server.py``) hands it here and publishes the answer on the node's own reply
topic: ``{"ok": true, "member"}`` or ``{"ok": false, "reason", "code"}`` (``reason`` one line
for the guest, ``code`` stable: ``bad_code`` with the tries left, ``code_used``,
``code_expired``, ``code_void``, ``no_code``, ``has_pin``, ``unknown_member``, ...).

The code is checked by the one keeper of codes, :func:`staypoint.central.first_pin.consume`
(single use, 30 days, void after five wrong tries, whichever channel the tries came by), and
the PIN is set exactly as the web path sets it: a ``pin.set`` event with the scrypt hash on a
head-office stream (``web-kiosk``, or ``web-kiosk-<suffix>`` for one of several processes:
seqs are allocated per process), applied by the ledger, so the member's record carries the
PIN to every node in the fan-out. The node hashes the PIN (``loyalty/pins.py``, the form every
node stores); only that exact form is taken (:func:`staypoint.loyalty.pins.is_standard_hash`),
and the plain PIN never reaches head office. Neither the code nor the hash is ever logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any

from staypoint.central import first_pin
from staypoint.central.application.sources import Draft, EventSources
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.store import Change
from staypoint.loyalty import first_pin_codes, member_numbers, pins

log = logging.getLogger("staypoint.central.first_pin")

STREAM_BASE = "web"  # head office's own: only its streams may carry pin.set (loyalty/fold.py)
STREAM_SUFFIX = "kiosk"
MAX_MEMBER = 64


def _refuse(reason: str, code: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason, "code": code}


class NodeFirstPins:
    """Answers nodes' first-PIN requests over one ledger and head office's side tables."""

    def __init__(self, ledger: Ledger, side: SideStore, *, suffix: str = "") -> None:
        self.ledger = ledger
        self.side = side
        self.sources = EventSources(ledger, suffix=f"{STREAM_SUFFIX}-{suffix}" if suffix else STREAM_SUFFIX)
        self.answered: Counter[str] = Counter()  # "set", or the refusal's code
        first_pin.ensure(side)

    @property
    def stream(self) -> str:
        """The head-office stream this process books ``pin.set`` on."""
        return self.sources.stream(STREAM_BASE)

    def answer(self, node: str, body: dict[str, Any], now: datetime) -> tuple[dict[str, Any], list[Change]]:
        """The answer for ``node`` and the changes to fan out (the member's record, on success)."""
        answer, changes = self._answer(node, body, now)
        outcome = "set" if answer["ok"] else str(answer["code"])
        self.answered[outcome] += 1
        member = body.get("member")
        shown = member if isinstance(member, str) and member.isdigit() and len(member) <= MAX_MEMBER else "?"
        log.info("first PIN for member %s asked by node %s: %s", shown, node, outcome)
        return answer, changes

    def _answer(self, node: str, body: dict[str, Any], now: datetime) -> tuple[dict[str, Any], list[Change]]:
        if node in self.ledger.revoked:
            return _refuse("this kiosk may not set PINs: please ask at the desk", "not_permitted"), []
        member, code, pin_hash = body.get("member"), body.get("code"), body.get("pin_hash")
        try:
            if not isinstance(member, str) or len(member) > MAX_MEMBER:
                raise member_numbers.MemberNumberError("no member number")
            number = member_numbers.normalise(member)
        except member_numbers.MemberNumberError:
            return _refuse("this is not a member number", "bad_number"), []
        try:
            # The node checked the shape: one of any other shape is a bad request, not a try.
            typed = first_pin_codes.parse(code) if isinstance(code, str) else None
        except first_pin_codes.CodeFormatError:
            typed = None
        if typed is None or not isinstance(pin_hash, str) or not pins.is_standard_hash(pin_hash):
            return _refuse("a first PIN needs a first-use code and the PIN's hash", "bad_input"), []
        m = self.ledger.member(number)
        if m is None:
            return _refuse("this membership is not known to head office yet", "unknown_member"), []
        if m.get("pin_hash"):
            return _refuse("this member has a PIN already: sign in with it", "has_pin"), []
        try:
            first_pin.consume(self.side, number, typed, now)  # a wrong one is counted first
        except first_pin.CodeError as exc:
            return _refuse(exc.message, exc.code), []
        try:
            _, changes = self.sources.emit(
                STREAM_BASE, [Draft("pin.set", number, {"pin_hash": pin_hash})], now
            )
        except Exception as exc:  # its text is not logged: it could quote the event
            first_pin.release(self.side, number)  # the code works again: nothing was set
            log.error(
                "first PIN for member %s asked by node %s: not booked (%s)", number, node, type(exc).__name__
            )
            return _refuse("head office could not set the PIN just now: please try again", "unavailable"), []
        return {"ok": True, "member": number}, changes
