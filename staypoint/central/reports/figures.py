"""The reports' figures, as data: the CLI formats them, the console shows the same ones.

Every report reads the projection (``projection.py``), never the events' JSON, and
returns a ``Report``: columns, rows, headline figures and how to chart it. Money is
``Decimal`` (from integer cents), points are ``int``; rates are ``Decimal`` rounded for
display only at the edge.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from staypoint.loyalty.events import iso
from staypoint.loyalty.program import Program

# Used when no point has ever expired or been redeemed: an assumption, shown as such.
DEFAULT_BREAKAGE = Decimal("0.20")


@dataclass(frozen=True)
class Filters:
    start: date | None = None  # inclusive
    end: date | None = None  # exclusive
    property: str | None = None
    tier: str | None = None
    #: The property's zone: ``start``/``end`` are its local days (midnight there, as a UTC
    #: instant, for the events' timestamps; arrivals are the folio's local dates already).
    tz: tzinfo | None = None


def _bound(day: date, column: str, tz: tzinfo | None) -> str:
    """A day boundary as ``column`` compares it: a date for a date column, else a UTC instant."""
    if tz is None or column.endswith("arrival"):
        return day.isoformat()
    return iso(datetime.combine(day, time(), tz))


@dataclass
class Report:
    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    headline: dict[str, Any] = field(default_factory=dict)
    chart: dict[str, Any] | None = None  # {"kind": "bar"|"line", "x": col, "y": [cols]}
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "columns": self.columns,
            "rows": self.rows,
            "headline": self.headline,
            "chart": self.chart,
            "notes": self.notes,
        }


def money(cents: int | None) -> Decimal:
    return (Decimal(int(cents or 0)) / 100).quantize(Decimal("0.01"))


def ratio(a: int | Decimal, b: int | Decimal, places: str = "0.0001") -> Decimal | None:
    return None if not b else (Decimal(a) / Decimal(b)).quantize(Decimal(places), ROUND_HALF_UP)


def _where(f: Filters, *, at: str, prop: str | None, tier: str | None) -> tuple[str, list[Any]]:
    parts: list[str] = []
    args: list[Any] = []
    if f.start:
        parts.append(f"{at} >= ?")
        args.append(_bound(f.start, at, f.tz))
    if f.end:
        parts.append(f"{at} < ?")
        args.append(_bound(f.end, at, f.tz))
    if f.property and prop:
        parts.append(f"{prop} = ?")
        args.append(f.property)
    if f.tier and tier:
        parts.append(f"{tier} = ?")
        args.append(f.tier)
    return (" AND ".join(parts) or "1"), args


def _dated(f: Filters) -> bool:
    return f.start is not None or f.end is not None


def _unfiltered(f: Filters) -> bool:
    return not (_dated(f) or f.property or f.tier)


def _none(key: str) -> str | None:
    """A running total's key back to the fact's value ('' stands for a missing one)."""
    return key if key != "" else None


def growth(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """New members by month, property and (current) tier, with the running total."""
    w, a = _where(f, at="e.at", prop="e.property", tier="coalesce(m.tier, e.tier)")
    rows = conn.execute(
        f"SELECT e.month, coalesce(e.property, '?'), coalesce(m.tier, e.tier), count(*) FROM rpt_enrolments "
        f"e "
        f"LEFT JOIN rpt_members m ON m.member = e.member WHERE {w} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        a,
    ).fetchall()
    by_month: dict[str, int] = {}
    for month, _p, _t, n in rows:
        by_month[month] = by_month.get(month, 0) + int(n)
    out, total = [], 0
    for month, _p, _t, n in rows:
        out.append([month, _p, _t, int(n)])
    cumulative = []
    for month in sorted(by_month):
        total += by_month[month]
        cumulative.append([month, by_month[month], total])
    return Report(
        "growth",
        "Membership growth",
        ["month", "property", "tier", "new_members"],
        out,
        {"new_members": total, "by_month": cumulative},
        {"kind": "bar", "series": [[m, n] for m, n, _ in cumulative], "label": "new members by month"},
    )


def active(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Members with at least one stay, by month of arrival."""
    if _unfiltered(f):
        # The running totals: members per month and stays per month, no stay is read.
        stays = dict(conn.execute("SELECT month, sum(stays) FROM rpt_stay_cube GROUP BY month").fetchall())
        rows = [
            (_none(m), n, stays.get(m, 0))
            for m, n in conn.execute(
                "SELECT month, members FROM rpt_month_active WHERE members > 0 ORDER BY month"
            )
        ]
        rows.sort(key=lambda r: (r[0] is not None, r[0] or ""))
        distinct = conn.execute("SELECT count(*) FROM rpt_members WHERE kept > 0").fetchone()[0]
    else:
        w, a = _where(f, at="arrival", prop="property", tier="tier")
        rows = conn.execute(
            f"SELECT month, count(DISTINCT member), count(*) FROM rpt_stays WHERE voided = 0 AND {w} "
            "GROUP BY month ORDER BY month",
            a,
        ).fetchall()
        distinct = conn.execute(
            f"SELECT count(DISTINCT member) FROM rpt_stays WHERE voided = 0 AND {w}", a
        ).fetchone()[0]
    return Report(
        "active",
        "Active members (a stay in the period)",
        ["month", "active_members", "stays"],
        [[m, int(n), int(s)] for m, n, s in rows],
        {"active_members": int(distinct)},
        {"kind": "line", "series": [[m, int(n)] for m, n, _ in rows], "label": "active members"},
    )


