"""The API's promises: keys and scopes, tokens, PIN lock-out, folios, rates, offers."""

from __future__ import annotations

import json

from staypoint.central.api.app import MAX_ARRIVALS, MAX_BODY
from staypoint.central.partners.book import PartnerDesk
from staypoint.loyalty.member_numbers import make_number
from tests.api.conftest import NOW, PIN, Api, program_text

pytest_plugins = ["tests.pg_fixtures"]


def test_key_without_scope_or_for_another_property_is_refused(api: Api) -> None:
    m = api.enrol()
    assert api.client.get("/v1/me").status_code == 401
    r = api.client.post(
        "/v1/properties/SHA/stays",
        json={
            "folio": "F1",
            "member": m,
            "arrival": "2026-11-20",
            "departure": "2026-11-21",
            "revenue": {"room": "100"},
        },
        headers=api.h("web"),
    )
    assert r.status_code == 403 and "stays" in r.json()["error"]
    r = api.stay(m, "F1", prop="PEK")
    assert r.status_code == 403 and "PEK" in r.json()["error"]
    quote = {
        "property": "SHA",
        "room_type": "DLX",
        "arrival": "2026-12-10",
        "nights": 2,
        "public_rate": "200.00",
    }
    r = api.client.post("/v1/rates/quote", json=quote, headers=api.h("rates-only"))
    assert r.status_code == 403 and "SHA" in r.json()["error"]
    key_id = api.keys["pms-sha"].split("_")[1]
    assert api.services.revoke_key(key_id, api.clock())
    r = api.stay(m, "F1")
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert api.client.get("/v1/me", headers={"X-API-Key": "sp_nope_nope"}).status_code == 401


def test_expired_token_is_refused(api: Api) -> None:
    m = api.enrol()
    token = api.login(m)
    assert api.client.get("/v1/me", headers=api.h(token=token)).status_code == 200
    api.clock.advance(minutes=16)
    r = api.client.get("/v1/me", headers=api.h(token=token))
    assert r.status_code == 401 and "expired" in r.json()["error"]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert api.client.get("/v1/me", headers=api.h(token=forged)).status_code == 401


def test_pin_brute_force_locks_like_the_kiosk(api: Api) -> None:
    m = api.enrol(email="ada@example.com")
    codes = []
    for _ in range(5):
        r = api.client.post("/v1/members/login", json={"login": m, "pin": "0000"}, headers=api.h())
        codes.append(r.status_code)
    assert codes == [401, 401, 401, 401, 423]
    # Locked: even the right PIN, by number or by e-mail, is refused until the lock-out ends.
    r = api.client.post("/v1/members/login", json={"login": "ada@example.com", "pin": PIN}, headers=api.h())
    assert r.status_code == 423 and "too many wrong PINs" in r.json()["error"]
    api.clock.advance(minutes=31)
    assert api.login("ada@example.com")


def test_a_stay_for_an_unknown_member_is_refused_and_leaves_no_folio(api: Api) -> None:
    """A folio naming a member head office does not hold is refused in one line (404, on both
    stores), and nothing of it is kept: the folio is free for the right member's post."""
    known = api.enrol()
    stranger = make_number(77, 12345)
    assert api.ledger.member(stranger) is None
    r = api.stay(stranger, "F-404")
    assert r.status_code == 404 and r.json()["code"] == "unknown_member"
    assert stranger in r.json()["error"]
    # Nothing was kept of it: the same folio for a member who exists is a first post.
    r = api.stay(known, "F-404")
    assert r.status_code == 200 and r.json()["result"] == "posted"


