"""The kiosk's view of ``node.toml``: what ``staypoint kiosk`` needs to start.

The file is read and checked by the node's one loader (:mod:`staypoint.edge.nodeconfig`,
whose schema is the reference: docs/node-toml.md); a section or key it does not know is
refused there, so a misspelt ``[hardware]`` key never leaves the kiosk on simulated devices.
The kiosk reads ``[node] db`` / ``keys_dir``, ``[kiosk]``, ``[hardware]`` and, for the agent
link, ``[kiosk] authoriser`` and ``[sync] link_socket`` / ``auth_timeout``::

    [node]
    db = "/var/lib/staypoint/node.db"      # the replica (required)

    [kiosk]
    idle_timeout_s = 30
    authoriser = "agent"

    [hardware]
    reader = "pcsc"
    pinpad = "serial"
    pinpad_port = "/dev/ttyUSB1"
    printer = "escpos"
    printer_url = "serial:/dev/ttyUSB0?baudrate=19200"

Every problem is raised as one :class:`ConfigError` line naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from staypoint.edge.agent_link import LinkSettings, link_settings
from staypoint.edge.nodeconfig import NodeConfigError, NodeToml, load_node_toml, parse_node_toml

#: The loader's error: one line, starting with the file.
ConfigError = NodeConfigError


@dataclass(frozen=True)
class KioskConfig:
    """Everything the kiosk needs to start."""

    db: Path
    keys_dir: Path | None = None
    property_name: str | None = None
    timezone: str = "UTC"  # [node] timezone: what the screens and slips show
    idle_timeout_s: float = 30.0
    offline_after_s: float = 120.0
    offers_rotate_s: float = 6.0
    hardware: dict[str, Any] = field(default_factory=dict)
    link: LinkSettings | None = None  # from [kiosk] authoriser / [sync]; None (built in code): offline only


def kiosk_config(cfg: NodeToml) -> KioskConfig:
    """The kiosk's part of a checked node.toml."""
    db = cfg.db()
    return KioskConfig(
        db=db,
        keys_dir=cfg.node.keys_dir,
        property_name=cfg.kiosk.property_name,
        timezone=cfg.node.timezone,
        idle_timeout_s=cfg.kiosk.idle_timeout_s,
        offline_after_s=cfg.kiosk.offline_after_s,
        offers_rotate_s=cfg.kiosk.offers_rotate_s,
        hardware=cfg.hardware.as_dict(),
        link=link_settings(cfg, db),
    )


def parse_config(text: str, where: str = "config", base: Path | None = None) -> KioskConfig:
    """Parse config text; relative paths are taken from ``base`` (the file's folder)."""
    return kiosk_config(parse_node_toml(text, where, base))


def load_config(path: Path) -> KioskConfig:
    """Read and check a kiosk config file."""
    return kiosk_config(load_node_toml(path))
