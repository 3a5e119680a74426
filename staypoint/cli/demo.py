"""``staypoint demo``: a seeded property and a guest's journey, offline, no hardware."""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from staypoint.loyalty.events import parse_iso

DEMO_NODE = "demo-lobby-01"
DEMO_PROPERTY = "Staypoint Harbour Hotel"


def prepare(directory: Path, now: datetime, members: int = 2000) -> Path:
    """Create (once) a demo node replica with seeded members, a guest and a staff card."""
    from staypoint.edge.seed import seed_members
    from staypoint.edge.service import NodeService
    from staypoint.loyalty.program import default_program_text

    db = directory / "demo-node.db"
    if db.exists():
        return db
    svc = NodeService.init_node(db, DEMO_NODE, DEMO_PROPERTY, default_program_text(), now, member_blocks=[1])
    seed_members(svc, members, now)
    svc.add_staff("frontdesk", "Front Desk", "supervisor", "2468", card_uid="5AFF0001")
    svc.add_staff("tech", "Technician", "technician", "1357", card_uid="5AFF0002")
    svc.close()
    return db


def run_script(directory: Path, now: datetime, out: Any = print) -> None:
    """The guest's journey at the front desk, printed: what a newcomer should see first."""
    from staypoint.edge.service import NodeError, NodeService, StaffProof
    from staypoint.loyalty.program import Outlet
    from staypoint.loyalty.vouchers import format_code

    db = prepare(directory, now)
    svc = NodeService.open(db)
    desk = StaffProof("frontdesk", "Front Desk", "supervisor")
    out(f"== {DEMO_PROPERTY} · node {svc.node_id} · {svc.replica.member_count():,} members on the replica")
    guest = svc.enrol("Mei Lin", "2580", now, card_uid="04A1B2C3D4E5F6", staff=desk)
    out(f"1. Mei Lin enrols at the desk: member number {guest.number} (card 04A1B2C3D4E5F6 bound)")
    for i, (nights, room, fnb, spa) in enumerate(
        [(4, "720.00", "85.50", None), (7, "1330.00", "210.00", "140.00")], 1
    ):
        r = svc.post_stay(
            guest.number,
            f"F-{1000 + i}",
            now - timedelta(days=30 * (3 - i)),
            nights=nights,
            revenue={Outlet.ROOM: room, Outlet.FNB: fnb or "0", Outlet.SPA: spa or "0"},
            staff=desk,
        )
        out(
            f"{i + 1}. stay {r.folio}: {nights} nights, room {room} → +{r.points:,} points "
            f"(balance {r.balance:,})"
        )
    s = svc.summary(guest.number, now)
    out(
        f"4. Mei's dashboard: {s.tier_name}, {s.points:,} points, {s.qualifying_nights} nights — "
        f"{s.next_tier_message}"
    )
    out("   can redeem now: " + ", ".join(s.redeemable))
    try:
        svc.verify_pin(guest.number, "0000", now)
    except NodeError as exc:
        out(f"5. a wrong PIN at the kiosk: {exc}")
    proof = svc.verify_pin(guest.number, "2580", now)
    try:
        svc.redeem(proof, "UPGRADE", now)
    except NodeError as exc:
        out(f"6. she asks for UPGRADE: refused — {exc}")
    red = svc.redeem(proof, "LATE-CO", now)
    out(
        f"7. she redeems LATE-CO offline ({red.limits_profile}): voucher {format_code(red.voucher)}, "
        f"balance {red.balance:,}"
    )
    info = svc.verify_voucher(red.token, now)
    out(f"8. staff scan the QR token: {info.reward_name} — {info.message}")
    tampered = red.token[:-3] + ("A" if red.token[-3] != "A" else "B") + red.token[-2:]
    try:
        svc.verify_voucher(tampered, now)
    except NodeError as exc:
        out(f"9. a tampered token: refused — {exc}")
    svc.use_voucher(red.voucher, now, desk)
    out(f"10. at check-out the voucher is used: {svc.verify_voucher(red.voucher, now).message}")
    st = svc.status(now)
    out(
        f"== outbox: {st['outbox_depth']} events waiting for head office (seq 1..{st['last_seq']}); "
        f"the node never needed the network"
    )
    svc.close()


def cmd_demo(args: argparse.Namespace) -> None:
    now = parse_iso(args.now) if args.now else datetime.now(UTC)
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="staypoint-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    if args.script or not _interactive():
        run_script(directory, now)
        return
    from staypoint.kiosk.app import run_demo_kiosk

    run_demo_kiosk(prepare(directory, now), now)


def _interactive() -> bool:
    import sys

    try:
        import staypoint.kiosk.app  # noqa: F401
    except ImportError:
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="a demo property: the kiosk on simulated devices (or --script)")
    p.add_argument("--dir", help="where to keep the demo replica (default: a new temp folder)")
    p.add_argument(
        "--script", action="store_true", help="print the guest's journey instead of opening the kiosk"
    )
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--now", help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_demo)
