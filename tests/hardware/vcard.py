"""A small virtual smart card speaking vpcd's TCP protocol (vsmartcard-vpcd).

vpcd listens on a TCP port per virtual reader; a card "is inserted" by
connecting to it. Frames are a 2-byte big-endian length and a payload. A
1-byte payload is a control message (0 power off, 1 power on, 2 reset,
4 send the ATR); anything else is an APDU we answer with data + SW1 SW2.
Closing the socket removes the card.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

ATR = bytes.fromhex("3B80800101")  # T=1, no historical bytes, valid TCK
Apdu = bytes
Handler = Callable[[Apdu], bytes]


def uid_card(uid_hex: str) -> Handler:
    """A contactless card: answers GET DATA (FF CA 00 00 00) with its UID."""

    def answer(apdu: Apdu) -> bytes:
        if apdu[:2] == b"\xff\xca":
            return bytes.fromhex(uid_hex) + b"\x90\x00"
        return b"\x6d\x00"

    return answer


def member_file_card(member_number: str, aid: bytes) -> Handler:
    """A contact card: refuses GET DATA, holds the member number in the app's file."""
    selected = False

    def answer(apdu: Apdu) -> bytes:
        nonlocal selected
        if apdu[:2] == b"\xff\xca":
            return b"\x6a\x81"  # function not supported
        if apdu[:4] == b"\x00\xa4\x04\x00":
            selected = apdu[5 : 5 + apdu[4]] == aid
            return b"\x90\x00" if selected else b"\x6a\x82"
        if apdu[:2] == b"\x00\xb0" and selected:
            return member_number.encode().ljust(16, b"\x00") + b"\x90\x00"
        return b"\x69\x85"

    return answer


def flaky_card(uid_hex: str) -> Handler:
    """A contactless card whose first GET DATA fails (6F 00), as one held at an angle does."""
    asked = 0

    def answer(apdu: Apdu) -> bytes:
        nonlocal asked
        if apdu[:2] == b"\xff\xca":
            asked += 1
            return bytes.fromhex(uid_hex) + b"\x90\x00" if asked > 1 else b"\x6f\x00"
        return b"\x6d\x00"

    return answer


def garbled_card() -> Handler:
    """A card answering GET DATA with 3 bytes: no valid UID is 3 bytes long."""
    return lambda apdu: b"\x01\x02\x03\x90\x00"


class VirtualCard:
    """A card inserted into the vpcd reader on ``port`` while this object lives."""

    def __init__(self, port: int, handler: Handler, host: str = "127.0.0.1") -> None:
        self.apdus: list[bytes] = []
        self._handler = handler
        self._sock = socket.create_connection((host, port), timeout=5)
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("vpcd closed")
            buf += chunk
        return buf

    def _send(self, payload: bytes) -> None:
        self._sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _serve(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                (length,) = struct.unpack(">H", self._recv_exact(2))
                payload = self._recv_exact(length)
                if length == 1:
                    if payload[0] == 4:
                        self._send(ATR)
                    continue  # power on/off/reset need no answer
                self.apdus.append(payload)
                self._send(self._handler(payload))

    def remove(self) -> None:
        """Pull the card out of the reader."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(2)
