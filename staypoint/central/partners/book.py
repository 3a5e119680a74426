"""Partner transfers both ways, booked as events on a head-office stream (docs/partners.md).

- **Accounts**: a member's number at a partner, checked against the partner's
  ``account_pattern`` (``[[partners]]`` in the programme), one member per account.
- **Outbound**: ``POST /v1/me/transfers`` books a ``points.adjusted`` (minus) on the web
  stream and a ``pending`` row here; :meth:`PartnerDesk.settle` puts every pending transfer
  of a day (and any earlier one) into that day's batch and writes the batch's CSV file,
  one per partner per day (the same bytes on a re-run).
- **Reconciliation**: the partner's confirmation file marks each transfer ``confirmed`` or
  ``rejected``; a rejected one is credited back by a ``points.adjusted`` whose id is derived
  from the transfer, so it is booked once however often the file is imported.
- **Inbound**: a partner's credit file books ``points.adjusted`` (plus) to the member whose
  account it names; the event id is derived from (partner, reference), so a re-run of the
  same file books nothing new.

Every event goes through ``EventSources.emit`` on the stream ``partner-<code>`` (the
programme's bounds, the ledger's fold, the change log to every node). A whole file is one
``emit``: one ledger transaction, all of it or none.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from staypoint.central.application.partners import (
    PartnerError,
    find_partner,
    link_account,
    linked_accounts,
)
from staypoint.central.application.sources import Draft, EventSources, OutOfBounds
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.partners.files import (
    PartnerFileError,
    read_confirmations,
    read_credits,
    settlement_csv,
)
from staypoint.fsutil import atomic_write
from staypoint.loyalty import bounds
from staypoint.loyalty.events import iso
from staypoint.loyalty.rates import Partner, parse_online_rules

# Name-based ids (RFC 9562 v5) of the events a partner file books: the same row, the same id.
NAMESPACE = uuid.UUID("6b3f2c1e-5d7a-4e0b-9a51-7f1d2a9c8e44")


@dataclass(frozen=True)
class Settlement:
    batch: str
    partner: str
    day: str
    transfers: int
    points: int
    units: int
    path: Path
    new: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "partner": self.partner,
            "day": self.day,
            "transfers": self.transfers,
            "points": self.points,
            "units": self.units,
            "file": str(self.path),
            "new": self.new,
        }


def batch_id(partner: str, day: str) -> str:
    return f"SP-{partner}-{day.replace('-', '')}"


def event_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(parts)))


class PartnerDesk:
    """Head office's partner bookkeeping over the ledger and the side tables."""

    def __init__(self, ledger: Ledger, side: SideStore, sources: EventSources | None = None) -> None:
        self.ledger = ledger
        self.side = side
        self.sources = sources or EventSources(ledger)

    # -- the programme's partners --------------------------------------------------------------
    def partners(self) -> tuple[Partner, ...]:
        program = self.ledger.program()
        return () if program is None else parse_online_rules(program).partners

    def partner(self, code: str) -> Partner:
        return find_partner(self.partners(), code)

    def _stream(self, partner: Partner) -> str:
        return f"partner-{partner.code.lower()}"

    def _max_points(self) -> int:
        program = self.ledger.program()
        return (program.bounds if program is not None else bounds.Bounds()).points_per_event

    # -- accounts ------------------------------------------------------------------------------
    def link(self, member: str, code: str, account: str, by: str, now: datetime) -> dict[str, Any]:
        """Link ``member``'s number at partner ``code`` (re-linking replaces the old number);
        the rules are the API's too (``application/partners.py``)."""
        return link_account(self.ledger, self.side, self.partners(), member, code, account, by, now)

    def accounts(self, member: str | None = None) -> list[dict[str, Any]]:
        return linked_accounts(self.side, member)

    # -- outbound: settlement files ------------------------------------------------------------
    def settle(self, code: str, day: date, now: datetime, folder: Path) -> Settlement:
        """Write partner ``code``'s settlement file for ``day`` (a day that is over, UTC)."""
        partner = self.partner(code)
        if day >= now.date():
            raise PartnerError(f"{day} is not over yet (UTC): settle it from {day + timedelta(days=1)}")
        d = day.isoformat()
        batch = batch_id(partner.code, d)
        with self.side.transaction():
            known = self.side.row("SELECT file FROM partner_batches WHERE batch = ?", (batch,))
            added = self.side.execute(
                "UPDATE partner_transfers SET batch = ?, status = 'sent' "
                "WHERE partner = ? AND batch IS NULL AND day <= ?",
                (batch, partner.code, d),
            )
            rows = self.side.all(
                "SELECT transfer, account, units, points FROM partner_transfers WHERE batch = ? "
                "ORDER BY at, transfer",
                (batch,),
            )
            body = [(str(t), str(a), int(u), int(p)) for t, a, u, p in rows]
            path = folder / partner.code / f"{partner.code}-{d.replace('-', '')}.csv"
            atomic_write(path, settlement_csv(batch, partner.code, d, body))
            totals = (len(body), sum(r[3] for r in body), sum(r[2] for r in body))
            self.side.execute(
                "INSERT INTO partner_batches (batch, partner, day, transfers, points, units, file, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (batch) DO UPDATE SET "
                "transfers = excluded.transfers, points = excluded.points, units = excluded.units, "
                "file = excluded.file",
                (batch, partner.code, d, *totals, str(path), iso(now)),
            )
        return Settlement(batch, partner.code, d, *totals, path, known is None or added > 0)

    def settle_due(self, now: datetime, folder: Path) -> list[Settlement]:
        """The daily job: yesterday's file for every partner (late transfers of earlier days
        go into it too), each written once and rewritten unchanged on a re-run."""
        yesterday = now.date() - timedelta(days=1)
        return [self.settle(p.code, yesterday, now, folder) for p in self.partners()]

    # -- reconciliation ------------------------------------------------------------------------
    def confirm(self, code: str, path: Path, now: datetime) -> dict[str, int]:
        """Import the partner's confirmation file; rejected transfers are credited back once."""
        partner = self.partner(code)
        rows, errors = read_confirmations(path)
        with self.side.transaction():  # one partner job at a time: one writer per stream
            seen: dict[str, str] = {}
            todo: list[
                tuple[str, str, str, str, int, int]
            ] = []  # transfer, status, reason, member, pts, units
            unchanged = 0
            for r in rows:
                where = f"{path.name}:{r.line}"
                got = self.side.row(
                    "SELECT member, points, units, batch, status FROM partner_transfers "
                    "WHERE transfer = ? AND partner = ?",
                    (r.reference, partner.code),
                )
                if got is None:
                    errors.append(f"{where}: no transfer {r.reference} to {partner.code}")
                    continue
                member, points, units, batch, status = got
                if batch is None:
                    errors.append(f"{where}: transfer {r.reference} is in no settlement file yet")
                elif r.batch is not None and r.batch != batch:
                    errors.append(f"{where}: transfer {r.reference} was sent in {batch}, not {r.batch}")
                elif seen.get(r.reference, r.status) != r.status:
                    errors.append(
                        f"{where}: transfer {r.reference} is both confirmed and rejected in this file"
                    )
                elif status in CONFIRMED_OR_REJECTED and status != r.status:
                    errors.append(f"{where}: transfer {r.reference} was already {status}")
                elif status == r.status or r.reference in seen:
                    unchanged += 1
                else:
                    todo.append((r.reference, r.status, r.reason, str(member), int(points), int(units)))
                seen[r.reference] = r.status
            if errors:
                raise PartnerFileError(errors)
            drafts = [
                Draft(
                    "points.adjusted",
                    member,
                    {
                        "points": points,
                        "reason": f"transfer to {partner.name} rejected: {reason or 'no reason given'}"[:500],
                        "staff": "partner",
                        "partner": partner.code,
                        "transfer": transfer,
                        "units": units,
                    },
                    id=event_id("partner-return", transfer),
                )
                for transfer, status, reason, member, points, units in todo
                if status == "rejected"
            ]
            self._emit(partner, drafts, now, path)
            for transfer, status, reason, _member, _points, _units in todo:
                refund = event_id("partner-return", transfer) if status == "rejected" else None
                self.side.execute(
                    "UPDATE partner_transfers SET status = ?, reason = ?, decided_at = ?, refund_event = ? "
                    "WHERE transfer = ?",
                    (status, reason or None, iso(now), refund, transfer),
                )
        return {
            "confirmed": sum(1 for t in todo if t[1] == "confirmed"),
            "rejected": sum(1 for t in todo if t[1] == "rejected"),
            "points_returned": sum(t[4] for t in todo if t[1] == "rejected"),
            "unchanged": unchanged,
        }

    def reconcile(self, code: str | None = None, day: date | None = None) -> list[dict[str, Any]]:
        """What we sent against what the partner answered, one row per batch (and what is not sent yet)."""
        where, args = ["1 = 1"], []
        if code:
            where.append("t.partner = ?")
            args.append(self.partner(code).code)
        if day:
            where.append("coalesce(b.day, t.day) = ?")
            args.append(day.isoformat())
        rows = self.side.all(
            "SELECT t.partner, coalesce(t.batch, ''), coalesce(b.day, ''), count(*), sum(t.points), "
            "sum(t.units), "
            "sum(CASE WHEN t.status = 'confirmed' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN t.status = 'rejected' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN t.status = 'sent' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN t.status = 'rejected' THEN t.points ELSE 0 END) "
            "FROM partner_transfers t LEFT JOIN partner_batches b ON b.batch = t.batch "
            f"WHERE {' AND '.join(where)} GROUP BY 1, 2, 3 ORDER BY 1, 3, 2",
            args,
        )
        keys = (
            "partner",
            "batch",
            "day",
            "transfers",
            "points",
            "units",
            "confirmed",
            "rejected",
            "unanswered",
            "points_returned",
        )
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            for k in keys[3:]:
                d[k] = int(d[k] or 0)
            d["batch"] = d["batch"] or "(not sent yet)"
            out.append(d)
        return out

    def transfers(self, code: str, batch: str | None = None) -> list[dict[str, Any]]:
        partner = self.partner(code)
        rows = self.side.all(
            "SELECT transfer, member, account, points, units, day, batch, status, reason "
            "FROM partner_transfers WHERE partner = ?"
            + (" AND batch = ?" if batch else "")
            + " ORDER BY at, transfer",
            (partner.code, batch) if batch else (partner.code,),
        )
        keys = ("transfer", "member", "account", "points", "units", "day", "batch", "status", "reason")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- inbound: credits ----------------------------------------------------------------------
    def credit(self, code: str, path: Path, now: datetime) -> dict[str, int]:
        """Book a partner's credit file; idempotent by the partner's reference."""
        partner = self.partner(code)
        rows, errors = read_credits(path, self._max_points())
        with self.side.transaction():
            seen: set[str] = set()
            todo: list[tuple[str, str, str, int, str]] = []  # reference, member, account, points, note
            already = 0
            for r in rows:
                where = f"{path.name}:{r.line}"
                if r.reference in seen:
                    errors.append(f"{where}: reference {r.reference} appears twice in this file")
                    continue
                seen.add(r.reference)
                if not partner.valid_account(r.account):
                    errors.append(f"{where}: {r.account!r} is not a {partner.name} account number")
                    continue
                member = self.side.one(
                    "SELECT member FROM partner_accounts WHERE partner = ? AND account = ?",
                    (partner.code, r.account),
                )
                if member is None:
                    errors.append(f"{where}: {partner.name} account {r.account} is linked to no member")
                    continue
                booked = self.side.row(
                    "SELECT account, points FROM partner_credits WHERE partner = ? AND reference = ?",
                    (partner.code, r.reference),
                )
                if booked is not None:
                    if (str(booked[0]), int(booked[1])) != (r.account, r.points):
                        errors.append(
                            f"{where}: reference {r.reference} was booked before with "
                            f"{int(booked[1]):,} points to {booked[0]}"
                        )
                    else:
                        already += 1
                    continue
                todo.append((r.reference, str(member), r.account, r.points, r.note))
            if errors:
                raise PartnerFileError(errors)
            drafts = [
                Draft(
                    "points.adjusted",
                    member,
                    {
                        "points": points,
                        "reason": f"credit from {partner.name} ({reference}){': ' + note if note else ''}"[
                            :500
                        ],
                        "staff": "partner",
                        "partner": partner.code,
                        "reference": reference,
                        "account": account,
                    },
                    id=event_id("partner-credit", partner.code, reference),
                )
                for reference, member, account, points, note in todo
            ]
            self._emit(partner, drafts, now, path)
            for reference, member, account, points, _note in todo:
                self.side.execute(
                    "INSERT INTO partner_credits (partner, reference, member, account, points, event_id, "
                    "file, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (partner, reference) DO NOTHING",
                    (
                        partner.code,
                        reference,
                        member,
                        account,
                        points,
                        event_id("partner-credit", partner.code, reference),
                        path.name,
                        iso(now),
                    ),
                )
        return {"booked": len(todo), "points": sum(t[3] for t in todo), "already_booked": already}

    def _emit(self, partner: Partner, drafts: Sequence[Draft], now: datetime, path: Path) -> None:
        if not drafts:
            return
        try:
            self.sources.emit(self._stream(partner), drafts, now)
        except OutOfBounds as exc:
            raise PartnerFileError([f"{path.name}: nothing booked: {exc}"]) from None


CONFIRMED_OR_REJECTED = ("confirmed", "rejected")
