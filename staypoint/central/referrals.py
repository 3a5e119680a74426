"""Referrals (推荐奖励): a member's code brings a friend; both earn a bonus after the friend's first stay.

- Each member has a referral code (``referral_code``): short, unambiguous letters and
  digits derived from the member number and kept in the profile (unique there).
- A new member who enrols with a code is linked to the referrer (``link``): refused for
  one's own code (same member, same e-mail or phone) and for a loop (the referrer was
  brought in, directly or through others, by the new member).
- After the referred member's first stay, the daily job (``award_due``) gives both the
  bonus the programme sets (``[referrals]`` in the programme document) as ledger events
  of the ``campaigns`` stream. ``ref_rewards`` is keyed by the referred member and written
  in the same transaction as the events: one reward per referred member, ever.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from staypoint.central.errors import Invalid
from staypoint.central.profiles import ProfileStore
from staypoint.loyalty import referral_codes as codes
from staypoint.loyalty.events import iso
from staypoint.loyalty.program import Program, ReferralRules

if TYPE_CHECKING:
    from staypoint.central.campaigns.engine import CampaignJob

# No 0/O, 1/I/L: the code is read aloud at a front desk and typed on phones.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
MAX_CHAIN = codes.MAX_CHAIN  # a referral chain longer than this is a data error, not a family


class ReferralError(Invalid, ValueError):
    """A referral that is refused (the message is for the guest)."""


__all__ = ["ReferralError", "ReferralRules", "award_due", "link", "referral_code", "rules"]


def rules(program: Program) -> ReferralRules:
    """The programme's ``[referrals]`` section (optional: referrer_points, referred_points),
    parsed and checked with the rest of the document by ``parse_program``."""
    return program.referrals


def referral_code(profiles: ProfileStore, member: str, at: str) -> str:
    """The member's referral code (the kiosk computes the same one offline from the number)."""
    p = profiles.get(member)
    if p is None:
        raise ReferralError(f"no profile for member {member}")
    code = codes.referral_code(member)
    if p.referral_code != code:
        profiles.upsert(member, at=at, referral_code=code)
    return code


def link(profiles: ProfileStore, new_member: str, code: str, at: str) -> str:
    """Record that ``new_member`` enrolled with ``code``; returns the referrer. Refuses
    an unknown code, one's own code, a second referrer and a loop."""
    try:
        referrer = profiles.get(codes.member_for_code(code))
    except codes.ReferralCodeError as exc:
        raise ReferralError(str(exc)) from None
    if referrer is None:
        raise ReferralError("this referral code is not known")
    me = profiles.get(new_member)
    if me is None:
        raise ReferralError(f"no profile for member {new_member}")
    if referrer.member == new_member:
        raise ReferralError("you cannot use your own referral code")
    same_email = me.email and referrer.email and me.email.lower() == referrer.email.lower()
    if same_email or (me.phone and me.phone == referrer.phone):
        raise ReferralError("you cannot use your own referral code")
    if me.referred_by:
        if me.referred_by == referrer.member:
            return referrer.member
        raise ReferralError("this member was already referred by someone else")
    # Walk up from the referrer: meeting the new member means a loop (A -> B -> A).
    seen: set[str] = set()
    up = referrer.referred_by
    while up is not None and len(seen) < MAX_CHAIN:
        if up == new_member:
            raise ReferralError("a referral loop is not allowed")
        seen.add(up)
        nxt = profiles.get(up)
        up = nxt.referred_by if nxt else None
    profiles.upsert(new_member, at=at, referred_by=referrer.member)
    return referrer.member


def award_due(job: CampaignJob, now: datetime) -> dict[str, int]:
    """Queue both bonuses for every referred member whose first qualifying stay is booked.

    The referral is the one the fold accepted (``referred_by`` on the member's ledger
    record, from a ``member.referred`` event); the stay is the first one head office booked
    with at least one night, not voided, posted at or after the referral. Runs in the daily
    campaign job (it uses the job's outbox to the ledger); ``ref_rewards`` makes it once.
    """
    r = rules(job.program)
    # Read through the ledger's store (SQLite or PostgreSQL); ``ref_rewards`` lives with the
    # job's own tables, so the members already rewarded are left out here, not in one join.
    with job.db.tx(durable=False) as conn:
        rewarded = {str(m) for (m,) in conn.execute("SELECT referred FROM ref_rewards").fetchall()}
    store = job.ledger.store
    awarded = 0
    for member, referrer, referred_at in store.referred_members():
        if member in rewarded:
            continue
        stay = store.first_stay_since(member, referred_at)
        if stay is None:
            continue
        bonuses: list[tuple[str, dict[str, Any]]] = [
            (
                who,
                {
                    "points": points,
                    "reason": f"referral bonus ({role}: {member})",
                    "referral": member,
                    "role": role,
                },
            )
            for who, points, role in (
                (referrer, r.referrer_points, "referrer"),
                (member, r.referred_points, "referred"),
            )
            if points
        ]
        if job.queue_once(
            "INSERT OR IGNORE INTO ref_rewards (referred, referrer, stay_event, awarded_at) "
            "VALUES (?, ?, ?, ?)",
            (member, referrer, stay, iso(now)),
            bonuses,
            now,
        ):
            awarded += 1  # else the other job got there first
    return {"awarded": awarded}
