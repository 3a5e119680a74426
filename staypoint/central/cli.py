"""``staypoint central serve`` and ``staypoint central jobs --now ISO``."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import socket
import sys
import threading
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staypoint.central.leader import (
    DEFAULT_SHARDS,
    Leadership,
    PgLeadership,
    PgShards,
    ServeLockHeld,
    ShardCountMismatch,
    SqliteServeLock,
)
from staypoint.central.ledger import Ledger
from staypoint.central.server import MAX_INGEST_THREADS, HeadOffice, MqttSettings
from staypoint.central.store import (
    LedgerStore,
    StoreConfigError,
    StoreUrl,
    add_store_option,
    open_ledger_store,
    parse_store_url,
    store_url,
)
from staypoint.entry import run_group
from staypoint.gc_tuning import tune_for_throughput
from staypoint.loyalty import member_numbers, replicas
from staypoint.loyalty.events import parse_iso
from staypoint.loyalty.program import Program, ProgramError, load_program
from staypoint.mqtt_tls import OFFICE_PORT
from staypoint.progress import add_quiet_option

if TYPE_CHECKING:
    from staypoint.central.node_first_pin import NodeFirstPins


def open_store(url: str, *, must_exist: bool = False) -> LedgerStore:
    """The ledger store ``url`` names; a bad URL or a missing ledger ends the command in one line."""
    try:
        return open_ledger_store(url, must_exist=must_exist)
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None


def _ledger(args: argparse.Namespace, *, must_exist: bool = False) -> Ledger:
    store = open_store(store_url(args), must_exist=must_exist)
    revoked_file = getattr(args, "revoked", None)
    if revoked_file:
        from staypoint.central.fleet.revoked import RevokedNodes

        return Ledger(store, revoked=RevokedNodes(Path(revoked_file)))
    return Ledger(store)


def cmd_serve(args: argparse.Namespace) -> None:
    """Run head office on the broker until SIGTERM / SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    jobs_at = _jobs_at(args.jobs_at)
    try:
        where = parse_store_url(store_url(args))
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    leadership: Leadership
    if not 0 <= args.shards <= 4096:
        raise SystemExit(f"staypoint: --shards {args.shards}: between 0 and 4096")
    # PostgreSQL: two by default (one waits on the server's round trips and fsync most of its
    # time, docs/scale.md); SQLite has one writer, so one.
    threads = args.ingest_threads if args.ingest_threads is not None else (2 if where.is_pg else 1)
    if not 1 <= threads <= MAX_INGEST_THREADS:
        raise SystemExit(f"staypoint: --ingest-threads {threads}: between 1 and {MAX_INGEST_THREADS}")
    if threads > 1 and not where.is_pg:
        raise SystemExit("staypoint: --ingest-threads: more than one needs PostgreSQL (SQLite: one writer)")
    if where.is_pg:
        # Any number of processes on one PostgreSQL ledger: shared subscriptions, one leader.
        share: str | None = args.share_group
        client_id = args.client_id or f"head-office-{socket.gethostname()}-{os.getpid()}"
    else:
        share, client_id = None, args.client_id or "head-office"
        try:  # one process per SQLite ledger: a second is refused before it touches anything
            leadership = SqliteServeLock(Path(where.path or where.url)).acquire()
        except ServeLockHeld as exc:
            raise SystemExit(f"staypoint: {exc}") from None
    ledger = _ledger(args)
    shards: PgShards | None = None
    if where.is_pg:
        if args.shards:  # each node's batches in one process's hands (docs/scale.md)
            try:
                shards = PgShards(where.url, args.shards, poll=args.leader_poll).start()
            except ShardCountMismatch as exc:
                raise SystemExit(f"staypoint: {exc}") from None
        leadership = PgLeadership(where.url, poll=args.leader_poll).start()
    if args.program:
        try:  # checked here so the error names the file, and bytes that are not text are refused
            text = load_program(Path(args.program)).source_text
        except ProgramError as exc:
            sys.exit(f"staypoint: {exc}")
        ledger.publish_program(text, parse_iso("1970-01-01T00:00:00Z"))
    first_pins = _first_pins(args, ledger, where, client_id)
    office = HeadOffice(
        ledger,
        MqttSettings(
            args.host,
            args.port,
            Path(args.ca),
            Path(args.cert),
            Path(args.key),
            client_id=client_id,
            share_group=share,
        ),
        leader=leadership,
        shards=shards,
        jobs_at=jobs_at,
        first_pins=first_pins,
        ingest_threads=threads,
    )
    done = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tune_for_throughput()  # the ledger, programme and caches are loaded: frozen out of collections
    office.start(timeout=args.connect_timeout)
    print("head office serving", file=sys.stderr, flush=True)
    done.wait()
    office.stop()
    if shards is not None:
        shards.stop()
    leadership.stop()
    if first_pins is not None:
        first_pins.side.close()
    ledger.store.close()


