"""The fleet's MQTT transport security, in one place for every client that talks to the broker."""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt

FLEET_PORT = 8883
"""The broker's fleet listener: nodes and enrolling boards; the client id is the CN."""

OFFICE_PORT = 8884
"""The broker's head-office listener: head office's certificate only, client ids free."""


def use_fleet_tls(client: mqtt.Client, ca: str | Path, cert: str | Path, key: str | Path) -> None:
    """Mutual TLS to the fleet's broker: the server must chain to ``ca``, and the client
    presents ``cert``/``key`` (its CN is the identity the broker's ACL sees)."""
    client.tls_set(
        ca_certs=str(ca),
        certfile=str(cert),
        keyfile=str(key),
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )


def no_nagle(client: mqtt.Client) -> None:
    """Send each MQTT packet at once: paho leaves Nagle on, and a small PUBLISH that follows an
    unacknowledged segment then waits for the peer's delayed ACK (~40 ms a hop on Linux),
    which is most of an authorisation's round trip. Call it from ``on_connect`` (each
    connection has a new socket)."""
    setsockopt = getattr(client.socket(), "setsockopt", None)  # paho types it as a bare SocketLike
    if setsockopt is not None:
        with contextlib.suppress(OSError):
            setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
