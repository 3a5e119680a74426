"""Missing-points claims (积分申诉): one queue at head office for the kiosks' and the web's claims.

Claims arrive as ``claim.recorded`` events (a kiosk's stream or the web's), read from the
ledger in applied order (a cursor in the side tables). Each is matched against the folios
the property systems posted (property, folio, dates):
- folio posted without a member, on a channel that earns → approved at once: a
  ``points.adjusted`` event with clerk ``auto`` and the points the programme gives;
- folio already credited to this member → rejected at once ("already credited");
- otherwise it waits for a clerk, who approves (an adjustment event with the clerk's id)
  or rejects with a reason.
The member is told either way, by e-mail when a mail server is configured. The send is
marked ``sending`` before and ``sent`` after; a send cut off between the two is marked
``uncertain`` and listed for a person, never repeated silently.
"""

from __future__ import annotations

import json
import smtplib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

from staypoint.central.api.service import ApiError, Services
from staypoint.central.api.sources import Draft
from staypoint.loyalty.earning import stay_points
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
    """The claims queue over the API's services (ledger, profiles, side tables, event sources)."""

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
        self.side.execute(
            "UPDATE folios SET claimed_by = ? WHERE property = ? AND folio = ?",
            (claim["member"], claim["property"], claim["folio"]),
        )
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
            raise ApiError(404, f"no claim {claim_id}")
        return dict(zip(COLUMNS, found, strict=True))

    def approve(
        self, claim_id: str, clerk: str, points: int, now: datetime, note: str = ""
    ) -> dict[str, Any]:
        """A clerk approves: an adjustment event with the clerk's id, then the member is told."""
        if points <= 0:
            raise ApiError(422, "an approved claim gives a positive number of points")
        claim = self.get(claim_id)
        if claim["status"] != "pending":
            raise ApiError(409, f"claim {claim_id} is already {claim['status']}")
        self._decide(claim, "approved", clerk, points, note or "approved by head office", now)
        self.notify_pending()
        return self.get(claim_id)

    def reject(self, claim_id: str, clerk: str, reason: str, now: datetime) -> dict[str, Any]:
        if not reason.strip():
            raise ApiError(422, "a rejection needs a reason the member can read")
        claim = self.get(claim_id)
        if claim["status"] != "pending":
            raise ApiError(409, f"claim {claim_id} is already {claim['status']}")
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
                raise ApiError(409, f"claim {claim['id']} was decided meanwhile")
            if status == "approved" and points:
                events, _ = self.services.sources.emit(
                    "console",
                    [
                        Draft(
                            "points.adjusted",
                            claim["member"],
                            {
                                "points": points,
                                "reason": f"missing-points claim, folio {claim['folio']}",
                                "staff": clerk,
                                "claim": claim["id"],
                            },
                        )
                    ],
                    now,
                )
                self.side.execute("UPDATE claims SET event_id = ? WHERE id = ?", (events[0].id, claim["id"]))

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
            if c["status"] == "approved":
                subject = f"Your missing-points claim for folio {c['folio']} is approved"
                body = f"We added {c['points']:,} points to your account {c['member']}.\n"
            else:
                subject = f"Your missing-points claim for folio {c['folio']}"
                body = f"We could not add points for folio {c['folio']}: {c['reason']}.\n"
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
