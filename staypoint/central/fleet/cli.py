"""``staypoint fleet``: the dashboard; ``fleet serve``: headless monitor, alerts and /metrics;
``fleet status``: the fleet as a table or JSON.

``register(sub)`` adds ``fleet`` to the top-level subparsers. Errors are one stderr line.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from staypoint.central.fleet.alerts import Sink, SmtpSink
from staypoint.central.fleet.config import FleetFileConfig, load_fleet_config
from staypoint.central.fleet.monitor import FleetMonitor
from staypoint.central.fleet.state import summarise, utcnow
from staypoint.entry import run_group

__all__ = ["DEFAULT_CONFIG", "main", "register", "start_monitor"]

DEFAULT_CONFIG = "/etc/staypoint-central/fleet.toml"


def _fail(message: str) -> NoReturn:
    print(f"staypoint: {message}", file=sys.stderr)
    raise SystemExit(1)


def _monitor(cfg: FleetFileConfig, *, client_suffix: str = "") -> FleetMonitor:
    sinks: list[Sink] = [SmtpSink(cfg.smtp)] if cfg.smtp else []
    settings = cfg.mqtt
    if client_suffix:
        from dataclasses import replace

        # A second viewer (dashboard, status) must not take over the service's session.
        settings = replace(settings, client_id=f"{settings.client_id}-{client_suffix}", session_expiry=0)
    from staypoint.central.fleet.expiry import ExpiryWatch

    # A viewer (dashboard, console's Fleet tab) shows the same expiry alerts as the service.
    expiry = ExpiryWatch(cfg.expiry) if cfg.expiry is not None else None
    return FleetMonitor(
        settings, cfg.fleet, sinks=sinks, tick_s=min(5.0, cfg.fleet.period_s / 2), expiry=expiry
    )


def _load_path(path: str) -> FleetFileConfig:
    try:
        return load_fleet_config(Path(path))
    except ValueError as err:
        _fail(str(err))


def _load(args: argparse.Namespace) -> FleetFileConfig:
    return _load_path(args.config)


def _start(monitor: FleetMonitor) -> None:
    try:
        monitor.start()
    except (OSError, TimeoutError) as err:
        _fail(f"cannot reach the broker at {monitor.settings.host}:{monitor.settings.port}: {err}")


def start_monitor(config_path: str, *, client_suffix: str) -> FleetMonitor:
    """A viewer's monitor (its own client id, no persistent session), connected; the caller
    stops it. Errors (bad file, broker unreachable) are one stderr line and exit 1."""
    monitor = _monitor(_load_path(config_path), client_suffix=client_suffix)
    _start(monitor)
    return monitor


def cmd_dashboard(args: argparse.Namespace) -> None:
    """The Textual dashboard, over a monitor of its own."""
    from staypoint.central.fleet.dashboard import FleetDashboard

    monitor = start_monitor(args.config, client_suffix=f"ui-{int(time.time())}")
    try:
        FleetDashboard(monitor.state, monitor.alerts, monitor.memory).run()
    finally:
        monitor.stop()


def cmd_serve(args: argparse.Namespace) -> None:
    """Monitor, alerts (log, mail) and /metrics until SIGTERM / SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = _load(args)
    monitor = _monitor(cfg)
    _start(monitor)
    port = args.metrics_port if args.metrics_port is not None else cfg.metrics_port
    if port is not None:
        bound = monitor.serve_metrics(port, cfg.metrics_addr)
        print(f"metrics on http://{cfg.metrics_addr}:{bound}/metrics", file=sys.stderr, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print("fleet monitor running", file=sys.stderr, flush=True)
    done.wait()
    monitor.stop()


def cmd_status(args: argparse.Namespace) -> None:
    """Listen for ``--wait`` seconds (retained statuses arrive at once), then print the fleet."""
    cfg = _load(args)
    monitor = _monitor(cfg, client_suffix=f"status-{int(time.time())}")
    _start(monitor)
    try:
        time.sleep(args.wait)
        now = utcnow()
        rows = summarise(monitor.state.snapshot(), now, cfg.fleet)
        if args.property:
            rows = [r for r in rows if r["property"] == args.property]
        if args.trouble:
            rows = [
                r for r in rows if r["state"] != "online" or any(v != "ok" for v in r["devices"].values())
            ]
    finally:
        monitor.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        devices = " ".join(f"{k}={v}" for k, v in sorted(r["devices"].items()))
        print(f"{r['node']:24} {r['property']:8} {r['state']:8} outbox={r['outbox_depth']} {devices}")
    if not rows:
        print("no nodes heard")


def register(sub: Any) -> None:
    """Add ``fleet`` (dashboard by default) and ``fleet serve|status``."""
    fleet = sub.add_parser("fleet", help="head office: fleet dashboard, health monitor, /metrics")
    fleet.add_argument("--config", default=DEFAULT_CONFIG, help=f"fleet.toml ({DEFAULT_CONFIG})")
    fleet.set_defaults(fn=cmd_dashboard)
    fsub = fleet.add_subparsers(dest="fleet_cmd", required=False)
    p = fsub.add_parser("dashboard", help="the Textual dashboard (the default)")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.set_defaults(fn=cmd_dashboard)
    p = fsub.add_parser("serve", help="run the monitor: alerts to log/mail, Prometheus /metrics")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--metrics-port", type=int, help="override [metrics] port")
    p.set_defaults(fn=cmd_serve)
    p = fsub.add_parser("status", help="every node's state, as a table or JSON")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--wait", type=float, default=3.0, help="seconds to listen before printing")
    p.add_argument("--property", help="only this property")
    p.add_argument("--trouble", action="store_true", help="only nodes not online or with a device fault")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m staypoint.central.fleet.cli fleet ...``."""
    return run_group(register, argv)


if __name__ == "__main__":
    sys.exit(main())