def repeat(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Repeat-stay rate (members with 2+ stays among those with 1+) and days between stays."""
    hist: dict[str, int] = {}
    if _unfiltered(f):
        # Per-member figures kept by the projection: the gaps between a member's consecutive
        # arrivals add up to last - first arrival, and there are dated - 1 of them.
        stayers = repeaters = 0
        for n, members in conn.execute(
            "SELECT min(kept, 5), count(*) FROM rpt_members WHERE kept > 0 GROUP BY 1"
        ):
            key = str(n) if n < 5 else "5+"
            hist[key] = int(members)
            stayers += int(members)
            repeaters += int(members) if n >= 2 else 0
        span, gaps = conn.execute(
            "SELECT sum(julianday(last_arrival) - julianday(first_arrival)), sum(dated - 1) "
            "FROM rpt_members WHERE kept > 0 AND dated > 1"
        ).fetchone()
        gap = (None if not gaps else span / gaps, gaps or 0)
    else:
        w, a = _where(f, at="arrival", prop="property", tier="tier")
        per = conn.execute(
            f"SELECT member, count(*) FROM rpt_stays WHERE voided = 0 AND {w} GROUP BY member", a
        ).fetchall()
        stayers = len(per)
        repeaters = sum(1 for _, n in per if n >= 2)
        # Gaps between consecutive arrivals of the same member (window function, in SQLite).
        gap = conn.execute(
            f"SELECT avg(g), count(g) FROM (SELECT julianday(arrival) - julianday(lag(arrival) OVER "
            f"(PARTITION BY member ORDER BY arrival)) AS g FROM rpt_stays WHERE voided = 0 AND {w}) "
            f"WHERE g IS NOT NULL",
            a,
        ).fetchone()
        for _, n in per:
            key = str(n) if n < 5 else "5+"
            hist[key] = hist.get(key, 0) + 1
    avg_gap = None if gap[0] is None else Decimal(str(gap[0])).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return Report(
        "repeat",
        "Repeat stays",
        ["stays_per_member", "members"],
        [[k, hist[k]] for k in sorted(hist)],
        {
            "members_with_stays": stayers,
            "repeat_members": repeaters,
            "repeat_rate": ratio(repeaters, stayers),
            "avg_days_between_stays": avg_gap,
            "gaps": int(gap[1]),
        },
        {
            "kind": "bar",
            "series": [[k, hist[k]] for k in sorted(hist)],
            "label": "members by number of stays",
        },
    )


def revenue_share(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Members' revenue against the property's own total, by property and month."""
    if not _dated(f):
        w, a = _where(f, at="", prop="property", tier="tier")
        rows = [
            (_none(p), _none(m), c)
            for p, m, c in conn.execute(
                f"SELECT property, month, sum(total_c) FROM rpt_stay_cube WHERE {w} GROUP BY 1, 2 "
                "HAVING sum(stays) <> 0 ORDER BY 1, 2",
                a,
            )
        ]
        rows.sort(key=lambda r: (r[0] is not None, r[0] or "", r[1] is not None, r[1] or ""))
    else:
        w, a = _where(f, at="s.arrival", prop="s.property", tier="s.tier")
        rows = conn.execute(
            f"SELECT s.property, s.month, sum(s.total_c) FROM rpt_stays s WHERE s.voided = 0 AND {w} "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            a,
        ).fetchall()
    totals = {
        (p, m): int(t)
        for p, m, t in conn.execute("SELECT property, month, total_c FROM rpt_property_revenue")
    }
    out = []
    mem_sum = tot_sum = 0
    for prop, month, cents in rows:
        total = totals.get((prop, month))
        out.append(
            [
                prop,
                month,
                money(cents),
                money(total) if total is not None else None,
                ratio(int(cents), total) if total else None,
            ]
        )
        if total:
            mem_sum += int(cents)
            tot_sum += total
    return Report(
        "revenue_share",
        "Revenue from members against the property's total",
        ["property", "month", "member_revenue", "property_total", "member_share"],
        out,
        {
            "member_revenue": money(mem_sum),
            "property_total": money(tot_sum),
            "member_share": ratio(mem_sum, tot_sum),
        },
        {
            "kind": "bar",
            "series": [[f"{r[0]} {r[1]}", float(r[4] or 0) * 100] for r in out],
            "label": "member share %",
        },
        ["months without an imported property total are shown without a share"],
    )


def spend_by_tier(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Average spend per stay by the tier the member had at the stay."""
    if not _dated(f):
        w, a = _where(f, at="", prop="property", tier="tier")
        rows = [
            (_none(t), n, c, ni)
            for t, n, c, ni in conn.execute(
                f"SELECT tier, sum(stays), sum(total_c), sum(nights) FROM rpt_stay_cube WHERE {w} "
                "GROUP BY tier HAVING sum(stays) <> 0",
                a,
            )
        ]
        rows.sort(key=lambda r: (r[0] is not None, r[0] or ""))
    else:
        w, a = _where(f, at="arrival", prop="property", tier="tier")
        rows = conn.execute(
            f"SELECT tier, count(*), sum(total_c), sum(nights) FROM rpt_stays WHERE voided = 0 AND {w} "
            "GROUP BY tier",
            a,
        ).fetchall()
    rank = {t.code: t.rank for t in program.tiers}
    rows = sorted(rows, key=lambda r: rank.get(str(r[0]), 99))
    out = [[t, int(n), money(c), money(int(c) // int(n)) if n else None, int(ni)] for t, n, c, ni in rows]
    return Report(
        "spend_by_tier",
        "Average spend per stay by tier",
        ["tier", "stays", "revenue", "avg_spend_per_stay", "nights"],
        out,
        {},
        {
            "kind": "bar",
            "series": [[r[0], float(r[3] or 0)] for r in out],
            "label": f"avg spend ({program.currency})",
        },
    )


def _points_totals(conn: sqlite3.Connection, f: Filters) -> dict[str, int]:
    if not _dated(f):
        got = dict(conn.execute("SELECT kind, sum(points) FROM rpt_points_cube GROUP BY kind").fetchall())
        return {k: int(v or 0) for k, v in got.items()}
    w, a = _where(f, at="p.at", prop=None, tier=None)
    got = dict(
        conn.execute(f"SELECT kind, sum(points) FROM rpt_points p WHERE {w} GROUP BY kind", a).fetchall()
    )
    # Points earned are every stay posted (voided ones are taken back as 'voided').
    w, a = _where(f, at="s.at", prop=None, tier=None)
    earned = conn.execute(f"SELECT sum(points) FROM rpt_stays s WHERE {w}", a).fetchone()[0]
    if earned is not None:
        got["earned"] = earned
    return {k: int(v or 0) for k, v in got.items()}


def points(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Points issued, redeemed, expired, and outstanding now."""
    t = _points_totals(conn, f)
    issued = t.get("earned", 0) + t.get("bonus", 0) + max(0, t.get("adjusted", 0)) + t.get("refunded", 0)
    redeemed = -t.get("redeemed", 0)
    expired = -t.get("expired", 0)
    voided = -t.get("voided", 0)
    w, a = _where(f, at="'x'", prop=None, tier="tier") if f.tier else ("1", [])
    outstanding = int(
        conn.execute(
            f"SELECT coalesce(sum(points), 0) FROM rpt_members WHERE points > 0 AND {w}", a
        ).fetchone()[0]
    )
    rows = [
        ["issued", issued],
        ["redeemed", redeemed],
        ["expired", expired],
        ["voided", voided],
        ["outstanding", outstanding],
    ]
    return Report(
        "points",
        "Points issued, redeemed, expired and outstanding",
        ["measure", "points"],
        rows,
        {str(k): v for k, v in rows},
        {"kind": "bar", "series": rows, "label": "points"},
        [
            "outstanding is every member's balance now; the others are movements in the period",
            "balances lapsed by the expiry job without an event are in outstanding's fall, not in 'expired'",
        ],
    )


def liability(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Outstanding points × value of a point, less a breakage estimate from history."""
    t = _points_totals(conn, Filters())
    redeemed, expired = -t.get("redeemed", 0), -t.get("expired", 0)
    breakage = ratio(expired, redeemed + expired) if redeemed + expired else DEFAULT_BREAKAGE
    assert breakage is not None
    outstanding = int(
        conn.execute("SELECT coalesce(sum(points), 0) FROM rpt_members WHERE points > 0").fetchone()[0]
    )
    gross = (outstanding * program.point_value).quantize(Decimal("0.01"), ROUND_HALF_UP)
    net = (gross * (1 - breakage)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    rows = [
        ["outstanding_points", outstanding],
        ["point_value", program.point_value],
        ["gross_liability", gross],
        ["breakage_rate", breakage],
        ["expected_liability", net],
    ]
    return Report(
        "liability",
        f"Points liability ({program.currency})",
        ["measure", "value"],
        rows,
        {str(k): v for k, v in rows} | {"currency": program.currency},
        {
            "kind": "bar",
            "series": [["gross", float(gross)], ["expected", float(net)]],
            "label": program.currency,
        },
        [
            "breakage = expired / (redeemed + expired) over all history"
            + ("" if redeemed + expired else f"; no history yet, assumed {DEFAULT_BREAKAGE}")
        ],
    )


def redemptions(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Redemptions by reward, and what is left of rewards with a stock."""
    all_time = {
        _none(r): n
        for r, n in conn.execute(
            "SELECT reward, sum(n) FROM rpt_points_cube WHERE kind = 'redeemed' GROUP BY reward "
            "HAVING sum(n) <> 0 ORDER BY 2 DESC, reward"
        )
    }
    if not _dated(f):
        rows = [
            (_none(r), n, p)
            for r, n, p in conn.execute(
                "SELECT reward, sum(n), -sum(points) FROM rpt_points_cube WHERE kind = 'redeemed' "
                "GROUP BY reward HAVING sum(n) <> 0 ORDER BY 2 DESC, reward"
            )
        ]
    else:
        w, a = _where(f, at="at", prop=None, tier=None)
        rows = conn.execute(
            f"SELECT reward, count(*), -sum(points) FROM rpt_points WHERE kind = 'redeemed' AND {w} "
            "GROUP BY reward ORDER BY 2 DESC, reward",
            a,
        ).fetchall()
    out = []
    for reward, n, pts in rows:
        r = program.reward(str(reward or ""))
        stock_left = None if r is None or r.stock is None else r.stock - int(all_time.get(reward, 0))
        out.append([reward, r.category.value if r else "?", int(n), int(pts or 0), stock_left])
    return Report(
        "redemptions",
        "Redemption mix and reward stock",
        ["reward", "category", "redemptions", "points", "stock_left"],
        out,
        {"redemptions": sum(r[2] for r in out)},
        {"kind": "bar", "series": [[r[0], r[2]] for r in out], "label": "redemptions"},
    )


def feedback(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Average feedback stars by tier, property and kiosk (node)."""
    out = []
    if _unfiltered(f):
        # Per-member counts (for the member's current tier) and running totals by property
        # and kiosk: no feedback row is read.
        dims: dict[str, dict[Any, list[int]]] = {"tier": {}, "property": {}, "kiosk": {}}
        for tier, n, stars in conn.execute(
            "SELECT tier, sum(fb_n), sum(fb_stars) FROM rpt_members WHERE fb_n > 0 GROUP BY tier"
        ):
            dims["tier"][tier] = [int(n), int(stars)]
        for prop, node, anon, n, stars in conn.execute(
            "SELECT property, node, anon, n, stars FROM rpt_feedback_cube WHERE n <> 0"
        ):
            for dim, key in (
                ("property", _none(prop)),
                ("kiosk", node),
                *((("tier", None),) if anon else ()),
            ):
                acc = dims[dim].setdefault(key, [0, 0])
                acc[0] += int(n)
                acc[1] += int(stars)
        for dim, got in dims.items():
            for key in sorted(got, key=lambda k: (k is not None, k or "")):
                n, stars = got[key]
                if n:
                    avg = Decimal(str(stars / n)).quantize(Decimal("0.01"), ROUND_HALF_UP)
                    out.append([dim, key, n, avg])
    else:
        w, a = _where(f, at="fb.at", prop="fb.property", tier="m.tier")
        base = f"FROM rpt_feedback fb LEFT JOIN rpt_members m ON m.member = fb.member WHERE {w}"
        for dim, col in (("tier", "m.tier"), ("property", "fb.property"), ("kiosk", "fb.node")):
            for key, n, avg in conn.execute(
                f"SELECT {col}, count(*), avg(fb.stars) {base} GROUP BY 1 ORDER BY 1", a
            ):
                out.append([dim, key, int(n), Decimal(str(avg)).quantize(Decimal("0.01"), ROUND_HALF_UP)])
    return Report(
        "feedback",
        "Feedback scores",
        ["by", "key", "responses", "avg_stars"],
        out,
        {},
        {
            "kind": "bar",
            "series": [[f"{r[0]}:{r[1]}", float(r[3])] for r in out if r[0] == "property"],
            "label": "avg stars by property",
        },
    )


def feedback_by_tier(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Feedback by property and member tier: responses, average and low scores (2 stars or
    fewer), the most frequent tags; lowest averages and highest tiers first."""
    w, a = _where(f, at="fb.at", prop="fb.property", tier="m.tier")
    ranks = {t.code: t.rank for t in program.tiers}
    groups: dict[tuple[str, str], list[Any]] = {}
    for prop, tier, n, stars, low in conn.execute(
        "SELECT coalesce(fb.property, ''), coalesce(m.tier, '-'), count(*), sum(fb.stars), "
        f"sum(fb.stars <= 2) FROM rpt_feedback fb LEFT JOIN rpt_members m ON m.member = fb.member "
        f"WHERE {w} GROUP BY 1, 2",
        a,
    ):
        groups[(str(prop), str(tier))] = [int(n), int(stars), int(low or 0), {}]
    # Tags are read from the feedback events themselves (inside SQLite, as the projection does).
    for prop, tier, tag, n in conn.execute(
        "SELECT coalesce(fb.property, ''), coalesce(m.tier, '-'), t.value, count(*) FROM rpt_feedback fb "
        "JOIN events e ON e.rowid = fb.rowid LEFT JOIN rpt_members m ON m.member = fb.member, "
        f"json_each(e.body, '$.data.tags') t WHERE {w} GROUP BY 1, 2, 3",
        a,
    ):
        got = groups.get((str(prop), str(tier)))
        if got is not None:
            got[3][str(tag)] = int(n)
    out = []
    for (prop, tier), (n, stars, low, tags) in groups.items():
        avg = (Decimal(stars) / n).quantize(Decimal("0.01"), ROUND_HALF_UP)
        top = ", ".join(f"{t} ({c})" for t, c in sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        out.append([prop or None, tier, n, avg, low, top])
    out.sort(key=lambda r: (r[3], -ranks.get(str(r[1]), -1), str(r[0])))
    return Report(
        "feedback_by_tier",
        "Feedback by property and tier (lowest first)",
        ["property", "tier", "responses", "avg_stars", "low_scores", "top_tags"],
        out,
        {"responses": sum(r[2] for r in out), "low_scores": sum(r[4] for r in out)},
        {"kind": "bar", "series": [[f"{r[0]}:{r[1]}", float(r[3])] for r in out], "label": "avg stars"},
    )


def campaigns(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Per campaign: sent, opened (where known), and stays within 30 days against the hold-out group."""
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'cmp_sends'").fetchone()
    if has is None:
        return Report("campaigns", "Campaign results", [], [], {})
    w, a = _where(f, at="c.claimed_at", prop=None, tier=None)
    rows = conn.execute(
        f"""SELECT c.campaign,
            sum(c.status = 'sent'), sum(c.opened_at IS NOT NULL), sum(c.holdout = 0), sum(c.holdout = 1),
            sum(c.holdout = 0 AND EXISTS (SELECT 1 FROM rpt_stays s WHERE s.member = c.member AND s.voided = 0
                AND s.arrival > substr(c.claimed_at, 1, 10)
                AND s.arrival <= date(substr(c.claimed_at, 1, 10), '+30 days'))),
            sum(c.holdout = 1 AND EXISTS (SELECT 1 FROM rpt_stays s WHERE s.member = c.member AND s.voided = 0
                AND s.arrival > substr(c.claimed_at, 1, 10)
                AND s.arrival <= date(substr(c.claimed_at, 1, 10), '+30 days'))),
            sum(c.status = 'uncertain')
        FROM cmp_sends c WHERE {w} GROUP BY c.campaign ORDER BY c.campaign""",
        a,
    ).fetchall()
    out = []
    for code, sent, opened, targeted, held, t_stay, h_stay, unc in rows:
        t_rate, h_rate = ratio(int(t_stay or 0), int(targeted or 0)), ratio(int(h_stay or 0), int(held or 0))
        lift = None if t_rate is None or h_rate is None else t_rate - h_rate
        out.append(
            [
                code,
                int(sent or 0),
                int(opened or 0),
                int(targeted or 0),
                int(held or 0),
                t_rate,
                h_rate,
                lift,
                int(unc or 0),
            ]
        )
    return Report(
        "campaigns",
        "Campaign results (stays within 30 days)",
        [
            "campaign",
            "sent",
            "opened",
            "targeted",
            "holdout",
            "stay_rate",
            "holdout_stay_rate",
            "lift",
            "uncertain",
        ],
        out,
        {},
        {
            "kind": "bar",
            "series": [[r[0], float(r[5] or 0) * 100] for r in out],
            "label": "stay rate % (targeted)",
        },
        ["opened is counted only where the gateway reports opens"],
    )


def exposure(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """Points redeemed offline and overdrafts, by node."""
    if not _dated(f):
        offline = dict(
            conn.execute(
                "SELECT node, -sum(points) FROM rpt_points_cube WHERE kind = 'redeemed' AND offline = 1 "
                "GROUP BY node HAVING sum(n) <> 0"
            ).fetchall()
        )
    else:
        w, a = _where(f, at="at", prop=None, tier=None)
        offline = dict(
            conn.execute(
                f"SELECT node, -sum(points) FROM rpt_points WHERE kind = 'redeemed' AND auth = 'offline' "
                f"AND {w} GROUP BY node",
                a,
            ).fetchall()
        )
    od: dict[str, tuple[int, int, int]] = {}
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'overdrafts'").fetchone():
        for node, n, open_, worst in conn.execute(
            "SELECT node, count(*), sum(resolved_at IS NULL), min(balance) FROM overdrafts GROUP BY node"
        ):
            od[node] = (int(n), int(open_ or 0), int(worst or 0))
    nodes = sorted(set(offline) | set(od))
    out = [[n, int(offline.get(n, 0) or 0), *od.get(n, (0, 0, 0))] for n in nodes]
    return Report(
        "exposure",
        "Offline exposure and overdrafts by node",
        ["node", "offline_points_redeemed", "overdrafts", "open_overdrafts", "lowest_balance"],
        out,
        {"open_overdrafts": sum(r[3] for r in out)},
        {"kind": "bar", "series": [[r[0], r[1]] for r in out], "label": "offline points redeemed"},
    )


def stored_value(conn: sqlite3.Connection, program: Program, f: Filters) -> Report:
    """The stored-value liability: balances outstanding by property and tier (now), top-ups
    and spends in the period, and the value overdrafts still open."""
    w, a = _where(Filters(property=f.property, tier=f.tier), at="", prop="home_property", tier="tier")
    balances = conn.execute(
        "SELECT coalesce(home_property, ''), coalesce(tier, ''), count(*), sum(value_c) FROM rpt_members "
        f"WHERE value_c <> 0 AND {w} GROUP BY 1, 2 ORDER BY 1, 2",
        a,
    ).fetchall()
    rows: list[list[Any]] = [["balance", p, t, int(n), money(c)] for p, t, n, c in balances]
    # Movements from the ledger's own value events (the PostgreSQL cache mirrors them); the
    # property and tier filters are the member's home property and current tier.
    w, a = _where(f, at="json_extract(e.body, '$.at')", prop="m.home_property", tier="m.tier")
    cents = "CAST(round(CAST(json_extract(e.body, '$.data.amount') AS REAL) * 100) AS INTEGER)"
    moved = {
        (kind, auth): (int(n), int(c or 0))
        for kind, auth, n, c in conn.execute(
            f"SELECT e.type, coalesce(json_extract(e.body, '$.auth'), 'online'), count(*), sum({cents}) "
            "FROM events e LEFT JOIN rpt_members m ON m.member = e.member "
            f"WHERE e.type IN ('value.topped_up', 'value.spent') AND {w} GROUP BY 1, 2",
            a,
        )
    }
    top_n = sum(n for (k, _), (n, _) in moved.items() if k == "value.topped_up")
    top_c = sum(c for (k, _), (_, c) in moved.items() if k == "value.topped_up")
    rows.append(["top_ups", "", "", top_n, money(top_c)])
    for auth in ("online", "offline"):
        n, c = moved.get(("value.spent", auth), (0, 0))
        rows.append([f"spends_{auth}", "", "", n, money(c)])
    od_n, od_c = 0, 0
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'overdrafts'").fetchone():
        w, a = _where(Filters(property=f.property, tier=f.tier), at="", prop="m.home_property", tier="m.tier")
        n, c = conn.execute(
            "SELECT count(*), coalesce(sum(o.balance), 0) FROM overdrafts o "
            "LEFT JOIN rpt_members m ON m.member = o.member "
            f"WHERE o.kind = 'value_overdraft' AND o.resolved_at IS NULL AND {w}",
            a,
        ).fetchone()
        od_n, od_c = int(n), int(c)
    rows.append(["open_overdrafts", "", "", od_n, money(od_c)])
    outstanding = sum((r[4] for r in rows if r[0] == "balance"), Decimal("0.00"))
    spent = sum((r[4] for r in rows if str(r[0]).startswith("spends_")), Decimal("0.00"))
    return Report(
        "stored_value",
        f"Stored-value liability ({program.currency})",
        ["measure", "property", "tier", "count", "amount"],
        rows,
        {
            "outstanding": outstanding,
            "members_with_balance": sum(int(r[3]) for r in rows if r[0] == "balance"),
            "top_ups": money(top_c),
            "spends": spent,
            "open_overdrafts": od_n,
            "overdrawn": money(od_c),
            "currency": program.currency,
        },
        {
            "kind": "bar",
            "series": [[f"{r[1]} {r[2]}", float(r[4])] for r in rows if r[0] == "balance"],
            "label": f"outstanding ({program.currency})",
        },
        [
            "balances: now, by the member's home property and current tier; top-ups and spends: "
            "in the period by the event's time; an open overdraft's amount is the wallet below zero"
        ],
    )


REPORTS: dict[str, Callable[[sqlite3.Connection, Program, Filters], Report]] = {
    "growth": growth,
    "active": active,
    "repeat": repeat,
    "revenue_share": revenue_share,
    "spend_by_tier": spend_by_tier,
    "points": points,
    "liability": liability,
    "redemptions": redemptions,
    "feedback": feedback,
    "feedback_by_tier": feedback_by_tier,
    "campaigns": campaigns,
    "exposure": exposure,
    "stored_value": stored_value,
}


def figures(
    conn: sqlite3.Connection, program: Program, names: list[str] | None = None, f: Filters | None = None
) -> dict[str, Report]:
    """The reports named (all by default) over an up-to-date projection: for the CLI and the console."""
    from staypoint.central.reports import projection

    projection.refresh(conn)
    f = f or Filters()
    return {n: REPORTS[n](conn, program, f) for n in (names or list(REPORTS))}
