"""The node's secrets on disk: its Ed25519 voucher key and the fleet's card-UID hash key.

Keys live in files beside the replica, never inside it: the replica is streamed to a
backup by Litestream, and a backup must not carry the node's signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from staypoint.fsutil import atomic_write

VOUCHER_KEY = "voucher_ed25519.pem"
CARD_KEY = "card_uid_hmac.key"


class KeyError_(RuntimeError):
    """A key file is missing, unreadable or damaged."""


@dataclass(frozen=True)
class NodeKeys:
    voucher: Ed25519PrivateKey
    card_key: bytes

    def card_hash(self, uid_hex: str) -> str:
        """The keyed hash of a card UID (hex, any case and spacing) as stored in the replica."""
        uid = normalise_uid(uid_hex)
        return hmac.new(self.card_key, bytes.fromhex(uid), hashlib.sha256).hexdigest()[:32]

    def public_hex(self) -> str:
        return public_key_hex(self.voucher.public_key())


def normalise_uid(uid_hex: str) -> str:
    """``04 a2:3f`` → ``04A23F``; ValueError for anything that is not whole bytes of hex."""
    cleaned = uid_hex.replace(" ", "").replace(":", "").upper()
    if not cleaned or len(cleaned) % 2 or len(cleaned) > 40:
        raise ValueError(f"card UID {uid_hex!r} is not whole bytes of hex")
    try:
        bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"card UID {uid_hex!r} is not hex") from None
    return cleaned


def public_key_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def create_keys(directory: Path, card_key: bytes | None = None) -> NodeKeys:
    """Generate the node's voucher key (and a card key unless the fleet's is given)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    voucher = Ed25519PrivateKey.generate()
    pem = voucher.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = card_key if card_key is not None else secrets.token_bytes(32)
    atomic_write(directory / VOUCHER_KEY, pem, 0o600)
    atomic_write(directory / CARD_KEY, key.hex().encode(), 0o600)
    return NodeKeys(voucher, key)


def load_keys(directory: Path) -> NodeKeys:
    """Load the node's keys; KeyError_ with the file name when one is missing or damaged."""
    vpath, cpath = directory / VOUCHER_KEY, directory / CARD_KEY
    try:
        voucher = serialization.load_pem_private_key(vpath.read_bytes(), password=None)
        card_key = bytes.fromhex(cpath.read_text().strip())
    except FileNotFoundError as exc:
        raise KeyError_(f"{exc.filename}: key file missing (run `staypoint node init`)") from None
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{directory}: damaged key file ({exc})") from None
    if not isinstance(voucher, Ed25519PrivateKey) or len(card_key) < 16:
        raise KeyError_(f"{directory}: key files are not a Staypoint node's keys")
    return NodeKeys(voucher, card_key)
