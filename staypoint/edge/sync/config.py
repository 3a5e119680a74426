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

[sync]            # optional pacing overrides, names as in SyncConfig, each within _TUNABLE's range
batch_events = 500
# link_socket = "/var/lib/staypoint/node.db.agent.sock"  (default: <db>.agent.sock; the kiosk
#                                                         and the desk's commands read it too)
# link_group = "staypoint"     the socket's group (mode 0660); its members may use it
# link_uids = [1001]           further users allowed besides the agent's own
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staypoint.edge.sync.agent import MAX_PAYLOAD, SyncConfig
from staypoint.tomlfile import TomlFileError, path_text, read_toml

# Each [sync] override with its kind and the range it must fall in. The bounds are far
# past any sane tuning and keep every value one the agent and paho can use: MQTT's
# keep-alive is a 2-byte field and its session expiry a 4-byte one, a batch must fit in
# one broker message, and a timer of 1e300 s or nan would overflow or never fire.
_TUNABLE: dict[str, tuple[type, float, float]] = {
    "batch_events": (int, 1, 100_000),
    "batch_bytes": (int, 1024, MAX_PAYLOAD),
    "window_batches": (int, 1, 10_000),
    "ack_timeout": (float, 0.1, 3600),
    "auth_timeout": (float, 0.1, 60),
    "resync_timeout": (float, 0.1, 3600),
    "session_expiry": (int, 0, 2**32 - 1),
    "keepalive": (int, 1, 65_535),
    "backoff_min": (float, 0.01, 3600),
    "backoff_max": (float, 0.01, 3600),
    "health_interval": (float, 0.1, 86_400),
    "contact_interval": (float, 0.1, 3600),
    "echo_interval": (float, 0.1, 3600),
    "echo_timeout": (float, 0.1, 3600),
    "current_interval": (float, 1, 86_400),
}
_PATHS = {"devices_file", "backup_dir", "link_socket"}
_OTHER = {"link_group", "link_uids"}  # the socket's group (a name) and further uids allowed on it


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
        raw = read_toml(path)
    except TomlFileError as exc:
        raise ConfigError(str(exc)) from None
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

    def need_path(table: dict[str, Any], name: str, key: str) -> Path:
        value = path_text(need(table, name, key, str))
        if value is None:
            raise ConfigError(f"{path}: [{name}] {key} must be a path")
        return base / value

    def number(name: str, key: str, value: Any, kind: type, low: float, high: float) -> Any:
        whole = kind is int
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            raise ConfigError(f"{path}: [{name}] {key} must be {'a whole number' if whole else 'a number'}")
        if not math.isfinite(value) or not low <= value <= high:
            raise ConfigError(f"{path}: [{name}] {key} must be from {low:g} to {high:g}, not {value!r}")
        return kind(value)

    node, mqtt, sync = section("node"), section("mqtt"), section("sync")
    extra = set(sync) - set(_TUNABLE) - _PATHS - _OTHER
    if extra:
        raise ConfigError(f"{path}: [sync] unknown keys {sorted(extra)}")
    tuned: dict[str, Any] = {}
    for key, value in sync.items():
        if key == "link_group":
            if not isinstance(value, str) or not value or len(value) > 32:
                raise ConfigError(f"{path}: [sync] link_group must be a group name")
            tuned[key] = value
        elif key == "link_uids":
            if not isinstance(value, list) or not all(
                isinstance(u, int) and not isinstance(u, bool) and 0 <= u < 2**32 for u in value
            ):
                raise ConfigError(f"{path}: [sync] link_uids must be a list of user ids")
            tuned[key] = tuple(value)
        elif key in _PATHS:
            if path_text(value) is None:
                raise ConfigError(f"{path}: [sync] {key} must be a path")
            tuned[key] = base / value
        else:
            tuned[key] = number("sync", key, value, *_TUNABLE[key])
    keys = node.get("keys_dir", node.get("keys")) or None  # "" means the default, as for the kiosk
    if keys is not None and path_text(keys) is None:
        raise ConfigError(f"{path}: [node] keys_dir must be a path")
    own_id = node.get("id", "")
    if not isinstance(own_id, str):
        raise ConfigError(f"{path}: [node] id must be a string")
    health, backup = section("health"), section("backup")
    if "heartbeat_s" in health and "health_interval" not in tuned:
        beat = health["heartbeat_s"]
        if isinstance(beat, bool) or not isinstance(beat, int | float) or not 0 < beat <= 86_400:
            raise ConfigError(f"{path}: [health] heartbeat_s must be from 0 to 86400 seconds, not {beat!r}")
        tuned["health_interval"] = float(beat)
    if tuned.get("backoff_min", SyncConfig.backoff_min) > tuned.get("backoff_max", SyncConfig.backoff_max):
        raise ConfigError(f"{path}: [sync] backoff_min is above backoff_max")
    replica = path_text(backup.get("replica"))
    if replica is not None and (replica.startswith("file://") or "://" not in replica):
        tuned.setdefault("backup_dir", base / replica.removeprefix("file://"))
    host = need(mqtt, "mqtt", "host", str)
    if path_text(host) is None:
        raise ConfigError(f"{path}: [mqtt] host must be a host name")
    return NodeConfig(
        db=need_path(node, "node", "db"),
        keys=base / keys if keys else None,
        sync=SyncConfig(
            node_id=node_id or own_id,
            host=host,
            port=number("mqtt", "port", need(mqtt, "mqtt", "port", int), int, 1, 65_535),
            ca=need_path(mqtt, "mqtt", "ca"),
            cert=need_path(mqtt, "mqtt", "cert"),
            key=need_path(mqtt, "mqtt", "key"),
            **tuned,
        ),
    )
