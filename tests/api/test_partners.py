"""Partner transfers both ways, as head office runs them: the API books a transfer, the CLI
links accounts, writes the settlement file, imports the partner's confirmations and credits
(docs/partners.md); the API links a member's accounts too. Both ledger stores (the ``api``
fixture is parametrised)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.api.conftest import Api

pytest_plugins = ["tests.pg_fixtures"]

NOW = "2026-11-23T12:00:00Z"
NEXT_DAY = "2026-11-24T03:00:00Z"


def cli(
    api: Api, tmp_path: Path, *args: str, ok: bool = True, now: str = NEXT_DAY
) -> subprocess.CompletedProcess[str]:
    side = api.services.side.url
    ledger = side if side.startswith("postgresql") else f"sqlite://{tmp_path / 'ledger.db'}"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "staypoint.cli.main",
            "central",
            "partners",
            *args,
            "--store",
            ledger,
            "--side",
            side,
            "--now",
            now,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert res.returncode == 0, res.stderr
    return res


def points(api: Api, member: str) -> int:
    doc = api.ledger.store.member(member)
    assert doc is not None
    return int(doc["points"])


def transfer(api: Api, member: str, pts: int) -> Any:
    token = api.login(member)
    return api.client.post(
        "/v1/me/transfers", json={"partner": "SKYMILES", "points": pts}, headers=api.h(token=token)
    )


def test_transfer_settle_confirm_reject_and_credit(api: Api, tmp_path: Path) -> None:
    ada, bob = api.enrol("Ada"), api.enrol("Bob")
    api.stay(ada, "F-1", room="1000")
    api.stay(bob, "F-2", room="1000")
    start = points(api, ada)

    # An account number the partner's pattern refuses, then one another member holds.
    bad = cli(api, tmp_path, "link", ada, "--partner", "SKYMILES", "--account", "SM-1", ok=False)
    assert (
        bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not a SkyMiles account number" in bad.stderr
    )
    cli(api, tmp_path, "link", ada, "--partner", "skymiles", "--account", "sm 123456")
    taken = cli(api, tmp_path, "link", bob, "--partner", "SKYMILES", "--account", "SM123456", ok=False)
    assert "linked to another member" in taken.stderr

    # No linked account: no transfer (the settlement file could not name one).
    r = transfer(api, bob, 2000)
    assert r.status_code == 409 and r.json()["code"] == "no_partner_account"
    cli(api, tmp_path, "link", bob, "--partner", "SKYMILES", "--account", "SM999999")
    assert transfer(api, ada, 3000).status_code == 201
    r = transfer(api, bob, 2000)
    assert r.status_code == 201, r.text
    bob_transfer = r.json()["transfer"]
    assert points(api, ada) == start - 3000

    # The day is not over: no file yet. Then one file with a batch id and totals, the same bytes twice.
    early = cli(
        api,
        tmp_path,
        "settle",
        "--partner",
        "SKYMILES",
        "--date",
        "2026-11-23",
        "--out",
        str(tmp_path / "out"),
        ok=False,
        now=NOW,
    )
    assert "not over yet" in early.stderr
    out = json.loads(
        cli(
            api,
            tmp_path,
            "settle",
            "--partner",
            "SKYMILES",
            "--date",
            "2026-11-23",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ).stdout
    )
    assert out["batch"] == "SP-SKYMILES-20261123" and (out["transfers"], out["points"], out["units"]) == (
        2,
        5000,
        2500,
    )
    path = tmp_path / "out" / "SKYMILES" / "SKYMILES-20261123.csv"
    first = path.read_bytes()
    lines = first.decode().splitlines()
    assert lines[0] == "record,batch,partner,day,reference,account,units,points,count"
    # Rows in (time, transfer id) order: both transfers are at the same instant here.
    assert sorted(ln.split(",")[5] for ln in lines[1:3]) == ["SM123456", "SM999999"]
    assert lines[-1] == "T,SP-SKYMILES-20261123,SKYMILES,2026-11-23,,,2500,5000,2"
    cli(
        api,
        tmp_path,
        "settle",
        "--partner",
        "SKYMILES",
        "--date",
        "2026-11-23",
        "--out",
        str(tmp_path / "out"),
    )
    assert path.read_bytes() == first

    # A bad confirmation file: one numbered line per bad row, nothing booked.
    refs = [ln.split(",")[4] for ln in lines[1:3]]
    ada_ref = next(ref for ref in refs if ref != bob_transfer)  # the file's order is by transfer id
    confirm = tmp_path / "confirm.csv"
    confirm.write_text(f"reference,status,reason\n{ada_ref},maybe,\nnope-1,confirmed,\n")
    r = cli(api, tmp_path, "confirm", str(confirm), "--partner", "SKYMILES", ok=False)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "staypoint: confirm.csv:2: status 'maybe' is not confirmed or rejected",
        "staypoint: confirm.csv:3: no transfer nope-1 to SKYMILES",
    ]
    assert points(api, bob) == 8500

    # Confirmed and rejected: the rejected one comes back to the member, once.
    confirm.write_text(
        f"reference,status,reason\n{ada_ref},confirmed,\n{bob_transfer},rejected,closed account\n"
    )
    got = json.loads(cli(api, tmp_path, "confirm", str(confirm), "--partner", "SKYMILES", "--json").stdout)
    assert got == {"confirmed": 1, "rejected": 1, "points_returned": 2000, "unchanged": 0}
    again = json.loads(cli(api, tmp_path, "confirm", str(confirm), "--partner", "SKYMILES", "--json").stdout)
    assert again == {"confirmed": 0, "rejected": 0, "points_returned": 0, "unchanged": 2}
    assert points(api, bob) == 10500 and points(api, ada) == start - 3000
    recon = json.loads(cli(api, tmp_path, "reconcile", "--partner", "SKYMILES", "--json").stdout)
    assert [
        (b["batch"], b["transfers"], b["confirmed"], b["rejected"], b["unanswered"], b["points_returned"])
        for b in recon
    ] == [("SP-SKYMILES-20261123", 2, 1, 1, 0, 2000)]

    # Inbound credits: bad rows named by line, nothing booked; then booked once, a re-run books nothing.
    credits = tmp_path / "credits.csv"
    credits.write_text("reference,account,points\nP-1,SM123456,0\nP-2,SM000001,700\nP-3,SM123456,x\n")
    r = cli(api, tmp_path, "credit", str(credits), "--partner", "SKYMILES", ok=False)
    assert r.stderr.splitlines() == [
        "staypoint: credits.csv:2: points 0 is outside 1..1,000,000",
        "staypoint: credits.csv:4: points 'x' is not a whole number",
        "staypoint: credits.csv:3: SkyMiles account SM000001 is linked to no member",
    ]
    before = (points(api, ada), points(api, bob))
    credits.write_text("reference,account,points,note\nP-1,SM123456,500,hotel promo\nP-2,sm999999,700,\n")
    got = json.loads(cli(api, tmp_path, "credit", str(credits), "--partner", "SKYMILES", "--json").stdout)
    assert got == {"booked": 2, "points": 1200, "already_booked": 0}
    again = json.loads(cli(api, tmp_path, "credit", str(credits), "--partner", "SKYMILES", "--json").stdout)
    assert again == {"booked": 0, "points": 0, "already_booked": 2}
    assert (points(api, ada), points(api, bob)) == (before[0] + 500, before[1] + 700)
    credits.write_text("reference,account,points\nP-1,SM123456,900\n")
    r = cli(api, tmp_path, "credit", str(credits), "--partner", "SKYMILES", ok=False)
    assert "P-1 was booked before with 500 points" in r.stderr
    assert points(api, ada) == before[0] + 500


def test_member_links_partner_accounts_through_the_api(api: Api, tmp_path: Path) -> None:
    """PUT /v1/members/{number}/partners/{code} links (or re-links) the member's account with
    their own token, GET lists the links; the partners desk sees the same table (one copy of
    the rules: the CLI's refusals above are these), and a transfer is credited to the link."""
    ada, bob = api.enrol("Ada"), api.enrol("Bob")
    api.stay(ada, "F-1", room="1000")
    ada_token, bob_token = api.login(ada), api.login(bob)
    ada_key = api.h(token=ada_token)

    def link(member: str, account: Any, code: str = "SKYMILES", **headers: str) -> Any:
        return api.client.put(
            f"/v1/members/{member}/partners/{code}", json={"account": account}, headers=headers or ada_key
        )

    r = api.client.get(f"/v1/members/{ada}/partners", headers=ada_key)
    assert r.status_code == 200 and r.json() == []

    # The member's own token, on a key with the member scope.
    r = api.client.get(f"/v1/members/{ada}/partners", headers=api.h())
    assert (r.status_code, r.json()["code"]) == (401, "no_token")
    r = link(ada, "SM123456", **api.h(token=bob_token))
    assert (r.status_code, r.json()["code"]) == (403, "other_member")
    r = link(ada, "SM123456", **api.h("pms-sha", token=ada_token))
    assert (r.status_code, r.json()["code"]) == (403, "scope")

    # Bounded input, each refusal a 422 with its reason: the path, the body, the partner's pattern.
    wrong_check = ada[:-1] + str((int(ada[-1]) + 1) % 10)
    r = link(wrong_check, "SM123456")
    assert (r.status_code, r.json()["code"]) == (422, "bad_number")
    assert link("70x1", "SM123456").status_code == 422
    for body in ({}, {"account": "SM123456", "extra": 1}, {"account": 123456}):
        r = api.client.put(f"/v1/members/{ada}/partners/SKYMILES", json=body, headers=ada_key)
        assert (r.status_code, r.json()["code"]) == (422, "invalid"), body
    for bad in ("", "SM\n123456", "S" * 81):
        r = link(ada, bad)
        assert (r.status_code, r.json()["code"]) == (422, "invalid"), bad
    r = link(ada, "SM-1")
    assert (r.status_code, r.json()["code"]) == (422, "bad_account")
    assert r.json()["error"] == "'SM-1' is not a SkyMiles account number (pattern [A-Z0-9]{4,32})"
    r = link(ada, "S" * 65)  # within the body's bound, past Partner.valid_account's 64
    assert (r.status_code, r.json()["code"]) == (422, "bad_account")
    r = link(ada, "SM123456", code="NOPE")
    assert (r.status_code, r.json()["code"]) == (404, "unknown_partner")
    assert link(ada, "SM123456", code="NOT+A+CODE").status_code == 422

    # Linked: kept upper-case without spaces; the partner code in any case.
    r = link(ada, "sm 123 456", code="skymiles")
    assert r.status_code == 200, r.text
    got = r.json()
    assert {k: got[k] for k in ("member", "partner", "name", "account")} == {
        "member": ada,
        "partner": "SKYMILES",
        "name": "SkyMiles",
        "account": "SM123456",
    }
    assert got["linked_at"].startswith("2026-11-23T10:00:00")
    assert api.client.get(f"/v1/members/{ada}/partners", headers=ada_key).json() == [got]

    # One member per account; the desk's CLI lists what the API linked, and by which key.
    r = link(bob, "SM123456", **api.h(token=bob_token))
    assert (r.status_code, r.json()["code"]) == (409, "account_taken")
    assert "linked to another member" in r.json()["error"]
    rows = json.loads(cli(api, tmp_path, "accounts", "--member", ada, "--json").stdout)
    key_id = api.keys["web"].split("_")[1]
    assert [(a["partner"], a["account"], a["linked_by"]) for a in rows] == [
        ("SKYMILES", "SM123456", f"web:{key_id}")
    ]

    # The link is what a transfer is credited to; re-linking replaces it and frees the old one.
    assert transfer(api, ada, 2000).status_code == 201
    r = link(ada, "SM654321")
    assert r.status_code == 200 and r.json()["account"] == "SM654321"
    assert [a["account"] for a in api.client.get(f"/v1/members/{ada}/partners", headers=ada_key).json()] == [
        "SM654321"
    ]
    assert link(bob, "SM123456", **api.h(token=bob_token)).status_code == 200
    bob_links = api.client.get(f"/v1/members/{bob}/partners", headers=api.h(token=bob_token)).json()
    assert [(a["member"], a["account"]) for a in bob_links] == [(bob, "SM123456")]
