"""Referrals through the API and the node stream, on both ledger stores: a friend's code at
online enrolment and afterwards, checked by the one fold (known, not one's own, no loop,
once); a node's bad referral is quarantined and its enrolment stands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from staypoint.edge.service import BadInput, NodeService
from staypoint.loyalty.member_numbers import make_number
from staypoint.loyalty.program import default_program_text
from staypoint.loyalty.referral_codes import referral_code
from tests.api.conftest import NOW, Api

pytest_plugins = ["tests.pg_fixtures"]


def _refer(api: Api, member: str, code: str) -> tuple[int, dict[str, str]]:
    r = api.client.post(f"/v1/members/{member}/referral", json={"code": code}, headers=api.h("web"))
    return r.status_code, r.json()


def test_referral_at_enrolment_and_after(api: Api) -> None:
    ada = api.enrol("Ada Lovelace", email="ada@example.com")
    code = referral_code(ada)
    bob = api.enrol("Bob Brown", email="bob@example.com", referred_by=code.lower())
    assert api.ledger.member(bob)["referred_by"] == ada
    assert "referred_by" not in api.ledger.member(ada)

    # A typo, nobody's code, one's own e-mail: 422, one line, and no member number used up.
    for bad, expect in (
        (code[:-1] + ("A" if code[-1] != "A" else "B"), "not a referral code"),
        (referral_code(make_number(7777, 1)), "not known"),
    ):
        r = api.client.post(
            "/v1/members", json={"name": "Cy", "pin": "2580", "referred_by": bad}, headers=api.h("web")
        )
        assert r.status_code == 422 and expect in r.json()["error"], r.text
        assert r.json()["code"] == "bad_referral"
    r = api.client.post(
        "/v1/members",
        json={"name": "Ada Again", "pin": "2580", "email": "ADA@example.com", "referred_by": code},
        headers=api.h("web"),
    )
    assert r.status_code in (409, 422), r.text  # the e-mail is taken, or it is her own code

    # After enrolment: once, never one's own, never a loop.
    cy = api.enrol("Cy Young")
    assert _refer(api, cy, referral_code(bob)) == (
        200,
        {"member": cy, "referred_by": bob, "result": "referred"},
    )
    assert _refer(api, cy, referral_code(bob))[1]["result"] == "unchanged"
    status, body = _refer(api, cy, code)
    assert status == 422 and "already referred" in body["error"]
    status, body = _refer(api, ada, referral_code(ada))
    assert status == 422 and "own" in body["error"]
    status, body = _refer(api, ada, referral_code(cy))  # ada -> bob -> cy -> ada
    assert status == 422 and "loop" in body["error"]
    assert "referred_by" not in api.ledger.member(ada)
    status, body = _refer(api, make_number(7777, 1), code)
    assert status == 404


def test_node_referral_quarantined_by_rule_enrolment_stands(api: Api, tmp_path: Path) -> None:
    ada = api.enrol("Ada Lovelace")
    node = NodeService.init_node(tmp_path / "n.db", "sha-lobby-01", "SHA", default_program_text(), NOW)
    # The node knows its own members; a referrer it enrolled itself is accepted offline.
    host = node.enrol("Host Guest", "2580", NOW).number
    friend = node.enrol("Friend", "2580", NOW, referred_by=referral_code(host)).number
    # Head office knows a referrer the node's replica may not (ada enrolled online, and the
    # node here never synced): the node's one line is the safe answer.
    with pytest.raises(BadInput, match="no such member on this node"):
        node.enrol("Other", "2580", NOW, referred_by=referral_code(ada))
    with pytest.raises(BadInput, match="not a referral code"):
        node.enrol("Other", "2580", NOW, referred_by="ZZZZ-ZZZZ")  # the check character, offline
    bodies = [json.loads(b) for (b,) in node.replica.conn.execute("SELECT body FROM outbox ORDER BY seq")]
    assert [b["type"] for b in bodies] == ["member.enrolled", "member.enrolled", "member.referred"]
    # A referral naming itself as the referrer slipped past a node (an old build): the
    # bounds refuse it at head office and the stream goes on.
    forged = dict(bodies[-1], seq=4, id="0190d2f0-0000-7000-8000-00000000f00d")
    forged["data"] = {"referrer": friend, "code": referral_code(friend)}
    result = api.ledger.ingest("sha-lobby-01", [*bodies, forged], NOW)
    assert (result.applied, result.quarantined) == (3, [(forged["epoch"], 4)])
    assert api.ledger.member(friend)["referred_by"] == host, "the referrer enrolled in the same batch"
    quarantined = api.ledger.store.quarantined()
    assert [q["member"] for q in quarantined] == [friend]
    assert "own referral code" in quarantined[0]["reason"]
