"""Standalone entry points for the command groups that ``staypoint`` also mounts."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

Register = Callable[[Any], None]  # gets the subparsers action of argparse


def run_group(
    register: Register, argv: Sequence[str] | None, *, prog: str = "staypoint", dest: str = "cmd"
) -> int:
    """Parse ``argv`` against the commands ``register`` adds and run the chosen one.

    Each command's module exposes ``register(subparsers)`` for the ``staypoint`` tree; this
    lets ``python -m <module>`` run the same commands without the rest of the tree.
    """
    parser = argparse.ArgumentParser(prog=prog)
    register(parser.add_subparsers(dest=dest, required=True))
    args = parser.parse_args(argv)
    args.fn(args)
    return 0
