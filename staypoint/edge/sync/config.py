"""``node.toml``: where the replica is and how the agent reaches the broker.

[node]
db = "/var/lib/staypoint/node.db"
# keys = "/var/lib/staypoint/node.db.keys"   (default: next to the db)

[mqtt]
host = "broker.example.net"
port = 8883
ca = "/etc/staypoint/ca.pem"
cert = "/etc/staypoint/node.pem"
key = "/etc/staypoint/node.key"

[sync]            # optional pacing overrides, names as in SyncConfig
batch_events = 500
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staypoint.edge.sync.agent import SyncConfig

_TUNABLE = {f.name for f in dataclasses.fields(SyncConfig)} - {
    "node_id",
    "host",
    "port",
    "ca",
    "cert",
    "key",
}


class ConfigError(ValueError):
    """node.toml is missing something or has a wrong value (one line, names the field)."""


@dataclass(frozen=True)
class NodeConfig:
    db: Path
    keys: Path | None
    sync: SyncConfig


def load_node_config(path: Path, node_id: str | None = None) -> NodeConfig:
    """Read and check ``path``; ``node_id`` defaults to the replica's own id (filled by the caller)."""
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = path.parent

    def section(name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        return value

    def need(table: dict[str, Any], name: str, key: str, kind: type) -> Any:
        if key not in table:
            raise ConfigError(f"{path}: [{name}] {key} is missing")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"{path}: [{name}] {key} must be {kind.__name__}")
        return value

    node, mqtt, sync = section("node"), section("mqtt"), section("sync")
    extra = set(sync) - _TUNABLE
    if extra:
        raise ConfigError(f"{path}: [sync] unknown keys {sorted(extra)}")
    keys = node.get("keys_dir", node.get("keys"))
    health, backup = section("health"), section("backup")
    if "heartbeat_s" in health and "health_interval" not in sync:
        beat = health["heartbeat_s"]
        if isinstance(beat, bool) or not isinstance(beat, int | float) or beat <= 0:
            raise ConfigError(f"{path}: [health] heartbeat_s must be a positive number of seconds")
        sync = {**sync, "health_interval": float(beat)}
    replica = backup.get("replica")
    backup_dir = None
    if isinstance(replica, str) and (replica.startswith("file://") or "://" not in replica):
        backup_dir = base / replica.removeprefix("file://")
    return NodeConfig(
        db=base / need(node, "node", "db", str),
        keys=base / keys if isinstance(keys, str) else None,
        sync=SyncConfig(
            node_id=node_id or str(node.get("id", "")),
            host=need(mqtt, "mqtt", "host", str),
            port=need(mqtt, "mqtt", "port", int),
            ca=base / need(mqtt, "mqtt", "ca", str),
            cert=base / need(mqtt, "mqtt", "cert", str),
            key=base / need(mqtt, "mqtt", "key", str),
            backup_dir=backup_dir,
            **sync,
        ),
    )
