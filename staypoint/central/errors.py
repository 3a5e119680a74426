"""Head office's refusals, in the language of the programme rather than of HTTP.

Head office's use cases (``central/application/``, claims, reviews, partners, feedback, the
import, first PINs, referrals, the console's desk) raise these; each carries a one-line
``message`` safe to show a member or a clerk and a stable machine ``code``. Only the API's
adapter (``central/api/app.py``) knows HTTP: it maps each class here to a status in one
table. The console shows ``message`` as it is.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "Gone",
    "Invalid",
    "Locked",
    "NotFound",
    "Unauthenticated",
    "Unavailable",
]


class DomainError(Exception):
    """A refusal: ``message`` is one line safe to show; ``code`` a stable machine name."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Unauthenticated(DomainError):
    """No credential, or a wrong one: a key, a token, a PIN, a password, a one-time code."""


class Forbidden(DomainError):
    """The caller is known but may not do this (a key's scope or property, a clerk's role)."""


class NotFound(DomainError):
    """No such member, claim, voucher, partner, report or review."""


class Conflict(DomainError):
    """Refused by the state things are in: not enough points, decided already, a duplicate."""


class Gone(DomainError):
    """Existed, and can no longer be used: a one-time code used or expired."""


class Invalid(DomainError):
    """Input that the rules cannot take: a bad number, date, amount or reason."""


class Locked(DomainError):
    """Too many wrong tries: locked for now."""


class Unavailable(DomainError):
    """Head office cannot do this yet or here: no programme published, no report store."""