def test_same_folio_twice_earns_once_and_a_correction_moves_the_difference(api: Api) -> None:
    m = api.enrol()
    r = api.stay(m, "F-100", room="500")
    assert r.json() == {"folio": "F-100", "property": "SHA", "result": "posted", "points": 5500}
    assert api.ledger.member(m)["points"] == 5500  # 500 × 10 + 500 direct bonus
    r = api.stay(m, "F-100", room="500")
    assert r.json()["result"] == "unchanged"
    assert api.ledger.member(m)["points"] == 5500
    r = api.stay(m, "F-100", room="300")  # corrected down: claw back 2,000
    assert r.json()["result"] == "corrected"
    assert api.ledger.member(m)["points"] == 3500
    r = api.stay(m, "F-100", room="800")  # corrected up: add 5,000
    assert api.ledger.member(m)["points"] == 8500
    assert api.ledger.member(m)["qual_nights"] == 2
    r = api.stay(m, "F-100", room="800", channel="ota")  # a third-party booking earns nothing
    assert r.json()["result"] == "corrected-no-points" and api.ledger.member(m)["points"] == 0


def test_a_folio_whose_record_was_lost_after_the_ledger_commit_posts_once(api: Api) -> None:
    # The process died between the ledger's commit and the folio row: the property system
    # posts the same folio again and must get its answer, not an error, and no second earn.
    m = api.enrol()
    assert api.stay(m, "F-200", room="500").json()["result"] == "posted"
    api.services.side.execute("DELETE FROM folios WHERE folio = ?", ("F-200",))
    r = api.stay(m, "F-200", room="500")
    assert r.status_code == 200, r.text
    assert api.ledger.member(m)["points"] == 5500
    assert api.stay(m, "F-200", room="500").json()["result"] == "unchanged"


def test_quote_never_exceeds_public_rate_and_tiers_get_more(api: Api) -> None:
    m = api.enrol()
    token = api.login(m)
    base = {"property": "SHA", "room_type": "DLX", "arrival": "2026-12-10", "nights": 2}
    for public in ("0", "0.01", "99.99", "200.00", "123456.78"):
        r = api.client.post(
            "/v1/rates/quote", json=base | {"public_rate": public}, headers=api.h(token=token)
        )
        assert r.status_code == 200, r.text
        q = r.json()
        from decimal import Decimal

        assert Decimal(q["member_rate"]) <= Decimal(public)
    r = api.client.post("/v1/rates/quote", json=base | {"public_rate": "200.00"}, headers=api.h(token=token))
    assert r.json()["member_rate"] == "180.00" and r.json()["plan"] == "MEMBER-RATE"
    winter = base | {"arrival": "2027-01-10", "public_rate": "200.00"}
    assert (
        api.client.post("/v1/rates/quote", json=winter, headers=api.h(token=token)).json()["member_rate"]
        == "150.00"
    )


def test_early_access_platinum_day_one_member_from_public_date(api: Api) -> None:
    plat, basic = api.enrol("Pat Platinum"), api.enrol("Mo Member")
    doc = api.ledger.member(plat)
    doc["tier"] = "PLATINUM"
    with api.ledger.store.transaction():
        api.ledger.store.put_member(doc)
    api.clock.now = api.clock.now.replace(day=24)  # 2026-11-24: 7 days before the public date
    tp, tm = api.login(plat), api.login(basic)
    assert [o["code"] for o in api.client.get("/v1/me/offers", headers=api.h(token=tp)).json()] == [
        "NYE-GALA"
    ]
    assert api.client.get("/v1/me/offers", headers=api.h(token=tp)).json()[0]["early_access"] is True
    assert api.client.get("/v1/me/offers", headers=api.h(token=tm)).json() == []
    assert [x["code"] for x in api.client.get("/v1/me/last-minute", headers=api.h(token=tp)).json()] == [
        "SHA-SUITE-LM"
    ]
    assert api.client.get("/v1/me/last-minute", headers=api.h(token=tm)).json() == []
    api.clock.now = api.clock.now.replace(month=12, day=1)
    tp, tm = api.login(plat), api.login(basic)
    offers = api.client.get("/v1/me/offers", headers=api.h(token=tm)).json()
    assert [o["code"] for o in offers] == ["NYE-GALA"] and offers[0]["early_access"] is False