def _first_pins(
    args: argparse.Namespace, ledger: Ledger, where: StoreUrl, client_id: str
) -> NodeFirstPins | None:
    """Kiosks' first PINs for imported members (central/node_first_pin.py) with head office's
    side tables (``--side``, where the codes are); without it, None: kiosks are told no."""
    if not args.side:
        return None
    from staypoint.central.application.state import SideStore
    from staypoint.central.node_first_pin import NodeFirstPins

    try:
        side = parse_store_url(args.side)
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: --side: {exc}") from None
    # One stream per process (its seqs are its own): on PostgreSQL, where several serve, the
    # client id's tail tells them apart unless --stream-suffix names one.
    suffix = args.stream_suffix
    if suffix is None:
        suffix = client_id.removeprefix("head-office").strip("-") if where.is_pg else ""
    return NodeFirstPins(ledger, SideStore(side.canonical()), suffix=suffix)


def _jobs_at(text: str | None) -> dtime | None:
    if text is None:
        return None
    try:
        return dtime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"staypoint: --jobs-at {text!r}: not a time of day (HH:MM, UTC)") from None


def _now(text: str | None) -> datetime:
    if text is None:  # the daily timer (staypoint-jobs.timer): the jobs run as of now
        return datetime.now(UTC)
    try:
        return parse_iso(text)
    except ValueError:
        raise SystemExit(f"staypoint: --now {text!r} is not an ISO time (2026-11-23T03:00:00Z)") from None


def cmd_jobs(args: argparse.Namespace) -> None:
    """Window-end downgrades, points expiry and hold expiry as of ``--now`` (testable)."""
    now = _now(args.now)
    url = store_url(args)
    parsed = _parsed(url)
    # On PostgreSQL the profiles default to the ledger's own database (as --side does): the
    # campaigns then run whenever --campaigns or --side is given.
    profiles = args.profiles or (url if parsed.is_pg and (args.campaigns or args.side) else None)
    ledger = _ledger(args, must_exist=True)
    try:
        counts: dict[str, Any] = dict(ledger.run_jobs(now))
    finally:
        ledger.store.close()
    if args.side:
        # The desk's standing work: claims from nodes and the web matched against the property
        # systems' stays (matches approved at once), and programme versions whose effective
        # date has come published to the fleet.
        from staypoint.central.console.cli import build_desk

        if not profiles:
            raise SystemExit("staypoint: central jobs --side needs --profiles")
        desk = build_desk(argparse.Namespace(store=url, side=args.side, profiles=profiles, smtp=args.smtp))
        try:
            counts["claims"] = desk.claims.pull(now)
            counts["programs_published"] = desk.run_due(now)
            from staypoint.central.feedback import FeedbackDesk
            from staypoint.central.partners.book import PartnerDesk

            # Feedback into head office's follow-up list (a low score from a top tier alarmed),
            # and yesterday's partner settlement files (docs/partners.md).
            counts["feedback"] = FeedbackDesk(desk.ledger, desk.side).pull(now)
            if args.settlements:
                settled = PartnerDesk(desk.ledger, desk.side).settle_due(now, Path(args.settlements))
                counts["settlements"] = [s.to_dict() for s in settled]
        finally:
            desk.close()
    if profiles:
        # The daily marketing pass (birthdays, anniversaries, win-back, referral bonuses) runs
        # after the ledger's own jobs, so expiring-points messages see today's expiries.
        from staypoint.central.campaigns.engine import run_daily

        try:  # the stores are opened first: a bad --profiles is one line, before any work
            counts["campaigns"] = run_daily(
                now,
                store=parsed.canonical(),
                profiles=profiles,
                config_path=Path(args.campaigns) if args.campaigns else None,
                dry_run=args.dry_run,
                quiet=args.quiet,
            )
        except StoreConfigError as exc:
            raise SystemExit(f"staypoint: {exc}") from None
    if args.json:
        print(json.dumps(counts))
    else:
        for key, value in counts.items():
            print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")


