"""``staypoint central partners``: accounts, settlement files, confirmations, credits, reconciliation.

Registered by ``staypoint/central/cli.py``; each refusal is one line on stderr and exit 1,
a bad row of a partner's file one numbered line each, and nothing booked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from staypoint.central.application.partners import PartnerError
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.partners.book import PartnerDesk
from staypoint.central.partners.files import PartnerFileError
from staypoint.central.store import (
    StoreConfigError,
    add_store_option,
    open_ledger_store,
    parse_store_url,
    store_url,
)
from staypoint.loyalty.events import parse_iso


def side_url(store: str, side: str | None) -> str:
    """``--side`` as a canonical URL; on PostgreSQL it defaults to the ledger's own database."""
    try:
        parsed = parse_store_url(store)
        got = parse_store_url(side) if side else (parsed if parsed.is_pg else None)
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    if got is None:
        raise SystemExit("staypoint: --side is needed with a SQLite ledger (sqlite:///path/side.db)")
    return got.canonical()


@contextmanager
def open_desk(store: str, side: str | None) -> Iterator[PartnerDesk]:
    url = side_url(store, side)
    try:
        ledger = Ledger(open_ledger_store(store, must_exist=True))
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    side_store = SideStore(url)
    try:
        yield PartnerDesk(ledger, side_store)
    finally:
        side_store.close()
        ledger.store.close()


def _now(args: argparse.Namespace) -> datetime:
    if not getattr(args, "now", None):
        return datetime.now(UTC)
    try:
        return parse_iso(args.now)
    except ValueError:
        raise SystemExit(f"staypoint: --now {args.now!r} is not an ISO time (2026-11-24T03:00:00Z)") from None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"staypoint: --date {text!r} is not a date (YYYY-MM-DD)") from None


def _run(args: argparse.Namespace, work: Callable[[PartnerDesk], Any]) -> None:
    with open_desk(store_url(args), args.side) as desk:
        try:
            out = work(desk)
        except PartnerError as exc:
            sys.exit(f"staypoint: {exc}")
        except PartnerFileError as exc:
            for line in exc.lines:
                print(f"staypoint: {line}", file=sys.stderr)
            sys.exit(1)
    if args.json:
        print(json.dumps(out))
    elif isinstance(out, list):
        for row in out:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
        if not out:
            print("nothing")
    else:
        print("  ".join(f"{k}={v}" for k, v in out.items()))


def cmd_link(args: argparse.Namespace) -> None:
    _run(args, lambda d: d.link(args.member, args.partner, args.account, args.by, _now(args)))


def cmd_accounts(args: argparse.Namespace) -> None:
    _run(args, lambda d: d.accounts(args.member))


def cmd_settle(args: argparse.Namespace) -> None:
    now = _now(args)
    folder = Path(args.out)
    if args.partner:
        day = _day(args.date) if args.date else None
        if day is None:
            raise SystemExit("staypoint: --partner needs --date YYYY-MM-DD")
        _run(args, lambda d: d.settle(args.partner, day, now, folder).to_dict())
    else:
        _run(args, lambda d: [s.to_dict() for s in d.settle_due(now, folder)])


def cmd_confirm(args: argparse.Namespace) -> None:
    _run(args, lambda d: d.confirm(args.partner, Path(args.file), _now(args)))


def cmd_credit(args: argparse.Namespace) -> None:
    _run(args, lambda d: d.credit(args.partner, Path(args.file), _now(args)))


def cmd_reconcile(args: argparse.Namespace) -> None:
    day = _day(args.date) if args.date else None
    if args.batch:
        _run(args, lambda d: d.transfers(args.partner or "", args.batch))
    else:
        _run(args, lambda d: d.reconcile(args.partner, day))


def _common(p: argparse.ArgumentParser, now_help: str = argparse.SUPPRESS) -> None:
    add_store_option(p)
    p.add_argument("--now", help=now_help)
    p.add_argument("--side", help="head office's side tables (sqlite:///path; on PostgreSQL the ledger's)")
    p.add_argument("--json", action="store_true")


def register(central: Any) -> None:
    """Add ``central partners ...`` to ``central``'s subparsers."""
    sub = central.add_parser(
        "partners", help="partner transfers both ways: accounts, settlement, confirmations, credits"
    ).add_subparsers(dest="partners_cmd", required=True)
    p = sub.add_parser("link", help="link a member's account number at a partner")
    _common(p)
    p.add_argument("member")
    p.add_argument("--partner", required=True)
    p.add_argument("--account", required=True, help="the member's number at the partner")
    p.add_argument("--by", default="head-office", help="who links it (recorded)")
    p.set_defaults(fn=cmd_link)
    p = sub.add_parser("accounts", help="linked partner accounts")
    _common(p)
    p.add_argument("--member")
    p.set_defaults(fn=cmd_accounts)
    p = sub.add_parser("settle", help="write settlement files (one per partner per day)")
    _common(p, "ISO time to run as of (default: now)")
    p.add_argument("--partner", help="one partner (with --date); default: every partner, yesterday")
    p.add_argument("--date", help="the day to settle (YYYY-MM-DD, a day that is over, UTC)")
    p.add_argument("--out", required=True, help="folder for the files: OUT/PARTNER/PARTNER-YYYYMMDD.csv")
    p.set_defaults(fn=cmd_settle)
    p = sub.add_parser("confirm", help="import a partner's confirmation file (reference,status[,reason])")
    _common(p)
    p.add_argument("file")
    p.add_argument("--partner", required=True)
    p.set_defaults(fn=cmd_confirm)
    p = sub.add_parser("credit", help="book a partner's credit file (reference,account,points[,note])")
    _common(p)
    p.add_argument("file")
    p.add_argument("--partner", required=True)
    p.set_defaults(fn=cmd_credit)
    p = sub.add_parser("reconcile", help="what we sent against what each partner confirmed, by batch")
    _common(p)
    p.add_argument("--partner")
    p.add_argument("--date", help="one day (YYYY-MM-DD)")
    p.add_argument("--batch", help="every transfer of one batch (with --partner)")
    p.set_defaults(fn=cmd_reconcile)
