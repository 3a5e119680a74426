"""An approved claim books the stay itself (nights, qualifying figures, tier progress), on
both ledger stores, and the member hears of it in the profile's language (aiosmtpd)."""

from __future__ import annotations

import json

import pytest

from staypoint.central.claims import ClaimsQueue, Mailer
from staypoint.central.errors import Conflict
from tests.api.conftest import Api
from tests.campaigns.conftest import Mailbox, smtp  # noqa: F401 - the SMTP fixture
from tests.waits import wait_until

pytest_plugins = ["tests.pg_fixtures"]


def _claim(api: Api, token: str, folio: str) -> None:
    body = {"folio": folio, "property": "SHA", "arrival": "2026-11-20", "departure": "2026-11-22"}
    r = api.client.post("/v1/me/claims", json=body, headers=api.h(token=token))
    assert r.status_code == 202, r.text


def _me(api: Api, token: str) -> dict[str, object]:
    r = api.client.get("/v1/me", headers=api.h(token=token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_approved_claims_book_nights_and_tell_in_chinese(
    api: Api,
    smtp: tuple[Mailbox, int],  # noqa: F811 - the fixture imported above
) -> None:
    box, port = smtp
    queue = ClaimsQueue(api.services, Mailer("127.0.0.1", port))
    mei = api.enrol("Wang Mei", email="mei@example.com", language="zh")
    token = api.login(mei)
    before = _me(api, token)
    assert before["qualifying_nights"] == 0
    api.stay(None, "F-ANON", room="400")  # the PMS posted a folio without a member number
    _claim(api, token, "F-ANON")  # matches: approved at once, priced from the folio's revenue
    _claim(api, token, "F-LOST")  # nothing to match: a clerk
    assert queue.pull(api.clock())["approved"] == 1
    after_auto = _me(api, token)
    assert (after_auto["qualifying_nights"], after_auto["points"]) == (2, 4000)
    lost = queue.search(folio="F-LOST")[0]
    queue.approve(lost["id"], "clerk-7", 1200, api.clock())
    with pytest.raises(Conflict, match="already approved"):
        queue.approve(lost["id"], "clerk-7", 1200, api.clock())  # never booked twice
    m = api.ledger.member(mei)
    assert (m["qual_nights"], m["points"]) == (4, 4000 + 1200)
    me = _me(api, token)
    assert me["qualifying_nights"] == 4
    assert me["nights_needed"] == int(str(before["nights_needed"])) - 4, "tier progress moved"
    # The stays are stays: head office's console stream, with the claim's folio and dates.
    stays = [
        json.loads(b)
        for b in api.ledger.store.member_events(mei, 10)
        if json.loads(b)["type"] == "stay.posted" and json.loads(b)["node"].startswith("console")
    ]
    assert sorted(s["data"]["folio"] for s in stays) == ["F-ANON", "F-LOST"]
    assert all(s["data"]["nights"] == 2 and s["data"]["property"] == "SHA" for s in stays)
    assert queue.get(lost["id"])["points"] == 1200

    wait_until(lambda: len(box.to("mei@example.com")) == 2, 20, "both notices to Mei")
    subjects = sorted(str(msg["Subject"]) for msg in box.to("mei@example.com"))
    assert subjects == ["您的补登入住申请（账单 F-ANON）已批准", "您的补登入住申请（账单 F-LOST）已批准"]
    text = next(m for m in box.to("mei@example.com") if "F-LOST" in str(m["Subject"]))
    body = text.get_content()  # type: ignore[attr-defined]
    assert "2 晚入住" in body and "1,200 积分" in body and mei in body


def test_english_member_rejected_notice_stays_english(
    api: Api,
    smtp: tuple[Mailbox, int],  # noqa: F811
) -> None:
    box, port = smtp
    queue = ClaimsQueue(api.services, Mailer("127.0.0.1", port))
    ada = api.enrol("Ada Lovelace", email="ada@example.com")
    _claim(api, api.login(ada), "F-BAD")
    queue.pull(api.clock())
    queue.reject(queue.search(folio="F-BAD")[0]["id"], "clerk-7", "no stay under this folio", api.clock())
    wait_until(lambda: len(box.to("ada@example.com")) == 1, 20, "the notice to Ada")
    msg = box.to("ada@example.com")[0]
    assert str(msg["Subject"]) == "Your missing-stay claim for folio F-BAD"
    assert "no stay under this folio" in msg.get_content()  # type: ignore[attr-defined]
    assert api.ledger.member(ada)["qual_nights"] == 0
