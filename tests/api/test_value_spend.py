"""Stored value spent over the API (issue 14 item 6): the member's token or PIN, a value hold at
head office then ``value.spent`` (the path a node's online payment takes), refusals that
change nothing, an Idempotency-Key retry that pays once; both stores."""

from __future__ import annotations

from decimal import Decimal

from staypoint.central.application.sources import Draft
from staypoint.central.reports.cli import report_figures
from tests.api.conftest import NOW, PIN, Api

pytest_plugins = ["tests.pg_fixtures"]


def top_up(api: Api, member: str, amount: str) -> None:
    api.services.sources.emit(
        "console",
        [Draft("value.topped_up", member, {"amount": amount, "currency": "EUR", "staff": "desk-1"})],
        NOW,
    )


def path(member: str) -> str:
    return f"/v1/members/{member}/value/spend"


def test_spend_with_the_pin_or_the_token_takes_a_hold_and_books_the_payment(api: Api) -> None:
    ada = api.enrol()
    top_up(api, ada, "100.00")
    r = api.client.post(path(ada), json={"amount": "30.50", "pin": PIN, "reference": "R-1"}, headers=api.h())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["balance"] == "69.50" and body["currency"] == "EUR" and body["reference"] == "R-1"
    token = api.login(ada)
    r = api.client.post(path(ada), json={"amount": "19.50"}, headers=api.h(token=token))
    assert r.status_code == 200 and r.json()["balance"] == "50.00", r.text
    m = api.ledger.member(ada)
    assert m is not None and Decimal(m["stored_value"]) == Decimal("50.00")
    assert api.ledger.store.held_value(ada) == 0  # each hold settled by its payment


def test_refusals_change_nothing(api: Api) -> None:
    ada, bob = api.enrol(), api.enrol("Bob Bee")
    top_up(api, ada, "20.00")
    cases = [
        ({"amount": "20.01", "pin": PIN}, {}, 409, "refused"),  # more than the wallet
        ({"amount": "0", "pin": PIN}, {}, 422, "bad_amount"),
        ({"amount": "1.005", "pin": PIN}, {}, 422, "bad_amount"),
        ({"amount": "5.00"}, {}, 401, "no_proof"),
        ({"amount": "5.00", "pin": "0000"}, {}, 401, "bad_login"),
        ({"amount": "5.00"}, {"token": bob}, 403, "other_member"),
    ]
    for body, extra, status, code in cases:
        token = api.login(extra["token"]) if "token" in extra else None
        r = api.client.post(path(ada), json=body, headers=api.h(token=token))
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    assert api.client.post(path(ada), json={"amount": "5.00", "pin": PIN}).status_code == 401  # no API key
    m = api.ledger.member(ada)
    assert m is not None and m["stored_value"] == "20.00"


def test_an_idempotency_key_retry_pays_once(api: Api) -> None:
    ada = api.enrol()
    top_up(api, ada, "50.00")
    headers = api.h() | {"Idempotency-Key": "pay-7f3a"}
    first = api.client.post(path(ada), json={"amount": "40.00", "pin": PIN}, headers=headers)
    again = api.client.post(path(ada), json={"amount": "40.00", "pin": PIN}, headers=headers)
    assert first.status_code == again.status_code == 200 and again.json() == first.json()
    m = api.ledger.member(ada)
    assert m is not None and m["stored_value"] == "10.00"


def test_the_liability_report_counts_the_api_s_payments(api: Api, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ada = api.enrol()
    top_up(api, ada, "80.00")
    assert (
        api.client.post(path(ada), json={"amount": "30.00", "pin": PIN}, headers=api.h()).status_code == 200
    )
    store = api.ledger.store
    url = getattr(store, "url", None) or f"sqlite:///{store.path}"  # type: ignore[attr-defined]
    r = report_figures(url, ["stored_value"], cache=tmp_path / "cache.db")["stored_value"]
    assert r.headline["outstanding"] == Decimal("50.00") and r.headline["top_ups"] == Decimal("80.00")
    assert ["spends_online", "", "", 1, Decimal("30.00")] in r.rows