def _parsed(url: str) -> StoreUrl:
    try:
        return parse_store_url(url)
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None


def cmd_publish(args: argparse.Namespace) -> None:
    """Store a programme document in the ledger; a running head office sends it to every node
    within one tick (its fan-out ticker)."""
    try:  # checked here so the error names the file, and bytes that are not text are refused
        program = load_program(Path(args.program))
    except ProgramError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    ledger = _ledger(args)
    try:
        latest = ledger.store.latest_program_version()
        if latest is not None and program.version < latest:
            raise SystemExit(f"staypoint: the ledger holds programme v{latest}: v{program.version} is older")
        ledger.publish_program(program.source_text, datetime.now(UTC))
    finally:
        ledger.store.close()
    print(f"programme v{program.version} published ({program.name})")


def _partial_program(ledger: Ledger, otherwise: str) -> Program:
    """The latest programme, which must hold partial replicas; else exit with ``otherwise``."""
    program = ledger.program()
    if program is None or not replicas.is_partial(program):
        raise SystemExit(f'staypoint: the latest programme has [replicas] mode = "full": {otherwise}')
    return program


def cmd_replicas_assign(args: argparse.Namespace) -> None:
    """Give every member its home hold and index every card: run once when the programme
    turns to partial replicas, before the nodes bootstrap again (docs/scale.md)."""
    ledger = _ledger(args, must_exist=True)
    try:
        _partial_program(ledger, 'publish one with "partial" first')
        holds, cards = ledger.assign_replicas()
    finally:
        ledger.store.close()
    print(f"{holds} home holds added, {cards} cards indexed")


#: The property system's arrivals file: one member a line, at most this many lines.
MAX_ARRIVALS = 100_000


def cmd_replicas_arrivals(args: argparse.Namespace) -> None:
    """The property system's arrivals (CSV: member,arrival): each member is held at the
    property's nodes until ``arrival_days`` after the arrival, and their record goes out."""
    arrivals: list[tuple[str, date]] = []
    lines: list[int] = []
    try:
        with open(args.file, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f), 1):
                if not row or (n == 1 and row[0].strip().lower() == "member"):
                    continue
                if n > MAX_ARRIVALS or len(row) != 2:
                    raise SystemExit(
                        f"staypoint: {args.file}:{n}: one 'member,arrival' a line, "
                        f"at most {MAX_ARRIVALS:,} lines"
                    )
                try:
                    number = member_numbers.normalise(row[0])
                    day = date.fromisoformat(row[1].strip())
                except (member_numbers.MemberNumberError, ValueError) as exc:
                    raise SystemExit(f"staypoint: {args.file}:{n}: {exc}") from None
                arrivals.append((number, day))
                lines.append(n)
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"staypoint: {args.file}: {exc}") from None
    ledger = _ledger(args, must_exist=True)
    try:
        program = _partial_program(ledger, "every node holds everyone")
        if program.timezone_of(args.property) is None:
            raise SystemExit(f"staypoint: the programme lists no property {args.property!r}")
        now = datetime.now(UTC)
        for n, (_, day) in zip(lines, arrivals, strict=True):
            try:
                replicas.check_arrival(program, day, now)
            except ValueError as exc:
                raise SystemExit(f"staypoint: {args.file}:{n}: {exc}") from None
        changes = ledger.hold_arrivals(args.property, arrivals, now)
    finally:
        ledger.store.close()
    print(f"{len(changes)} of {len(arrivals)} arriving members held at {args.property}")


def cmd_stats(args: argparse.Namespace) -> None:
    ledger = _ledger(args, must_exist=True)
    try:
        print(json.dumps(ledger.stats(), indent=None if args.json else 2))
    finally:
        ledger.store.close()


