"""The property's local time, for display only: slips, staff screens, the desk, reports.

Time is UTC everywhere it is kept, compared or sent (events, the replica, the ledger); only
what a person reads is converted, here, at the edge of the output. The zone is the
property's (``[node] timezone`` in node.toml on a node, ``--tz`` or the property record at
head office); ``None`` or ``""`` is UTC. Every function takes the instant in (a clock is
never read here) and a naive ``datetime`` is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["UTC_NAME", "ZoneError", "day_text", "local", "local_day", "stamp", "stamp_text", "zone"]

UTC_NAME = "UTC"


class ZoneError(ValueError):
    """Not a time zone this machine knows (one line, naming the zone)."""


def zone(name: str | None) -> tzinfo:
    """``ZoneInfo(name)``; ``None``/``""``/``"UTC"`` is UTC; an unknown name is a :class:`ZoneError`."""
    if not name or name == UTC_NAME:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ZoneError(f"unknown time zone {name!r} (an IANA name such as 'Asia/Shanghai')") from None


def local(ts: datetime, tz: tzinfo | None) -> datetime:
    """``ts`` (aware, or naive = UTC) in ``tz`` (None = UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(tz or UTC)


def local_day(ts: datetime, tz: tzinfo | None) -> date:
    """The property's calendar day at instant ``ts``."""
    return local(ts, tz).date()


def stamp(ts: datetime, tz: tzinfo | None, fmt: str = "%d %b %Y %H:%M") -> str:
    """``ts`` as the property reads it, with the zone's abbreviation: ``25 Mar 2025 07:30 CST``."""
    at = local(ts, tz)
    name = at.tzname() or UTC_NAME
    return f"{at:{fmt}} {name}"


def _parse(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def day_text(text: str, tz: tzinfo | None) -> str:
    """An ISO-8601 timestamp's local day, ``YYYY-MM-DD`` (not a timestamp: its first ten characters)."""
    ts = _parse(text) if "T" in text or " " in text else None
    return text[:10] if ts is None else local_day(ts, tz).isoformat()


def stamp_text(text: str | None, tz: tzinfo | None, fmt: str = "%d %b %Y %H:%M", none: str = "") -> str:
    """An ISO-8601 timestamp (the replica's and the ledger's form) as :func:`stamp`; not ISO: as given."""
    if not text:
        return none
    ts = _parse(text)
    return text if ts is None else stamp(ts, tz, fmt)
