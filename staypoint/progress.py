"""Progress bars for long jobs, in one place: seeding, demo data, campaign runs, bootstraps, reports.

``with progress("seeding members", total=n, quiet=args.quiet) as bar: bar.advance(k)``.
A bar is drawn (rich, on stderr) only when stderr is a terminal and the caller is not quiet:
under a script, a pipe, systemd or CI nothing is drawn, so stdout stays the command's own
answer (JSON, a table) and logs get no control characters. ``STAYPOINT_QUIET=1`` in the
environment is the same as ``--quiet`` everywhere.

Layers that may not draw (``edge`` imports no ``rich``) take a plain callback instead,
``Callable[[int], None]`` called with how many more items are done; ``Progress.advance`` is
one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

Advance = Callable[[int], None]


def enabled(*, quiet: bool = False, stream: IO[str] | None = None) -> bool:
    """Whether a bar would be drawn: not quiet, not ``STAYPOINT_QUIET``, and a terminal."""
    if quiet or os.environ.get("STAYPOINT_QUIET", "") not in ("", "0"):
        return False
    out = stream if stream is not None else sys.stderr
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """One task's bar (or nothing). ``advance(n)``; ``total`` may be set late (``set_total``)."""

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        quiet: bool = False,
        stream: IO[str] | None = None,
    ) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self._bar: Any = None
        self._task: Any = None
        if enabled(quiet=quiet, stream=stream):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=stream if stream is not None else sys.stderr),
                transient=False,
            )

    @property
    def drawn(self) -> bool:
        return self._bar is not None

    def start(self) -> Progress:
        """Start drawing (``with`` does this); returns the bar."""
        if self._bar is not None and self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def close(self) -> None:
        """Stop drawing (``with`` does this); safe to call twice."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=n)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def describe(self, description: str) -> None:
        self.description = description
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=description)


class CountBar:
    """A bar fed with running counts, ``bar(count, done)``: the sync agent's resync progress
    (``SyncAgent(progress=...)``, called from the agent's thread). It starts on the first count
    and stops when ``done``; the next resync starts a new one. Nothing is drawn where
    :func:`enabled` says no (not a terminal, ``--quiet``, ``STAYPOINT_QUIET``)."""

    def __init__(self, description: str, *, quiet: bool = False, stream: IO[str] | None = None) -> None:
        self.description, self.quiet, self.stream = description, quiet, stream
        self._bar: Progress | None = None
        self._seen = 0
        self.drawn = False  # whether any bar was drawn

    def __call__(self, count: int, done: bool) -> None:
        if self._bar is None:
            self._bar = Progress(self.description, None, quiet=self.quiet, stream=self.stream).start()
            self._seen = 0
            self.drawn = self.drawn or self._bar.drawn
        if count > self._seen:
            self._bar.advance(count - self._seen)
            self._seen = count
        if done:
            self._bar.set_total(self._seen)
            self._bar.close()
            self._bar = None


def progress(
    description: str, total: int | None = None, *, quiet: bool = False, stream: IO[str] | None = None
) -> Progress:
    """A context manager drawing one bar on stderr when that is a terminal and not ``quiet``."""
    return Progress(description, total, quiet=quiet, stream=stream)


def add_quiet_option(parser: Any) -> None:
    """``--quiet`` / ``-q`` on a command with a long job: no progress bar (scripts, cron)."""
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar (none is drawn anyway when stderr is not a terminal)",
    )
