"""``staypoint central demo-data --members N --years Y``: a chain a newcomer can explore.

Everything goes through the real code paths, so every report and campaign has data and
the data is consistent with the rules: members enrol and stay at their home hotel's
node (events ingested by ``Ledger.ingest``, points computed by the programme's earn
rules, upgrades by its tiers), redeem rewards, leave kiosk feedback; profiles carry
languages, time zones and consent; the properties' monthly totals are imported; and the
campaign job runs over the last weeks with a recording gateway (nothing leaves the
machine) so campaign results and hold-out groups exist.

Through ``ingest`` this takes about a minute for 10,000-20,000 members. Benchmarks at a
million members load their data with bulk SQL instead (``bench/reports.py``).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from staypoint.central.campaigns.channels import RecordingGateway
from staypoint.central.campaigns.config import parse_config
from staypoint.central.campaigns.engine import CampaignJob
from staypoint.central.campaigns.segments import Segment, Segments
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.reports import projection
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty import member_numbers, tiers
from staypoint.loyalty.earning import qualifying_points, stay_points
from staypoint.loyalty.events import Event, iso, parse_iso, uuid7
from staypoint.loyalty.program import Outlet, default_program, default_program_text
from staypoint.progress import progress

# The default programme's [[properties]] (code and time zone), with each one's share of
# Chinese-speaking guests.
ZH_SHARE = {"SHA": 0.8, "BJS": 0.85, "HKG": 0.6, "SIN": 0.4, "LON": 0.1, "BER": 0.05}
PROPERTIES = {p.code: (p.timezone, ZH_SHARE.get(p.code, 0.0)) for p in default_program().properties}
ROOM_TYPES = ("Standard", "Deluxe", "Executive", "Suite")
DEMO_BLOCK = 9500  # member numbers 9500..: the demo range (9000-9999 is demo/benchmark)

CAMPAIGNS = """
[settings]
cap_messages = 4
cap_days = 7

[[campaign]]
code = "BDAY"
trigger = "birthday"
bonus_points = 500
holdout_percent = 20

[[campaign]]
code = "ANNIV"
trigger = "anniversary"
bonus_points = 250

[[campaign]]
code = "UPGRADE"
trigger = "tier_upgrade"

[[campaign]]
code = "STAY5"
trigger = "nth_stay"
nth = 5
bonus_voucher = "BREAKFAST"

[[campaign]]
code = "EXPIRING"
trigger = "points_expiring"

[[campaign]]
code = "WINBACK"
trigger = "win_back"
holdout_percent = 20

