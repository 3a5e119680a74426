"""``fleet.toml``: how head office's fleet monitor reaches the broker, alerts and serves metrics.

```toml
[mqtt]
host = "127.0.0.1"
port = 8884            # the broker's head-office listener
ca = "/var/lib/staypoint-central/provisioning/tls/ca.crt"
cert = "/var/lib/staypoint-central/provisioning/tls/head-office.crt"
key = "/var/lib/staypoint-central/provisioning/tls/head-office.key"

[fleet]                 # optional: FleetConfig names (seconds / percent)
period_s = 30
offline_alert_s = 300

[metrics]
addr = "127.0.0.1"
port = 9108

[smtp]                  # optional: no table, no mail
host = "smtp.example.net"
port = 587
starttls = true
sender = "fleet@example.net"
recipients = ["ops@example.net"]
username = "fleet"
password_file = "/etc/staypoint-central/smtp.pass"
```
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staypoint.central.fleet.alerts import SmtpSettings
from staypoint.central.fleet.monitor import MonitorSettings
from staypoint.central.fleet.state import FleetConfig

__all__ = ["FleetFileConfig", "load_fleet_config"]


@dataclass(frozen=True)
class FleetFileConfig:
    """Everything ``fleet.toml`` says."""

    mqtt: MonitorSettings
    fleet: FleetConfig
    metrics_addr: str
    metrics_port: int | None
    smtp: SmtpSettings | None


def load_fleet_config(path: Path) -> FleetFileConfig:
    """Read and check ``fleet.toml``; ``ValueError`` naming the file and key."""
    try:
        raw: dict[str, Any] = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    base = Path(path).parent

    def table(name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise ValueError(f"{path}: [{name}] must be a table")
        return value

    def need(t: dict[str, Any], name: str, key: str, kind: type) -> Any:
        if key not in t:
            raise ValueError(f"{path}: [{name}] {key} is missing")
        if isinstance(t[key], bool) or not isinstance(t[key], kind):
            raise ValueError(f"{path}: [{name}] {key} must be {kind.__name__}")
        return t[key]

    mqtt, fleet, metrics, smtp = table("mqtt"), table("fleet"), table("metrics"), table("smtp")
    known = {f.name for f in dataclasses.fields(FleetConfig)}
    if set(fleet) - known:
        raise ValueError(f"{path}: [fleet] unknown keys {sorted(set(fleet) - known)}")
    for key, value in fleet.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{path}: [fleet] {key} must be a positive number")
    settings = MonitorSettings(
        host=need(mqtt, "mqtt", "host", str),
        port=need(mqtt, "mqtt", "port", int),
        ca=base / need(mqtt, "mqtt", "ca", str),
        cert=base / need(mqtt, "mqtt", "cert", str),
        key=base / need(mqtt, "mqtt", "key", str),
        client_id=str(mqtt.get("client_id", "head-office-fleet")),
    )
    mail = None
    if smtp:
        password = None
        if "password_file" in smtp:
            password = (base / str(smtp["password_file"])).read_text("utf-8").strip()
        recipients = smtp.get("recipients")
        if (
            not isinstance(recipients, list)
            or not recipients
            or not all(isinstance(r, str) for r in recipients)
        ):
            raise ValueError(f"{path}: [smtp] recipients must be a list of addresses")
        mail = SmtpSettings(
            host=need(smtp, "smtp", "host", str),
            port=int(smtp.get("port", 25)),
            sender=need(smtp, "smtp", "sender", str),
            recipients=tuple(recipients),
            starttls=bool(smtp.get("starttls", False)),
            username=smtp.get("username"),
            password=password,
        )
    port = metrics.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise ValueError(f"{path}: [metrics] port must be a whole number")
    return FleetFileConfig(
        mqtt=settings,
        fleet=FleetConfig(**fleet),
        metrics_addr=str(metrics.get("addr", "127.0.0.1")),
        metrics_port=port,
        smtp=mail,
    )
