"""Render what a node needs on disk: ``node.toml``, Litestream's config, systemd units.

Pure functions of their arguments (text in, text out) plus :class:`NodeLayout`, which says
where each file lives under a root (``/`` on a board, a temporary folder in tests). Every
path written into a file is absolute under that root, so a node enrolled into ``/`` gets
the production paths and one enrolled into a test folder points into that folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from staypoint.edge.backup import BackupConfig, check_replica_url, render_config
from staypoint.localtime import zone
from staypoint.provisioning.pki import validate_identity

__all__ = [
    "HEAD_OFFICE_HELPERS",
    "HEAD_OFFICE_UNITS",
    "NODE_UNITS",
    "UNITS",
    "NodeLayout",
    "render_hardware",
    "render_litestream",
    "render_node_toml",
    "unit_text",
]

NODE_UNITS = ("staypoint-kiosk.service", "staypoint-sync.service", "staypoint-litestream.service")
"""Units installed on a node by enrolment."""

HEAD_OFFICE_UNITS = (
    "staypoint-central.service",
    "staypoint-fleet.service",
    "staypoint-api.service",
    "staypoint-console.service",
    "staypoint-enrol.service",
    "staypoint-jobs.service",
    "staypoint-crl-renew.service",
    "staypoint-webhooks.service",
)
"""Head office's services, each running a ``staypoint`` command as ``staypoint-central``."""

HEAD_OFFICE_HELPERS = (
    "staypoint-jobs.timer",
    "staypoint-crl-renew.timer",
    "staypoint-crl-reload.path",
    "staypoint-crl-reload.service",
)
"""Head office's timers, and the root helper that reloads the broker when a CRL changes."""

UNITS = (*NODE_UNITS, *HEAD_OFFICE_UNITS)
"""Every service shipped in ``systemd/`` that runs Staypoint (the node's and head office's)."""

DEFAULT_HARDWARE: dict[str, str | int] = {"reader": "pcsc", "pinpad": "none", "printer": "sim"}


@dataclass(frozen=True)
class NodeLayout:
    """Where a node's files live under ``root``."""

    root: Path

    def _at(self, *parts: str) -> Path:
        return Path(self.root).resolve().joinpath(*parts)

    @property
    def etc(self) -> Path:
        return self._at("etc", "staypoint")

    @property
    def node_toml(self) -> Path:
        return self.etc / "node.toml"

    @property
    def tls_dir(self) -> Path:
        return self.etc / "tls"

    @property
    def ca(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.tls_dir / "node.crt"

    @property
    def key(self) -> Path:
        return self.tls_dir / "node.key"

    @property
    def litestream(self) -> Path:
        return self.etc / "litestream.yml"

    @property
    def state(self) -> Path:
        return self._at("var", "lib", "staypoint")

    @property
    def db(self) -> Path:
        return self.state / "node.db"

    @property
    def keys(self) -> Path:
        return self.state / "keys"

    @property
    def staging(self) -> Path:
        """Work folder of an unfinished enrolment (keys made on the board, the reply)."""
        return self.state / ".enrol"

    @property
    def units_dir(self) -> Path:
        return self._at("etc", "systemd", "system")

    @property
    def enrol_tls(self) -> Path:
        """Where the technician puts the shared enrol identity (ca.crt, enrol.crt, enrol.key)."""
        return self.etc / "enrol"


def _toml_str(value: str) -> str:
    # json.dumps gives a valid TOML basic string for any text (escapes, quotes, unicode).
    return json.dumps(value, ensure_ascii=False)[1:-1]


def render_hardware(hardware: dict[str, str | int]) -> str:
    """The body of the ``[hardware]`` table."""
    lines = []
    for key, value in hardware.items():
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"hardware {key}: only text and whole numbers")
        lines.append(f"{key} = {value}" if isinstance(value, int) else f'{key} = "{_toml_str(value)}"')
    return "\n".join(lines)


def _template(name: str) -> Template:
    return Template(resources.files("staypoint.provisioning.templates").joinpath(name).read_text("utf-8"))


def render_node_toml(
    layout: NodeLayout,
    *,
    node: str,
    property_: str,
    host: str,
    port: int,
    hardware: dict[str, str | int] | None = None,
    backup_url: str | None = None,
    hotel_name: str | None = None,
    timezone: str = "UTC",
) -> str:
    """The node's ``node.toml`` (pure): ``[node] mode = "production"``, ``[backup]``, ``[kiosk]``.

    ``backup_url`` is Litestream's replica (default: a folder under /var/backups/staypoint);
    ``hotel_name`` the display name the kiosk shows (default: none, the kiosk then shows
    the property code); ``timezone`` the property's IANA zone (``[node] timezone``).
    """
    validate_identity(node)
    zone(timezone)  # ZoneError (a ValueError) for a name this machine does not know
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    replica = check_replica_url(backup_url or default_backup_url(node))
    name = " ".join((hotel_name or "").split())
    kiosk = (
        f'property_name = "{_toml_str(name)}"'
        if name
        else '# property_name = "..."   (none given at enrolment: the kiosk shows the property code)'
    )
    return _template("node.toml").substitute(
        node=node,
        property=_toml_str(property_),
        db=_toml_str(str(layout.db)),
        keys=_toml_str(str(layout.keys)),
        host=_toml_str(host),
        port=port,
        ca=_toml_str(str(layout.ca)),
        cert=_toml_str(str(layout.cert)),
        key=_toml_str(str(layout.key)),
        litestream=_toml_str(str(layout.litestream)),
        replica=_toml_str(replica),
        kiosk=kiosk,
        timezone=_toml_str(timezone),
        hardware=render_hardware(hardware if hardware is not None else DEFAULT_HARDWARE),
    )


def default_backup_url(node: str) -> str:
    """Where a node's backup goes when neither the technician nor head office says."""
    return f"file:///var/backups/staypoint/{node}"


def render_litestream(layout: NodeLayout, *, node: str, url: str) -> str:
    """Litestream 0.5 config streaming the replica to ``url`` (pure).

    The same text ``staypoint node backup`` writes from node.toml's ``[backup]``
    (:func:`staypoint.edge.backup.render_config`), so the unit and node.toml never disagree.
    """
    validate_identity(node)
    cfg = BackupConfig(db=layout.db, replica_url=check_replica_url(url), litestream_config=layout.litestream)
    return render_config(cfg)


def unit_text(name: str) -> str:
    """The text of one shipped unit file (also committed, identical, under ``systemd/``)."""
    if name not in UNITS and name not in HEAD_OFFICE_HELPERS:
        raise ValueError(f"unknown unit {name!r}")
    return resources.files("staypoint.provisioning.templates").joinpath("units", name).read_text("utf-8")
