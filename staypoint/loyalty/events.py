"""The event contract between node and head office: envelope, types and their effect on points."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

ENVELOPE_VERSION = 1


class EventType(StrEnum):
    MEMBER_ENROLLED = "member.enrolled"
    CARD_BOUND = "card.bound"
    MEMBER_UNLOCKED = "member.unlocked"
    # PIN tries, counted fleet-wide by the fold (loyalty/fold.py): they carry no data at all,
    # never the PIN typed. ``pin.verified`` is sent only after wrong tries, to start the count again.
    PIN_FAILED = "pin.failed"
    PIN_VERIFIED = "pin.verified"
    # A first PIN set at head office for a member imported without one (central/first_pin.py):
    # its data is the scrypt hash, never the PIN; from head office's own streams only.
    PIN_SET = "pin.set"
    STAY_POSTED = "stay.posted"
    STAY_VOIDED = "stay.voided"
    POINTS_REDEEMED = "points.redeemed"
    POINTS_ADJUSTED = "points.adjusted"
    POINTS_EXPIRED = "points.expired"
    VOUCHER_USED = "voucher.used"
    VOUCHER_VOIDED = "voucher.voided"
    VALUE_TOPPED_UP = "value.topped_up"
    VALUE_SPENT = "value.spent"
    CLAIM_RECORDED = "claim.recorded"
    FEEDBACK_RECORDED = "feedback.recorded"
    # What a node asks head office to decide (no effect on a balance until it does): a void
    # whose points the member has spent, and a member staff suspect of abuse.
    STAY_VOID_REQUESTED = "stay.void_requested"
    MEMBER_REPORTED = "member.reported"
    # Head office's decisions, from its console stream only: a node never blocks anyone.
    MEMBER_BLOCKED = "member.blocked"
    MEMBER_UNBLOCKED = "member.unblocked"
    # A friend's referral code, given at enrolment (or later, before the first stay): checked
    # by the fold (the referrer known, no self-referral, no loop); a bad one is quarantined,
    # the enrolment stands.
    MEMBER_REFERRED = "member.referred"


# The sign each event type gives to ``data["points"]``: one table on both sides, so a
# node and head office can never disagree about which way an event moves a balance.
POINTS_SIGN: Mapping[EventType, int] = {
    EventType.STAY_POSTED: +1,
    EventType.STAY_VOIDED: -1,
    EventType.POINTS_REDEEMED: -1,
    EventType.POINTS_ADJUSTED: +1,  # adjustments carry their own sign
    EventType.POINTS_EXPIRED: -1,
    EventType.VOUCHER_VOIDED: +1,  # voiding an unused voucher gives the points back
}


def points_delta(kind: str, data: Mapping[str, Any]) -> int:
    """How an event of ``kind`` changes its member's points balance."""
    sign = POINTS_SIGN.get(EventType(kind), 0)
    return sign * int(data.get("points", 0)) if sign else 0


# Head office's own event streams (central/application/sources.py): ``console``, ``web``,
# ``pms-<property>`` and ``partner-<code>`` (a partner's settlement and credit files,
# central/partners.py), each perhaps with a process suffix. No node may take these names
# (provisioning refuses them as node ids), and only the console stream carries staff's
# decisions (blocks, voids of any property's stays).
OFFICE_STREAMS = ("console", "web", "pms", "partner")


def is_office_stream(node: str) -> bool:
    """True for a stream head office itself writes, never a node's."""
    return any(node == base or node.startswith(base + "-") for base in OFFICE_STREAMS)


def is_console_stream(node: str) -> bool:
    """True for head office's console stream (its staff's decisions)."""
    return node == "console" or node.startswith("console-")


