"""``staypoint console [--web]``: head office's desk in the terminal or, served by
textual-serve, in a browser. ``--add-staff ID NAME ROLE`` creates a sign-in (password from
the ``STAYPOINT_STAFF_PASSWORD`` environment variable, never the command line).
``--fleet-config fleet.toml`` fills the Fleet tab from a fleet monitor of the console's own
(its own MQTT client id, stopped when the console exits); without it the tab says so.

Wiring: ``staypoint/cli/main.py`` calls :func:`register` with its top-level subparsers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any


def build_desk(args: argparse.Namespace) -> Any:
    from staypoint.central.api.service import Services
    from staypoint.central.api.state import SideStore
    from staypoint.central.claims import ClaimsQueue, Mailer
    from staypoint.central.console.desk import Desk
    from staypoint.central.ledger import Ledger
    from staypoint.central.pg import open_ledger_store
    from staypoint.central.profiles import ProfileStore

    ledger = Ledger(open_ledger_store(args.store))
    services = Services(ledger, ProfileStore(Path(args.profiles)), SideStore(args.side), token_key=b"")
    mailer = None
    if args.smtp:
        host, _, port = args.smtp.rpartition(":")
        mailer = Mailer(host or "127.0.0.1", int(port))
    return Desk(services, ClaimsQueue(services, mailer))


def cmd_console(args: argparse.Namespace) -> None:
    if args.web:
        from textual_serve.server import Server

        # textual-serve starts one app process per browser session: the same command minus --web.
        argv = [a for a in sys.argv[1:] if a != "--web"] if args.argv is None else args.argv
        command = " ".join(
            shlex.quote(a) for a in [sys.executable, "-m", "staypoint.central.console.cli", *argv]
        )
        Server(command, host=args.host, port=args.port, title="Staypoint head office").serve()
        return
    desk = build_desk(args)
    if args.add_staff:
        password = os.environ.get("STAYPOINT_STAFF_PASSWORD", "")
        staff_id, name, role = args.add_staff
        desk.add_staff(staff_id, name, role, password)
        print(f"staff {staff_id} ({role}) added")
        return
    from staypoint.central.console.app import make_console

    if not args.fleet_config:
        make_console(desk).run()
        return
    from staypoint.central.fleet.cli import start_monitor

    # textual-serve runs one console per browser session: pid and time keep client ids apart.
    monitor = start_monitor(args.fleet_config, client_suffix=f"console-{os.getpid()}-{int(time.time())}")
    try:
        make_console(
            desk, fleet=monitor.state, fleet_alerts=monitor.alerts, fleet_memory=monitor.memory
        ).run()
    finally:
        monitor.stop()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="ledger: sqlite:///path or postgresql://...")
    p.add_argument(
        "--side", required=True, help="head office's side tables: sqlite:///path or postgresql://..."
    )
    p.add_argument("--profiles", required=True, help="members' personal data (SQLite file)")
    p.add_argument("--smtp", help="HOST:PORT of the mail server for claim notices")
    p.add_argument(
        "--fleet-config",
        metavar="FLEET_TOML",
        help="fleet.toml (e.g. /etc/staypoint-central/fleet.toml): show the fleet in the Fleet tab",
    )
    p.add_argument("--web", action="store_true", help="serve the console to a browser (textual-serve)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--add-staff",
        nargs=3,
        metavar=("ID", "NAME", "ROLE"),
        help="add a console sign-in (password from STAYPOINT_STAFF_PASSWORD) and exit",
    )
    p.set_defaults(fn=cmd_console, argv=None)


def register(sub: Any) -> None:
    """Add ``console`` to the top-level subparsers."""
    add_arguments(sub.add_parser("console", help="head office's desk (Textual; --web for a browser)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="staypoint console")
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
