"""Reports as text table, CSV, JSON or one self-contained HTML page with inline SVG charts.

The HTML page has no script, no web font and no external reference of any kind: it is
read offline, attached to an e-mail or printed, and shows the same figures as the
console. Charts are SVG drawn here (bars or a line), labelled with their values so the
page is readable without hovering.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from decimal import Decimal
from typing import Any

from staypoint.central.reports.figures import Report


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, Decimal):
        return f"{v:,}" if abs(v) >= 1000 else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def as_table(reports: dict[str, Report]) -> str:
    out: list[str] = []
    for r in reports.values():
        out.append(f"== {r.title} ==")
        if r.columns:
            cells = [[_cell(v) for v in row] for row in r.rows]
            heads = [label(c) for c in r.columns]
            widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(heads)]
            out.append("  ".join(c.ljust(w) for c, w in zip(heads, widths, strict=True)))
            out.append("  ".join("-" * w for w in widths))
            out.extend("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
        # Headline figures the table does not already show (a measure/value table such as
        # liability or points has them all as rows: printed once, not again as key: value).
        shown = {str(row[0]) for row in r.rows if row}
        for k, v in r.headline.items():
            if isinstance(v, list) or k in shown or (isinstance(v, str) and f"({v})" in r.title):
                continue
            out.append(f"{label(k)}: {_cell(v)}")
        out.append("")
    return "\n".join(out)


def as_csv(reports: dict[str, Report]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    for r in reports.values():
        w.writerow(["report", *r.columns])
        for row in r.rows:
            w.writerow([r.name, *("" if v is None else str(v) for v in row)])
    return buf.getvalue()


def _json_default(v: Any) -> Any:
    return str(v) if isinstance(v, Decimal) else repr(v)


def as_json(reports: dict[str, Report]) -> str:
    return json.dumps(
        {n: r.to_dict() for n, r in reports.items()}, default=_json_default, ensure_ascii=False, indent=2
    )


_PALETTE = ("#2f6f9f", "#e08a2e", "#4c9a5a", "#b5485d", "#7a62a8")

# Machine names (JSON, CSV, the API) stay snake_case; people read these (HTML, console, table).
LABELS: dict[str, str] = {
    "new_members": "New members",
    "active_members": "Active members",
    "revenue_share": "Revenue share",
    "stock_left": "Stock left",
    "avg_stars": "Average stars",
    "avg_days_between_stays": "Average days between stays",
    "avg_spend_per_stay": "Average spend per stay",
    "holdout": "Hold-out",
    "holdout_stay_rate": "Hold-out stay rate",
    "points": "Points",
    "kiosk": "Kiosk",
    "node": "Node",
    "property": "Property",
    "tier": "Tier",
    "month": "Month",
}


def label(column: str) -> str:
    """A column's readable name: ``new_members`` → ``New members`` (overrides in ``LABELS``)."""
    if column in LABELS:
        return LABELS[column]
    words = column.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 × 10^k) giving about ``ticks`` ticks up to ``top``."""
    raw = top / ticks if top > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def _fmt(v: float) -> str:
    if abs(v) >= 100 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def svg_chart(chart: dict[str, Any], *, width: int = 720, height: int = 280) -> str:
    """Bars (or a line) for ``chart['series']`` = [[label, value], ...], as inline SVG.

    Every point is drawn (a mark with a ``<title>`` naming its label and value), on a y-axis
    with round ticks from zero (or the lowest negative value) and an x-axis whose labels are
    thinned to what fits when there are many points; the first label is never clipped (the
    plot starts after the y-axis' tick labels and the x labels are rotated into the margin).
    """
    series = [(str(lbl), float(v or 0)) for lbl, v in chart.get("series", [])]
    title = html.escape(str(chart.get("label", "")))
    if not series:
        return (
            f'<svg class="chart" role="img" width="{width}" height="40" xmlns="http://www.w3.org/2000/svg">'
            f'<text x="4" y="24">{title}: no data</text></svg>'
        )
    hi = max(max(v for _, v in series), 0.0)
    lo = min(min(v for _, v in series), 0.0)
    step_y = _nice_step(hi - lo or 1.0)
    top = math.ceil(hi / step_y) * step_y if hi > 0 else 0.0
    bottom_v = math.floor(lo / step_y) * step_y if lo < 0 else 0.0
    if top == bottom_v:
        top = step_y
    left, right, head, foot = 64, 12, 28, 64
    plot_w, plot_h = width - left - right, height - head - foot
    base_y = head + plot_h

    def y_of(v: float) -> float:
        return head + (top - v) / (top - bottom_v) * plot_h

    n = len(series)
    step = plot_w / n
    parts = [
        f'<svg class="chart" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">',
        f'<text class="title" x="{left}" y="16" font-size="13" font-weight="bold">{title}</text>',
    ]
    # y-axis: ticks, grid lines and their values.
    axis_y = [
        f'<g class="axis y-axis"><line x1="{left}" y1="{head}" x2="{left}" y2="{base_y}" stroke="#555"/>'
    ]
    t = bottom_v
    while t <= top + step_y / 2:
        y = y_of(t)
        axis_y.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="#e4e4e4"/><text class="tick" x="{left - 6}" y="{y + 4:.1f}" font-size="10" '
            f'text-anchor="end">{_fmt(t)}</text>'
        )
        t += step_y
    axis_y.append("</g>")
    parts.extend(axis_y)
    zero_y = y_of(0.0)
    # x-axis: every point has a tick; labels are thinned to one per ~18 px.
    every = max(1, math.ceil(n / max(1, plot_w // 18)))
    axis_x = [
        f'<g class="axis x-axis"><line x1="{left}" y1="{zero_y:.1f}" x2="{width - right}" '
        f'y2="{zero_y:.1f}" stroke="#555"/>'
    ]
    marks: list[str] = []
    points: list[str] = []
    kind = chart.get("kind")
    for i, (lbl, v) in enumerate(series):
        cx = left + i * step + step / 2
        y = y_of(v)
        text = html.escape(lbl)
        value = _fmt(v)
        tip = f"<title>{text}: {value}</title>"
        if kind == "line":
            points.append(f"{cx:.1f},{y:.1f}")
            marks.append(
                f'<circle class="mark" data-label="{text}" data-value="{v:g}" cx="{cx:.1f}" cy="{y:.1f}" '
                f'r="{3 if n <= 60 else 2}" fill="{_PALETTE[0]}">{tip}</circle>'
            )
        else:
            y0, y1 = sorted((y, zero_y))
            fill = _PALETTE[i % len(_PALETTE)] if n < 6 else _PALETTE[0]
            marks.append(
                f'<rect class="mark" data-label="{text}" data-value="{v:g}" x="{cx - step * 0.4:.1f}" '
                f'y="{y0:.1f}" width="{max(step * 0.8, 0.5):.1f}" height="{y1 - y0:.1f}" fill="{fill}">'
                f"{tip}</rect>"
            )
        if n <= 16:
            marks.append(
                f'<text class="value" x="{cx:.1f}" y="{min(y, zero_y) - 3:.1f}" font-size="10" '
                f'text-anchor="middle">{value}</text>'
            )
        axis_x.append(f'<line x1="{cx:.1f}" y1="{base_y}" x2="{cx:.1f}" y2="{base_y + 3}" stroke="#555"/>')
        if i % every == 0:
            ly = base_y + 12
            axis_x.append(
                f'<text class="tick" x="{cx:.1f}" y="{ly}" font-size="10" text-anchor="end" '
                f'transform="rotate(-40 {cx:.1f} {ly})">{html.escape(lbl[:18])}</text>'
            )
    axis_x.append("</g>")
    parts.extend(axis_x)
    if points:
        parts.append(
            f'<polyline fill="none" stroke="{_PALETTE[0]}" stroke-width="2" points="{" ".join(points)}"/>'
        )
    parts.extend(marks)
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px} h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px}
td.n{text-align:right} th{background:#f3f5f7} .headline{font-size:14px;margin:6px 0}
.headline b{font-size:16px} .note{color:#666;font-size:12px} svg.chart{display:block;margin:8px 0}
"""


def as_html(reports: dict[str, Report], *, title: str = "Staypoint reports", subtitle: str = "") -> str:
    """One self-contained page: styles inline, charts as inline SVG, nothing fetched."""
    body: list[str] = [f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="note">{html.escape(subtitle)}</p>')
    for r in reports.values():
        body.append(f'<section id="{html.escape(r.name)}"><h2>{html.escape(r.title)}</h2>')
        heads = [
            f"{html.escape(label(k))}: <b>{html.escape(_cell(v))}</b>"
            for k, v in r.headline.items()
            if not isinstance(v, list)
        ]
        if heads:
            body.append('<p class="headline">' + " · ".join(heads) + "</p>")
        if r.chart:
            body.append(svg_chart(r.chart))
        if r.columns:
            body.append(
                "<table><tr>"
                + "".join(f'<th title="{html.escape(c)}">{html.escape(label(c))}</th>' for c in r.columns)
                + "</tr>"
            )
            for row in r.rows[:200]:
                body.append(
                    "<tr>"
                    + "".join(
                        f'<td class="{"n" if isinstance(v, int | Decimal) else ""}">'
                        f"{html.escape(_cell(v))}</td>"
                        for v in row
                    )
                    + "</tr>"
                )
            body.append("</table>")
            if len(r.rows) > 200:
                body.append(f'<p class="note">{len(r.rows) - 200} more rows in the CSV export</p>')
        body.extend(f'<p class="note">{html.escape(n)}</p>' for n in r.notes)
        body.append("</section>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def render(reports: dict[str, Report], fmt: str, **kw: Any) -> str:
    if fmt == "table":
        return as_table(reports)
    if fmt == "csv":
        return as_csv(reports)
    if fmt == "json":
        return as_json(reports)
    if fmt == "html":
        return as_html(reports, **kw)
    raise ValueError(f"unknown format {fmt!r}: table, csv, json or html")
