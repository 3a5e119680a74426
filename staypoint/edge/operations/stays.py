"""Stays: posting one (points, qualifying nights, an upgrade at once), voiding one, and a
member's claim for one that is missing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal

from staypoint.edge.operations.core import NodeCore, require_role, require_utc, utc_today
from staypoint.edge.operations.errors import BadInput, NotAllowed
from staypoint.edge.operations.views import StaffProof, StayResult
from staypoint.edge.replica import MemberRow
from staypoint.loyalty import tiers
from staypoint.loyalty.earning import qualifying_points, stay_points
from staypoint.loyalty.events import Event, EventType
from staypoint.loyalty.money import MoneyError, parse_amount
from staypoint.loyalty.program import Outlet
from staypoint.loyalty.roles import Task


class Stays:
    """The stays a node posts and voids, and the claims it records."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.replica = core.replica

    def _qualifying(self, row: MemberRow, today: date) -> tuple[int, int]:
        return tiers.qualifying_now(
            self.core.program, row.window_start, row.qual_nights, row.qual_points, today
        )

    def post_stay(
        self,
        member: str,
        folio: str,
        now: datetime,
        *,
        nights: int,
        revenue: Mapping[Outlet, Decimal | str],
        arrival: date | None = None,
        staff: StaffProof | None = None,
    ) -> StayResult:
        """Post a stay: points by the programme's earn rules, qualifying nights, upgrade at once."""
        require_role(staff, Task.POST_STAY)
        require_utc(now)
        folio = folio.strip()
        if not folio or len(folio) > 40:
            raise BadInput("folio must be 1-40 characters")
        if isinstance(nights, bool) or not isinstance(nights, int) or not 0 <= nights <= 365:
            raise BadInput("nights must be a whole number from 0 to 365")
        try:
            amounts = {Outlet(o): parse_amount(a) for o, a in revenue.items()}
        except (MoneyError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        if amounts.get(Outlet.ROOM, Decimal(0)) > 0 and nights == 0:
            raise BadInput("room revenue needs at least one night")
        today = utc_today(now)
        departure = today if arrival is None else arrival + timedelta(days=nights)
        arrival = arrival or today - timedelta(days=nights)
        if departure > today + timedelta(days=1):
            raise BadInput("a stay is posted after it happens: departure is in the future")
        program = self.core.program
        row0 = self.core.resolve_member(member)
        with self.replica.write():
            row = self.replica.member(row0.number)
            assert row is not None
            if self.replica.live_stay(self.core.property, folio) is not None:
                raise BadInput(f"folio {folio} is already posted at {self.core.property}")
            earned = stay_points(program, row.tier, amounts, departure)
            qualifying = qualifying_points(program, earned)
            qnights, qpoints = self._qualifying(row, today)
            qnights += nights
            qpoints += qualifying
            new_tier = tiers.after_activity(program, row.tier, qnights, qpoints)
            revenue_json = {o.value: str(a) for o, a in amounts.items() if a}
            data = {
                "folio": folio,
                "property": self.core.property,
                "arrival": arrival.isoformat(),
                "departure": departure.isoformat(),
                "nights": nights,
                "revenue": revenue_json,
                "points": earned.points,
                "qualifying_points": qualifying,
                "tier": row.tier,
                "tier_after": new_tier.code,
                "promotions": sorted({c for ln in earned.lines for c in ln.promotions}),
            }
            if staff is not None:
                data["staff"] = staff.staff_id
            event = self.core.emit(EventType.STAY_POSTED, row.number, data, now, row=row)
            self.replica.insert_stay(
                event.id,
                row.number,
                self.core.property,
                folio,
                arrival.isoformat(),
                departure.isoformat(),
                nights,
                json.dumps(revenue_json),
                earned.points,
                event.at,
            )
            balance = row.points + earned.points
            self.replica.update_member(
                row.number,
                points=balance,
                qual_nights=qnights,
                qual_points=qpoints,
                window_start=tiers.window_start(program.window, today).isoformat(),
                tier=new_tier.code,
                last_activity=today.isoformat(),
            )
            self.core.activity(event, row.number, earned.points)
        return StayResult(row.number, folio, earned.points, nights, row.tier, new_tier.code, balance, event)

    def void_stay(self, folio: str, now: datetime, staff: StaffProof, reason: str) -> Event:
        """Void a posted stay by a compensating event: its points and nights are taken back.

        When the member has already spent some of the stay's points the node does not take
        them (the balance would go negative at a desk): it sends head office a
        ``stay.void_requested`` to settle, and returns that event instead."""
        require_role(staff, Task.VOID_STAY)
        require_utc(now)
        if not reason.strip():
            raise BadInput("a void needs a reason")
        with self.replica.write():
            found = self.replica.live_stay(self.core.property, folio.strip())
            if found is None:
                raise BadInput(f"no live stay with folio {folio} at {self.core.property}")
            stay_id, number, points, nights = found
            row = self.replica.member(number)
            assert row is not None
            data = {
                "folio": folio,
                "stay": stay_id,
                "points": points,
                "nights": nights,
                "reason": reason,
                "staff": staff.staff_id,
            }
            if row.points < points:
                if self.replica.void_requested(stay_id):
                    raise NotAllowed(f"the void of {folio} is already with head office to settle")
                return self.core.emit(EventType.STAY_VOID_REQUESTED, number, data, now, row=row)
            event = self.core.emit(EventType.STAY_VOIDED, number, data, now)
            self.replica.void_stay(stay_id, event.at)
            qn, qp = self._qualifying(row, utc_today(now))
            self.replica.update_member(
                number,
                points=row.points - points,
                qual_nights=max(0, qn - nights),
                qual_points=max(0, qp - points),
            )
            self.core.activity(event, number, -points)
        return event

    def record_claim(
        self,
        member: str,
        folio: str,
        arrival: date,
        departure: date,
        now: datetime,
        *,
        property_: str | None = None,
        note: str = "",
    ) -> Event:
        """A member says a stay is missing: recorded here, settled at head office."""
        row = self.core.resolve_member(member)
        if not folio.strip():
            raise BadInput("a claim needs the folio number from the bill")
        if departure < arrival or departure > utc_today(now):
            raise BadInput("the stay's dates are not possible")
        prop = property_ or self.core.property
        with self.replica.write():
            event = self.core.emit(
                EventType.CLAIM_RECORDED,
                row.number,
                {
                    "folio": folio.strip(),
                    "property": prop,
                    "arrival": arrival.isoformat(),
                    "departure": departure.isoformat(),
                    "note": note[:500],
                },
                now,
            )
            self.replica.insert_claim(
                event.id,
                row.number,
                prop,
                folio.strip(),
                arrival.isoformat(),
                departure.isoformat(),
                note[:500],
                event.at,
            )
            self.core.activity(event, row.number, 0)
        return event
