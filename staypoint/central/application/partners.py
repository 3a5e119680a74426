"""A member's partner programmes: the account linked at each (``partner_accounts``, checked
against the partner's ``account_pattern``, one member per account) and points transferred to
one at the programme's ratio, within its daily cap (docs/partners.md). The settlement files,
confirmations and credits are the partner desk's (``central/partners/``), which links accounts
through :func:`link_account` too: one copy of the rules for the API and the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from staypoint.central.application.core import OfficeCore
from staypoint.central.application.sources import Draft
from staypoint.central.application.state import SideStore
from staypoint.central.errors import Conflict, Invalid, NotFound
from staypoint.central.ledger import Ledger
from staypoint.loyalty.events import iso, uuid7
from staypoint.loyalty.rates import Partner


class PartnerError(Invalid, ValueError):
    """A refusal in one line (unknown partner, bad account, day not over): the desk's CLI
    prints it; the API answers with its class's status (422 unless a subclass says)."""


class UnknownPartner(NotFound, PartnerError):
    """No partner of that code in the programme, or no such member."""


class AccountTaken(Conflict, PartnerError):
    """The partner's account number is linked to another member already."""


def find_partner(partners: Sequence[Partner], code: str) -> Partner:
    """The programme's partner ``code`` (any case)."""
    found = next((p for p in partners if p.code == code.upper()), None)
    if found is None:
        known = ", ".join(p.code for p in partners) or "none"
        raise UnknownPartner(f"no partner {code!r} in the programme (partners: {known})", "unknown_partner")
    return found


def link_account(
    ledger: Ledger,
    side: SideStore,
    partners: Sequence[Partner],
    member: str,
    code: str,
    account: str,
    by: str,
    now: datetime,
) -> dict[str, Any]:
    """Link ``member``'s number at partner ``code`` (re-linking replaces the old number).

    The number is kept upper-case without spaces and must match the partner's
    ``account_pattern`` whole (``Partner.valid_account``: at most 64 characters)."""
    partner = find_partner(partners, code)
    account = account.replace(" ", "").upper()
    if not partner.valid_account(account):
        raise PartnerError(
            f"{account[:70]!r} is not a {partner.name} account number (pattern {partner.account_pattern})",
            "bad_account",
        )
    if ledger.store.member(member) is None:
        raise UnknownPartner(f"no member {member}", "unknown_member")
    with side.transaction():
        other = side.one(
            "SELECT member FROM partner_accounts WHERE partner = ? AND account = ?",
            (partner.code, account),
        )
        if other is not None and other != member:
            raise AccountTaken(
                f"{partner.name} account {account} is linked to another member", "account_taken"
            )
        side.execute(
            "INSERT INTO partner_accounts (member, partner, account, linked_at, linked_by) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (member, partner) DO UPDATE SET "
            "account = excluded.account, linked_at = excluded.linked_at, linked_by = excluded.linked_by",
            (member, partner.code, account, iso(now), by),
        )
    return {"member": member, "partner": partner.code, "account": account}


def linked_accounts(side: SideStore, member: str | None = None) -> list[dict[str, Any]]:
    """Every linked account (of one member), by member and partner."""
    sql = "SELECT member, partner, account, linked_at, linked_by FROM partner_accounts"
    rows = side.all(
        sql + (" WHERE member = ?" if member else "") + " ORDER BY member, partner",
        (member,) if member else (),
    )
    keys = ("member", "partner", "account", "linked_at", "linked_by")
    return [dict(zip(keys, r, strict=True)) for r in rows]


class Partners:
    """A member's linked partner accounts, and transfers to partners booked on the web stream,
    each with its pending settlement row."""

    def __init__(self, core: OfficeCore) -> None:
        self.core = core

    def link_partner(
        self, number: str, partner_code: str, account: str, now: datetime, *, by: str = "web"
    ) -> dict[str, Any]:
        """Link the member's account at a partner of the running programme (re-linking replaces
        it): 404 no such partner or member, 422 a number the partner does not issue, 409 an
        account another member holds. ``by`` is recorded (``linked_by``)."""
        core = self.core
        partners = core.online_rules().partners
        link = link_account(core.ledger, core.side, partners, number, partner_code, account, by, now)
        partner = find_partner(partners, link["partner"])
        return {**link, "name": partner.name, "linked_at": iso(now)}

    def partner_accounts(self, number: str) -> list[dict[str, Any]]:
        """The member's linked partner accounts, by partner code (a partner no longer in the
        programme keeps its code as its name)."""
        core = self.core
        core.member(number)
        names = {p.code: p.name for p in core.online_rules().partners}
        return [
            {
                "member": number,
                "partner": str(a["partner"]),
                "name": names.get(str(a["partner"]), str(a["partner"])),
                "account": str(a["account"]),
                "linked_at": str(a["linked_at"]),
            }
            for a in linked_accounts(core.side, number)
        ]

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
