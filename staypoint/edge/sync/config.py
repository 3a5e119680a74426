"""The sync agent's view of ``node.toml``: where the replica is and how it reaches the broker.

The file is read and checked by the node's one loader (:mod:`staypoint.edge.nodeconfig`,
whose schema is the reference: docs/node-toml.md). The agent needs ``[node] db`` and all of
``[mqtt]``; ``[sync]`` overrides its pacing (``SyncConfig``'s fields, each bounded), ``[health]
heartbeat_s`` its heartbeat and a ``file://`` ``[backup] replica`` the folder whose age is the
heartbeat's Litestream lag::

    [node]
    db = "/var/lib/staypoint/node.db"

    [mqtt]
    host = "broker.example.net"
    port = 8883
    ca = "/etc/staypoint/ca.pem"
    cert = "/etc/staypoint/node.pem"
    key = "/etc/staypoint/node.key"

    [sync]
    batch_events = 500
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from staypoint.edge.nodeconfig import NodeConfigError, NodeToml, load_node_toml
from staypoint.edge.sync.agent import SyncConfig

#: The loader's error: one line, starting with the file.
ConfigError = NodeConfigError


@dataclass(frozen=True)
class NodeConfig:
    db: Path
    keys: Path | None
    sync: SyncConfig


def sync_config(cfg: NodeToml, node_id: str | None = None) -> NodeConfig:
    """The agent's part of a checked node.toml; ``node_id`` defaults to ``[node] id`` (else the
    replica's own id, filled by the caller)."""
    db = cfg.db()
    # Each is "[mqtt] <key> is missing" when absent (a typed Any: checked by the loader).
    host, port, ca, cert, key = (cfg.require("mqtt", k) for k in ("host", "port", "ca", "cert", "key"))
    tuned: dict[str, Any] = {f.name: getattr(cfg.sync, f.name) for f in fields(cfg.sync)}
    if cfg.health.heartbeat_s is not None and "sync.health_interval" not in cfg.given:
        tuned["health_interval"] = cfg.health.heartbeat_s
    replica = cfg.backup.replica
    if (
        tuned["backup_dir"] is None
        and replica is not None
        and (replica.startswith("file://") or "://" not in replica)
    ):
        tuned["backup_dir"] = cfg.base / replica.removeprefix("file://")
    return NodeConfig(
        db=db,
        keys=cfg.node.keys_dir,
        sync=SyncConfig(
            node_id=node_id or cfg.node.id,
            host=host,
            port=port,
            ca=ca,
            cert=cert,
            key=key,
            **tuned,
        ),
    )


def load_node_config(path: Path, node_id: str | None = None) -> NodeConfig:
    """Read and check ``path`` for the agent."""
    return sync_config(load_node_toml(path), node_id)
