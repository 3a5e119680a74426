"""Gateways: e-mail over SMTP and SMS through Apprise, each answering in one of four words.

The send log needs to know more than "it raised": whether the gateway *certainly did
not* take the message (safe to retry), refused the address for good (a bounce), or
might have taken it (the connection dropped after the message was on the wire: never
retried by a machine, listed as uncertain).
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Literal, Protocol

# RFC 5322 on the wire (CRLF, 78-column folding, RFC 2047 encoded-words for non-ASCII display
# names and subjects). Headers set with ``set_raw`` are written as given, never refolded:
# that is how List-Unsubscribe stays a plain list of <URI>s (RFC 2369) a client can click,
# where the folder would turn a long URL into encoded-words no client reads as a link.
POLICY = SMTP.clone(refold_source="none")

Verdict = Literal["sent", "retry", "bounced", "failed", "uncertain"]


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True)
class Message:
    """One rendered message for one member."""

    channel: str  # email | sms
    to: str
    subject: str
    text: str
    html: str | None = None
    unsubscribe_url: str | None = None
    message_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Gateway(Protocol):
    def send(self, msg: Message) -> Outcome: ...

    def close(self) -> None: ...


@dataclass
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "rewards@staypoint.example"
    sender_name: str = "Staypoint Rewards"
    unsubscribe_mailto: str = "unsubscribe@staypoint.example"
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


def _uri(text: str) -> str:
    """A URI as RFC 2369 wants it between < and >: printable ASCII, no space, no > (no injection)."""
    if not text or any(not (33 <= ord(ch) <= 126) or ch in "<>" for ch in text):
        raise ValueError(f"not a header-safe URI: {text!r}")
    return text


def build_email(settings: SmtpSettings, msg: Message, now: datetime | None = None) -> EmailMessage:
    """A multipart/alternative mail: plain text first, HTML second, RFC 5322 dates and ids,
    RFC 2369 + RFC 8058 one-click unsubscribe headers. ``now`` is the Date: (default: now)."""
    em = EmailMessage(policy=POLICY)
    em["Date"] = format_datetime(now or datetime.now(UTC))
    em["From"] = Address(settings.sender_name, addr_spec=settings.sender)
    em["To"] = Address(addr_spec=msg.to)
    em["Subject"] = msg.subject
    em["Message-ID"] = msg.message_id or make_msgid(domain=settings.sender.rpartition("@")[2])
    if msg.unsubscribe_url:
        # RFC 2369 + RFC 8058 one-click: mail clients show their own "unsubscribe" button. The
        # two URIs are folded between them (lines under 998 octets), never encoded.
        em.set_raw(
            "List-Unsubscribe",
            f"<{_uri(msg.unsubscribe_url)}>,\r\n <mailto:{_uri(settings.unsubscribe_mailto)}>",
        )
        em.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    for k, v in msg.headers.items():
        em[k] = v
    # Quoted-printable: a Chinese body is 7-bit on the wire, for any server (no 8BITMIME needed).
    em.set_content(msg.text, cte="quoted-printable")
    if msg.html:
        em.add_alternative(msg.html, subtype="html", cte="quoted-printable")
    return em


class SmtpGateway:
    """E-mail over SMTP; one connection reused across a run, reopened when it drops."""

    def __init__(self, settings: SmtpSettings, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is None:
            s = smtplib.SMTP(self.settings.host, self.settings.port, timeout=self.settings.timeout)
            if self.settings.starttls:
                s.starttls()
            if self.settings.username:
                s.login(self.settings.username, self.settings.password or "")
            self._smtp = s
        return self._smtp

    def send(self, msg: Message) -> Outcome:
        em = build_email(self.settings, msg, self.clock())
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            # Nothing was handed over: no connection, no message.
            self._smtp = None
            return Outcome("retry", f"connect: {exc}")
        try:
            smtp.send_message(em, from_addr=self.settings.sender, to_addrs=[msg.to])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return Outcome("bounced" if code >= 500 else "retry", f"{code} {text!r}")
        except smtplib.SMTPSenderRefused as exc:
            return Outcome("failed" if exc.smtp_code >= 500 else "retry", f"{exc.smtp_code} sender refused")
        except smtplib.SMTPDataError as exc:
            return Outcome(
                "failed" if exc.smtp_code >= 500 else "retry", f"{exc.smtp_code} {exc.smtp_error!r}"
            )
        except smtplib.SMTPServerDisconnected as exc:
            # Dropped somewhere in the transaction: the server may have queued the mail.
            self._smtp = None
            return Outcome("uncertain", f"disconnected: {exc}")
        except (TimeoutError, OSError) as exc:
            self._smtp = None
            return Outcome("uncertain", f"no answer: {exc}")
        return Outcome("sent", "250 accepted")

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp = None


class AppriseSmsGateway:
    """SMS through Apprise: ``url`` is an Apprise URL with ``{phone}`` where the number goes,
    e.g. ``twilio://SID:TOKEN@+4930123/{phone}`` or, in tests, ``json://127.0.0.1:PORT/?to={phone}``.

    Apprise answers only True/False: False is taken as "not sent" and retried with
    backoff (a gateway that took the message and then failed to answer is the one case
    this cannot see; the SMS gateway's own dedup by message id covers it where offered).
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def send(self, msg: Message) -> Outcome:
        import apprise

        ap = apprise.Apprise()
        target = self.url.replace("{phone}", msg.to.lstrip("+"))
        if not ap.add(target):
            return Outcome("failed", f"apprise does not understand {self.url!r}")
        ok = ap.notify(body=msg.text, title="")
        return Outcome("sent", "gateway accepted") if ok else Outcome("retry", "gateway refused")

    def close(self) -> None:
        return None


class RecordingGateway:
    """Keeps messages in memory: dry runs, benchmarks and unit tests."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, msg: Message) -> Outcome:
        self.sent.append(msg)
        return Outcome("sent", "recorded")

    def close(self) -> None:
        return None
