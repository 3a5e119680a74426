"""The staypoint command line, run as a user runs it: one process per command."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

NOW = "2026-11-23T10:00:00Z"
#: A desk clerk and a supervisor, registered on the fixture's node (see ``desk``).
CLERK = ["--staff", "desk-7", "--staff-pin", "4826"]
SUPERVISOR = ["--staff", "sup-1", "--staff-pin", "9173"]
#: A clerk only the wrong-PIN test signs in as, so its count of wrong PINs is its own.
NIGHT = ("night-1", "staff", "5555")


def sp(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "staypoint.cli.main", *args, "--now", NOW],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert res.returncode == 0, res.stderr
    return res


def digest(db: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(db)
    h = hashlib.sha256()
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
        for row in conn.execute(f"SELECT * FROM {name} ORDER BY 1"):
            h.update(repr(row).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("cli") / "node.db"
    sp("node", "init", "--db", str(db), "--node", "sha-lobby-01", "--property", "SHA")
    # The first accounts can only come from the node's own shell: nobody can sign in yet.
    for staff_id, role, pin in (("desk-7", "staff", "4826"), ("sup-1", "supervisor", "9173"), NIGHT):
        sp(
            "staff",
            "add",
            "--db",
            str(db),
            staff_id,
            "--name",
            staff_id,
            "--role",
            role,
            "--pin",
            pin,
            "--local-root",
        )
    out = json.loads(
        sp(
            "member",
            "enrol",
            "--db",
            str(db),
            "--name",
            "Mei Lin",
            "--pin",
            "2580",
            "--card-uid",
            "04A1B2C3",
            "--json",
            *CLERK,
        ).stdout
    )
    poor = json.loads(
        sp(
            "member", "enrol", "--db", str(db), "--name", "Noor Poor", "--pin", "1357", "--json", *CLERK
        ).stdout
    )
    (db.parent / "poor").write_text(poor["member"])
    # One who can afford a late check-out: the rules are checked before the PIN, so a
    # wrong-PIN refusal needs a member the rules allow (whatever order the tests run in).
    rich = json.loads(
        sp(
            "member", "enrol", "--db", str(db), "--name", "Ravi Rich", "--pin", "2468", "--json", *CLERK
        ).stdout
    )["member"]
    sp("stay", "post", "--db", str(db), rich, "--folio", "F200", "--nights", "3", "--room", "400.00", *CLERK)
    (db.parent / "rich").write_text(rich)
    return db, out["member"]


def test_a_desk_journey(desk: tuple[Path, str]) -> None:
    db, m = desk
    stay = json.loads(
        sp(
            "stay",
            "post",
            "--db",
            str(db),
            m,
            "--folio",
            "F100",
            "--nights",
            "11",
            "--room",
            "1100.00",
            "--fnb",
            "80.00",
            "--json",
            *CLERK,
        ).stdout
    )
    assert stay["points"] == 11400 and stay["tier"] == "SILVER" and stay["upgraded"]
    show = json.loads(sp("member", "show", "--db", str(db), m, "--json").stdout)
    assert {k: show[k] for k in ("member", "name", "tier", "points", "qualifying_nights")} == {
        "member": m,
        "name": "Mei L.",
        "tier": "SILVER",
        "points": 11400,
        "qualifying_nights": 11,
    }
    red = json.loads(sp("redeem", "--db", str(db), m, "LATE-CO", "--pin", "2580", "--json").stdout)
    assert len(red["voucher"].replace("-", "")) == 12 and red["balance"] == 8900
    ver = json.loads(sp("voucher", "verify", "--db", str(db), red["voucher"], "--json").stdout)
    assert ver["valid"] and ver["reward"] == "LATE-CO"
    assert json.loads(sp("voucher", "verify", "--db", str(db), red["token"], "--json").stdout)["valid"]
    events = json.loads(sp("outbox", "--db", str(db), "--json").stdout)
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "member.enrolled"),
        (2, "member.enrolled"),
        (3, "member.enrolled"),
        (4, "stay.posted"),
        (5, "stay.posted"),
        (6, "points.redeemed"),
    ]
    assert all(set(e) >= {"seq", "id", "type"} for e in events)
    text = sp("member", "show", "--db", str(db), m).stdout
    assert "Silver" in text and "8,900" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["redeem", "{rich}", "LATE-CO", "--pin", "9999"], "wrong PIN: 4 tries left"),
        (["member", "show", "0000000000"], "no member 0000000000"),
        (["member", "show", "{typo}"], "wrong check digit"),
        (["redeem", "{poor}", "BREAKFAST", "--pin", "1357"], "needs 3,000 more points"),
        (["redeem", "{m}", "UPGRADE", "--pin", "2580"], "needs Gold or above"),
        (["voucher", "verify", "SPV1.eyJjb2RlIjoiWCJ9.AAAA"], "voucher"),
        (["voucher", "verify", "ACDE-FGHJ-KMNA"], "check character"),
        (["stay", "post", "{m}", "--folio", "F1", "--nights", "1", "--room", "abc", *CLERK], "not an amount"),
    ],
)
def test_refusals_are_one_line_nonzero_and_change_nothing(
    desk: tuple[Path, str], args: list[str], message: str
) -> None:
    db, m = desk
    typo = m[:-1] + str((int(m[-1]) + 1) % 10)
    before = digest(db)
    poor = (db.parent / "poor").read_text()
    rich = (db.parent / "rich").read_text()
    argv = [a.format(m=m, typo=typo, poor=poor, rich=rich) for a in args]
    res = sp(
        argv[0],
        *([argv[1]] if argv[0] in ("member", "voucher", "stay") else []),
        "--db",
        str(db),
        *argv[2 if argv[0] in ("member", "voucher", "stay") else 1 :],
        ok=False,
    )
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    if "wrong PIN" not in message:  # a wrong PIN is counted, as it must be
        assert digest(db) == before


def outbox(db: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(sp("outbox", "--db", str(db), "--json").stdout)
    return rows


def test_a_staff_command_needs_a_staff_identity(desk: tuple[Path, str]) -> None:
    db, m = desk
    before = digest(db)
    res = sp("stay", "post", "--db", str(db), m, "--folio", "F300", "--nights", "1", "--room", "90", ok=False)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "staypoint: this is a staff task: give --staff ID --staff-pin PIN (or --local-root on the node)"
    ]
    res = sp("member", "unlock", "--db", str(db), m, "--staff", "desk-7", ok=False)  # no PIN, no terminal
    assert res.returncode == 1 and "--staff needs --staff-pin" in res.stderr
    assert digest(db) == before


def test_a_staff_login_acts_with_that_staff_members_role(desk: tuple[Path, str]) -> None:
    db, m = desk
    sp("stay", "post", "--db", str(db), m, "--folio", "F301", "--nights", "1", "--room", "90", *CLERK)
    assert outbox(db)[-1]["data"]["staff"] == "desk-7"
    # The command line no longer acts as a supervisor: a clerk's unlock is refused...
    before = digest(db)
    res = sp("member", "unlock", "--db", str(db), m, *CLERK, ok=False)
    assert res.returncode == 1 and "needs a supervisor" in res.stderr
    assert digest(db) == before
    # ...and a supervisor's goes through, under the supervisor's id.
    sp("member", "unlock", "--db", str(db), m, *SUPERVISOR)
    last = outbox(db)[-1]
    assert last["type"] == "member.unlocked" and last["data"]["staff"] == "sup-1"


def test_a_wrong_staff_pin_is_refused_and_counted(desk: tuple[Path, str]) -> None:
    db, m = desk
    import sqlite3

    events = len(outbox(db))
    staff_id = NIGHT[0]
    res = sp(
        "value", "topup", "--db", str(db), m, "50.00", "--staff", staff_id, "--staff-pin", "0000", ok=False
    )
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"staypoint: staff {staff_id}: wrong PIN: 4 tries left"]
    assert len(outbox(db)) == events  # nothing topped up
    conn = sqlite3.connect(db)
    (failures,) = conn.execute("SELECT pin_failures FROM staff WHERE staff_id = ?", (staff_id,)).fetchone()
    conn.close()
    assert failures == 1  # the same lock-out as a wrong PIN at the kiosk
    res = sp(
        "value", "topup", "--db", str(db), m, "50.00", "--staff", "nobody", "--staff-pin", "0000", ok=False
    )
    assert res.returncode == 1 and "no staff member 'nobody' on this node" in res.stderr


def test_local_root_acts_openly(desk: tuple[Path, str]) -> None:
    db, m = desk
    res = sp("member", "unlock", "--db", str(db), m, "--local-root", "--json")
    assert json.loads(res.stdout) == {"member": m, "unlocked": True}
    assert res.stderr.startswith("staypoint: member unlock as local-root (OS user ")
    assert res.stderr.rstrip().endswith("recorded as staff local-root")
    last = outbox(db)[-1]
    assert last["type"] == "member.unlocked" and last["data"]["staff"] == "local-root"
    # Root may do every task but hand out points: an adjustment needs a named supervisor.
    res = sp(
        "member", "adjust", "--db", str(db), m, "--points", "100", "--reason", "x", "--local-root", ok=False
    )
    assert res.returncode == 1 and "needs a supervisor" in res.stderr
    res = sp("member", "unlock", "--db", str(db), m, "--local-root", "--staff-pin", "1", ok=False)
    assert res.returncode == 1 and "--staff-pin goes with --staff" in res.stderr


def test_init_with_a_broken_programme_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    from staypoint.loyalty.program import default_program_text

    bad.write_text(default_program_text().replace('multiplier = "1.25"', 'multiplier = "lots"'))
    res = sp(
        "node",
        "init",
        "--db",
        str(tmp_path / "n.db"),
        "--node",
        "n",
        "--property",
        "P",
        "--program",
        str(bad),
        ok=False,
    )
    assert res.returncode == 1
    assert res.stderr.strip() == f"staypoint: {bad}: tiers[2].multiplier: not a decimal number: 'lots'"
    assert not (tmp_path / "n.db").exists()


def test_seed_and_demo_script(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    sp("node", "init", "--db", str(db), "--node", "n", "--property", "P")
    assert (
        json.loads(sp("node", "seed", "--db", str(db), "--members", "500", "--json").stdout)["seeded"] == 500
    )
    out = sp("demo", "--script", "--dir", str(tmp_path / "demo")).stdout
    assert "voucher" in out and "tampered token: refused" in out


def test_every_command_has_help() -> None:
    from staypoint.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[attr-defined]
        assert p.format_help(), name


def test_cli_reference_is_current() -> None:
    import os

    from staypoint.cli.reference import render

    os.environ["COLUMNS"] = "100"
    page = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    assert page == render(), "docs/cli.md is stale: python -m staypoint.cli.reference > docs/cli.md"


def test_commands_read_the_replica_from_the_node_config(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('[node]\ndb = "var/node.db"\nkeys_dir = "etc/keys"\n')
    (tmp_path / "var").mkdir()
    sp("node", "init", "--config", str(tmp_path / "node.toml"), "--node", "n", "--property", "P")
    assert (tmp_path / "etc" / "keys" / "voucher_ed25519.pem").stat().st_mode & 0o777 == 0o600
    out = json.loads(
        sp(
            "member",
            "enrol",
            "--config",
            str(tmp_path / "node.toml"),
            "--name",
            "Ada",
            "--pin",
            "1234",
            "--json",
            "--local-root",
        ).stdout
    )
    assert out["name"] == "Ada"
    (tmp_path / "bad.toml").write_text("[node\n")
    res = sp("outbox", "--config", str(tmp_path / "bad.toml"), ok=False)
    assert res.returncode == 1 and "not valid TOML" in res.stderr and len(res.stderr.splitlines()) == 1


def test_head_office_daily_jobs_run_from_one_command(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    sp("central", "demo-data", "--db", str(ledger), "--members", "40", "--years", "1")
    out = json.loads(
        sp(
            "central",
            "jobs",
            "--db",
            str(ledger),
            "--profiles",
            str(ledger),
            "--side",
            f"sqlite:///{tmp_path / 'side.db'}",
            "--json",
        ).stdout
    )
    assert {
        "downgraded",
        "expired_points",
        "holds_expired",
        "claims",
        "programs_published",
        "campaigns",
    } <= set(out)
    again = json.loads(sp("central", "jobs", "--db", str(ledger), "--profiles", str(ledger), "--json").stdout)
    assert again["campaigns"]["claimed"] == {} or sum(again["campaigns"]["claimed"].values()) == 0
