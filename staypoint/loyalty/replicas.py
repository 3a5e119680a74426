"""Partial replicas: which members a node holds, the one home of that rule.

A programme of a hundred million members does not fit on a lobby board. Under
``[replicas] mode = "partial"`` head office keeps, per *scope*, the members a node in that
scope holds, and fans out to each node only the member changes of its scopes:

- ``p:<property>``: the property's own nodes (members who stayed there, were fetched
  online there, or arrive there by the property system's feed, each for a while);
- ``r:<region>``: every node of the region's properties (members whose home property is in
  the region, for good). A property with no region is its own home scope.

A hold is ``(scope, member, reason, until)``; ``until`` is None for a home hold. Everything
here is pure: head office's stores keep the holds, this module says what they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from staypoint.loyalty.events import iso
from staypoint.loyalty.program import Program, ReplicaMode

HOME = "home"
STAY = "stay"
FETCHED = "fetched"
ARRIVAL = "arrival"
REASONS = (HOME, STAY, FETCHED, ARRIVAL)


@dataclass(frozen=True)
class Hold:
    """One member held in one scope, for a reason, until a time (None: for good)."""

    scope: str
    member: str
    reason: str
    until: str | None


def is_partial(program: Program) -> bool:
    """True when nodes hold a subset of the members (``[replicas] mode = "partial"``)."""
    return program.replicas.mode is ReplicaMode.PARTIAL


def property_scope(code: str) -> str:
    """The scope of one property's nodes."""
    return f"p:{code}"


def _region_of(program: Program, code: str) -> str:
    for prop in program.properties:
        if prop.code == code:
            return prop.region
    return ""


def node_scopes(program: Program, property_code: str) -> frozenset[str]:
    """The scopes a node of ``property_code`` holds: its property's and its region's."""
    region = _region_of(program, property_code)
    scopes = {property_scope(property_code)}
    if region:
        scopes.add(f"r:{region}")
    return frozenset(scopes)


def home_scope(program: Program, home_property: str) -> str:
    """Where a member is held for good: the home property's region, or the property alone."""
    region = _region_of(program, home_property)
    return f"r:{region}" if region else property_scope(home_property)


def home_hold(program: Program, member: str, home_property: str) -> Hold:
    """A member's home hold (from enrolment on)."""
    return Hold(home_scope(program, home_property), member, HOME, None)


def stay_hold(program: Program, member: str, property_code: str, at: datetime) -> Hold:
    """A member who stayed at ``property_code`` at ``at`` is held there for ``stay_days``."""
    until = at + timedelta(days=program.replicas.stay_days)
    return Hold(property_scope(property_code), member, STAY, iso(until))


def fetched_hold(program: Program, member: str, property_code: str, now: datetime) -> Hold:
    """A member fetched online at a node of ``property_code`` stays cached there ``fetched_days``."""
    until = now + timedelta(days=program.replicas.fetched_days)
    return Hold(property_scope(property_code), member, FETCHED, iso(until))


#: How far ahead the property system may announce an arrival: its booking horizon.
ARRIVAL_AHEAD_DAYS = 366


def check_arrival(program: Program, arrival: date, now: datetime) -> None:
    """Refuse (ValueError, one line) an arrival outside the feed's bounds: no later than
    ``ARRIVAL_AHEAD_DAYS`` ahead, no earlier than its hold would already have ended."""
    today = now.astimezone(UTC).date()
    if arrival > today + timedelta(days=ARRIVAL_AHEAD_DAYS):
        raise ValueError(f"arrival {arrival.isoformat()} is more than {ARRIVAL_AHEAD_DAYS} days ahead")
    if arrival < today - timedelta(days=program.replicas.arrival_days):
        raise ValueError(
            f"arrival {arrival.isoformat()} is over {program.replicas.arrival_days} days past (arrival_days)"
        )


def arrival_hold(program: Program, member: str, property_code: str, arrival: date) -> Hold:
    """A member arriving at ``property_code`` (the property system's feed) is held until
    ``arrival_days`` after the arrival date, so the node has them before they reach the lobby."""
    until = datetime(arrival.year, arrival.month, arrival.day, tzinfo=UTC) + timedelta(
        days=program.replicas.arrival_days
    )
    return Hold(property_scope(property_code), member, ARRIVAL, iso(until))


def holds(scopes_of_node: frozenset[str], scopes_of_member: set[str] | frozenset[str]) -> bool:
    """Whether a node of those scopes holds a member held in those scopes."""
    return not scopes_of_node.isdisjoint(scopes_of_member)


#: Change kinds that belong to one member (their key is the member number): a node gets them
#: only where it holds the member. Everything else (programmes, node keys, revocations,
#: vouchers, which any node may be shown) goes to every node.
MEMBER_KINDS = frozenset({"member", "deny"})


def held_change(
    kind: str, key: str, scopes_of_node: frozenset[str], member_scopes: Mapping[str, set[str]]
) -> bool:
    """Whether a change of the change log goes to a node of ``scopes_of_node``."""
    if kind not in MEMBER_KINDS:
        return True
    return holds(scopes_of_node, member_scopes.get(key, set()))
