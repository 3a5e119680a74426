"""Stays: a folio from the property system after check-out (idempotent by property and folio;
a changed folio is a correction, the difference clawed back or added), the direct-booking
bonus, and a member's missing-points claim from the web."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from staypoint.central.application.core import OfficeCore, sha256
from staypoint.central.application.sources import Draft
from staypoint.central.errors import Invalid, NotFound
from staypoint.loyalty import member_numbers, replicas
from staypoint.loyalty.earning import qualifying_points, stay_points
from staypoint.loyalty.events import iso
from staypoint.loyalty.money import MoneyError, parse_amount
from staypoint.loyalty.program import Outlet

STAYS_NAMESPACE = uuid.UUID("6f1d3c52-6b1e-4d0a-9a53-5d2f0c7e1a01")
FOLIO_UPSERT = (
    "INSERT INTO folios (property, folio, member, event_id, bonus_event, digest, points, bonus, "
    "nights, channel, arrival, departure, revenue, posted_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (property, folio) DO UPDATE SET member = excluded.member, "
    "event_id = excluded.event_id, "
    "bonus_event = excluded.bonus_event, digest = excluded.digest, points = excluded.points, "
    "bonus = excluded.bonus, nights = excluded.nights, channel = excluded.channel, "
    "arrival = excluded.arrival, departure = excluded.departure, revenue = excluded.revenue, "
    "posted_at = excluded.posted_at"
)


class Stays:
    """Stays posted by the property systems and claimed by members."""

    def __init__(self, core: OfficeCore) -> None:
        self.core = core

    def hold_arrivals(self, prop: str, arrivals: Sequence[tuple[str, date]], now: datetime) -> dict[str, Any]:
        """The property system's arrivals: held at the property's nodes (partial replicas)."""
        program = self.core.program()
        if program.timezone_of(prop) is None:
            raise NotFound(f"the programme lists no property {prop!r}")
        rows = []
        for raw, day in arrivals:
            try:
                rows.append((member_numbers.normalise(raw), day))
            except member_numbers.MemberNumberError as exc:
                raise Invalid(f"{raw}: {exc}") from None
        try:
            changes = self.core.ledger.hold_arrivals(prop, rows, now)
        except ValueError as exc:  # an arrival out of the feed's bounds (replicas.check_arrival)
            raise Invalid(str(exc)) from None
        held = {c.key for c in changes}
        partial = replicas.is_partial(program)
        return {
            "mode": program.replicas.mode.value,
            "held": len(held),
            "unknown": sorted({m for m, _ in rows} - held) if partial else [],
        }

    def post_stay(self, prop: str, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """A folio from the PMS: idempotent by (property, folio); a changed folio is a correction."""
        core = self.core
        program = core.program()
        folio = str(body["folio"]).strip()
        member = body.get("member")
        record: dict[str, Any] | None = None  # read once: the tier the stay earns at
        if member is not None:
            try:
                member = member_numbers.normalise(str(member))
            except member_numbers.MemberNumberError as exc:
                raise Invalid(str(exc)) from None
            record = core.member(member)
        arrival, departure = body["arrival"], body["departure"]
        if departure < arrival:
            raise Invalid("departure is before arrival")
        if departure > now.date() + timedelta(days=1):
            raise Invalid("a stay is posted after it happens: departure is in the future")
        nights = (departure - arrival).days
        try:
            revenue = {Outlet(k): parse_amount(str(v)) for k, v in dict(body.get("revenue", {})).items()}
        except (MoneyError, ValueError) as exc:
            raise Invalid(f"revenue: {exc}") from None
        channel = str(body.get("channel", "direct")).lower()
        rules = core.online_rules()
        canon = {
            "member": member,
            "arrival": arrival.isoformat(),
            "departure": departure.isoformat(),
            "revenue": {o.value: str(a) for o, a in sorted(revenue.items()) if a},
            "channel": channel,
        }
        digest = sha256(json.dumps(canon, sort_keys=True))[:32]
        # This folio's row only: posts of other folios run beside it (their events still go
        # one at a time, through the stream's lock and the ledger's); the same folio waits.
        with core.side.row_unit(
            f"folio:{prop}:{folio}",
            "SELECT digest, member, event_id, bonus_event, points, bonus, nights FROM folios "
            "WHERE property = ? AND folio = ?",
            (prop, folio),
        ) as prev:
            if prev is not None and prev[0] == digest:
                return {
                    "folio": folio,
                    "property": prop,
                    "result": "unchanged",
                    "points": int(prev[4]) + int(prev[5]),
                }
            drafts: list[Draft] = []
            stream = f"pms-{prop}"
            if prev is not None and prev[2]:  # a correction: take the old posting back first
                old_member, old_event, old_points, old_nights = (
                    str(prev[1]),
                    str(prev[2]),
                    int(prev[4]),
                    int(prev[6]),
                )
                drafts.append(
                    Draft(
                        "stay.voided",
                        old_member,
                        {
                            "stay": old_event,
                            "points": old_points,
                            "nights": old_nights,
                            "folio": folio,
                            "property": prop,
                            "reason": "folio corrected by the property system",
                        },
                        id=str(uuid.uuid5(STAYS_NAMESPACE, f"void:{old_event}")),
                    )
                )
                if prev[3] and int(prev[5]):
                    drafts.append(
                        Draft(
                            "points.adjusted",
                            old_member,
                            {
                                "points": -int(prev[5]),
                                "reason": f"direct-booking bonus, folio {folio} corrected",
                                "staff": "pms",
                            },
                            id=str(uuid.uuid5(STAYS_NAMESPACE, f"void:{prev[3]}")),
                        )
                    )
            points = bonus = 0
            event_id = bonus_id = None
            if member is not None and rules.channels.earns(channel):
                m = record if record is not None else core.member(member)
                earned = stay_points(program, m["tier"], revenue, departure)
                points = earned.points
                event_id = str(
                    uuid.uuid5(STAYS_NAMESPACE, f"{prop}:{folio}:{digest}:{prev[2] if prev else ''}")
                )
                drafts.append(
                    Draft(
                        "stay.posted",
                        member,
                        {
                            "folio": folio,
                            "property": prop,
                            "arrival": canon["arrival"],
                            "departure": canon["departure"],
                            "nights": nights,
                            "revenue": canon["revenue"],
                            "points": points,
                            "qualifying_points": qualifying_points(program, earned),
                            "tier": m["tier"],
                            "channel": channel,
                            "promotions": sorted({c for ln in earned.lines for c in ln.promotions}),
                        },
                        id=event_id,
                    )
                )
                bonus = rules.channels.bonus(channel)
                if bonus:
                    bonus_id = str(uuid.uuid5(STAYS_NAMESPACE, f"bonus:{event_id}"))
                    drafts.append(
                        Draft(
                            "points.adjusted",
                            member,
                            {
                                "points": bonus,
                                "reason": f"direct-booking bonus, folio {folio}",
                                "staff": "pms",
                            },
                            id=bonus_id,
                        )
                    )
            folio_row = (
                prop,
                folio,
                member,
                event_id,
                bonus_id,
                digest,
                points,
                bonus,
                nights,
                channel,
                canon["arrival"],
                canon["departure"],
                json.dumps(canon["revenue"]),
                iso(now),
            )

            def record_folio() -> None:
                # With the events, in the ledger's own commit when the side tables live in its
                # PostgreSQL database (one durable commit, not two in series); else in the side
                # tables' transaction, as before.
                with core.side.joined(core.ledger.store):
                    core.side.execute(FOLIO_UPSERT, folio_row)

            if drafts:
                # Where the folio row goes in through the ledger's own connection, posts at the
                # same moment share one ledger transaction and commit (EventSources.emit).
                together = core.side.in_ledger_database(core.ledger.store)
                # The folio row read above, under the folio's lock, commits with its events when
                # together: it alone says whether they were applied (recorded).
                core.sources.emit(
                    stream, drafts, now, then=record_folio, together=together, recorded=together
                )
            else:
                record_folio()
        result = "corrected" if prev is not None else "posted"
        if member is not None and not rules.channels.earns(channel):
            result += "-no-points"
        return {"folio": folio, "property": prop, "result": result, "points": points + bonus}

    def claim(self, number: str, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """A missing-points claim from the web: a claim event, queued like a kiosk's."""
        core = self.core
        arrival, departure = body["arrival"], body["departure"]
        if departure < arrival or departure > now.date():
            raise Invalid("the stay's dates are not possible")
        events, _ = core.sources.emit(
            "web",
            [
                Draft(
                    "claim.recorded",
                    number,
                    {
                        "folio": str(body["folio"]).strip(),
                        "property": str(body["property"]),
                        "arrival": arrival.isoformat(),
                        "departure": departure.isoformat(),
                        "note": str(body.get("note", ""))[:500],
                    },
                )
            ],
            now,
        )
        return {"claim": events[0].id, "status": "received"}
