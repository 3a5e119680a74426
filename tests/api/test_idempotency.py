"""``Idempotency-Key`` (api/idempotency.py, docs/api.md): a retry gets the first answer, never a
second redemption; another body with the same key is refused; kept across a restart; both stores."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from staypoint.central.api.app import make_api
from staypoint.central.partners.book import PartnerDesk
from tests.api.conftest import NOW, Api

pytest_plugins = ["tests.pg_fixtures"]


def _member_with_points(api: Api) -> tuple[str, str]:
    m = api.enrol(email="idem@example.com")
    api.stay(m, "F-IDEM", room="1000")
    return m, api.login(m)


def test_same_key_same_answer_other_body_refused(api: Api) -> None:
    m, token = _member_with_points(api)
    h = {**api.h(token=token), "Idempotency-Key": "order-4711"}
    first = api.client.post("/v1/me/redemptions", json={"reward": "LATE-CO"}, headers=h)
    assert first.status_code == 201, first.text
    again = api.client.post("/v1/me/redemptions", json={"reward": "LATE-CO"}, headers=h)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.ledger.member(m)["points"] == 8000  # 10,500 - 2,500 once
    other = api.client.post("/v1/me/redemptions", json={"reward": "BREAKFAST"}, headers=h)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_mismatch"
    # The same key on another path is another request too.
    PartnerDesk(api.ledger, api.services.side).link(m, "SKYMILES", "SM123456", "test", NOW)
    t = api.client.post("/v1/me/transfers", json={"partner": "SKYMILES", "points": 1000}, headers=h)
    assert t.status_code == 422 and t.json()["code"] == "idempotency_mismatch"
    # A transfer with its own key, retried: one transfer.
    h2 = {**api.h(token=token), "Idempotency-Key": "xfer-1"}
    t1 = api.client.post("/v1/me/transfers", json={"partner": "SKYMILES", "points": 1000}, headers=h2)
    t2 = api.client.post("/v1/me/transfers", json={"partner": "SKYMILES", "points": 1000}, headers=h2)
    assert t1.status_code == 201 and t2.json() == t1.json()
    assert api.ledger.member(m)["points"] == 7000
    # A refusal is kept too (the same answer), a malformed key is a 422, no key works as before.
    h3 = {**api.h(token=token), "Idempotency-Key": "too-much"}
    body = {"partner": "SKYMILES", "points": 9000}
    r1 = api.client.post("/v1/me/transfers", json=body, headers=h3)
    assert (
        r1.status_code == 409
        and api.client.post("/v1/me/transfers", json=body, headers=h3).json() == r1.json()
    )
    bad = api.client.post(
        "/v1/me/redemptions",
        json={"reward": "LATE-CO"},
        headers={**api.h(token=token), "Idempotency-Key": "a b"},
    )
    assert bad.status_code == 422 and "Idempotency-Key" in bad.json()["error"]


def test_keys_are_per_member(api: Api) -> None:
    """One booking engine key, two members, the same Idempotency-Key: two redemptions."""
    a, ta = _member_with_points(api)
    b = api.enrol(name="Bob Babbage", email="bob@example.com")
    api.stay(b, "F-BOB", room="1000")
    tb = api.login(b)
    for token in (ta, tb):
        r = api.client.post(
            "/v1/me/redemptions",
            json={"reward": "LATE-CO"},
            headers={**api.h(token=token), "Idempotency-Key": "same"},
        )
        assert r.status_code == 201, r.text
    assert api.ledger.member(a)["points"] == api.ledger.member(b)["points"] == 8000


def test_concurrent_requests_with_one_key_redeem_once(api: Api) -> None:
    m, token = _member_with_points(api)
    h = {**api.h(token=token), "Idempotency-Key": "race-1"}
    barrier = threading.Barrier(4)
    answers: list[tuple[int, dict[str, object]]] = []

    def go() -> None:
        barrier.wait()
        r = api.client.post("/v1/me/redemptions", json={"reward": "LATE-CO"}, headers=h)
        answers.append((r.status_code, r.json()))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 4
    assert {s for s, _ in answers} == {201}, answers
    assert len({str(b["voucher"]) for _, b in answers}) == 1
    assert api.ledger.member(m)["points"] == 8000
    assert api.ledger.store.counters()["holds_placed"] == 1


def test_kept_across_a_restart(api: Api, tmp_path: Path) -> None:
    m, token = _member_with_points(api)
    h = {**api.h(token=token), "Idempotency-Key": "after-timeout"}
    first = api.client.post("/v1/me/redemptions", json={"reward": "LATE-CO"}, headers=h)
    assert first.status_code == 201
    # A new process over the same stores (the first one 'timed out'): the same answer.
    app2 = make_api(
        api.ledger, api.services.profiles, api.services.side, token_key=b"k" * 32, clock=api.clock
    )
    with TestClient(app2) as client2:
        again = client2.post("/v1/me/redemptions", json={"reward": "LATE-CO"}, headers=h)
    assert again.status_code == 201 and again.json() == first.json()
    assert api.ledger.member(m)["points"] == 8000


def test_answers_kept_together_are_each_replayed_and_a_refused_one_frees_its_key(api: Api) -> None:
    """What the answers' writer does with several answers at once (``finish_many``: one
    statement on PostgreSQL): each key replays its own status and body; an answer that may
    change on a retry (503) frees its key."""
    from staypoint.central.api.idempotency import Claim, IdempotencyStore

    store = IdempotencyStore(api.services.side)
    for k in ("k1", "k2", "k3"):
        assert store.claim("c1", "m1", k, f"fp-{k}", NOW).kind == "run"
    store.finish_many(
        [
            ("c1", "m1", "k1", 201, b'{"n": 1, "note": "caf\\u00e9 \\"quoted\\""}'),
            ("c1", "m1", "k2", 409, b'{"n": 2}'),
            ("c1", "m1", "k3", 503, b'{"n": 3}'),
        ]
    )
    replays: list[Claim] = [store.claim("c1", "m1", k, f"fp-{k}", NOW) for k in ("k1", "k2")]
    assert [(c.kind, c.status, c.body) for c in replays] == [
        ("replay", 201, b'{"n": 1, "note": "caf\\u00e9 \\"quoted\\""}'),
        ("replay", 409, b'{"n": 2}'),
    ]
    assert store.claim("c1", "m1", "k3", "fp-k3", NOW).kind == "run"  # freed: runs again


def test_a_claim_keeps_the_answers_sent_before_it(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers sent (``finish_later``) wait for the next claim, which keeps them first (on
    PostgreSQL in its own statement): the retry of a request whose answer still waited replays
    it at once, and an answer that may change on a retry frees its key."""
    from staypoint.central.api import idempotency

    monkeypatch.setattr(idempotency, "FLUSH_S", 60.0)  # no poller gets there first: the claim must
    store = idempotency.IdempotencyStore(api.services.side)
    for k in ("k1", "k2", "k3"):
        assert store.claim("c1", "m1", k, f"fp-{k}", NOW).kind == "run"
    store.finish_later("c1", "m1", "k1", 201, b'{"n": 1}')
    store.finish_later("c1", "m1", "k2", 503, b'{"n": 2}')
    store.finish_later("c1", "m1", "k3", 422, b'{"n": 3}')
    first = store.claim("c1", "m1", "k1", "fp-k1", NOW)  # the retry of k1 carries all three
    assert (first.kind, first.status, first.body) == ("replay", 201, b'{"n": 1}')
    assert store.claim("c1", "m1", "k2", "fp-k2", NOW).kind == "run"  # 503: freed, runs again
    third = store.claim("c1", "m1", "k3", "fp-k3", NOW)
    assert (third.kind, third.status) == ("replay", 422)
    assert store.claim("c1", "m1", "k4", "fp-k4", NOW).kind == "run"  # nothing waits: the claim alone
