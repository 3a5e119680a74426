"""Campaign mail as a real SMTP server (aiosmtpd) receives it: RFC 5322, 2047, 2369 and 8058."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from staypoint.central.campaigns.channels import Message, SmtpGateway, SmtpSettings, build_email
from staypoint.central.campaigns.engine import run_daily
from tests.campaigns.conftest import NOW, Mailbox, make_chain

UNSUB = "https://rewards.staypoint.example/unsubscribe?m=9000000001&c=email&t=" + "x" * 60


def _headers(raw: bytes) -> dict[str, str]:
    """Header name → its raw value with folding kept (CRLF + space), from the wire bytes."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")  # every header octet is ASCII
    out: dict[str, str] = {}
    for m in re.finditer(r"^([A-Za-z-]+): ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M):
        out.setdefault(m.group(1), m.group(2))
    return out


def _check_wire(raw: bytes) -> dict[str, str]:
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""), "CRLF line ends only"
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))  # RFC 5322 2.1.1
    h = _headers(raw)
    date = parsedate_to_datetime(h["Date"])
    assert date.tzinfo is not None
    assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", h["Message-ID"])
    # RFC 2369: a plain list of <URI>s, never RFC 2047 encoded-words; RFC 8058 one-click.
    assert "=?" not in h["List-Unsubscribe"]
    uris = re.findall(r"<([^>]+)>", h["List-Unsubscribe"])
    assert uris[0].startswith("https://") and uris[1].startswith("mailto:")
    assert h["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return h


def test_gateway_bytes_encode_non_ascii_names_and_subjects(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    settings = SmtpSettings(
        port=port, sender_name="Staypoint 积分 Rewards", sender="rewards@staypoint.example"
    )
    sent_at = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)
    gw = SmtpGateway(settings, clock=lambda: sent_at)
    msg = Message(
        "email",
        "guest@example.com",
        "王小明，生日快乐！",
        "亲爱的王小明：\n\n生日快乐。\n",
        None,
        UNSUB,
        message_id="<abc123@staypoint.campaigns>",
    )
    assert gw.send(msg).verdict == "sent"
    gw.close()
    [raw] = box.raw
    h = _check_wire(raw)
    assert parsedate_to_datetime(h["Date"]) == sent_at
    assert h["Message-ID"] == "<abc123@staypoint.campaigns>"
    assert uris_equal(h["List-Unsubscribe"], [UNSUB, "mailto:unsubscribe@staypoint.example"])
    # RFC 2047: the display name and the subject are encoded-words on the wire...
    assert "=?utf-8?" in h["Subject"] and "=?utf-8?" in h["From"]
    assert h["From"].endswith("<rewards@staypoint.example>")
    # ...and read back as written.
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "王小明，生日快乐！"
    assert parsed["From"].addresses[0].display_name == "Staypoint 积分 Rewards"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None and "生日快乐" in body.get_content()


def uris_equal(value: str, expected: list[str]) -> bool:
    return re.findall(r"<([^>]+)>", value) == expected


def test_campaign_run_sends_correct_bytes_in_both_languages(
    tmp_path: Path, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    chain = make_chain(tmp_path, 2)  # member 0 writes English, member 1 Chinese (王小明)
    chain.write_config(port)
    report = run_daily(
        NOW, ledger_db=chain.ledger_db, profiles_db=chain.profiles_db, config_path=chain.config, quiet=True
    )
    assert report["delivered"] == {"sent": 2}
    assert len(box.raw) == 2
    subjects = []
    for raw in box.raw:
        h = _check_wire(raw)
        assert "=?" not in h["List-Unsubscribe"]
        subjects.append(message_from_bytes(raw, policy=policy.default)["Subject"])
    assert sorted(subjects) == sorted(["Happy birthday, Alice0!", "王小明，生日快乐！"])


def test_a_header_unsafe_unsubscribe_url_is_refused() -> None:
    with pytest.raises(ValueError, match="header-safe"):
        build_email(SmtpSettings(), Message("email", "a@example.com", "s", "t", None, "https://x/\r\nBcc: y"))
