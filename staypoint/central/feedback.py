"""The feedback loop: every ``feedback.recorded`` into a follow-up list, a low score from the
top tier alarmed, and ``staypoint central feedback`` (docs/console.md, Feedback).

Feedback arrives as events (a kiosk's stream or the web's), read from the ledger in applied
order (a cursor in the side tables, like the claims queue) into the ``feedback`` side table
with the member's tier at that moment and the property (the event's, else the node's). Staff
follow each one up: ``open`` → ``contacted`` → ``closed``, with who and when.

Alert: a score of ``ALERT_STARS`` or fewer from a member of the programme's highest tier is
written to head office's ``alarms`` table (kind ``feedback_low_score``, both stores) once,
when it is first read, and stays at the top of the console's Feedback tab until it is
closed. The fleet monitor's alerts are the wrong place: they are about nodes, held in the
monitor's memory, and go to the technicians' mail; a guest's complaint is head office's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from staypoint.central.application.state import SideStore
from staypoint.central.errors import Invalid
from staypoint.central.ledger import Ledger
from staypoint.central.store import StoreConfigError, add_store_option, open_ledger_store, parse_store_url
from staypoint.central.store import store_url as given_store_url
from staypoint.loyalty.events import iso

CURSOR = "feedback"
STATUSES = ("open", "contacted", "closed")
ALERT_STARS = 2
ALARM = "feedback_low_score"
COLUMNS = (
    "id",
    "member",
    "node",
    "property",
    "tier",
    "tier_rank",
    "stars",
    "tags",
    "comment",
    "at",
    "status",
    "status_by",
    "status_at",
    "note",
    "alerted",
)


class FeedbackError(Invalid, ValueError):
    """A refusal in one line."""


class FeedbackDesk:
    """The follow-up list over the ledger (read) and the side tables (kept)."""

    def __init__(self, ledger: Ledger, side: SideStore) -> None:
        self.ledger = ledger
        self.side = side

    def _ranks(self) -> tuple[dict[str, int], int]:
        program = self.ledger.program()
        if program is None:
            return {}, 0
        return {t.code: t.rank for t in program.tiers}, len(program.tiers) - 1

    def pull(self, now: datetime) -> dict[str, int]:
        """Take new feedback events into the list; alarm a low score from the top tier (once)."""
        counts = {"new": 0, "alerts": 0}
        ranks, top = self._ranks()
        store = self.ledger.store
        while True:
            position = self.side.cursor_position(CURSOR)
            batch = store.events_after(position, ["feedback.recorded"], 500)
            if not batch:
                break
            with self.side.transaction():
                for pos, body in batch:
                    position = pos
                    ev = json.loads(body)
                    data = ev.get("data") or {}
                    member = ev.get("member")
                    doc = store.member(member) if member else None
                    tier = str(doc["tier"]) if doc else "-"
                    rank = ranks.get(tier, -1)
                    prop = str(data.get("property") or store.node_property(ev["node"]) or ev["node"])[:40]
                    tags = [str(t)[:40] for t in (data.get("tags") or [])][:20]
                    stars = int(data.get("stars", 0))
                    alert = stars <= ALERT_STARS and doc is not None and rank == top and top > 0
                    added = self.side.execute(
                        "INSERT INTO feedback (id, member, node, property, tier, tier_rank, stars, tags, "
                        "comment, at, status, alerted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?) "
                        "ON CONFLICT (id) DO NOTHING",
                        (
                            ev["id"],
                            member,
                            ev["node"],
                            prop,
                            tier,
                            rank,
                            stars,
                            json.dumps(tags, ensure_ascii=False),
                            str(data.get("comment", ""))[:1000],
                            ev["at"],
                            iso(now) if alert else None,
                        ),
                    )
                    counts["new"] += added
                    if added and alert:
                        counts["alerts"] += 1
                        store.add_alarm(
                            ALARM,
                            ev["node"],
                            f"{stars} stars from {tier} member {member} at {prop} (feedback {ev['id']})",
                            iso(now),
                        )
                self.side.set_cursor(CURSOR, position)
        return counts

    def search(
        self,
        *,
        property_: str | None = None,
        tier: str | None = None,
        status: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Lowest scores first, then the highest tiers, then the newest; alerts still open on top."""
        where, args = ["1 = 1"], []
        for col, value in (("property", property_), ("tier", tier), ("status", status)):
            if value:
                where.append(f"{col} = ?")
                args.append(value.upper() if col != "status" else value)
        rows = self.side.all(
            f"SELECT {', '.join(COLUMNS)} FROM feedback WHERE {' AND '.join(where)} "
            "ORDER BY CASE WHEN alerted IS NOT NULL AND status <> 'closed' THEN 0 ELSE 1 END, "
            "stars, tier_rank DESC, at DESC LIMIT ?",
            [*args, limit],
        )
        out = []
        for r in rows:
            d = dict(zip(COLUMNS, r, strict=True))
            d["tags"] = json.loads(d["tags"])
            out.append(d)
        return out

    def open_alerts(self) -> int:
        return int(
            self.side.one("SELECT count(*) FROM feedback WHERE alerted IS NOT NULL AND status <> 'closed'")
            or 0
        )

    def follow_up(
        self, feedback_id: str, status: str, by: str, now: datetime, note: str = ""
    ) -> dict[str, Any]:
        """Mark a feedback ``contacted`` or ``closed`` (or ``open`` again), with who and when."""
        if status not in STATUSES:
            raise FeedbackError(f"status is one of {', '.join(STATUSES)}")
        if not by.strip():
            raise FeedbackError("say who follows it up (--by)")
        if len(note) > 500:
            raise FeedbackError("a note is at most 500 characters")
        with self.side.transaction():
            row = self.side.row(
                "SELECT id FROM feedback WHERE id = ? OR id LIKE ?", (feedback_id, f"%{feedback_id}")
            )
            if row is None:
                raise FeedbackError(f"no feedback {feedback_id}")
            self.side.execute(
                "UPDATE feedback SET status = ?, status_by = ?, status_at = ?, note = ? WHERE id = ?",
                (status, by.strip(), iso(now), note or None, row[0]),
            )
        return {"id": str(row[0]), "status": status, "by": by.strip(), "at": iso(now)}


