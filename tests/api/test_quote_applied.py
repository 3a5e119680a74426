"""A quote names each plan applied with its amount and carries the currency (issue 14 item 7)."""

from __future__ import annotations

from tests.api.conftest import Api

pytest_plugins = ["tests.pg_fixtures"]


def test_a_quote_names_the_plan_its_amount_and_the_currency(api: Api) -> None:
    body = {
        "property": "SHA",
        "room_type": "DLX",
        "arrival": "2027-01-10",
        "nights": 3,
        "public_rate": "200.00",
    }
    r = api.client.post("/v1/rates/quote", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["currency"] == "EUR" and q["member_rate"] == "150.00" and not q["floored"]
    assert q["applied"] == [
        {
            "code": "WINTER-MEMBERS",
            "name": "Winter members' escape",
            "group": "member",
            "discount": "0.25",
            "amount": "50.00",
        }
    ]
