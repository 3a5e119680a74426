"""The API behind a real uvicorn server on a loopback port, for what a TestClient cannot show:
chunked bodies as they arrive on the wire, and a server that stops reading."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from tests.waits import wait_until


@dataclass(frozen=True)
class Live:
    host: str
    port: int

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[Live]:
    """Serve ``app`` on 127.0.0.1 (a free port) in a thread until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 10, "uvicorn to start", interval=0.01)
    assert server.started, "uvicorn's thread ended before it started"
    try:
        yield Live("127.0.0.1", port)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: staypoint.test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (Content-Length framed, as the API answers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            break
        body += more
    return int(status_line.split()[1]), headers, body[:length]


def send_until_refused(conn: socket.socket, pieces: list[bytes]) -> bool:
    """Send ``pieces`` in turn; False if the server hung up first (it answered already, and a
    server that stops reading resets a connection it leaves bytes unread on)."""
    try:
        for piece in pieces:
            conn.sendall(piece)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True
