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

[expiry]                # optional: these are the defaults (alerts `crl` and `cert`)
provisioning = "/var/lib/staypoint-central/provisioning"   # nodes.json, ca/issued.json
crls = ["/etc/mosquitto/staypoint/crl.pem", "/etc/mosquitto/staypoint/office-crl.pem"]
crl_days = 30           # alert when a CRL's nextUpdate is this close
cert_days = 30          # alert when a node's certificate expires this soon

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
from staypoint.central.fleet.expiry import ExpirySettings
from staypoint.central.fleet.monitor import MonitorSettings
from staypoint.central.fleet.state import FleetConfig

__all__ = ["DEFAULT_PROVISIONING", "FleetFileConfig", "load_fleet_config"]

DEFAULT_PROVISIONING = Path("/var/lib/staypoint-central/provisioning")
DEFAULT_CRLS = ("/etc/mosquitto/staypoint/crl.pem", "/etc/mosquitto/staypoint/office-crl.pem")


@dataclass(frozen=True)
class FleetFileConfig:
    """Everything ``fleet.toml`` says."""

    mqtt: MonitorSettings
    fleet: FleetConfig
    metrics_addr: str
    metrics_port: int | None
    smtp: SmtpSettings | None
    expiry: ExpirySettings | None = None


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
    expiry = _expiry(path, base, raw.get("expiry"))
    port = metrics.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise ValueError(f"{path}: [metrics] port must be a whole number")
    return FleetFileConfig(
        mqtt=settings,
        fleet=FleetConfig(**fleet),
        metrics_addr=str(metrics.get("addr", "127.0.0.1")),
        metrics_port=port,
        smtp=mail,
        expiry=expiry,
    )


def _expiry(path: Path, base: Path, table: Any) -> ExpirySettings | None:
    """``[expiry]``; without it, head office's provisioning folder when this machine has one."""
    if table is None:
        if not DEFAULT_PROVISIONING.is_dir():
            return None
        crls = tuple(Path(c) for c in DEFAULT_CRLS if Path(c).exists())
        return ExpirySettings(provisioning=DEFAULT_PROVISIONING, crls=crls)
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [expiry] must be a table")
    unknown = set(table) - {"provisioning", "crls", "crl_days", "cert_days"}
    if unknown:
        raise ValueError(f"{path}: [expiry] unknown keys {sorted(unknown)}")
    prov = table.get("provisioning", str(DEFAULT_PROVISIONING))
    crls = table.get("crls", [])
    if not isinstance(prov, str):
        raise ValueError(f"{path}: [expiry] provisioning must be a folder's path")
    if not isinstance(crls, list) or not all(isinstance(c, str) for c in crls):
        raise ValueError(f"{path}: [expiry] crls must be a list of paths")
    days = {}
    for key in ("crl_days", "cert_days"):
        value = table.get(key, 30)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{path}: [expiry] {key} must be a positive number of days")
        days[key] = float(value)
    return ExpirySettings(provisioning=base / prov, crls=tuple(base / c for c in crls), **days)
