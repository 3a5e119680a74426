"""A first PIN asked by a node: the code's shape, the PIN hash's one form, head office's answers.

The kiosk journey is ``tests/kiosk/test_first_pin.py``; the whole path over Mosquitto is
``tests/sync/test_first_pin_link.py``. Here: what the node and head office each accept,
without a broker (head office's answerer on a SQLite ledger with members imported by the CLI).
"""

from __future__ import annotations

import base64
import csv
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from staypoint.central import first_pin
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.node_first_pin import NodeFirstPins
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.cli.main import main
from staypoint.edge import agent_link
from staypoint.edge.sync import link
from staypoint.loyalty import first_pin_codes, member_numbers, pins
from staypoint.loyalty.program import default_program_text

NOW = datetime.now(UTC)


def test_every_code_head_office_issues_is_one_the_kiosk_accepts() -> None:
    for _ in range(50):
        code = first_pin.new_code()
        assert first_pin_codes.parse(code) == first_pin.normalise(code)
        assert first_pin_codes.display(first_pin_codes.parse(code)) == code
    assert first_pin_codes.parse(" abcd-efgh-jk23 ") == "ABCDEFGHJK23"
    for bad in ("", "ABCD-EFGH", "ABCD-EFGH-JK2O", "ABCD-EFGH-JK21", "ABCD-EFGH-JK234", "A" * 41):
        with pytest.raises(first_pin_codes.CodeFormatError):
            first_pin_codes.parse(bad)


def test_the_kiosk_never_asks_the_agent_to_wait_longer_than_it_will() -> None:
    assert agent_link.MAX_WAIT_S == link.MAX_AUTH_TIMEOUT_S
    assert agent_link.FIRST_PIN_TIMEOUT_S <= agent_link.MAX_WAIT_S


def test_only_the_nodes_own_pin_hash_form_is_taken() -> None:
    good = pins.hash_pin("4826", os.urandom(16))
    assert pins.is_standard_hash(good)
    scheme, n, r, p, salt, digest = good.split("$")
    b64 = base64.b64encode
    for bad in (
        f"{scheme}$2${r}${p}${salt}${digest}",  # a cheaper cost
        f"{scheme}${n}${r}${p}${b64(b'short').decode()}${digest}",
        f"{scheme}${n}${r}${p}${salt}${b64(b'x' * 16).decode()}",
        f"{scheme}${n}${r}${p}${salt}${digest}$",
        f"{scheme}${n}${r}${p}${salt}$not*base64",
        "4826",
        "",
    ):
        assert not pins.is_standard_hash(bad), bad
    assert not pins.is_standard_hash(None)  # type: ignore[arg-type]


@pytest.fixture
def office(tmp_path: Path) -> tuple[Ledger, SideStore, dict[str, str]]:
    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), revoked={"sha-gone-01"})
    ledger.publish_program(default_program_text(), NOW)
    export, codes = tmp_path / "guests.csv", tmp_path / "codes.csv"
    export.write_text(
        "Guest ID,First Name,Last Name,E-mail\nG1,Ada,Lovelace,ada@example.com\n", encoding="utf-8"
    )
    side_url = f"sqlite://{tmp_path / 'side.db'}"
    argv = ["central", "import", "members", str(export), "--store", f"sqlite:///{tmp_path / 'ledger.db'}"]
    assert (
        main(
            [
                *argv,
                "--side",
                side_url,
                "--profiles",
                str(tmp_path / "p.db"),
                "--codes",
                str(codes),
                "--quiet",
            ]
        )
        == 0
    )
    with codes.open(newline="", encoding="utf-8") as f:
        issued = {r["member"]: r["code"] for r in csv.DictReader(f)}
    side = SideStore(side_url)
    yield ledger, side, issued  # type: ignore[misc]
    side.close()
    ledger.store.close()


def test_head_office_answers_a_nodes_first_pin(office: tuple[Ledger, SideStore, dict[str, str]]) -> None:
    ledger, side, issued = office
    ((member, code),) = issued.items()
    typed = first_pin_codes.parse(code)
    pin_hash = pins.hash_pin("4826", os.urandom(16))
    answerer = NodeFirstPins(ledger, side)
    assert answerer.stream == "web-kiosk"
    assert NodeFirstPins(ledger, side, suffix="host-7").stream == "web-kiosk-host-7"

    def ask(node: str = "sha-lobby-01", **body: object) -> dict[str, object]:
        answer, changes = answerer.answer(
            node, {"member": member, "code": typed, "pin_hash": pin_hash, **body}, NOW
        )
        assert bool(changes) == (answer["ok"] is True)
        return answer

    # Requests no node of ours sends are refused outright, and spend no try.
    assert ask(code="ABCD")["code"] == "bad_input"
    assert ask(code=7)["code"] == "bad_input"
    assert ask(pin_hash="4826")["code"] == "bad_input"
    assert ask(pin_hash=pin_hash.replace("$16384$", "$2$"))["code"] == "bad_input"
    assert ask(member="12345")["code"] == "bad_number"
    unknown = "777700001" + member_numbers.luhn_check_digit("777700001")
    assert ask(member=unknown)["code"] == "unknown_member"
    assert ask("sha-gone-01")["code"] == "not_permitted"
    assert first_pin.live(side, [member], NOW) == {member}

    wrong = typed[:-1] + ("A" if typed[-1] != "A" else "B")
    assert ask(code=wrong) == {
        "ok": False,
        "reason": "this code is not right (4 tries left)",
        "code": "bad_code",
    }
    assert ask() == {"ok": True, "member": member}
    doc = ledger.member(member)
    assert doc is not None and doc["pin_hash"] == pin_hash and pins.verify_pin("4826", pin_hash)
    events = [json.loads(b) for _, b in ledger.store.events_after(0, ["pin.set"])]
    assert [(e["node"], e["member"], e["data"]) for e in events] == [
        ("web-kiosk", member, {"pin_hash": pin_hash})
    ]
    # Once set: a PIN already (and the code spent at its keeper).
    assert ask()["code"] == "has_pin"
    with pytest.raises(first_pin.CodeSpent):
        first_pin.consume(side, member, code, NOW)
    assert answerer.answered["set"] == 1 and answerer.answered["bad_code"] == 1
