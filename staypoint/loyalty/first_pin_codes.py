"""The shape of head office's one-time first-PIN codes, for whoever reads one before it is checked.

Head office issues and checks the codes (``staypoint/central/first_pin.py``: random, single
use, 30 days, void after five wrong tries). A node cannot check one, but the kiosk's keypad
offers only the code's letters and the node's service refuses a code of the wrong shape
before it asks head office, so a slip of the finger never costs the member one of their five
tries. Head office issues its codes with this ``ALPHABET`` and ``LENGTH`` (one home).
"""

from __future__ import annotations

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a letter and typed
LENGTH = 12
GROUP = 4  # shown as ABCD-EFGH-JKLM
#: The most a typed code may be before it is normalised (dashes and spaces included).
MAX_TYPED = 40


class CodeFormatError(ValueError):
    """Text that cannot be a first-PIN code (one line, safe to show: it never repeats the code)."""


def normalise(text: str) -> str:
    """``text`` as head office hashes it: no dashes or spaces, upper case (before it hashes it)."""
    return text.replace("-", "").replace(" ", "").upper()


def parse(text: str) -> str:
    """The normalised code, or CodeFormatError: exactly ``LENGTH`` letters of ``ALPHABET``."""
    if not isinstance(text, str) or len(text) > MAX_TYPED:
        raise CodeFormatError(f"a first-use code is {LENGTH} letters and digits")
    code = normalise(text)
    if len(code) != LENGTH:
        raise CodeFormatError(f"a first-use code is {LENGTH} letters and digits; this has {len(code)}")
    if any(ch not in ALPHABET for ch in code):
        raise CodeFormatError(
            "a first-use code has only the letters and digits on the letter (no 0, O, 1 or I)"
        )
    return code


def display(code: str) -> str:
    """A (partly) typed code as the letter prints it: groups of four joined by dashes."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))
