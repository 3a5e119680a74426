"""The sd_notify helper against a real AF_UNIX datagram socket (as systemd listens)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from staypoint.edge.sync import sdnotify


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_messages_reach_the_socket(
    listener: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.ready()
    assert sdnotify.watchdog_ping()
    assert sdnotify.status("syncing\n3 pending")
    assert sdnotify.stopping()
    got = [sock.recv(256).decode() for _ in range(4)]
    assert got == ["READY=1", "WATCHDOG=1", "STATUS=syncing 3 pending", "STOPPING=1"]


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"staypoint-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert sdnotify.Notifier("@" + name).ready()
        assert sock.recv(64) == b"READY=1"


def test_no_systemd_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.watchdog_ping() is False  # never raises into the service


def test_watchdog_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "90000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_usec() == 90_000_000
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert sdnotify.watchdog_usec() is None
