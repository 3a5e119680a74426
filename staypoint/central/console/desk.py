"""The console's work without a screen: staff sign-in, member search, programme administration.

The Textual app (``app.py``) only calls these; tests drive them directly too.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from staypoint.central.application.services import Services
from staypoint.central.claims import ClaimsQueue
from staypoint.central.errors import Conflict, Forbidden, Invalid, Locked, NotFound, Unauthenticated
from staypoint.loyalty import member_numbers, pins
from staypoint.loyalty.events import iso, parse_iso
from staypoint.loyalty.program import Program, ProgramError, parse_program
from staypoint.loyalty.rates import parse_online_rules

ROLES = ("clerk", "marketing", "administrator")
# Which screens each role may open (the tab ids in app.py).
ALLOWED = {
    "clerk": {"members", "claims", "adjust", "rewards", "quarantine", "feedback", "fleet"},
    "marketing": {"members", "rewards", "marketing", "reports", "feedback", "fleet"},
    "administrator": {
        "members",
        "claims",
        "adjust",
        "rewards",
        "quarantine",
        "programme",
        "marketing",
        "reports",
        "feedback",
        "integrations",  # API keys and webhooks: who may reach the ledger from outside
        "fleet",
    },
}
MAX_TRIES, LOCK_MINUTES = 5, 30


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    role: str


class Desk:
    """Head office's desk over the API's services and the claims queue."""

    def __init__(self, services: Services, claims: ClaimsQueue) -> None:
        self.services = services
        self.claims = claims
        self.side = services.side
        self.ledger = services.ledger

    def close(self) -> None:
        """Close the stores the desk was built over (the side tables, profiles, the ledger)."""
        self.side.close()
        self.services.profiles.close()
        self.ledger.store.close()

    # -- staff ------------------------------------------------------------------------------
    def add_staff(self, staff_id: str, name: str, role: str, password: str) -> None:
        if role not in ROLES:
            raise Invalid(f"role is one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise Invalid("a console password is at least 8 characters")
        self.side.execute(
            "INSERT INTO staff (id, name, role, pw_hash) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "name = excluded.name, role = excluded.role, pw_hash = excluded.pw_hash",
            (staff_id, name, role, pins.hash_pin(password, os.urandom(16))),
        )

    def sign_in(self, staff_id: str, password: str, now: datetime) -> Staff:
        row = self.side.row(
            "SELECT name, role, pw_hash, failures, locked_until FROM staff WHERE id = ?", (staff_id,)
        )
        if row is None:
            raise Unauthenticated("staff id or password is not right")
        name, role, pw_hash, failures, locked = row
        if locked and now < parse_iso(str(locked)):
            raise Locked(f"too many wrong passwords: locked until {locked}")
        if pins.verify_pin(password, str(pw_hash)):
            self.side.execute("UPDATE staff SET failures = 0, locked_until = NULL WHERE id = ?", (staff_id,))
            return Staff(staff_id, str(name), str(role))
        failures = int(failures) + 1
        until = iso(now.replace(microsecond=0) + _minutes(LOCK_MINUTES)) if failures >= MAX_TRIES else None
        self.side.execute(
            "UPDATE staff SET failures = ?, locked_until = ? WHERE id = ?", (failures, until, staff_id)
        )
        raise Unauthenticated("staff id or password is not right")

    # -- members ----------------------------------------------------------------------------------
    def search(self, text: str) -> list[dict[str, Any]]:
        """By member number, e-mail, phone, name or card (keyed hash of the UID)."""
        text = text.strip()
        numbers: list[str] = []
        if not text:
            return []
        if text.replace(" ", "").isdigit() and member_numbers.is_valid(text):
            numbers.append(member_numbers.normalise(text))
        elif "@" in text:
            p = self.services.profiles.by_email(text)
            numbers += [p.member] if p else []
        elif text.startswith("+"):
            p = self.services.profiles.by_phone(text)
            numbers += [p.member] if p else []
        elif re.fullmatch(r"[0-9a-f]{32}", text):
            found = self.ledger.store.member_by_card(text)
            numbers += [found] if found else []
        else:
            numbers += [p.member for p in self.services.profiles.search_name(text, 50)]
        out = []
        for n in numbers:
            m = self.ledger.member(n)
            if m is not None:
                p = self.services.profiles.get(n)
                out.append(
                    {
                        "member": n,
                        "name": p.full_name if p else m["name"],
                        "tier": m["tier"],
                        "points": int(m["points"]),
                        "email": p.email if p else None,
                    }
                )
        return out

    def history(self, number: str, limit: int = 200) -> list[dict[str, Any]]:
        """Every event of the member, newest first (a kiosk's, the web's, the PMS's, the desk's)."""
        import json

        out = []
        for body in self.ledger.store.member_events(number, limit):
            ev = json.loads(body)
            data = ev.get("data", {})
            out.append(
                {
                    "at": ev["at"],
                    "type": ev["type"],
                    "source": ev["node"],
                    "points": data.get("points"),
                    "detail": data.get("reason") or data.get("folio") or data.get("reward") or "",
                }
            )
        return out

    def quarantine(self) -> list[dict[str, Any]]:
        """Open quarantined events and open debts, for the staff list (newest first)."""
        rows = [
            {
                "key": q["event_id"],
                "at": q["at"],
                "what": "quarantined",
                "node": q["node"],
                "member": q["member"] or "",
                "detail": f"{q['type']}: {q['reason']}",
            }
            for q in self.ledger.quarantine()
        ]
        rows += [
            {
                "key": None,
                "at": d["at"],
                "what": d["kind"],
                "node": d["node"],
                "member": d["member"],
                "detail": f"balance {d['balance']:,}"
                if d["kind"] != "value_overdraft"
                else f"stored value {d['balance'] / 100:.2f}",
            }
            for d in self.ledger.store.open_overdrafts()
        ]
        return sorted(rows, key=lambda r: str(r["at"]), reverse=True)

    def acknowledge(self, event_id: str, by: Staff, now: datetime) -> None:
        """Take a quarantined event off the open list once a person has dealt with it."""
        if not self.ledger.acknowledge_quarantine(event_id, by.id, now):
            raise NotFound(f"no open quarantined event {event_id}")

    def rewards(self) -> list[dict[str, Any]]:
        """The catalogue with central stock: the programme's stock minus vouchers given out."""
        program = self.services.program()
        issued = self.ledger.store.voucher_counts()
        return [
            {
                "code": r.code,
                "name": r.name,
                "points": r.points,
                "min_tier": r.min_tier or "",
                "stock": r.stock,
                "issued": issued.get(r.code, 0),
                "left": None if r.stock is None else r.stock - issued.get(r.code, 0),
            }
            for r in program.rewards
        ]

    # -- programme administration ----------------------------------------------------------------
    def validate(self, text: str) -> Program:
        """Parse the core and the online sections; ProgramError names the field."""
        program = parse_program(text, "new programme")
        parse_online_rules(program, "new programme")
        current = self.ledger.program()
        if current is not None and program.version <= current.version:
            raise ProgramError(
                "new programme", "program.version", f"must be above {current.version} (in force)"
            )
        return program

    def diff(self, text: str) -> str:
        current = self.ledger.program()
        old = current.source_text if current else ""
        return "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), "in force", "new"))

    def publish(self, text: str, effective: datetime, by: Staff, now: datetime) -> int:
        """Schedule a programme for ``effective``; published to the fleet when due (now, if past)."""
        if by.role != "administrator":
            raise Forbidden("only an administrator publishes a programme")
        program = self.validate(text)
        self.side.execute(
            "INSERT INTO program_schedule (version, document, effective, status, by_staff, created) "
            "VALUES (?, ?, ?, 'scheduled', ?, ?)",
            (program.version, text, iso(effective), by.id, iso(now)),
        )
        self.run_due(now)
        return program.version

    def run_due(self, now: datetime) -> list[int]:
        """Publish every scheduled programme whose effective time has come."""
        done = []
        for version, document in self.side.all(
            "SELECT version, document FROM program_schedule WHERE status = 'scheduled' AND effective <= ? "
            "ORDER BY version",
            (iso(now),),
        ):
            self.ledger.publish_program(str(document), now)
            self.side.execute(
                "UPDATE program_schedule SET status = 'published' WHERE version = ?", (version,)
            )
            done.append(int(version))
        return done

    def rollback(self, by: Staff, now: datetime) -> int:
        """Put the previous programme back in force, as a new version (nodes only move forward)."""
        if by.role != "administrator":
            raise Forbidden("only an administrator rolls a programme back")
        current = self.ledger.program()
        if current is None or current.version <= 1:
            raise Conflict("there is no earlier programme to go back to")
        previous = next(
            (t for v in range(current.version - 1, 0, -1) if (t := self.ledger.store.program(v)) is not None),
            None,
        )
        if previous is None:
            raise Conflict("there is no earlier programme to go back to")
        text = re.sub(r"(?m)^version\s*=\s*\d+", f"version = {current.version + 1}", previous, count=1)
        self.ledger.publish_program(text, now)
        return current.version + 1


def _minutes(n: int) -> Any:
    from datetime import timedelta

    return timedelta(minutes=n)
