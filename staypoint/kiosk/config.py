"""The kiosk's node config: a small TOML file, checked once at start-up.

```toml
[node]
db = "/var/lib/staypoint/node.db"      # the replica (required)
keys_dir = ""                          # default: <db>.keys beside the replica

[kiosk]
property_name = ""                     # default: the property recorded in the replica
idle_timeout_s = 30                    # no touch for this long: back to the attract screen (5..3600)
offline_after_s = 120                  # authoriser "offline" only: unconfirmed this long = offline
offers_rotate_s = 6                    # attract screen's offers strip; 0 = still (0..3600)
authoriser = "agent"                   # "agent": redemptions ask head office through the sync
                                       # agent's socket ([sync] link_socket, auth_timeout);
                                       # "offline": the offline limits only

[hardware]                             # passed as-is to staypoint.kiosk.hardware.factory
reader = "pcsc"
pinpad = "serial"
pinpad_port = "/dev/ttyUSB1"
printer = "escpos"
printer_url = "serial:/dev/ttyUSB0?baudrate=19200"
```

Every problem is raised as one :class:`ConfigError` line naming the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from staypoint.edge.agent_link import LinkSettings, link_settings
from staypoint.tomlfile import TomlFileError, parse_toml, path_text


class ConfigError(Exception):
    """The config file cannot be used; the message is one line a technician can act on."""


@dataclass(frozen=True)
class KioskConfig:
    """Everything the kiosk needs to start."""

    db: Path
    keys_dir: Path | None = None
    property_name: str | None = None
    idle_timeout_s: float = 30.0
    offline_after_s: float = 120.0
    offers_rotate_s: float = 6.0
    hardware: dict[str, Any] = field(default_factory=dict)
    link: LinkSettings | None = None  # from [kiosk] authoriser / [sync]; None (built in code): offline only


def _number(
    section: dict[str, Any], key: str, default: float, where: str, *, minimum: float, maximum: float
) -> float:
    value = section.get(key, default)
    # bool is an int in Python: `idle_timeout_s = true` must not pass as 1 second. TOML has
    # nan and inf, which pass any `< minimum` test, and a timer of 1e300 s overflows.
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{where}: {key} must be a number >= {minimum:g}, not {value!r}")
    if not math.isfinite(value) or value > maximum:
        raise ConfigError(f"{where}: {key} must be at most {maximum:g}, not {value!r}")
    return float(value)


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def parse_config(text: str, where: str = "config", base: Path | None = None) -> KioskConfig:
    """Parse config text; relative paths are taken from ``base`` (the file's folder)."""
    try:
        data = parse_toml(text, where)
    except TomlFileError as exc:
        raise ConfigError(str(exc)) from None
    node = _table(data, "node", where)
    kiosk = _table(data, "kiosk", where)
    # The hardware factory documents a [hardware] section; [devices] is accepted as an alias.
    hardware = _table(data, "hardware", where) or _table(data, "devices", where)
    db = path_text(node.get("db"))
    if db is None:
        raise ConfigError(f"{where}: [node] db (the replica's path) is required")
    root = base or Path.cwd()
    keys = node.get("keys_dir") or None
    if keys is not None and path_text(keys) is None:
        raise ConfigError(f"{where}: [node] keys_dir must be a path")
    name = kiosk.get("property_name") or None
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{where}: [kiosk] property_name must be text")
    try:
        link = link_settings(data, root, root / db)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return KioskConfig(
        link=link,
        db=root / db,
        keys_dir=root / keys if keys else None,
        property_name=name,
        idle_timeout_s=_number(kiosk, "idle_timeout_s", 30, where, minimum=5, maximum=3600),
        offline_after_s=_number(kiosk, "offline_after_s", 120, where, minimum=1, maximum=86400),
        offers_rotate_s=_number(kiosk, "offers_rotate_s", 6, where, minimum=0, maximum=3600),
        hardware=dict(hardware),
    )


def load_config(path: Path) -> KioskConfig:
    """Read and check a kiosk config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return parse_config(text, str(path), path.parent)
