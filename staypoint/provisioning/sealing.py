"""Enrolment answers sealed to the board that asked: X25519, HKDF-SHA256, AES-256-GCM.

Every board enrolling connects with the one shared ``enrol`` certificate, and on the fleet
listener a certificate's CN is its client id: all those boards are the same MQTT client,
one connection at a time, and each may read the reply topics. The answer carries the
fleet's card-hash key (and the board's certificate, programme and backup URL), so head
office encrypts it to a key pair the board makes for that one request. The request, with
the public half, reaches head office alone (no client but head office reads request
topics). The request id is bound in as associated data: a sealed answer cannot be passed
off as the answer to another request.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["new_reply_key", "open_reply", "parse_reply_key", "reply_key_hex", "seal_reply"]

_INFO = b"staypoint enrol reply v2"


def new_reply_key() -> X25519PrivateKey:
    """The board's key pair for one request (kept in memory only)."""
    return X25519PrivateKey.generate()


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def reply_key_hex(key: X25519PrivateKey) -> str:
    """The public half, as the request's ``reply_key``."""
    return _raw(key.public_key()).hex()


def parse_reply_key(text: object) -> X25519PublicKey:
    """A request's ``reply_key``; ``ValueError`` unless it is 32 bytes of hex."""
    if not isinstance(text, str) or len(text) != 64:
        raise ValueError("reply_key must be 32 bytes of hex")
    return X25519PublicKey.from_public_bytes(bytes.fromhex(text))


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    # Both public keys go into the derivation, so a key is tied to this one exchange.
    return HKDF(hashes.SHA256(), 32, salt=None, info=_INFO + ephemeral + recipient).derive(shared)


def seal_reply(body: dict[str, Any], recipient: X25519PublicKey, request_id: str) -> dict[str, Any]:
    """``body`` encrypted to ``recipient`` for the request ``request_id``."""
    ephemeral = X25519PrivateKey.generate()
    epk = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(recipient), epk, _raw(recipient))
    nonce = os.urandom(12)
    box = AESGCM(key).encrypt(nonce, json.dumps(body).encode(), request_id.encode())
    return {"v": 2, "sealed": {"epk": epk.hex(), "nonce": nonce.hex(), "box": base64.b64encode(box).decode()}}


def open_reply(message: dict[str, Any], key: X25519PrivateKey, request_id: str) -> dict[str, Any]:
    """The body of a sealed answer; ``ValueError`` when it is not one for this key and request."""
    sealed = message.get("sealed")
    if not isinstance(sealed, dict):
        raise ValueError("not a sealed answer")
    try:
        epk = bytes.fromhex(str(sealed["epk"]))
        nonce = bytes.fromhex(str(sealed["nonce"]))
        box = base64.b64decode(str(sealed["box"]), validate=True)
        shared = key.exchange(X25519PublicKey.from_public_bytes(epk))
        plain = AESGCM(_key(shared, epk, _raw(key.public_key()))).decrypt(nonce, box, request_id.encode())
        body = json.loads(plain)
    except (KeyError, ValueError, InvalidTag) as err:
        raise ValueError(f"the sealed answer does not open: {type(err).__name__}") from None
    if not isinstance(body, dict):
        raise ValueError("the sealed answer is not an object")
    return body
