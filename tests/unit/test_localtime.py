"""The property's time zone: node.toml's [node] timezone, enrolment, the desk's human output."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from staypoint.edge.nodeconfig import NodeConfigError, load_node_toml, parse_node_toml
from staypoint.localtime import ZoneError, day_text, local_day, stamp, stamp_text, zone
from staypoint.provisioning.enrol import EnrolError, choose_timezone
from staypoint.provisioning.render import NodeLayout, render_node_toml

LATE = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)


def test_display_converts_and_nothing_else() -> None:
    sha = zone("Asia/Shanghai")
    assert stamp(LATE, sha) == "24 Nov 2026 07:30 CST"
    assert local_day(LATE, sha).isoformat() == "2026-11-24"
    assert stamp_text("2026-11-23T23:30:00.000Z", sha) == "24 Nov 2026 07:30 CST"
    assert day_text("2026-11-23T23:30:00.000Z", sha) == "2026-11-24"
    assert stamp_text(None, sha, none="never") == "never" and stamp_text("soon", sha) == "soon"
    assert stamp(LATE.replace(tzinfo=None), None) == "23 Nov 2026 23:30 UTC"  # naive = UTC
    assert zone("") is UTC and zone("UTC") is UTC
    with pytest.raises(ZoneError):
        zone("Mars/Olympus")


def test_node_toml_with_a_bad_zone_is_refused_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text('[node]\ndb = "node.db"\ntimezone = "Asia/Shanghia"\n')
    with pytest.raises(NodeConfigError) as err:
        load_node_toml(bad)
    message = str(err.value)
    assert message == f"{bad}: [node] timezone is not a known time zone: 'Asia/Shanghia'"
    for value in ('"../../etc/passwd"', "8", '""'):
        with pytest.raises(NodeConfigError, match=r"^x: \[node\] timezone "):
            parse_node_toml(f"[node]\ntimezone = {value}\n", "x")
    assert parse_node_toml('[node]\ntimezone = "Asia/Shanghai"\n').node.timezone == "Asia/Shanghai"
    assert parse_node_toml("").node.timezone == "UTC"
    # The desk refuses it the same way: one line on stderr, non-zero, before it opens anything.
    res = subprocess.run(
        [sys.executable, "-m", "staypoint.cli.main", "member", "show", "--config", str(bad), "0001000009"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0 and res.stdout == ""
    assert res.stderr.splitlines() == [f"staypoint: {message}"]


def test_enrolment_writes_the_zone(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    text = render_node_toml(
        layout, node="sha-lobby-07", property_="SHA", host="b", port=8883, timezone="Asia/Shanghai"
    )
    assert parse_node_toml(text, "enrolled").node.timezone == "Asia/Shanghai"
    with pytest.raises(ValueError, match="Mars/Olympus"):
        render_node_toml(
            layout, node="sha-lobby-07", property_="SHA", host="b", port=8883, timezone="Mars/Olympus"
        )


def test_enrolment_picks_given_then_head_office_then_existing_then_utc_with_a_warning() -> None:
    said: list[str] = []
    reply = {"property": "SHA", "timezone": "Asia/Shanghai"}
    assert choose_timezone("Europe/Paris", reply, None, said.append) == "Europe/Paris"
    assert choose_timezone(None, reply, "Europe/Paris", said.append) == "Asia/Shanghai"
    assert choose_timezone(None, {"property": "SHA"}, "Europe/Paris", said.append) == "Europe/Paris"
    assert said == []
    assert choose_timezone(None, {"property": "SHA"}, None, said.append) == "UTC"
    assert len(said) == 1 and "no time zone for property SHA" in said[0] and "--timezone" in said[0]
    with pytest.raises(EnrolError, match=r"^--timezone: unknown time zone 'Asia/Shanghia'"):
        choose_timezone("Asia/Shanghia", reply, None, said.append)


def test_the_desk_shows_the_propertys_local_time(tmp_path: Path) -> None:
    db = tmp_path / "node.db"

    def sp(*args: str) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "staypoint.cli.main", *args, "--now", "2026-11-23T23:30:00Z"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    sp("node", "init", "--db", str(db), "--node", "sha-lobby-01", "--property", "SHA")
    sp(
        "staff",
        "add",
        "--db",
        str(db),
        "d1",
        "--name",
        "D",
        "--role",
        "staff",
        "--pin",
        "4826",
        "--local-root",
    )
    out = sp("member", "enrol", "--db", str(db), "--name", "Mei Lin", "--pin", "2580", "--local-root")
    member = out.split("member number ")[1].split()[0]
    utc = sp("outbox", "--db", str(db))
    assert "2026-11-23 23:30:00 UTC" in utc
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndb = "{db}"\ntimezone = "Asia/Shanghai"\n')
    assert "2026-11-24 07:30:00 CST" in sp("outbox", "--config", str(config))
    assert "2026-11-24 07:30:00 CST" in sp("outbox", "--db", str(db), "--tz", "Asia/Shanghai")
    assert "2026-11-23T23:30" in sp("outbox", "--config", str(config), "--json")  # JSON stays UTC
    shown = sp("member", "show", "--config", str(config), member)
    assert "2026-11-24" in shown and "2026-11-23" not in shown