def cmd_quarantine(args: argparse.Namespace) -> None:
    """List the events head office would not book (and open debts), or acknowledge one."""
    ledger = _ledger(args, must_exist=True)
    try:
        if args.ack:
            if not ledger.acknowledge_quarantine(args.ack, args.by, datetime.now(UTC)):
                sys.exit(f"staypoint: no open quarantined event {args.ack}")
            print(f"acknowledged {args.ack}")
            return
        listed = {
            "quarantined": ledger.quarantine(open_only=not args.all),
            "debts": ledger.store.open_overdrafts(),
        }
        if args.json:
            print(json.dumps(listed))
            return
        for q in listed["quarantined"]:
            print(
                f"{q['at'][:19]}  {q['node']}  {q['member'] or '-'}  {q['type']}  {q['reason']}  "
                f"[{q['event_id']}]"
            )
        for d in listed["debts"]:
            print(f"{d['at'][:19]}  {d['node']}  {d['member']}  {d['kind']}  balance {d['balance']}")
        if not listed["quarantined"] and not listed["debts"]:
            print("nothing quarantined, no open debts")
    finally:
        ledger.store.close()


def cmd_reviews(args: argparse.Namespace) -> None:
    """List what nodes asked head office to decide, or decide one."""
    from staypoint.central.reviews import ReviewDesk, ReviewError

    ledger = _ledger(args, must_exist=True)
    desk, now = ReviewDesk(ledger), datetime.now(UTC)
    try:
        if args.settle:
            m = desk.settle(args.settle, args.by, now)
            print(f"settled {args.settle}: member {m['number']} at {int(m['points']):,} points")
        elif args.block:
            desk.block(args.block, args.reason or "", args.by, now, review=args.review)
            print(f"blocked {args.block}")
        elif args.unblock:
            desk.unblock(args.unblock, args.reason or "", args.by, now)
            print(f"unblocked {args.unblock}")
        elif args.dismiss:
            desk.dismiss(args.dismiss, args.by, now)
            print(f"dismissed {args.dismiss}")
        else:
            listed = ledger.reviews(open_only=not args.all)
            if args.json:
                print(json.dumps(listed))
            for r in [] if args.json else listed:
                print(
                    f"{r['at'][:19]}  {r['node']}  {r['member'] or '-'}  {r['kind']}  {r['detail']}  "
                    f"[{r['event_id']}]"
                )
            if not listed and not args.json:
                print("nothing to decide")
    except ReviewError as exc:
        sys.exit(f"staypoint: {exc}")
    finally:
        ledger.store.close()