def uuid7(now: datetime, rand: bytes | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits; sorts by time."""
    ms = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    r = int.from_bytes(rand if rand is not None else os.urandom(10), "big") & ((1 << 74) - 1)
    rand_a, rand_b = r >> 62, r & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def iso(ts: datetime) -> str:
    """UTC timestamp as ``2026-11-23T10:00:00.123Z``."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware UTC")
    # isoformat stays in C (strftime builds a time tuple first): half the cost, on every event's
    # and every answer's path; the milliseconds are cut, not rounded, as before.
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO timestamp; naive input is taken as UTC."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    """One event in the outbox and on the wire (docs/architecture.md, The event contract)."""

    node: str
    epoch: int
    seq: int
    id: str
    at: str
    type: str
    member: str | None
    program: int
    data: Mapping[str, Any]
    auth: str | None = None
    v: int = field(default=ENVELOPE_VERSION)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": self.v,
            "node": self.node,
            "epoch": self.epoch,
            "seq": self.seq,
            "id": self.id,
            "at": self.at,
            "type": self.type,
            "member": self.member,
            "program": self.program,
            "data": self.data if type(self.data) is dict else dict(self.data),
        }
        if self.auth is not None:
            body["auth"] = self.auth
        return body

    def to_json(self) -> str:
        """Canonical JSON: the same event always has the same bytes (for body comparison)."""
        return _canonical(self.to_dict())

    @property
    def points_delta(self) -> int:
        return points_delta(self.type, self.data)


class EventFormatError(ValueError):
    """An event that does not match the contract."""


_json_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode


def _canonical(body: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 text: the bytes every stored body and comparison uses.

    orjson writes the same bytes as the json encoder above for every value an event holds
    (text, whole numbers, true/false/null, lists, objects; tests/unit/test_events_canonical.py
    checks it) at a tenth of the cost, which head office pays per event. orjson refuses
    integers past 64 bits; the json encoder spells those, so old and new bodies still match."""
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return _json_canonical(body)


_EVENT_TYPES = frozenset(t.value for t in EventType)
# The canonical spelling of a UUID, which ``uuid.UUID`` always accepts (anything else is
# handed to ``uuid.UUID`` to decide).
_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _need(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in body:
        raise EventFormatError(f"event: missing {key!r}")
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise EventFormatError(f"event: {key!r} has the wrong type")
    return value


def event_from_dict(body: Mapping[str, Any]) -> Event:
    """Validate an event received from the wire; raise EventFormatError naming the field.

    The checks run in a fixed order (the first failing one names the error). Head office
    runs this for every event it receives, so the common case takes the short paths."""
    v = body.get("v")
    if type(v) is not int:
        v = _need(body, "v", int)
    if v != ENVELOPE_VERSION:
        raise EventFormatError(f"event: unsupported envelope version {body['v']!r}")
    kind = body.get("type")
    if type(kind) is not str:
        kind = _need(body, "type", str)
    if kind not in _EVENT_TYPES:
        try:
            EventType(kind)
        except ValueError:
            raise EventFormatError(f"event: unknown type {kind!r}") from None
    seq = body.get("seq")
    if type(seq) is not int:
        seq = _need(body, "seq", int)
    epoch = body.get("epoch")
    if type(epoch) is not int:
        epoch = _need(body, "epoch", int)
    if seq < 1 or epoch < 1:
        raise EventFormatError("event: seq and epoch start at 1")
    member = body.get("member")
    if member is not None and not isinstance(member, str):
        raise EventFormatError("event: 'member' has the wrong type")
    data = body.get("data")
    if type(data) is not dict:
        data = _need(body, "data", dict)
    if "points" in data:
        points = data["points"]
        if type(points) is not int and (isinstance(points, bool) or not isinstance(points, int)):
            raise EventFormatError("event: data.points must be a whole number")
    auth = body.get("auth")
    if auth is not None and auth not in ("online", "offline"):
        raise EventFormatError("event: auth is 'online' or 'offline'")
    try:
        event_id = body.get("id")
        if type(event_id) is not str:
            event_id = _need(body, "id", str)
        if _UUID_TEXT.fullmatch(event_id) is None:
            uuid.UUID(event_id)
        parse_iso(_need(body, "at", str))
    except ValueError:
        raise EventFormatError("event: malformed 'id' or 'at'") from None
    node = body.get("node")
    if type(node) is not str:
        node = _need(body, "node", str)
    program = body.get("program")
    if type(program) is not int:
        program = _need(body, "program", int)
    # Every field is checked above: fill the frozen instance's dict in one step rather than
    # through the generated __init__'s eleven object.__setattr__ calls (2 µs of the ~60 µs
    # head office spends per event). Same instance, same equality and hash.
    ev: Event = _new_event(Event)
    ev.__dict__.update(
        node=node,
        epoch=epoch,
        seq=seq,
        id=event_id,
        at=body["at"],
        type=kind,
        member=member,
        program=program,
        data=data,
        auth=auth,
        v=v,
    )
    return ev


_new_event = object.__new__
