"""Bad input to the API that the fuzz tests found or the issue reported: a 4xx JSON error in
one line, and nothing written (not even a member number used up)."""

from __future__ import annotations

from tests.api.conftest import Api

pytest_plugins = ["tests.pg_fixtures"]


def test_a_refused_enrolment_uses_up_no_member_number(api: Api) -> None:
    first = api.enrol("First Member")
    for bad in ({"email": "1e400"}, {"phone": "not a phone"}):
        r = api.client.post(
            "/v1/members", json={"name": "Bad Contact", "pin": "2580", **bad}, headers=api.h()
        )
        assert r.status_code == 422, r.text
    second = api.enrol("Second Member")
    assert int(second[:-1]) == int(first[:-1]) + 1  # the serial (the check digit aside) ran on by one


def test_a_phone_already_enrolled_is_a_409_before_a_number_is_taken(api: Api) -> None:
    api.enrol("Phone Owner", phone="+4930123456")
    r = api.client.post(
        "/v1/members", json={"name": "Phone Copy", "pin": "2580", "phone": "+49 30 123456"}, headers=api.h()
    )
    assert r.status_code == 409 and r.json()["code"] == "duplicate_phone"


def test_a_field_name_with_a_newline_keeps_the_error_on_one_line(api: Api) -> None:
    r = api.client.post("/v1/members", json={"name": "A", "pin": "2580", "x\ny\r\x1b": 1}, headers=api.h())
    assert r.status_code == 422
    assert r.json()["error"] == "x\\ny\\r\\x1b: Extra inputs are not permitted"


def test_a_room_of_1e400_is_a_422_and_posts_nothing(api: Api) -> None:
    member = api.enrol()
    r = api.stay(member, "F-1E400", room="1e400")
    assert r.status_code == 422 and "room" in r.json()["error"]
    assert api.stay(member, "F-1E400", room="100").status_code == 200  # the folio is still free
