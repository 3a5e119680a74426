"""``staypoint central import members``: a property system's CSV as a user runs it (the CLI's
``main(argv)`` and the installed ``staypoint``), on SQLite and PostgreSQL, then the imported
member's first PIN through the API with the one-time code."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from staypoint.central import first_pin
from staypoint.cli.main import main
from staypoint.loyalty.events import uuid7
from tests.api.conftest import Api, Clock, build_api

pytest_plugins = ["tests.pg_fixtures"]

HEADER = "Guest ID,First Name,Last Name,E-mail,Mobile,Date of Birth,Language,Address,Points\n"
ROWS = [
    'G1,Ada,Lovelace,ada@example.com,+44 20 7946 0001,1985-12-10,EN,"1 St James\'s Sq\nLondon",1200\n',
    "G2,Mei,Lin,mei@example.cn,+8613800138000,1990-05-01,zh-CN,,0\n",
    "G3,Bob,Ray,bob@example.org,+4930123456,1980-01-01,en,,5\n",
    "G4,Ana,Ray,ana@example.com,0049301234567,2001-02-28,en,,7\n",
]


@pytest.fixture
def api(store_url: str, tmp_path: Path) -> Api:
    a = build_api(store_url, tmp_path, Clock())
    yield a  # type: ignore[misc]
    a.client.close()
    a.services.side.close()
    a.services.profiles.close()
    a.ledger.store.close()


def _argv(api: Api, tmp_path: Path, store_url: str) -> list[str]:
    side = api.services.side.url if api.services.side.pg else f"sqlite://{tmp_path / 'side.db'}"
    return ["--store", store_url, "--side", side, "--profiles", str(tmp_path / "profiles.db"), "--quiet"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # the one-line refusals exit through SystemExit with their text
        code = exc.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            rc = 1
        else:
            rc = int(code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def _csv(tmp_path: Path, rows: list[str], name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def _events(api: Api) -> int:
    return api.ledger.store.event_count()


def _codes(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as f:
        return {r["member"]: r["code"] for r in csv.DictReader(f)}


def test_import_rerun_and_first_pin(
    api: Api, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export, codes = _csv(tmp_path, ROWS), tmp_path / "codes.csv"
    base = ["central", "import", "members", str(export), *_argv(api, tmp_path, store_url)]
    rc, out, err = _run([*base, "--codes", str(codes)], capsys)
    assert rc == 0, err
    assert "imported 4 members (1,212 opening points)" in out
    assert err == ""
    issued = _codes(codes)
    assert len(issued) == 4
    ada = api.services.profiles.by_email("ada@example.com")
    assert ada is not None and ada.phone == "+442079460001" and ada.language == "en"
    assert api.services.profiles.address(ada.member) == "1 St James's Sq, London"
    doc = api.ledger.member(ada.member)
    assert doc is not None
    assert doc["points"] == 1200 and doc["pin_hash"] == "" and doc["name"] == "Ada L."
    # Personal data stays at head office: the record every node gets has none of it.
    assert "ada@example.com" not in json.dumps(doc) and "1985" not in json.dumps(doc)
    mei = api.services.profiles.by_email("mei@example.cn")
    assert mei is not None and mei.language == "zh"
    events = _events(api)
    assert events == 4 + 3  # four enrolments, three opening balances (Mei's is 0)

    # A re-run imports nothing, issues no code, and says so.
    rc, out, err = _run([*base, "--codes", str(tmp_path / "again.csv")], capsys)
    assert rc == 0, err
    assert out.strip() == "nothing new to import: 4 rows, 4 imported before"
    assert _events(api) == events and _codes(tmp_path / "again.csv") == {}

    # First use: no PIN yet, so sign-in is refused; the code sets one.
    r = api.client.post("/v1/members/login", json={"login": ada.member, "pin": "2580"}, headers=api.h())
    assert r.status_code == 403 and r.json()["code"] == "no_pin"
    url = f"/v1/members/{ada.member}/pin"
    r = api.client.post(url, json={"code": "AAAA-BBBB-CCCC", "pin": "2580"}, headers=api.h())
    assert r.status_code == 401 and r.json()["error"] == "this code is not right (4 tries left)"
    r = api.client.post(url, json={"code": issued[ada.member].lower(), "pin": "2580"}, headers=api.h())
    assert r.status_code == 200, r.text
    assert api.login(ada.member, "2580")
    r = api.client.post(url, json={"code": issued[ada.member], "pin": "1111"}, headers=api.h())
    assert r.status_code == 409 and r.json()["code"] == "has_pin"
    with pytest.raises(first_pin.CodeError) as used:
        first_pin.consume(api.services.side, ada.member, issued[ada.member], api.clock.now)
    assert used.value.code == "code_used"

    # Five wrong codes void it: the right one is refused after.
    url = f"/v1/members/{mei.member}/pin"
    for left in (4, 3, 2, 1):
        r = api.client.post(url, json={"code": "WRONG", "pin": "2580"}, headers=api.h())
        assert r.json()["error"] == f"this code is not right ({left} tries left)"
    r = api.client.post(url, json={"code": "WRONG", "pin": "2580"}, headers=api.h())
    assert r.status_code == 423 and r.json()["code"] == "code_void"
    r = api.client.post(url, json={"code": issued[mei.member], "pin": "2580"}, headers=api.h())
    assert r.status_code == 423
    assert api.ledger.member(mei.member)["pin_hash"] == ""  # type: ignore[index]

    # Expiry: 30 days after it was issued the code no longer works; a new one does.
    bob = api.services.profiles.by_email("bob@example.org")
    assert bob is not None
    api.clock.now = datetime.now(UTC) + first_pin.TTL + timedelta(hours=1)
    r = api.client.post(
        f"/v1/members/{bob.member}/pin", json={"code": issued[bob.member], "pin": "2580"}, headers=api.h()
    )
    assert r.status_code == 410 and r.json()["code"] == "code_expired"
    codes_cmd = ["central", "import", "codes", *_argv(api, tmp_path, store_url)[:-1], "--out"]
    # Without members named: every imported member with no PIN and no code that still works
    # (by the real clock: Mei's is void, Bob's and Ana's still run).
    rc, out, err = _run([*codes_cmd, str(tmp_path / "void.csv")], capsys)
    assert rc == 0, err
    assert set(_codes(tmp_path / "void.csv")) == {mei.member}
    rc, out, err = _run([*codes_cmd, str(tmp_path / "n.csv"), bob.member], capsys)
    assert rc == 0 and out.strip() == f"1 first-use codes written to {tmp_path / 'n.csv'}", err
    fresh = _codes(tmp_path / "n.csv")
    api.clock.now = datetime.now(UTC) + timedelta(minutes=1)
    r = api.client.post(
        f"/v1/members/{bob.member}/pin", json={"code": fresh[bob.member], "pin": "2580"}, headers=api.h()
    )
    assert r.status_code == 200, r.text


def test_dry_run_writes_nothing(
    api: Api, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = _csv(tmp_path, ROWS)
    profiles = tmp_path / "profiles.db"
    profiles_before = profiles.stat().st_size
    rc, out, err = _run(
        ["central", "import", "members", str(export), *_argv(api, tmp_path, store_url), "--dry-run"], capsys
    )
    assert rc == 0, err
    assert "would import 4 members (1,212 opening points)" in out and "dry run: nothing written" in out
    assert _events(api) == 0
    assert api.services.profiles.by_email("ada@example.com") is None
    assert api.services.side.one("SELECT value FROM side_counters WHERE name = 'enrol_serial'") is None
    assert profiles.stat().st_size == profiles_before


def test_errors_by_row_and_a_bad_batch_writes_nothing(
    api: Api, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = ROWS[3].replace("ana@example.com", "ana@").replace(",7\n", ",-3\n")
    export = _csv(tmp_path, [ROWS[0], ROWS[1], ROWS[2], bad])
    base = ["central", "import", "members", str(export), *_argv(api, tmp_path, store_url), "--batch", "2"]
    rc, out, err = _run(base, capsys)
    assert rc == 1
    assert err.splitlines() == [
        'row 5: email "ana@" is not an address',
        'row 5: points "-3" is not a whole number of 0 or more',
    ]
    assert "batch 1 (rows 2-3): imported 2" in out
    assert "batch 2 (rows 4-5): NOT imported (2 errors: nothing written)" in out
    assert api.services.profiles.by_email("ada@example.com") is not None
    assert api.services.profiles.by_email("bob@example.org") is None  # row 4 is good, its batch is not
    assert _events(api) == 2 + 1
    # Fixed and run again: batch 1 is not imported twice, batch 2 lands.
    _csv(tmp_path, ROWS)
    rc, out, err = _run(base, capsys)
    assert rc == 0, err
    assert "batch 1 (rows 2-3): nothing new" in out and "batch 2 (rows 4-5): imported 2" in out
    assert _events(api) == 4 + 3


def test_duplicates_refused_or_merged(
    api: Api, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enrolled = api.enrol("Old Member", email="old@example.com")
    rows = [
        "G1,Ada,Lovelace,ada@example.com,,,,,10\n",
        "G2,Ada,L,ADA@example.com,+442079460001,1985-12-10,,,20\n",
        "G3,Olga,Old,old@example.com,+4930999999,,,,30\n",
    ]
    export = _csv(tmp_path, rows)
    base = ["central", "import", "members", str(export), *_argv(api, tmp_path, store_url)]
    rc, out, err = _run(base, capsys)
    assert rc == 1
    assert err.splitlines() == [
        "row 3: same e-mail as row 2",
        f"row 4: e-mail old@example.com is already member {enrolled}",
    ]
    assert _events(api) == 1  # the enrolment only
    rc, out, err = _run([*base, "--on-duplicate", "merge"], capsys)
    assert rc == 0, err
    assert "imported 1 members (10 opening points), 0 imported before, 2 merged" in out
    ada = api.services.profiles.by_email("ada@example.com")
    assert ada is not None and ada.phone == "+442079460001" and str(ada.birth_date) == "1985-12-10"
    assert api.ledger.member(ada.member)["points"] == 10  # type: ignore[index]
    old = api.services.profiles.get(enrolled)
    assert old is not None and old.phone == "+4930999999" and old.full_name == "Old Member"
    assert api.ledger.member(enrolled)["points"] == 0  # type: ignore[index]
    # A merged run again: nothing new.
    rc, out, err = _run([*base, "--on-duplicate", "merge"], capsys)
    assert rc == 0 and "imported 0" not in out and "nothing new to import" in out, out


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_installed_command(api: Api, store_url: str, tmp_path: Path) -> None:
    staypoint = Path(sys.executable).parent / "staypoint"
    export = _csv(tmp_path, ROWS)
    argv = [str(staypoint), "central", "import", "members", str(export), *_argv(api, tmp_path, store_url)]
    bad = subprocess.run([*argv, "--map", "email=Courriel"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "staypoint: no column 'Courriel' (for email) in the file; its columns: Guest ID, First Name, "
        "Last Name, E-mail, Mobile, Date of Birth, Language, Address, Points"
    ]
    ok = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["imported"] == 4 and ok.stderr == ""  # no bar off a terminal


def test_pin_set_only_from_head_office(api: Api) -> None:
    member = api.enrol("Ada Lovelace")
    from staypoint.loyalty.events import Event

    ev = Event(
        "sha-lobby-01",
        1,
        1,
        uuid7(api.clock.now),
        "2026-11-23T10:00:00.000Z",
        "pin.set",
        member,
        1,
        {"pin_hash": "scrypt$1$1$1$AA==$AA=="},
    )
    result = api.ledger.ingest("sha-lobby-01", [ev.to_dict()], api.clock.now)
    assert result.quarantined == [(1, 1)]
