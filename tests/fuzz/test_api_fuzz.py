"""Random JSON and random bytes to every API endpoint that takes a body, through the real HTTP
server: plain, chunked and oversized. The answer is a success or a 4xx JSON error with one
clear line, never a 5xx, and a refusal writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from staypoint.central.api.app import MAX_BODY
from tests.api.conftest import PIN, Api, Clock, build_api
from tests.api.live import Live, chunk, read_response, request_head, send_until_refused, serve
from tests.fuzz.strategies import fuzz_settings, json_value, mutated_json, nasty_text
from tests.test_cli import digest


@dataclass
class Target:
    api: Api
    live: Live
    folder: Path
    member: str
    token: str


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("fuzzapi")
    api = build_api(f"sqlite://{folder / 'ledger.db'}", folder, Clock())
    member = api.enrol("Fuzz Member", email="fuzz@example.com")
    token = api.login(member)
    with serve(api.client.app) as live:  # type: ignore[arg-type]
        yield Target(api, live, folder, member, token)
    api.services.side.close()
    api.services.profiles.close()
    api.ledger.store.close()


def endpoints(t: Target) -> list[tuple[str, str, str, bool, dict[str, Any]]]:
    """(method, path, API key, member token?, a valid body) for each endpoint with a body."""
    stay = {
        "folio": "F1",
        "member": t.member,
        "arrival": "2026-11-20",
        "departure": "2026-11-22",
        "revenue": {"room": "500", "fnb": "20.50"},
    }
    quote = {
        "property": "SHA",
        "room_type": "STE",
        "arrival": "2026-12-01",
        "nights": 2,
        "public_rate": "200.00",
    }
    claim = {
        "folio": "X1",
        "property": "SHA",
        "arrival": "2026-11-01",
        "departure": "2026-11-02",
        "note": "n",
    }
    return [
        (
            "POST",
            "/v1/members",
            "web",
            False,
            {"name": "Ada Lovelace", "pin": "2580", "email": "a@b.example"},
        ),
        ("POST", "/v1/members/login", "web", False, {"login": t.member, "pin": PIN}),
        ("POST", "/v1/rates/quote", "web", False, quote),
        ("POST", "/v1/properties/SHA/stays", "pms-sha", False, stay),
        ("POST", "/v1/me/redemptions", "web", True, {"reward": "LATE-CO"}),
        ("POST", "/v1/me/transfers", "web", True, {"partner": "SKYMILES", "points": 1000}),
        ("POST", "/v1/me/claims", "web", True, claim),
        ("POST", "/v1/me/feedback", "web", True, {"stars": 5, "tags": ["quiet"], "comment": "ok"}),
        ("PATCH", "/v1/me/profile", "web", True, {"email": "new@b.example", "language": "en"}),
    ]


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def requests(draw: st.DrawFn, t: Target) -> tuple[str, str, dict[str, str], list[bytes], bool]:
    method, path, key, needs_token, valid = draw(st.sampled_from(endpoints(t)))
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "json", "bytes", "oversized"]))
    if kind == "mutated":
        body = _encode(draw(mutated_json(valid)))
    elif kind == "json":
        body = _encode(draw(json_value))
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    else:  # a valid body padded past the limit: refused unread, whatever it says
        body = _encode(valid)[:-1] + b" " * (MAX_BODY + draw(st.integers(1, 60_000))) + b"}"
    chunked = draw(st.booleans())
    headers = {
        "X-API-Key": t.api.keys[key],
        "Content-Type": draw(
            st.sampled_from(["application/json"] * 4 + ["text/plain", "application/x-www-form"])
        ),
        "Connection": "close",
    }
    if needs_token:
        headers["Authorization"] = f"Bearer {t.token}"
    if draw(st.integers(0, 9)) == 0:
        headers[draw(st.sampled_from(["X-API-Key", "Authorization"]))] = (
            # What a header can carry at all (no CR, LF or other controls): anything else is
            # not HTTP, and the server's parser refuses it before the API is reached.
            "".join(c for c in draw(nasty_text) if " " <= c <= "~").strip()
        )
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        size = draw(st.integers(1, 20_000))
        parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    else:
        headers["Content-Length"] = str(len(body))
        parts = [body]
    return method, path, headers, parts, chunked


def send(
    live: Live, method: str, path: str, headers: dict[str, str], parts: list[bytes], chunked: bool
) -> Any:
    conn = live.connect(timeout=10)
    try:
        body = [chunk(p) if chunked and p else p for p in parts] + ([b"0\r\n\r\n"] if chunked else [])
        send_until_refused(conn, [request_head(method, path, headers), *body])
        return read_response(conn)
    finally:
        conn.close()


def stored(folder: Path) -> list[str]:
    return [digest(folder / name) for name in ("ledger.db", "side.db", "profiles.db")]


@fuzz_settings(120)
@given(data=st.data())
def test_api_bodies_get_a_4xx_json_error_never_a_5xx_and_a_refusal_writes_nothing(
    target: Target, data: st.DataObject
) -> None:
    method, path, headers, parts, chunked = data.draw(requests(target))
    before = stored(target.folder)
    status, _, body = send(target.live, method, path, headers, parts, chunked)
    assert status < 500, (status, body[:300])
    if status < 400:
        return
    answer = json.loads(body)
    assert isinstance(answer.get("error"), str) and isinstance(answer.get("code"), str), answer
    assert answer["error"] and "\n" not in answer["error"] and "\r" not in answer["error"], answer
    if sum(map(len, parts)) > MAX_BODY:
        assert status == 413, (status, answer)
    # A wrong PIN at login counts towards the lock-out, as at the kiosk: that write is the point.
    if not (path == "/v1/members/login" and status in (401, 423)):
        assert stored(target.folder) == before, (path, status, answer)
