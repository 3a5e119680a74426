"""``staypoint kiosk --config node.toml``: the subcommand, registered by the main CLI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_kiosk(args: argparse.Namespace) -> None:
    """Open the kiosk on the devices and replica named in the config."""
    from staypoint.kiosk.app import run_kiosk
    from staypoint.kiosk.config import ConfigError

    try:
        run_kiosk(Path(args.config))
    except ConfigError as exc:
        # main() prints NodeError-like failures as one line; ConfigError is ours, so say it here.
        raise SystemExit(f"staypoint: {exc}") from None


def register(sub: Any) -> None:
    """Add ``kiosk`` to the ``staypoint`` subparsers."""
    p = sub.add_parser("kiosk", help="the lobby kiosk on this node's devices")
    p.add_argument("--config", required=True, help="the node's config (TOML): replica, kiosk, hardware")
    p.set_defaults(fn=cmd_kiosk)
