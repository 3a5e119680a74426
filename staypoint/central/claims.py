"""Missing-points claims (积分申诉): one queue at head office for the kiosks' and the web's claims.

Claims arrive as ``claim.recorded`` events (a kiosk's stream or the web's), read from the
ledger in applied order (a cursor in the side tables). Each is matched against the folios
the property systems posted (property, folio, dates):
- folio posted without a member, on a channel that earns → approved at once, clerk ``auto``;
- folio already credited to this member → rejected at once ("already credited");
- otherwise it waits for a clerk, who approves (with the clerk's id) or rejects with a reason.
An approved claim books the stay itself: a ``stay.posted`` on head office's console stream
with the claim's folio, property and dates and the folio's revenue when the property system
sent it, priced by the one fold, so nights, qualifying figures and tier progress move like
any stay's; a clerk's points beyond what the revenue earns are a ``points.adjusted``.
The member is told either way, by e-mail in the profile's language (en, zh) when a mail
server is configured. The send is
marked ``sending`` before and ``sent`` after; a send cut off between the two is marked
``uncertain`` and listed for a person, never repeated silently.
"""

from __future__ import annotations

import json
import smtplib
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

from staypoint.central.application.services import Services
from staypoint.central.application.sources import Draft, OutOfBounds
from staypoint.central.errors import Conflict, Invalid, NotFound
from staypoint.loyalty.earning import qualifying_points, stay_points
from staypoint.loyalty.events import iso
from staypoint.loyalty.program import Outlet
from staypoint.loyalty.rates import parse_online_rules

CURSOR = "claims"
COLUMNS = (
    "id",
    "member",
    "source",
    "folio",
    "property",
    "arrival",
    "departure",
    "note",
    "status",
    "reason",
    "clerk",
    "points",
    "event_id",
    "created",
    "decided",
    "notify",
)


_CLAIMS_NS = uuid.UUID("3b0f6a1e-2d4c-4f7a-8e21-9c5d7b1a0e42")

# The member is told in the language of their profile (en, zh), English when unknown. The
# matcher's own reasons are translated; a clerk's reason is sent as the clerk wrote it.
_NOTICES: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "approved": (
            "Your missing-stay claim for folio {folio} is approved",
            "Dear {name},\n\nWe added your stay of {nights} night(s) at {property} "
            "({arrival} to {departure}, folio {folio}) and {points:,} points to your account {member}.\n",
        ),
        "rejected": (
            "Your missing-stay claim for folio {folio}",
            "Dear {name},\n\nWe could not add points for folio {folio}: {reason}.\n",
        ),
    },
    "zh": {
        "approved": (
            "您的补登入住申请（账单 {folio}）已批准",
            "{name}，您好：\n\n我们已将您在 {property} 的 {nights} 晚入住（{arrival} 至 {departure}，"
            "账单 {folio}）及 {points:,} 积分计入您的账户 {member}。\n",
        ),
        "rejected": (
            "您的补登入住申请（账单 {folio}）",
            "{name}，您好：\n\n我们无法为账单 {folio} 补登积分：{reason}。\n",
        ),
    },
}
_REASONS_ZH = {
    "this stay was already credited to your account": "这次入住已计入您的账户",
    "stays booked through third-party channels do not earn points": "通过第三方渠道预订的入住不累积积分",
    "matched the hotel's folio": "与酒店账单相符",
    "approved by head office": "总部已批准",
}


def notice(claim: dict[str, Any], language: str, name: str = "") -> tuple[str, str]:
    """The subject and text telling the member of a decided claim, in their language."""
    lang = language if language in _NOTICES else "en"
    subject, text = _NOTICES[lang][claim["status"] if claim["status"] == "approved" else "rejected"]
    reason = str(claim.get("reason") or "")
    if lang == "zh":
        reason = _REASONS_ZH.get(reason, reason)
    try:
        nights = (date.fromisoformat(claim["departure"]) - date.fromisoformat(claim["arrival"])).days
    except ValueError:
        nights = 0
    values = {
        **{k: claim.get(k) or "" for k in ("folio", "property", "arrival", "departure", "member")},
        "points": int(claim.get("points") or 0),
        "nights": nights,
        "reason": reason,
        "name": name or ("会员" if lang == "zh" else "member"),
    }
    return subject.format(**values), text.format(**values)


@dataclass(frozen=True)
class Mailer:
    """SMTP settings; ``send`` delivers one message (plain text)."""

    host: str
    port: int
    sender: str = "rewards@staypoint.example"

    def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(msg)


