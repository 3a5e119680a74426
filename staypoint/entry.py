"""Standalone entry points for the command groups that ``staypoint`` also mounts."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

Register = Callable[[Any], None]  # gets the subparsers action of argparse


def closed_stdout_safe(run: Callable[[], int]) -> int:
    """``run()``, except that a reader that closed our stdout early (``| head -1``) ends the
    command quietly with status 1 instead of a BrokenPipeError traceback.

    The Python docs' "Note on SIGPIPE": flush inside the ``try``, because a pipe's buffered
    output is otherwise written at interpreter exit, where the error can no longer be
    caught; then point stdout at /dev/null so that exit-time flush has nowhere to fail.
    SIGPIPE's default action is not restored instead: it would also kill the commands that
    serve sockets (the API, the MQTT services) whenever a peer went away mid-write.
    """
    try:
        code = run()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return code


def run_group(
    register: Register, argv: Sequence[str] | None, *, prog: str = "staypoint", dest: str = "cmd"
) -> int:
    """Parse ``argv`` against the commands ``register`` adds and run the chosen one.

    Each command's module exposes ``register(subparsers)`` for the ``staypoint`` tree; this
    lets ``python -m <module>`` run the same commands without the rest of the tree.
    """
    parser = argparse.ArgumentParser(prog=prog)
    register(parser.add_subparsers(dest=dest, required=True))

    def run() -> int:
        args = parser.parse_args(argv)
        args.fn(args)
        return 0

    return closed_stdout_safe(run)