[[campaign]]
code = "SPA-WEEKEND"
trigger = "one_off"
segment = "spa-lovers"
holdout_percent = 20
"""


def _node(prop: str) -> str:
    return f"{prop.lower()}-lobby-01"


def generate(
    ledger_db: Path,
    profiles_db: Path,
    *,
    members: int,
    years: int,
    now: datetime,
    seed: int = 7,
    quiet: bool = False,
) -> dict[str, Any]:
    """Fill ``ledger_db`` and ``profiles_db`` with a demo chain; returns counts.

    Three progress bars on a terminal (members, ingest, campaign days) unless ``quiet``."""
    rng = random.Random(seed)
    program = default_program()
    start = now - timedelta(days=365 * years)
    ledger = Ledger(SqliteLedgerStore(ledger_db, synchronous="OFF"))
    ledger.publish_program(default_program_text(), start)
    profiles = ProfileStore(profiles_db)
    profiles.conn.execute("PRAGMA synchronous = OFF")  # demo data: speed over durability

    events: list[
        tuple[str, str, str, str, dict[str, Any], str | None]
    ] = []  # (at, node, kind, member, data, auth)
    revenue_by: dict[tuple[str, str], int] = defaultdict(int)
    span = (now - start).days
    # Rewards with a stock are given out until it is gone, as a kiosk would (it refuses at 0):
    # without this the demo's redemption report showed a stock left of -560.
    stock = {r.code: r.stock for r in program.rewards if r.stock is not None}
    bar = progress("demo members", members, quiet=quiet).start()
    for i in range(members):
        bar.advance(1)
        block, serial = divmod(i, member_numbers.SERIALS_PER_BLOCK)
        number = member_numbers.make_number(DEMO_BLOCK + block, serial)
        prop = rng.choices(list(PROPERTIES), weights=[5, 4, 3, 2, 2, 1])[0]
        tz, zh_share = PROPERTIES[prop]
        # Enrolments grow over time (more recent months have more).
        enrolled = start + timedelta(days=int(span * (rng.random() ** 0.7)), hours=rng.randint(8, 20))
        zh = rng.random() < zh_share
        name = (
            rng.choice("王李张刘陈杨黄赵吴周") + rng.choice(["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳"])
            if zh
            else f"{rng.choice(['Anna', 'Ben', 'Chloe', 'David', 'Emma', 'Felix', 'Grace'])} "
            f"{rng.choice(['Smith', 'Jones', 'Brown', 'Taylor', 'Wilson', 'Müller'])}"
        )
        at = iso(enrolled)
        profiles.upsert(
            number,
            at=at,
            full_name=name,
            email=f"demo{i}@example.com" if rng.random() < 0.85 else None,
            phone=f"+86138{i:08d}" if rng.random() < 0.6 else None,
            birth_date=date(rng.randint(1950, 2003), rng.randint(1, 12), rng.randint(1, 28)),
            language="zh" if zh else "en",
            time_zone=tz,
            home_property=prop,
            joined=enrolled.date(),
        )
        if rng.random() < 0.7:
            profiles.set_consent(number, "email", True, source="kiosk", at=at)
        if rng.random() < 0.4:
            profiles.set_consent(number, "sms", True, source="kiosk", at=at)
        events.append(
            (
                at,
                _node(prop),
                "member.enrolled",
                number,
                {
                    "name": name,
                    "display_name": name.split()[0],
                    "tier": "MEMBER",
                    "pin_hash": "demo",
                    "home_property": prop,
                },
                None,
            )
        )
        # Stays: a few loyal guests stay often, most a handful of times, some never.
        frequency = rng.choice([0, 0.5, 1, 1, 2, 3, 4, 8, 15])
        day = enrolled + timedelta(days=rng.randint(0, 60))
        tier, qn, qp, win, points = "MEMBER", 0, 0, tiers.window_start(program.window, day.date()), 0
        room_type = rng.choice(ROOM_TYPES)
        weekend_guest = rng.random() < 0.4
        while frequency and day < now - timedelta(days=2):
            nights = rng.choice([1, 1, 2, 2, 3, 4])
            arrival = day.date()
            if weekend_guest:
                arrival += timedelta(days=(4 - arrival.weekday()) % 7)
            departure = arrival + timedelta(days=nights)
            posted = datetime.combine(departure, time(11, rng.randint(0, 59)), tzinfo=UTC)
            if posted >= now:
                break
            rate = Decimal(rng.randint(90, 260) + 60 * ROOM_TYPES.index(room_type))
            revenue = {Outlet.ROOM: rate * nights}
            if rng.random() < 0.5:
                revenue[Outlet.FNB] = Decimal(rng.randint(20, 180))
            if rng.random() < 0.2:
                revenue[Outlet.SPA] = Decimal(rng.randint(60, 220))
            ws = tiers.window_start(program.window, departure)
            if ws != win:
                win, qn, qp = ws, 0, 0
            earned = stay_points(program, tier, revenue, departure)
            qn += nights
            qp += qualifying_points(program, earned)
            after = tiers.after_activity(program, tier, qn, qp).code
            events.append(
                (
                    iso(posted),
                    _node(prop),
                    "stay.posted",
                    number,
                    {
                        "folio": f"{prop}-{i}-{arrival.isoformat()}",
                        "property": prop,
                        "arrival": arrival.isoformat(),
                        "departure": departure.isoformat(),
                        "nights": nights,
                        "revenue": {o.value: f"{a:.2f}" for o, a in revenue.items()},
                        "points": earned.points,
                        "qualifying_points": qualifying_points(program, earned),
                        "tier": tier,
                        "tier_after": after,
                        "promotions": [],
                        "room_type": room_type,
                        "channel": rng.choice(["kiosk", "kiosk", "web", "pms"]),
                    },
                    None,
                )
            )
            revenue_by[(prop, arrival.isoformat()[:7])] += int(sum(revenue.values()) * 100)
            tier, points = after, points + earned.points
            if rng.random() < 0.4:
                events.append(
                    (
                        iso(posted + timedelta(minutes=5)),
                        _node(prop),
                        "feedback.recorded",
                        number,
                        {
                            "stars": rng.choices([1, 2, 3, 4, 5], weights=[1, 2, 6, 14, 16])[0],
                            "tags": [],
                            "context": "dashboard",
                            "property": prop,
                        },
                        None,
                    )
                )
            affordable = [
                r
                for r in program.rewards
                if r.points <= points and r.min_tier in (None, "MEMBER") and stock.get(r.code, 1) > 0
            ]
            if affordable and rng.random() < 0.35:
                r = rng.choice(affordable)
                points -= r.points
                if r.code in stock:  # the programme's stock is the chain's: a kiosk refuses at 0
                    stock[r.code] -= 1
                events.append(
                    (
                        iso(posted + timedelta(minutes=10)),
                        _node(prop),
                        "points.redeemed",
                        number,
                        {
                            "reward": r.code,
                            "points": r.points,
                            "hold": None,
                            "voucher": f"D{i}-{len(events)}",
                            "serial": len(events),
                            "expires": (departure + timedelta(days=r.voucher_days)).isoformat(),
                            "token": "demo",
                            "limits": None,
                        },
                        rng.choice(["online", "online", "offline"]),
                    )
                )
            day = posted + timedelta(days=max(7, int(rng.expovariate(frequency / 365.0))))
        if points > 0 and day.date() < (now - timedelta(days=730)).date():
            events.append(
                (
                    iso(day + timedelta(days=730)),
                    _node(prop),
                    "points.expired",
                    number,
                    {"points": points},
                    None,
                )
            )

    bar.close()
    # Ingest in time order, one node stream per property, in chunks that keep the order.
    events.sort(key=lambda e: e[0])
    bar = progress("demo events", len(events), quiet=quiet).start()
    seqs: dict[str, int] = defaultdict(int)
    applied = 0
    for lo in range(0, len(events), 4000):
        per_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for at, node, kind, member, data, auth in events[lo : lo + 4000]:
            seqs[node] += 1
            ts = parse_iso(at)
            per_node[node].append(
                Event(node, 1, seqs[node], uuid7(ts), at, kind, member, 1, data, auth).to_dict()
            )
        for node, batch in per_node.items():
            applied += ledger.ingest(node, batch, parse_iso(batch[-1]["at"])).applied
            bar.advance(len(batch))
    bar.close()
    ledger.store.close()

    # The properties' own totals: members bring 35-60 % of a hotel's revenue.
    conn = projection.connect(ledger_db)
    lines = ["property,month,revenue"]
    for (prop, month), cents in sorted(revenue_by.items()):
        total = Decimal(cents) / 100 / Decimal(str(round(rng.uniform(0.35, 0.6), 2)))
        lines.append(f"{prop},{month},{total:.2f}")
    projection.import_property_revenue(conn, "\n".join(lines) + "\n")
    projection.refresh(conn)
    conn.close()

    # Campaigns over the last 8 weeks, to a recording gateway (nothing is sent anywhere).
    segs = Segments(ledger_db, profiles_db)
    segs.save("spa-lovers", Segment(outlets=("spa",), consent="any"), iso(now), "demo-data")
    segs.close()
    one_off_day = (now - timedelta(days=40)).date()
    config = parse_config(
        CAMPAIGNS.replace(
            'segment = "spa-lovers"',
            f'segment = "spa-lovers"\nstarts = "{one_off_day}"\nends = "{one_off_day}"',
        )
    )
    sink = RecordingGateway()
    job = CampaignJob(ledger_db, profiles_db, config, gateways={"email": sink, "sms": sink})
    job.quiet = True  # one bar for the 57 days, not one per day
    bar = progress("demo campaign days", 57, quiet=quiet).start()
    try:
        for back in range(56, -1, -1):
            bar.advance(1)
            job.run_daily(datetime.combine(now.date() - timedelta(days=back), time(10, 0), tzinfo=UTC))
            job.send_due(datetime.combine(now.date() - timedelta(days=back), time(12, 0), tzinfo=UTC))
        # Opens, where a gateway would report them: about a third of the messages.
        job.db.conn.execute(
            "UPDATE cmp_sends SET opened_at = done_at WHERE status = 'sent' AND abs(random()) % 3 = 0"
        )
    finally:
        bar.close()
        job.close()
    profiles.close()
    return {
        "members": members,
        "events": applied,
        "messages": len(sink.sent),
        "properties": len(PROPERTIES),
        "from": iso(start),
        "to": iso(now),
    }


def cmd_demo_data(args: argparse.Namespace) -> None:
    """``staypoint central demo-data``."""
    now = parse_iso(args.now) if args.now else datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    db = Path(args.db)
    result = generate(
        db,
        Path(args.profiles) if args.profiles else db,
        members=args.members,
        years=args.years,
        now=now,
        seed=args.seed,
        quiet=args.quiet,
    )
    print(json.dumps(result))