# -- staypoint central feedback ----------------------------------------------------------------
@contextmanager
def _desk(args: argparse.Namespace) -> Iterator[FeedbackDesk]:
    try:
        url = given_store_url(args)
        parsed = parse_store_url(url)
        side = parse_store_url(args.side) if args.side else (parsed if parsed.is_pg else None)
        if side is None:
            raise StoreConfigError("--side is needed with a SQLite ledger (sqlite:///path/side.db)")
        ledger = Ledger(open_ledger_store(url, must_exist=True))
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    side_store = SideStore(side.canonical())
    try:
        yield FeedbackDesk(ledger, side_store)
    finally:
        side_store.close()
        ledger.store.close()


def cmd_feedback(args: argparse.Namespace) -> None:
    """List feedback for follow-up (lowest scores, highest tiers first), or follow one up."""
    now = datetime.now(UTC)
    with _desk(args) as desk:
        pulled = desk.pull(now)
        if args.follow_up:
            try:
                done = desk.follow_up(
                    args.follow_up, args.status or "contacted", args.by or "", now, args.note or ""
                )
            except FeedbackError as exc:
                sys.exit(f"staypoint: {exc}")
            print(json.dumps(done) if args.json else f"{done['id']}: {done['status']} by {done['by']}")
            return
        rows = desk.search(property_=args.property, tier=args.tier, status=args.status)
        if args.json:
            print(json.dumps({"pulled": pulled, "open_alerts": desk.open_alerts(), "feedback": rows}))
            return
        for r in rows:
            flag = "ALERT " if r["alerted"] and r["status"] != "closed" else ""
            who = f" ({r['status_by']} {r['status_at'][:16]})" if r["status_by"] else ""
            print(
                f"{flag}{r['stars']}★  {r['tier']:<9} {r['property']:<6} {r['member'] or '-'}  "
                f"{','.join(r['tags']) or '-'}  {r['comment'][:60] or '-'}  [{r['status']}{who}]  {r['id']}"
            )
        if not rows:
            print("no feedback")


def register(central: Any) -> None:
    p = central.add_parser("feedback", help="members' feedback: follow-up list, low-score alerts")
    add_store_option(p)
    p.add_argument("--side", help="head office's side tables (sqlite:///path; on PostgreSQL the ledger's)")
    p.add_argument("--property")
    p.add_argument("--tier")
    p.add_argument("--status", choices=STATUSES, help="list only these; with --follow-up, the new status")
    p.add_argument("--follow-up", metavar="ID", help="a feedback id (or its last characters)")
    p.add_argument("--by", help="who follows it up (recorded)")
    p.add_argument("--note", help="what was done (at most 500 characters)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_feedback)