class ClaimsQueue:
    """The claims queue over head office's services (ledger, profiles, side tables, event sources)."""

    def __init__(self, services: Services, mailer: Mailer | None = None) -> None:
        self.services = services
        self.side = services.side
        self.ledger = services.ledger
        self.mailer = mailer

    # -- intake ---------------------------------------------------------------------------
    def pull(self, now: datetime) -> dict[str, int]:
        """Take new claim events into the queue and settle what matches; returns counts."""
        counts = {"new": 0, "approved": 0, "rejected": 0}
        while True:
            position = self.side.cursor_position(CURSOR)
            batch = self.ledger.store.events_after(position, ["claim.recorded"], 500)
            if not batch:
                break
            with self.side.transaction():
                for pos, body in batch:
                    ev = json.loads(body)
                    d = ev["data"]
                    counts["new"] += self.side.execute(
                        "INSERT INTO claims (id, member, source, folio, property, arrival, departure, note, "
                        "status, "
                        "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (id) DO NOTHING",
                        (
                            ev["id"],
                            ev["member"],
                            ev["node"],
                            str(d.get("folio", "")),
                            str(d.get("property", "")),
                            str(d.get("arrival", "")),
                            str(d.get("departure", "")),
                            str(d.get("note", "")),
                            ev["at"],
                        ),
                    )
                    position = pos
                self.side.set_cursor(CURSOR, position)
        for claim in self.search(status="pending"):
            outcome = self._auto(claim, now)
            if outcome:
                counts[outcome] += 1
        self.notify_pending()
        return counts

    def _auto(self, claim: dict[str, Any], now: datetime) -> str | None:
        row = self.side.row(
            "SELECT member, arrival, departure, revenue, channel, claimed_by FROM folios "
            "WHERE property = ? AND folio = ?",
            (claim["property"], claim["folio"]),
        )
        if row is None or (row[1], row[2]) != (claim["arrival"], claim["departure"]):
            return None  # no such posting, or other dates: a clerk looks
        member, _, departure, revenue, channel, claimed_by = row
        if member == claim["member"] or claimed_by == claim["member"]:
            self._decide(
                claim, "rejected", "auto", None, "this stay was already credited to your account", now
            )
            return "rejected"
        if member is not None or claimed_by is not None:
            return None  # credited to someone else: a clerk decides
        program = self.services.program()
        if not parse_online_rules(program).channels.earns(str(channel)):
            self._decide(
                claim,
                "rejected",
                "auto",
                None,
                "stays booked through third-party channels do not earn points",
                now,
            )
            return "rejected"
        m = self.ledger.member(claim["member"])
        if m is None:
            return None
        amounts = {Outlet(k): Decimal(v) for k, v in json.loads(revenue).items()}
        points = stay_points(program, m["tier"], amounts, date.fromisoformat(departure)).points
        self._decide(claim, "approved", "auto", points, "matched the hotel's folio", now)
        return "approved"

    # -- the clerk's desk ---------------------------------------------------------------------
    def search(
        self,
        *,
        folio: str | None = None,
        day: date | None = None,
        member: str | None = None,
        outlet: str | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Claims by folio, a date inside the stay, member, outlet (property) or status."""
        where, args = [], []
        for col, value in (("folio", folio), ("member", member), ("property", outlet), ("status", status)):
            if value:
                where.append(f"{col} = ?")
                args.append(value)
        if day is not None:
            where.append("arrival <= ? AND departure >= ?")
            args += [day.isoformat(), day.isoformat()]
        sql = f"SELECT {', '.join(COLUMNS)} FROM claims"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.side.all(sql + " ORDER BY created LIMIT ?", (*args, limit))
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows]

    def get(self, claim_id: str) -> dict[str, Any]:
        found = self.side.row(f"SELECT {', '.join(COLUMNS)} FROM claims WHERE id = ?", (claim_id,))
        if found is None:
            raise NotFound(f"no claim {claim_id}")
        return dict(zip(COLUMNS, found, strict=True))

    def approve(
        self, claim_id: str, clerk: str, points: int, now: datetime, note: str = ""
    ) -> dict[str, Any]:
        """A clerk approves: an adjustment event with the clerk's id, then the member is told."""
        if points <= 0:
            raise Invalid("an approved claim gives a positive number of points")
        claim = self.get(claim_id)
        if claim["status"] != "pending":
            raise Conflict(f"claim {claim_id} is already {claim['status']}")
        self._decide(claim, "approved", clerk, points, note or "approved by head office", now)
        self.notify_pending()
        return self.get(claim_id)

    def reject(self, claim_id: str, clerk: str, reason: str, now: datetime) -> dict[str, Any]:
        if not reason.strip():
            raise Invalid("a rejection needs a reason the member can read")
        claim = self.get(claim_id)
        if claim["status"] != "pending":
            raise Conflict(f"claim {claim_id} is already {claim['status']}")
        self._decide(claim, "rejected", clerk, None, reason.strip(), now)
        self.notify_pending()
        return self.get(claim_id)

    def _decide(
        self, claim: dict[str, Any], status: str, clerk: str, points: int | None, reason: str, now: datetime
    ) -> None:
        with self.side.transaction():
            # Claim the row first: two clerks (or a clerk and the matcher) never both decide.
            won = self.side.execute(
                "UPDATE claims SET status = ?, clerk = ?, points = ?, reason = ?, decided = ? "
                "WHERE id = ? AND status = 'pending'",
                (status, clerk, points, reason, iso(now), claim["id"]),
            )
            if not won:
                raise Conflict(f"claim {claim['id']} was decided meanwhile")
            if status == "approved" and points:
                drafts, total = self._stay_drafts(claim, clerk, points)
                try:
                    events, _ = self.services.sources.emit("console", drafts, now)
                except OutOfBounds as exc:
                    raise Invalid(str(exc), "out_of_bounds") from None
                stay_id = drafts[0].id
                self.side.execute(
                    "UPDATE claims SET event_id = ?, points = ? WHERE id = ?",
                    (events[0].id if events else stay_id, total, claim["id"]),
                )
                self.side.execute(
                    "UPDATE folios SET claimed_by = ? WHERE property = ? AND folio = ? "
                    "AND member IS NULL AND claimed_by IS NULL",
                    (claim["member"], claim["property"], claim["folio"]),
                )

    def _stay_drafts(self, claim: dict[str, Any], clerk: str, points: int) -> tuple[list[Draft], int]:
        """The approved claim as head office books it: the stay itself (``stay.posted`` on the
        console stream, nights and qualifying figures, priced by the one fold from the folio's
        revenue when the property system sent it), and, when the clerk gives more points than
        the revenue earns, a ``points.adjusted`` for the rest. Ids are derived from the claim,
        so a retry after a crash books it once. Returns the drafts and the points given."""
        program = self.services.program()
        m = self.ledger.member(claim["member"])
        if m is None:
            raise NotFound(f"no member {claim['member']}")
        row = self.side.row(
            "SELECT revenue, channel FROM folios WHERE property = ? AND folio = ?",
            (claim["property"], claim["folio"]),
        )
        revenue: dict[str, str] = {k: str(v) for k, v in json.loads(row[0]).items()} if row else {}
        arrival, departure = date.fromisoformat(claim["arrival"]), date.fromisoformat(claim["departure"])
        amounts = {Outlet(k): Decimal(v) for k, v in revenue.items()}
        earned = stay_points(program, str(m["tier"]), amounts, departure)
        data: dict[str, Any] = {
            "folio": claim["folio"],
            "property": claim["property"],
            "arrival": arrival.isoformat(),
            "departure": departure.isoformat(),
            "nights": (departure - arrival).days,
            "revenue": revenue,
            "points": earned.points,
            "qualifying_points": qualifying_points(program, earned),
            "tier": m["tier"],
            "staff": clerk,
            "claim": claim["id"],
        }
        if row is not None and row[1]:
            data["channel"] = str(row[1])
        drafts = [
            Draft("stay.posted", claim["member"], data, id=str(uuid.uuid5(_CLAIMS_NS, f"stay:{claim['id']}")))
        ]
        if points > earned.points:
            drafts.append(
                Draft(
                    "points.adjusted",
                    claim["member"],
                    {
                        "points": points - earned.points,
                        "reason": f"missing-points claim, folio {claim['folio']}",
                        "staff": clerk,
                        "claim": claim["id"],
                    },
                    id=str(uuid.uuid5(_CLAIMS_NS, f"adjust:{claim['id']}")),
                )
            )
        return drafts, max(points, earned.points)

    # -- telling the member ---------------------------------------------------------------------
    def notify_pending(self) -> int:
        """E-mail every decided claim not yet told; returns how many were sent."""
        if self.mailer is None:
            return 0
        # A send cut off after 'sending' may or may not have left: a person decides.
        self.side.execute("UPDATE claims SET notify = 'uncertain' WHERE notify = 'sending'")
        sent = 0
        for claim in self.side.all(
            "SELECT id FROM claims WHERE status <> 'pending' AND notify IS NULL ORDER BY decided"
        ):
            c = self.get(str(claim[0]))
            profile = self.services.profiles.get(c["member"])
            if profile is None or not profile.email or profile.email_bounced:
                self.side.execute("UPDATE claims SET notify = 'no-address' WHERE id = ?", (c["id"],))
                continue
            if not self.side.execute(
                "UPDATE claims SET notify = 'sending' WHERE id = ? AND notify IS NULL", (c["id"],)
            ):
                continue
            subject, body = notice(c, profile.language, profile.full_name)
            try:
                self.mailer.send(profile.email, subject, body)
            except (OSError, smtplib.SMTPException):
                self.side.execute(
                    "UPDATE claims SET notify = NULL WHERE id = ?", (c["id"],)
                )  # not sent: retry
                continue
            self.side.execute("UPDATE claims SET notify = 'sent' WHERE id = ?", (c["id"],))
            sent += 1
        return sent
