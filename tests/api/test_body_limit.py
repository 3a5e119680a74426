"""The 64 KiB body limit holds for chunked bodies too (no Content-Length): the API answers 413
as soon as a body passes it, without reading the rest, and nothing is parsed or written."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from staypoint.central.api.app import MAX_BODY
from tests.api.conftest import PIN, Api
from tests.api.live import Live, chunk, read_response, request_head, send_until_refused, serve
from tests.test_cli import digest


@pytest.fixture
def live(api_factory: Callable[[str], Api], tmp_path: Path) -> Iterator[tuple[Api, Live]]:
    api = api_factory(f"sqlite://{tmp_path / 'ledger.db'}")
    with serve(api.client.app) as server:  # type: ignore[arg-type]
        yield api, server
    api.services.side.close()
    api.services.profiles.close()
    api.ledger.store.close()


def stored(tmp_path: Path) -> list[str]:
    return [digest(tmp_path / name) for name in ("ledger.db", "side.db", "profiles.db")]


def chunked_post(api: Api, server: Live, path: str) -> socket.socket:
    conn = server.connect()
    headers = {
        "X-API-Key": api.keys["web"],
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    conn.sendall(request_head("POST", path, headers))
    return conn


def test_an_endless_chunked_body_is_refused_without_reading_the_rest(
    live: tuple[Api, Live], tmp_path: Path
) -> None:
    api, server = live
    before = stored(tmp_path)
    conn = chunked_post(api, server, "/v1/members")
    # 96 KiB of a body that never ends (a 150 MB upload, as far as the server can tell):
    # before the fix the server kept reading and this timed out. Kept under the loopback
    # socket buffers, so the answer cannot be lost to the reset of a hang-up mid-send.
    send_until_refused(conn, [chunk(b" " * 16384) for _ in range(6)])
    status, headers, body = read_response(conn)
    assert status == 413 and headers.get("connection") == "close"
    assert json.loads(body) == {"error": f"request body over {MAX_BODY // 1024} KiB", "code": "too_large"}
    # The server hung up: the rest of the body is never read. With our bytes still unread in
    # its buffer, its kernel answers with a reset rather than an orderly end.
    with contextlib.suppress(ConnectionResetError):
        assert conn.recv(1) == b""
    conn.close()
    assert stored(tmp_path) == before


def test_a_valid_body_padded_past_the_limit_is_not_parsed(live: tuple[Api, Live], tmp_path: Path) -> None:
    api, server = live
    before = stored(tmp_path)
    body = json.dumps({"name": "Padded Pete", "pin": PIN}).encode()
    body = body[:-1] + b" " * (MAX_BODY + 1) + b"}"  # still valid JSON, and still an enrolment
    conn = chunked_post(api, server, "/v1/members")
    send_until_refused(conn, [*(chunk(body[i : i + 8192]) for i in range(0, len(body), 8192)), b"0\r\n\r\n"])
    status, _, answer = read_response(conn)
    conn.close()
    assert status == 413 and json.loads(answer)["code"] == "too_large"
    assert stored(tmp_path) == before


def test_a_chunked_body_within_the_limit_is_served(live: tuple[Api, Live]) -> None:
    api, server = live
    body = json.dumps({"name": "Chunked Chen", "pin": PIN}).encode() + b" " * (MAX_BODY - 100)
    conn = chunked_post(api, server, "/v1/members")
    for i in range(0, len(body), 1000):
        conn.sendall(chunk(body[i : i + 1000]))
    conn.sendall(b"0\r\n\r\n")
    status, _, answer = read_response(conn)
    conn.close()
    assert status == 201, answer
    assert json.loads(answer)["name"].startswith("Chunked C")  # the API shows "Chunked C."


@pytest.mark.parametrize("length", [str(MAX_BODY + 1), "12abc", "-1"])
def test_a_content_length_past_the_limit_or_not_a_number_is_refused_unread(
    live: tuple[Api, Live], length: str
) -> None:
    api, server = live
    conn = server.connect()
    headers = {"X-API-Key": api.keys["web"], "Content-Type": "application/json", "Content-Length": length}
    conn.sendall(request_head("POST", "/v1/members", headers))
    try:
        status, _, _ = read_response(conn)
    except ConnectionError:
        status = 400  # uvicorn's own parser may refuse a malformed length before the app
    finally:
        conn.close()
    assert status in (400, 413)
