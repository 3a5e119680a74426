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
            widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(r.columns)]
            out.append("  ".join(c.ljust(w) for c, w in zip(r.columns, widths, strict=True)))
            out.append("  ".join("-" * w for w in widths))
            out.extend("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
        # Headline figures the table does not already show (a measure/value table such as
        # liability or points has them all as rows: printed once, not again as key: value).
        shown = {str(row[0]) for row in r.rows if row}
        for k, v in r.headline.items():
            if isinstance(v, list) or k in shown or (isinstance(v, str) and f"({v})" in r.title):
                continue
            out.append(f"{k}: {_cell(v)}")
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


def svg_chart(chart: dict[str, Any], *, width: int = 640, height: int = 240) -> str:
    """Bars (or a line) for ``chart['series']`` = [[label, value], ...], as inline SVG."""
    series = [(str(lbl), float(v or 0)) for lbl, v in chart.get("series", [])][:40]
    title = html.escape(str(chart.get("label", "")))
    if not series:
        return (
            f'<svg class="chart" role="img" width="{width}" height="40">'
            f'<text x="4" y="24">{title}: no data</text></svg>'
        )
    top = max(max(v for _, v in series), 0.0) or 1.0
    left, bottom, plot_h = 8, 56, height - 84
    step = (width - left * 2) / len(series)
    parts = [
        f'<svg class="chart" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{title}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - left}" '
        f'y2="{height - bottom}" stroke="#999"/>',
    ]
    points: list[str] = []
    for i, (lbl, v) in enumerate(series):
        h = max(0.0, v) / top * plot_h
        x = left + i * step
        y = height - bottom - h
        label = html.escape(lbl[:14])
        value = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}".rstrip("0").rstrip(".")
        if chart.get("kind") == "line":
            points.append(f"{x + step / 2:.1f},{y:.1f}")
            parts.append(
                f'<circle class="mark" cx="{x + step / 2:.1f}" cy="{y:.1f}" r="3" fill="{_PALETTE[0]}"/>'
            )
        else:
            parts.append(
                f'<rect class="mark" x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" '
                f'height="{h:.1f}" fill="{_PALETTE[i % len(_PALETTE)] if len(series) < 6 else _PALETTE[0]}">'
                f"<title>{label}: {value}</title></rect>"
            )
        if len(series) <= 16:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{y - 3:.1f}" font-size="10" '
                f'text-anchor="middle">{value}</text>'
            )
        parts.append(
            f'<text x="{x + step / 2:.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="end" '
            f'transform="rotate(-35 {x + step / 2:.1f} {height - bottom + 14})">{label}</text>'
        )
    if points:
        parts.append(
            f'<polyline fill="none" stroke="{_PALETTE[0]}" stroke-width="2" points="{" ".join(points)}"/>'
        )
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
            f"{html.escape(k)}: <b>{html.escape(_cell(v))}</b>"
            for k, v in r.headline.items()
            if not isinstance(v, list)
        ]
        if heads:
            body.append('<p class="headline">' + " · ".join(heads) + "</p>")
        if r.chart:
            body.append(svg_chart(r.chart))
        if r.columns:
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in r.columns) + "</tr>")
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
