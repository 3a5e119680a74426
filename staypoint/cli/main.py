"""``staypoint``: one console script, one subcommand per job.

Errors are one clear line on stderr and a non-zero exit; nothing is half-written,
because every change goes through one transaction of the node service.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any

from staypoint.cli import demo as demo_cmd
from staypoint.edge.keys import KeyError_
from staypoint.edge.nodeconfig import NodeConfigError, NodeToml, load_node_toml
from staypoint.edge.replica import ReplicaError
from staypoint.edge.service import NodeError, NodeService, StaffProof
from staypoint.entry import closed_stdout_safe
from staypoint.localtime import day_text, stamp_text
from staypoint.loyalty.events import parse_iso
from staypoint.loyalty.program import Outlet, ProgramError, default_program_text, load_program
from staypoint.loyalty.roles import LOCAL_ROOT, STAFF_ROLES
from staypoint.progress import CountBar, add_quiet_option


class CliError(Exception):
    """A usage problem found after parsing (bad date, missing file)."""


# What --now and typed dates may be: a replay reaches back no further than the programmes
# do, and the node adds up to a century to a date (expiry, voucher lives), which must stay
# on the calendar (year 9999 is its end).
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _now(args: argparse.Namespace) -> datetime:
    if getattr(args, "now", None):
        try:
            now = parse_iso(args.now)
        except ValueError:
            raise CliError(f"--now {args.now!r} is not an ISO timestamp") from None
        if not _EARLIEST <= now <= _LATEST:
            raise CliError(f"--now {args.now!r} is outside the years {_EARLIEST.year}-{_LATEST.year}")
        return now
    return datetime.now(UTC)


def _node_config(args: argparse.Namespace) -> NodeToml:
    """The checked --config file (the node's one loader: an unknown key is refused)."""
    try:
        return load_node_toml(Path(args.config))
    except NodeConfigError as exc:
        raise CliError(str(exc)) from None


def _node_paths(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The replica (and keys folder) from --db, or from the [node] table of --config."""
    if args.db:
        return Path(args.db), None
    if not args.config:
        raise CliError("give --db PATH or --config node.toml")
    cfg = _node_config(args)
    try:
        return cfg.db(), cfg.node.keys_dir
    except NodeConfigError as exc:
        raise CliError(str(exc)) from None


def _zone(args: argparse.Namespace) -> tzinfo:
    """The zone for what a person reads: ``--tz``, else --config's ``[node] timezone``, else UTC."""
    from staypoint.localtime import ZoneError, zone

    name = getattr(args, "tz", None)
    if not name and getattr(args, "config", None) and not getattr(args, "db", None):
        name = _node_config(args).node.timezone
    try:
        return zone(name)
    except ZoneError as exc:
        raise CliError(f"--tz: {exc}") from None


def _open(args: argparse.Namespace) -> NodeService:
    db, keys = _node_paths(args)
    return NodeService.open(db, keys_dir=keys)


def _open_online(args: argparse.Namespace) -> NodeService:
    """The node for a redemption or a spend: given a node config, head office is asked through
    the sync agent's socket (as the kiosk does), unless ``[kiosk] authoriser = "offline"``;
    with ``--db`` alone, or no agent answering, the offline limits decide."""
    db, keys = _node_paths(args)
    link = None
    if args.config and not args.db:
        from staypoint.edge.agent_link import link_settings

        link = link_settings(_node_config(args), db).link()
    return NodeService.open(db, keys_dir=keys, authoriser=link)


def _staff(args: argparse.Namespace, svc: NodeService, now: datetime) -> StaffProof:
    """Who a staff command acts as: a staff login, or the node's own shell (``--local-root``).

    The login goes through the service, so wrong PINs count towards the same lock-out as
    at the kiosk, and the role it returns is what the service checks the task against: the
    command line gives a clerk no more than the kiosk would.
    """
    if args.local_root:
        if args.staff_pin is not None:
            raise CliError("--staff-pin goes with --staff, not with --local-root")
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = "unknown"
        # Anyone with this shell could edit the replica anyway; what matters is that the
        # use is visible: here on stderr, and in every event as the staff id.
        what = args.fn.__name__.removeprefix("cmd_").replace("_", " ")
        print(
            f"staypoint: {what} as {LOCAL_ROOT} (OS user {user}), recorded as staff {LOCAL_ROOT}",
            file=sys.stderr,
        )
        return StaffProof(LOCAL_ROOT, f"local root ({user})", LOCAL_ROOT)
    if not args.staff:
        raise CliError("this is a staff task: give --staff ID --staff-pin PIN (or --local-root on the node)")
    pin = args.staff_pin
    if pin is None:
        if not sys.stdin.isatty():
            raise CliError("--staff needs --staff-pin")
        pin = getpass.getpass(f"staff PIN for {args.staff}: ")
    try:
        return svc.staff_login(pin, now, staff_id=args.staff)
    except NodeError as exc:
        raise CliError(f"staff {args.staff}: {exc}") from None


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    else:
        print(text)


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise CliError(f"{text!r} is not a date YYYY-MM-DD") from None
    if not _EARLIEST.date() <= day <= _LATEST.date():
        raise CliError(f"{text!r} is outside the years {_EARLIEST.year}-{_LATEST.year}")
    return day


# -- node ------------------------------------------------------------------------------


def cmd_node_init(args: argparse.Namespace) -> None:
    if args.program:
        if not Path(args.program).exists():
            raise CliError(f"{args.program}: no such programme file")
        # One read, validated with the file's name in the error (a folder or bytes that are
        # not UTF-8 included), and the text stored is the text that was checked.
        text = load_program(Path(args.program)).source_text
    else:
        text = default_program_text()
    try:
        blocks = [int(b) for b in args.member_block or []]
    except ValueError:
        raise CliError(f"--member-block takes a whole number, not {args.member_block!r}") from None
    if not all(0 <= b <= 9999 for b in blocks):  # a member number has a 4-digit issuer block
        raise CliError(f"--member-block is an issuer block from 0 to 9999, not {args.member_block!r}")
    db, keys = _node_paths(args)
    svc = NodeService.init_node(
        db, args.node, args.property, text, _now(args), member_blocks=blocks, keys_dir=keys
    )
    st = svc.status(_now(args))
    _emit(
        args,
        st,
        f"node {st['node']} at {st['property']} ready: {db} "
        f"(programme v{st['program_version']}, keys in {keys or NodeService.keys_dir_for(db)})",
    )


def cmd_node_seed(args: argparse.Namespace) -> None:
    from staypoint.edge.seed import seed_members
    from staypoint.progress import progress

    svc = _open(args)
    with progress("seeding members", args.members, quiet=args.quiet) as bar:
        total = seed_members(svc, args.members, _now(args), progress=bar.advance, batch=10_000)
    _emit(
        args,
        {"seeded": args.members, "seeded_total": total},
        f"seeded {args.members:,} members ({total:,} seeded in all; their PIN is 1234)",
    )


def cmd_node_status(args: argparse.Namespace) -> None:
    st = _open(args).status(_now(args))
    _emit(args, st, "\n".join(f"{k:>18}: {v}" for k, v in st.items()))


def cmd_staff_add(args: argparse.Namespace) -> None:
    svc = _open(args)
    svc.add_staff(
        args.staff_id, args.name, args.role, args.pin, args.card_uid, by=_staff(args, svc, _now(args))
    )
    _emit(args, {"staff": args.staff_id, "role": args.role}, f"staff {args.staff_id} ({args.role}) added")


# -- members ---------------------------------------------------------------------------


def cmd_member_enrol(args: argparse.Namespace) -> None:
    svc = _open(args)
    now = _now(args)
    row = svc.enrol(
        args.name,
        args.pin,
        now,
        card_uid=args.card_uid,
        staff=_staff(args, svc, now),
        referred_by=args.referred_by,
    )
    referred = (
        f" (referred by code {args.referred_by.upper()}: head office checks it)" if args.referred_by else ""
    )
    _emit(
        args,
        {"member": row.number, "name": row.name, "tier": row.tier, "referred_by": args.referred_by},
        f"enrolled {row.name}: member number {row.number}{referred}",
    )


def _summary_text(s: Any, tz: tzinfo | None = None) -> str:
    lines = [
        f"{s.name} · {s.member} · {s.tier_name}",
        f"  points        {s.points:,}",
        f"  stored value  {s.stored_value} {s.currency}",
        f"  this year     {s.qualifying_nights} nights · {s.next_tier_message}",
    ]
    if s.expiring_points:
        lines.append(f"  expiring      {s.expiring_points:,} points on {s.expiring_on}")
    if s.locked:
        lines.append("  LOCKED        too many wrong PINs")
    lines.append("  can redeem    " + (", ".join(s.redeemable) or "nothing yet"))
    for a in s.recent[:5]:
        pts = f"{a.points:+,}" if a.points else ""
        lines.append(f"  {day_text(a.at, tz)}  {pts:>8}  {a.description}")
    return "\n".join(lines)


def cmd_member_show(args: argparse.Namespace) -> None:
    tz = _zone(args)
    svc = _open(args)
    s = svc.summary(args.member, _now(args))
    _emit(args, s.to_json(), _summary_text(s, tz))


def cmd_member_adjust(args: argparse.Namespace) -> None:
    svc = _open(args)
    now = _now(args)
    bal = svc.adjust(args.member, args.points, args.reason, now, _staff(args, svc, now))
    _emit(args, {"member": args.member, "points": bal}, f"adjusted: balance {bal:,} points")


def cmd_member_unlock(args: argparse.Namespace) -> None:
    svc, now = _open(args), _now(args)
    svc.unlock(args.member, now, _staff(args, svc, now))
    _emit(args, {"member": args.member, "unlocked": True}, "unlocked")


def cmd_member_report(args: argparse.Namespace) -> None:
    svc, now = _open(args), _now(args)
    ev = svc.report_member(args.member, args.reason, now, _staff(args, svc, now))
    _emit(
        args,
        {"member": ev.member, "reported": True, "seq": ev.seq},
        f"reported {ev.member} to head office, which decides",
    )


def cmd_member_claim(args: argparse.Namespace) -> None:
    arrival, departure = _date(args.arrival), _date(args.departure)
    assert arrival is not None and departure is not None
    ev = _open(args).record_claim(args.member, args.folio, arrival, departure, _now(args), note=args.note)
    _emit(args, {"claim": ev.id, "seq": ev.seq}, f"claim recorded ({ev.id}); head office will review it")


# -- stays, stored value -----------------------------------------------------------------


def cmd_stay_post(args: argparse.Namespace) -> None:
    svc, now = _open(args), _now(args)
    revenue = {Outlet.ROOM: args.room, Outlet.FNB: args.fnb, Outlet.SPA: args.spa, Outlet.OTHER: args.other}
    res = svc.post_stay(
        args.member,
        args.folio,
        now,
        nights=args.nights,
        revenue={k: v for k, v in revenue.items() if v is not None},
        arrival=_date(args.arrival),
        staff=_staff(args, svc, now),
    )
    payload = {
        "member": res.member,
        "folio": res.folio,
        "points": res.points,
        "balance": res.balance,
        "tier": res.tier_after,
        "upgraded": res.tier_after != res.tier_before,
        "seq": res.event.seq,
    }
    text = f"posted {res.folio}: +{res.points:,} points, balance {res.balance:,}"
    if res.tier_after != res.tier_before:
        text += f" — upgraded to {svc.program.tier(res.tier_after).name}"
    _emit(args, payload, text)


def cmd_stay_void(args: argparse.Namespace) -> None:
    svc, now = _open(args), _now(args)
    ev = svc.void_stay(args.folio, now, _staff(args, svc, now), args.reason)
    if ev.type == "stay.void_requested":
        # The member has spent some of these points: head office settles it (docs/staff.md).
        _emit(
            args,
            {"void_requested": args.folio, "points": ev.data["points"], "seq": ev.seq},
            f"{args.folio}: the member has spent some of its {ev.data['points']:,} points; "
            "the void is sent to head office to settle",
        )
        return
    _emit(
        args,
        {"voided": args.folio, "points": ev.data["points"], "seq": ev.seq},
        f"voided {args.folio}: -{ev.data['points']:,} points",
    )


def cmd_value_topup(args: argparse.Namespace) -> None:
    svc, now = _open(args), _now(args)
    bal = svc.top_up(args.member, args.amount, now, _staff(args, svc, now))
    _emit(
        args,
        {"member": args.member, "stored_value": str(bal)},
        f"stored value now {bal} {svc.program.currency}",
    )


def cmd_value_spend(args: argparse.Namespace) -> None:
    svc = _open_online(args)
    now = _now(args)
    proof = svc.verify_pin(args.member, args.pin, now)
    bal = svc.spend(proof, args.amount, now)
    _emit(
        args,
        {"member": args.member, "stored_value": str(bal)},
        f"stored value now {bal} {svc.program.currency}",
    )


# -- redemption and vouchers ---------------------------------------------------------------


def cmd_redeem(args: argparse.Namespace) -> None:
    svc = _open_online(args)
    now = _now(args)
    # The rules first: a refusal for tier or points must not touch the PIN counters.
    svc.check_redeemable(args.member, args.reward)
    proof = svc.verify_pin(args.member, args.pin, now)
    r = svc.redeem(proof, args.reward, now)
    from staypoint.loyalty.vouchers import format_code

    payload = {
        "member": r.member,
        "reward": r.reward,
        "points": r.points,
        "balance": r.balance,
        "voucher": format_code(r.voucher),
        "token": r.token,
        "expires": r.expires.isoformat(),
        "auth": r.auth,
        "limits": r.limits_profile,
        "seq": r.event.seq,
    }
    _emit(
        args,
        payload,
        f"{r.reward_name}: voucher {format_code(r.voucher)} (valid to {r.expires}); "
        f"balance {r.balance:,} points",
    )


def cmd_voucher_verify(args: argparse.Namespace) -> None:
    info = _open(args).verify_voucher(args.code, _now(args))
    _emit(args, info.to_json(), f"{info.code} {info.reward_name} for {info.member}: {info.message}")
    if not info.valid:
        raise SystemExit(1)


def cmd_voucher_use(args: argparse.Namespace) -> None:
    svc, now = _open(args), _now(args)
    info = svc.use_voucher(args.code, now, _staff(args, svc, now))
    _emit(args, info.to_json(), f"{info.code} {info.reward_name}: marked used")


def cmd_voucher_void(args: argparse.Namespace) -> None:
    svc, now = _open(args), _now(args)
    info = svc.void_voucher(args.code, now, _staff(args, svc, now), args.reason)
    _emit(args, info.to_json(), f"{info.code} voided; points returned to {info.member}")


def cmd_outbox(args: argparse.Namespace) -> None:
    tz = _zone(args)
    rows = _open(args).outbox(pending_only=args.pending)
    if args.json:  # JSON keeps the events' own UTC timestamps
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for e in rows:
        mark = "acked" if e["acked"] else "pending"
        at = stamp_text(e["at"], tz, "%Y-%m-%d %H:%M:%S")
        print(f"{e['epoch']}:{e['seq']:>6}  {at}  {e['type']:<18} {e.get('member') or '':<11} {mark}")
    print(f"{len(rows)} events")


# -- parser -------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, *, db: bool = True) -> None:
    if db:
        where = p.add_mutually_exclusive_group()
        where.add_argument("--db", help="the node's replica file")
        where.add_argument("--config", help="the node config (node.toml); its [node] db is used")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--now", help=argparse.SUPPRESS)  # replay/tests: the time to act at


def _tz(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tz",
        metavar="ZONE",
        help="show times in this zone (default: --config's [node] timezone, else UTC); --json stays UTC",
    )


def _acting(p: argparse.ArgumentParser) -> None:
    """The options of a staff command: who it acts as (one of them is required)."""
    g = p.add_argument_group("acting as (one is required)")
    who = g.add_mutually_exclusive_group()
    who.add_argument("--staff", metavar="ID", help="your staff id; your role decides what you may do")
    who.add_argument(
        "--local-root",
        action="store_true",
        help=f"act as the node's own shell (technician mode), logged and recorded as staff {LOCAL_ROOT}",
    )
    g.add_argument(
        "--staff-pin", metavar="PIN", help="your staff PIN (wrong ones count; asked for on a terminal)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="staypoint", description="Staypoint hotel loyalty: node, kiosk and head office.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        group: Any, name: str, fn: Callable[[argparse.Namespace], None], help_: str, **kw: Any
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        _common(p, **kw)
        return p

    node = sub.add_parser("node", help="create and inspect a node's replica").add_subparsers(
        dest="node_cmd", required=True
    )
    p = add(node, "init", cmd_node_init, "create a node replica with its keys")
    p.add_argument("--node", required=True, help="node id, e.g. sha-lobby-01")
    p.add_argument("--property", required=True, help="property code, e.g. SHA")
    p.add_argument("--program", help="programme TOML (default: Staypoint Rewards)")
    p.add_argument("--member-block", action="append", help="issuer block(s) for member numbers")
    p = add(node, "seed", cmd_node_seed, "add fake members for demos and benchmarks (PIN 1234)")
    p.add_argument("--members", type=int, required=True)
    add_quiet_option(p)
    add(node, "status", cmd_node_status, "outbox depth, last contact, offline exposure")
    from staypoint.edge.sync.cli import add_backup_commands

    add_backup_commands(node)

    staff = sub.add_parser("staff", help="staff accounts on a node").add_subparsers(
        dest="staff_cmd", required=True
    )
    p = add(staff, "add", cmd_staff_add, "register a staff member (card + PIN)")
    p.add_argument("staff_id")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=STAFF_ROLES)
    p.add_argument("--pin", required=True)
    p.add_argument("--card-uid")
    _acting(p)

    member = sub.add_parser("member", help="enrol, show, adjust members").add_subparsers(
        dest="member_cmd", required=True
    )
    p = add(member, "enrol", cmd_member_enrol, "enrol a new member")
    p.add_argument("--name", required=True)
    p.add_argument("--pin", required=True)
    p.add_argument("--card-uid", help="hex UID of the member's card")
    p.add_argument("--referred-by", metavar="CODE", help="a friend's referral code (ABCD-EFGH)")
    _acting(p)
    p = add(member, "show", cmd_member_show, "a member's balance, tier, progress and activity")
    p.add_argument("member")
    _tz(p)
    p = add(member, "adjust", cmd_member_adjust, "staff points adjustment with a reason")
    p.add_argument("member")
    p.add_argument("--points", type=int, required=True)
    p.add_argument("--reason", required=True)
    _acting(p)
    p = add(member, "unlock", cmd_member_unlock, "lift a PIN lock-out")
    p.add_argument("member")
    _acting(p)
    p = add(member, "report", cmd_member_report, "report suspected abuse to head office (it decides)")
    p.add_argument("member")
    p.add_argument("--reason", required=True)
    _acting(p)
    p = add(member, "claim", cmd_member_claim, "record a missing-stay claim")
    p.add_argument("member")
    p.add_argument("--folio", required=True)
    p.add_argument("--arrival", required=True)
    p.add_argument("--departure", required=True)
    p.add_argument("--note", default="")

    stay = sub.add_parser("stay", help="post and void stays").add_subparsers(dest="stay_cmd", required=True)
    p = add(stay, "post", cmd_stay_post, "post a stay and earn points")
    p.add_argument("member")
    p.add_argument("--folio", required=True)
    p.add_argument("--nights", type=int, required=True)
    p.add_argument("--room", required=True, help="room revenue, e.g. 480.00")
    p.add_argument("--fnb", help="food & beverage revenue")
    p.add_argument("--spa", help="spa revenue")
    p.add_argument("--other", help="other revenue")
    p.add_argument("--arrival", help="arrival date (default: nights before today)")
    _acting(p)
    p = add(stay, "void", cmd_stay_void, "void a posted stay (points clawed back)")
    p.add_argument("folio")
    p.add_argument("--reason", required=True)
    _acting(p)

    value = sub.add_parser("value", help="stored value").add_subparsers(dest="value_cmd", required=True)
    p = add(value, "topup", cmd_value_topup, "top up a member's stored value")
    p.add_argument("member")
    p.add_argument("amount")
    _acting(p)
    p = add(value, "spend", cmd_value_spend, "pay from stored value")
    p.add_argument("member")
    p.add_argument("amount")
    p.add_argument("--pin", required=True)

    p = add(sub, "redeem", cmd_redeem, "redeem a reward (PIN checked) and issue a voucher")
    p.add_argument("member")
    p.add_argument("reward")
    p.add_argument("--pin", required=True)

    voucher = sub.add_parser("voucher", help="verify, use and void vouchers").add_subparsers(
        dest="voucher_cmd", required=True
    )
    p = add(voucher, "verify", cmd_voucher_verify, "check a typed code or scanned token")
    p.add_argument("code")
    p = add(voucher, "use", cmd_voucher_use, "mark a voucher used")
    p.add_argument("code")
    _acting(p)
    p = add(voucher, "void", cmd_voucher_void, "void an unused voucher (points returned)")
    p.add_argument("code")
    p.add_argument("--reason", required=True)
    _acting(p)

    p = add(sub, "outbox", cmd_outbox, "events waiting for (or acknowledged by) head office")
    p.add_argument("--pending", action="store_true", help="only events head office has not acknowledged")
    _tz(p)

    demo_cmd.register(sub)
    from staypoint.central import cli as central_cli
    from staypoint.edge.sync import cli as sync_cli
    from staypoint.kiosk import cli as kiosk_cli

    kiosk_cli.register(sub)
    central_cli.register(sub)
    sync_cli.register(sub, make_bar=CountBar)
    from staypoint.central.reports import cli as reports_cli

    reports_cli.register(sub)
    from staypoint.central.fleet.cli import register as register_fleet
    from staypoint.provisioning.cli import register as register_provision

    register_provision(sub)
    register_fleet(sub)
    from staypoint.central.console.cli import register as register_console

    register_console(sub)
    return parser


def _plugin_errors() -> tuple[type[Exception], ...]:
    """Errors of the other subcommands that are one line for the user, not a traceback."""
    from staypoint.edge.sync.config import ConfigError as SyncConfigError
    from staypoint.kiosk.config import ConfigError as KioskConfigError

    return (SyncConfigError, KioskConfigError)


def one_line(text: str) -> str:
    """``text`` with control characters escaped: a message quotes names and values the user
    typed (or a file held), and a newline or terminal escape in one must not turn a one-line
    error into several lines, or into something else on the technician's screen."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class _Parser(argparse.ArgumentParser):
    # argparse quotes some bad arguments raw ("unrecognized arguments: ..."): keep its
    # error line one line too. Subparsers are made with the parent's class, so this covers all.
    def error(self, message: str) -> Any:
        super().error(one_line(message))


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    one_liners: tuple[type[Exception], ...] = (
        NodeError,
        CliError,
        ProgramError,
        ReplicaError,
        KeyError_,
        *_plugin_errors(),
    )
    try:
        args.fn(args)
    except one_liners as exc:
        print(f"staypoint: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return closed_stdout_safe(lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
