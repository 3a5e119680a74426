"""A real SMTP server (aiosmtpd) and a small chain: ledger, profiles, campaign config."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from staypoint.central.ledger import Ledger
from staypoint.central.profiles import ProfileStore
from staypoint.central.seed import seed_docs
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.program import default_program, default_program_text

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def free_port() -> int:
    # aiosmtpd cannot take port 0 (it connects to itself to check it started).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP server received, and how it behaves."""

    messages: list[tuple[str, EmailMessage]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # the DATA as received, byte for byte
    bounce: set[str] = field(default_factory=set)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, addr: str) -> list[EmailMessage]:
        with self.lock:
            return [m for a, m in self.messages if a == addr]

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.box.bounce:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.box.lock:
            self.box.raw.append(bytes(envelope.original_content or envelope.content))
            for rcpt in envelope.rcpt_tos:
                self.box.messages.append((rcpt, msg))  # type: ignore[arg-type]
        if self.box.delay:
            # The mail is in; the answer is late: a client killed now never hears "250".
            await asyncio.sleep(self.box.delay)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    ctl = Controller(_Handler(box), hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    ctl.start()
    yield box, port
    ctl.stop()


@dataclass
class Chain:
    ledger_db: Path
    profiles_db: Path
    members: list[str]
    config: Path
    tmp: Path

    def write_config(self, port: int, extra: str = "", campaigns: str | None = None) -> Path:
        body = campaigns if campaigns is not None else BIRTHDAY
        self.config.write_text(
            f'[settings]\nquiet_start = "21:00"\nquiet_end = "09:00"\n{extra}\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsender = "rewards@staypoint.example"\ntimeout = 10\n'
            + body,
            encoding="utf-8",
        )
        return self.config


BIRTHDAY = """
[[campaign]]
code = "BDAY"
trigger = "birthday"
channels = ["email"]
bonus_points = 500
"""


def make_chain(tmp: Path, n: int, *, birthday: date = date(1990, 11, 23)) -> Chain:
    """``n`` members in the ledger and in profiles, all born on ``birthday``, all consenting."""
    ledger_db, profiles_db = tmp / "ledger.db", tmp / "profiles.db"
    ledger = Ledger(SqliteLedgerStore(ledger_db))
    ledger.publish_program(default_program_text(), NOW)
    docs = seed_docs(default_program(), n, NOW)
    ledger.import_members(docs)
    ledger.store.close()
    profiles = ProfileStore(profiles_db)
    members = [d["number"] for d in docs]
    at = "2026-01-01T00:00:00.000Z"
    for i, m in enumerate(members):
        zh = i % 2 == 1
        profiles.upsert(
            m,
            at=at,
            full_name="王小明" if zh else f"Alice{i} Smith",
            email=f"guest{i}@example.com",
            birth_date=birthday,
            language="zh" if zh else "en",
            joined=date(2024, 3, 1),
        )
        profiles.set_consent(m, "email", True, source="kiosk", at=at)
    profiles.close()
    return Chain(ledger_db, profiles_db, members, tmp / "campaigns.toml", tmp)


@pytest.fixture
def now() -> datetime:
    return NOW