def test_dashboard_redeem_transfer_profile_claim(api: Api) -> None:
    m = api.enrol(email="grace@example.com")
    api.stay(m, "F-1", room="1000")
    token = api.login(m)
    d = api.client.get("/v1/me", headers=api.h(token=token)).json()
    assert d["points"] == 10500 and d["tier"] == "MEMBER" and d["recent"][0]["type"] == "points.adjusted"
    assert "LATE-CO" in [r["code"] for r in d["rewards"] if r["available"]]
    r = api.client.post("/v1/me/redemptions", json={"reward": "LATE-CO"}, headers=api.h(token=token))
    assert r.status_code == 201, r.text
    assert r.json()["balance"] == 8000
    assert api.ledger.store.counters()["holds_placed"] == 1
    r = api.client.post(
        "/v1/me/transfers", json={"partner": "SKYMILES", "points": 3000}, headers=api.h(token=token)
    )
    assert r.status_code == 409 and r.json()["code"] == "no_partner_account"  # docs/partners.md
    PartnerDesk(api.ledger, api.services.side).link(m, "SKYMILES", "SM123456", "test", NOW)
    r = api.client.post(
        "/v1/me/transfers", json={"partner": "SKYMILES", "points": 3000}, headers=api.h(token=token)
    )
    assert r.status_code == 201 and r.json()["units"] == 1500 and r.json()["balance"] == 5000
    r = api.client.post(
        "/v1/me/transfers", json={"partner": "SKYMILES", "points": 3000}, headers=api.h(token=token)
    )
    assert r.status_code == 409 and "cap" in r.json()["error"]
    r = api.client.patch(
        "/v1/me/profile",
        json={"phone": "+49 30 1234567", "marketing_email": True},
        headers=api.h(token=token),
    )
    assert r.status_code == 200 and r.json()["marketing_email"] is True
    assert api.services.profiles.consent_log(m)[-1][:3] == ("email", True, "web")
    r = api.client.post(
        "/v1/me/claims",
        json={"folio": "X1", "property": "SHA", "arrival": "2026-11-01", "departure": "2026-11-02"},
        headers=api.h(token=token),
    )
    assert r.status_code == 202
    d = api.client.get("/v1/me", headers=api.h(token=token)).json()
    assert d["vouchers"][0]["reward"] == "LATE-CO" and d["points"] == 5000


