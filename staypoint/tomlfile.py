"""Reading a TOML config file whose every failure is one line naming the file.

``tomllib.TOMLDecodeError`` is not the only way a garbled file fails: bytes that are not
UTF-8, an integer past Python's 4300-digit conversion limit (ValueError) and arrays nested
thousands deep (RecursionError) all escape it. The config parsers of the node (``node.toml``
for the CLI, the kiosk, the sync agent, the backup) share this so each names the file and
the problem in its own error type. It imports nothing of Staypoint's, so any layer may use it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class TomlFileError(ValueError):
    """The file cannot be read as TOML; the message is one line and starts with the file."""


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """``text`` as TOML; ``where`` (the file) starts the message of any error."""
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise TomlFileError(f"{where}: not valid TOML ({reason})") from None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TomlFileError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise TomlFileError(f"{path}: not a UTF-8 text file") from None
    return parse_toml(text, str(path))


def path_text(value: Any) -> str | None:
    """``value`` if it can name a file (a non-empty string without NUL), else None: a NUL
    would only fail later, when the path is opened, as a ValueError far from the config."""
    if isinstance(value, str) and value.strip() and "\0" not in value:
        return value
    return None
