"""A member's points to a partner programme: at the programme's ratio, within its daily cap,
to the account linked at head office (``partner_accounts``; docs/partners.md). The
settlement files, confirmations and credits are the partner desk's (``central/partners/``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from staypoint.central.application.core import OfficeCore
from staypoint.central.application.sources import Draft
from staypoint.central.errors import Conflict, Invalid, NotFound
from staypoint.loyalty.events import iso, uuid7


class Partners:
    """Transfers to partners booked on the web stream, each with its pending settlement row."""

    def __init__(self, core: OfficeCore) -> None:
        self.core = core

    def transfer(self, number: str, partner_code: str, points: int, now: datetime) -> dict[str, Any]:
        """Points to a partner programme at the programme's ratio, within the daily cap (an event)."""
        core = self.core
        partner = core.online_rules().partner(partner_code)
        if partner is None:
            raise NotFound(f"no partner {partner_code!r}", "unknown_partner")
        if points < partner.min_points:
            raise Invalid(f"transfer at least {partner.min_points:,} points to {partner.name}")
        units = partner.units(points)
        if units < 1:
            raise Invalid(f"{points} points buy no {partner.name} units at ratio {partner.ratio}")
        day = now.date().isoformat()
        # The member's number at the partner, linked at head office: the settlement file names
        # it, so a transfer without one could never be credited.
        account = core.side.one(
            "SELECT account FROM partner_accounts WHERE member = ? AND partner = ?", (number, partner.code)
        )
        if account is None:
            raise Conflict(f"no {partner.name} account is linked to this member", "no_partner_account")
        with core.side.transaction():
            done = int(
                core.side.one(
                    "SELECT coalesce(sum(points), 0) FROM transfers WHERE member = ? AND day = ?",
                    (number, day),
                )
            )
            if done + points > partner.daily_cap:
                raise Conflict(
                    f"daily transfer cap is {partner.daily_cap:,} points; {partner.daily_cap - done:,} left",
                    "cap",
                )
            m = core.member(number)
            available = int(m["points"]) - core.ledger.store.held_points(number)
            if m.get("blocked") or available < points:
                raise Conflict("not enough points", "refused")
            transfer_id = uuid7(now)
            core.sources.emit(
                "web",
                [
                    Draft(
                        "points.adjusted",
                        number,
                        {
                            "points": -points,
                            "reason": f"transfer to {partner.name}",
                            "staff": "web",
                            "partner": partner.code,
                            "units": units,
                            "transfer": transfer_id,
                            "account": str(account),
                        },
                    )
                ],
                now,
            )
            core.side.execute(
                "INSERT INTO transfers (id, member, day, partner, points, units, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (transfer_id, number, day, partner.code, points, units, iso(now)),
            )
            core.side.execute(
                "INSERT INTO partner_transfers (transfer, partner, member, account, points, units, day, at, "
                "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                (transfer_id, partner.code, number, str(account), points, units, day, iso(now)),
            )
        return {
            "partner": partner.code,
            "points": points,
            "units": units,
            "transfer": transfer_id,
            "balance": int(core.member(number)["points"]),
        }