def register(sub: Any) -> None:
    """Add ``central serve|jobs|stats`` to the top-level subparsers."""
    central = sub.add_parser("central", help="head office: the ledger").add_subparsers(
        dest="central_cmd", required=True
    )
    p = central.add_parser("serve", help="serve the fleet on the broker")
    add_store_option(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=OFFICE_PORT, help="the broker's head-office listener")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument(
        "--client-id",
        help="head-office or head-office-...: one per process (default: head-office on SQLite, "
        "head-office-HOST-PID on PostgreSQL)",
    )
    p.add_argument(
        "--share-group",
        default="ingest",
        help="PostgreSQL: the MQTT 5 shared-subscription group the serving processes share",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=DEFAULT_SHARDS,
        help="PostgreSQL: the nodes' event batches are divided into this many shards by node id, "
        "shared out among the serving processes by advisory locks, so one process applies each node's "
        "batches, in order (the same number on every process); 0: shared round robin instead",
    )
    p.add_argument(
        "--ingest-threads",
        type=int,
        help="PostgreSQL: threads applying event batches side by side in this process, each node's "
        "always on the same one (default 2; SQLite: 1, its only choice)",
    )
    p.add_argument(
        "--leader-poll",
        type=float,
        default=1.0,
        help="PostgreSQL: seconds between a process's tries for the leader's lock and for free shards",
    )
    p.add_argument(
        "--jobs-at",
        metavar="HH:MM",
        help="the leader runs the ledger's daily jobs (as `central jobs`) once a day past this UTC time",
    )
    p.add_argument("--program", help="publish this programme document before serving")
    p.add_argument("--revoked", help="revoked-nodes.json from `provision revoke`: their events are refused")
    p.add_argument(
        "--side",
        help="head office's side tables (sqlite:///path, or the ledger's postgresql:// URL), where the "
        "first-use codes are: kiosks may then set imported members' first PINs (without it they are told no)",
    )
    p.add_argument(
        "--stream-suffix",
        help="first PINs set at kiosks go on event stream web-kiosk-<suffix> (default: web-kiosk on SQLite, "
        "the client id's tail on PostgreSQL: one stream per process)",
    )
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.set_defaults(fn=cmd_serve)
    p = central.add_parser("jobs", help="run the window-end and expiry jobs")
    add_store_option(p)
    p.add_argument("--now", help="ISO time the jobs run as of (default: the current time, UTC)")
    p.add_argument(
        "--profiles",
        help="members' profiles (a SQLite file, sqlite:///path or postgresql://...; on a PostgreSQL ledger "
        "its own database by default): also run the daily campaigns",
    )
    p.add_argument("--campaigns", help="campaigns config (TOML); without it only referral bonuses are paid")
    p.add_argument("--dry-run", action="store_true", help="campaigns: count and sample, send nothing")
    p.add_argument(
        "--side",
        help="head office's side tables (sqlite:///path, or the ledger's postgresql:// URL): also pull "
        "and match claims",
    )
    p.add_argument("--smtp", help="HOST:PORT of the mail server for claim notices")
    p.add_argument(
        "--settlements",
        help="with --side: write yesterday's partner settlement files here (docs/partners.md)",
    )
    p.add_argument("--json", action="store_true")
    add_quiet_option(p)
    p.set_defaults(fn=cmd_jobs)
    from staypoint.central.api.cli import register as register_api
    from staypoint.central.reports.cli import register_demo

    register_demo(central)
    register_api(central)
    from staypoint.central.member_import import register as register_import

    register_import(central)
    from staypoint.central.feedback import register as register_feedback
    from staypoint.central.partners.cli import register as register_partners

    register_partners(central)
    register_feedback(central)
    from staypoint.central.webhooks import register as register_webhooks

    register_webhooks(central)
    p = central.add_parser("publish", help="publish a programme document to the fleet")
    add_store_option(p)
    p.add_argument("program", help="the programme document (TOML, docs/programme.md)")
    p.set_defaults(fn=cmd_publish)
    rep = central.add_parser(
        "replicas", help="partial replicas: which members each node holds"
    ).add_subparsers(dest="replicas_cmd", required=True, metavar="COMMAND")
    p = rep.add_parser("assign", help="give every member its home hold (switching to partial replicas)")
    add_store_option(p)
    p.set_defaults(fn=cmd_replicas_assign)
    p = rep.add_parser("arrivals", help="hold the property system's arriving members at their property")
    add_store_option(p)
    p.add_argument("property", help="the property code, as [[properties]] lists it")
    p.add_argument("file", help="CSV: member,arrival (YYYY-MM-DD), one a line")
    p.set_defaults(fn=cmd_replicas_arrivals)
    p = central.add_parser("stats", help="events, version, counters, open overdrafts")
    add_store_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_stats)
    p = central.add_parser("quarantine", help="events head office would not book, and open debts")
    add_store_option(p)
    p.add_argument("--ack", metavar="EVENT_ID", help="acknowledge one quarantined event")
    p.add_argument("--by", default="head-office", help="who acknowledges (recorded)")
    p.add_argument("--all", action="store_true", help="acknowledged ones too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_quarantine)
    p = central.add_parser("reviews", help="what nodes ask head office to decide: voids, reports, blocks")
    add_store_option(p)
    act = p.add_mutually_exclusive_group()
    act.add_argument("--settle", metavar="EVENT_ID", help="book the void a node asked for")
    act.add_argument("--dismiss", metavar="EVENT_ID", help="close a review, booking nothing")
    act.add_argument("--block", metavar="MEMBER", help="hold a member's spending fleet-wide (needs --reason)")
    act.add_argument("--unblock", metavar="MEMBER", help="lift head office's hold on a member")
    p.add_argument("--review", metavar="EVENT_ID", help="with --block: the report it decides")
    p.add_argument("--reason", help="why (recorded on the event)")
    p.add_argument("--by", default="head-office", help="who decides (recorded)")
    p.add_argument("--all", action="store_true", help="decided ones too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_reviews)


def main(argv: list[str] | None = None) -> int:
    return run_group(register, argv)


if __name__ == "__main__":
    sys.exit(main())