def test_bad_bodies_get_a_clear_4xx(api: Api) -> None:
    h = api.h()
    r = api.client.post("/v1/members", content=b"{not json", headers=h | {"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "invalid"
    r = api.client.post("/v1/members", json={"name": "A", "pin": 1234}, headers=h)
    assert r.status_code == 422 and "pin" in r.json()["error"]
    r = api.client.post(
        "/v1/members", content=b"x" * 70_000, headers=h | {"content-type": "application/json"}
    )
    assert r.status_code == 413 and "KiB" in r.json()["error"]
    r = api.client.post("/v1/members/login", json={"login": "123", "pin": "1"}, headers=h)
    assert r.status_code == 422 and "digits" in r.json()["error"]


def test_loosely_typed_values_are_refused_not_guessed(api: Api) -> None:
    # Each of these was once accepted by lax parsing (true as 1 star, 0.0 as "no", "0" as a
    # Unix date): a client that sends them has a bug, and the API says so with a 422.
    token = api.login(api.enrol())
    h = api.h(token=token)
    for method, path, body in (
        ("post", "/v1/me/feedback", {"stars": True}),
        ("post", "/v1/me/feedback", {"stars": "5"}),
        ("patch", "/v1/me/profile", {"marketing_sms": 0.0}),
        (
            "post",
            "/v1/me/claims",
            {"folio": "F1", "property": "SHA", "arrival": "0", "departure": "2026-11-20"},
        ),
    ):
        r = getattr(api.client, method)(path, json=body, headers=h)
        assert r.status_code == 422, (path, body, r.status_code, r.text)
        assert r.json()["error"]
    ok = api.client.post("/v1/me/feedback", json={"stars": 5}, headers=h)
    assert ok.status_code in (200, 201, 202), ok.text


def test_a_property_system_cannot_post_a_stay_outside_the_contracts_bounds(api: Api) -> None:
    """A stay arriving in 1026 once made a member Platinum with 365,578 nights."""
    member = api.enrol()
    before = api.ledger.member(member)
    r = api.stay(member, "F-1026", arrival="1026-01-01")
    assert r.status_code == 422 and r.json()["code"] == "out_of_bounds", r.text
    assert "is outside" in r.json()["error"]
    r = api.stay(member, "F-HUGE", room="999999999999")
    assert r.status_code == 422, r.text
    assert api.ledger.member(member) == before  # nothing booked
    assert api.stay(member, "F-OK").status_code in (200, 201)  # and the stream goes on


def test_the_property_systems_arrivals_hold_its_guests_at_the_hotels_nodes(api: Api) -> None:
    from staypoint.loyalty import member_numbers

    m = api.enrol()
    stranger = member_numbers.make_number(4321, 7)  # well formed, nobody's
    url = "/v1/properties/SHA/arrivals"
    body = {
        "arrivals": [{"member": m, "arrival": "2026-11-27"}, {"member": stranger, "arrival": "2026-11-27"}]
    }
    r = api.client.post(url, json=body, headers=api.h("pms-sha"))
    assert r.status_code == 200 and r.json() == {
        "mode": "full",
        "held": 0,
        "unknown": [],
    }  # everyone is everywhere

    partial = (
        program_text()
        .replace('mode = "full"', 'mode = "partial"')
        .replace("version = 1\n", "version = 2\n", 1)
    )
    api.ledger.publish_program(partial, NOW)
    r = api.client.post(url, json=body, headers=api.h("pms-sha"))
    assert r.status_code == 200 and r.json() == {"mode": "partial", "held": 1, "unknown": [stranger]}
    assert "p:SHA" in api.ledger.store.replica_scopes([m])[m]
    latest = api.ledger.store.changes_since(api.ledger.store.latest_version() - 1, 10)
    assert latest is not None and [(c.kind, c.key) for c in latest] == [("member", m)]  # sent again

    assert (
        api.client.post("/v1/properties/PEK/arrivals", json=body, headers=api.h("pms-sha")).status_code == 403
    )
    assert api.client.post(url, json=body, headers=api.h("web")).status_code == 403
    bad = {"arrivals": [{"member": m[:-1] + str((int(m[-1]) + 1) % 10), "arrival": "2026-11-27"}]}
    r = api.client.post(url, json=bad, headers=api.h("pms-sha"))
    assert r.status_code == 422 and "check digit" in r.json()["error"]
    for day, reason in (("9999-12-31", "days ahead"), ("2026-01-02", "days past")):
        far = {"arrivals": [{"member": m, "arrival": day}]}
        r = api.client.post(url, json=far, headers=api.h("pms-sha"))
        assert r.status_code == 422 and reason in r.json()["error"], r.text
    many = {"arrivals": [{"member": m, "arrival": "2026-11-27"}] * (MAX_ARRIVALS + 1)}
    assert api.client.post(url, json=many, headers=api.h("pms-sha")).status_code == 422
    # The largest schema-valid request, spaced as json.dumps spaces it, is under the body limit:
    # refused for its numbers (422), never as too large (413).
    longest = json.dumps({"arrivals": [{"member": "9" * 20, "arrival": "2026-11-27"}] * MAX_ARRIVALS})
    assert len(longest) <= MAX_BODY
    r = api.client.post(
        url, content=longest, headers={**api.h("pms-sha"), "Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text
