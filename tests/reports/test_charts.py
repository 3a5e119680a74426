"""Charts keep every point, with both axes and readable labels; people read labels, machines names."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from staypoint.central.reports.figures import Report
from staypoint.central.reports.render import as_csv, as_html, as_json, as_table, label, svg_chart

SVG = "{http://www.w3.org/2000/svg}"


def _months(years: int) -> list[str]:
    return [f"{2026 + i // 12}-{i % 12 + 1:02d}" for i in range(12 * years)]


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_four_years_of_months_keep_every_point_with_axes() -> None:
    months = _months(4)
    series = [[m, 10 + i * 3] for i, m in enumerate(months)]
    for kind in ("bar", "line"):
        root = _parse(svg_chart({"kind": kind, "series": series, "label": "new members by month"}))
        marks = [e for e in root.iter() if e.get("class") == "mark"]
        assert [m.get("data-label") for m in marks] == months  # the last month is December of year 4
        assert [float(m.get("data-value") or 0) for m in marks] == [v for _, v in series]
        titles = [t.text for m in marks for t in m.iter(f"{SVG}title")]
        assert titles[-1] == "2029-12: 151"
        groups = {g.get("class") for g in root.iter(f"{SVG}g")}
        assert {"axis y-axis", "axis x-axis"} <= groups
        y_axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "axis y-axis")
        ticks = [t.text for t in y_axis.iter(f"{SVG}text")]
        assert ticks[0] == "0" and len(ticks) >= 3 and float(ticks[-1] or 0) >= 151
        x_axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "axis x-axis")
        xlabels = [t for t in x_axis.iter(f"{SVG}text")]
        assert xlabels[0].text == "2026-01"  # the first label is there, not clipped
        # Rotated labels end at their point: the first one's point is right of the y-axis.
        assert float(xlabels[0].get("x") or 0) > 64
        assert 8 <= len(xlabels) <= 48  # thinned to what fits, never none
        width = float(root.get("width") or 0)
        assert all(0 < float(m.get("x", m.get("cx")) or 0) < width for m in marks)


def test_negative_values_are_drawn_below_zero() -> None:
    root = _parse(svg_chart({"kind": "bar", "series": [["a", 5], ["b", -3]], "label": "net"}))
    y_axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "axis y-axis")
    assert "-5" in [t.text for t in y_axis.iter(f"{SVG}text")] or "-4" in [
        t.text for t in y_axis.iter(f"{SVG}text")
    ]
    marks = [e for e in root.iter() if e.get("class") == "mark"]
    assert len(marks) == 2 and all(float(m.get("height") or 0) > 0 for m in marks)


def test_people_read_labels_machines_read_names() -> None:
    r = Report("growth", "Membership growth", ["month", "new_members"], [["2026-01", 3]], {"new_members": 3})
    page = as_html({"growth": r})
    assert "<th" in page and ">New members</th>" in page and ">new_members<" not in page
    table = as_table({"growth": r})
    assert "New members" in table.splitlines()[1]
    assert "new_members" in as_csv({"growth": r}).splitlines()[0]
    assert json.loads(as_json({"growth": r}))["growth"]["columns"] == ["month", "new_members"]
    assert label("stock_left") == "Stock left" and label("avg_days_between_stays").startswith("Average")


def test_demo_data_never_gives_out_more_stock_than_there_is(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"

    def sp(*args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "staypoint.cli.main", *args], capture_output=True, text=True, timeout=300
        )
        assert res.returncode == 0, res.stderr
        return res

    made = sp("central", "demo-data", "--db", str(db), "--members", "400", "--years", "2")
    assert made.stderr == ""  # not a terminal: no progress bar
    out = json.loads(sp("report", "redemptions", "--db", str(db), "--format", "json").stdout)
    rows = out["redemptions"]["rows"]
    cols = out["redemptions"]["columns"]
    spa = next(r for r in rows if r[0] == "SPA-60")
    assert spa[cols.index("stock_left")] == 0  # 40 in stock, all given out, none beyond
    assert all(r[cols.index("stock_left")] is None or r[cols.index("stock_left")] >= 0 for r in rows)
