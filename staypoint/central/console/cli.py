"""``staypoint console [--web]``: head office's desk in the terminal or, served by
textual-serve, in a browser. ``--add-staff ID NAME ROLE`` creates a sign-in (password from
the ``STAYPOINT_STAFF_PASSWORD`` environment variable, never the command line).
``--fleet-config fleet.toml`` fills the Fleet tab from a fleet monitor of the console's own
(its own MQTT client id, stopped when the console exits); without it the tab says so.
``--campaigns campaigns.toml`` (the file ``central jobs --campaigns`` reads) gives the Marketing
tab's *Send* its mail server, SMS gateway and settings.

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


def store_locations(args: argparse.Namespace) -> tuple[str, str, str]:
    """(ledger, side tables, profiles) as canonical URLs / an absolute path, or a one-line exit.

    ``--side`` and ``--profiles`` default to the ledger's own database on PostgreSQL (the side
    tables and the profiles live beside the ledger there); on SQLite each is a file of its own
    and must be given.
    """
    from staypoint.central.profiles import profiles_location
    from staypoint.central.store import StoreConfigError, parse_store_url

    try:
        store = parse_store_url(args.store)
        side = parse_store_url(args.side) if args.side else (store if store.is_pg else None)
        if side is None:
            raise StoreConfigError("--side is needed with a SQLite ledger (sqlite:///path/side.db)")
        profiles = profiles_location(args.profiles, args.store)
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    return store.canonical(), side.canonical(), profiles


def build_desk(args: argparse.Namespace) -> Any:
    from staypoint.central.application.services import Services
    from staypoint.central.application.state import SideStore
    from staypoint.central.claims import ClaimsQueue, Mailer
    from staypoint.central.cli import open_store
    from staypoint.central.console.desk import Desk
    from staypoint.central.ledger import Ledger
    from staypoint.central.profiles import open_profiles
    from staypoint.central.store import StoreConfigError

    store_url, side_url, profiles = store_locations(args)
    ledger = Ledger(open_store(store_url, must_exist=True))
    try:
        profile_store = open_profiles(profiles)
    except StoreConfigError as exc:
        ledger.store.close()
        raise SystemExit(f"staypoint: {exc}") from None
    services = Services(ledger, profile_store, SideStore(side_url), token_key=b"")
    mailer = None
    if args.smtp:
        host, _, port = args.smtp.rpartition(":")
        if not port.isdigit():
            ledger.store.close()
            raise SystemExit(f"staypoint: --smtp {args.smtp!r}: give HOST:PORT")
        mailer = Mailer(host or "127.0.0.1", int(port))
    return Desk(services, ClaimsQueue(services, mailer))


def web_command(args: argparse.Namespace) -> str:
    """The command textual-serve runs for each browser session: this module with the same
    stores (absolute, so the session's working folder does not matter), never ``--web``."""
    store_url, side_url, profiles = store_locations(args)
    argv = [sys.executable, "-m", "staypoint.central.console.cli", "--store", store_url]
    argv += ["--side", side_url, "--profiles", profiles]
    if args.smtp:
        argv += ["--smtp", args.smtp]
    if args.fleet_config:
        argv += ["--fleet-config", os.path.abspath(args.fleet_config)]
    if args.campaigns:
        argv += ["--campaigns", os.path.abspath(args.campaigns)]
    return " ".join(shlex.quote(a) for a in argv)


def _campaigns_file(args: argparse.Namespace) -> Path | None:
    """``--campaigns``, checked once here: a file that is not there or not valid is one line."""
    if not args.campaigns:
        return None
    from staypoint.central.campaigns.config import ConfigError, load_config

    path = Path(args.campaigns).absolute()
    try:
        load_config(path)
    except OSError as exc:
        raise SystemExit(f"staypoint: --campaigns {args.campaigns}: {exc.strerror or exc}") from None
    except (ConfigError, TypeError, ValueError) as exc:
        raise SystemExit(f"staypoint: --campaigns: {exc}") from None
    return path


def cmd_console(args: argparse.Namespace) -> None:
    _campaigns_file(args)
    if args.web:
        from textual_serve.server import Server

        # Checked once here, so a wrong --store is one line now, not a blank page later.
        build_desk(args).close()
        command = web_command(args)
        print(f"console on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
        Server(command, host=args.host, port=args.port, title="Staypoint head office").serve()
        return
    desk = build_desk(args)
    try:
        _run_console(args, desk)
    finally:
        desk.close()


def _run_console(args: argparse.Namespace, desk: Any) -> None:
    if args.add_staff:
        from staypoint.central.errors import DomainError

        password = os.environ.get("STAYPOINT_STAFF_PASSWORD", "")
        staff_id, name, role = args.add_staff
        try:
            desk.add_staff(staff_id, name, role, password)
        except DomainError as exc:
            raise SystemExit(f"staypoint: {exc.message}") from None
        print(f"staff {staff_id} ({role}) added")
        return
    from staypoint.central.console.app import make_console

    campaigns = _campaigns_file(args)
    if not args.fleet_config:
        make_console(desk, campaigns=campaigns).run()
        return
    from staypoint.central.fleet.cli import start_monitor

    # textual-serve runs one console per browser session: pid and time keep client ids apart.
    monitor = start_monitor(args.fleet_config, client_suffix=f"console-{os.getpid()}-{int(time.time())}")
    try:
        make_console(
            desk,
            fleet=monitor.state,
            fleet_alerts=monitor.alerts,
            fleet_memory=monitor.memory,
            campaigns=campaigns,
        ).run()
    finally:
        monitor.stop()


def add_arguments(p: argparse.ArgumentParser) -> None:
    from staypoint.central.store import STORE_HELP

    p.add_argument("--store", required=True, help=STORE_HELP)
    p.add_argument(
        "--side",
        help="head office's side tables: sqlite:///path/side.db, or postgresql://... (default on "
        "PostgreSQL: the ledger's database)",
    )
    p.add_argument(
        "--profiles",
        help="members' personal data: a SQLite file, sqlite:///path or postgresql://... "
        "(default with a PostgreSQL ledger: its own database)",
    )
    p.add_argument("--smtp", help="HOST:PORT of the mail server for claim notices")
    p.add_argument(
        "--fleet-config",
        metavar="FLEET_TOML",
        help="fleet.toml (e.g. /etc/staypoint-central/fleet.toml): show the fleet in the Fleet tab",
    )
    p.add_argument(
        "--campaigns",
        metavar="CAMPAIGNS_TOML",
        help="the campaigns file of 'central jobs --campaigns': the Marketing tab's Send mails with its "
        "[smtp], [sms] and [settings]",
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
    p.set_defaults(fn=cmd_console)


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
