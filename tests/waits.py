"""The tests' one way to wait: poll a condition until it holds, with a deadline.

A test waits for what it needs to see, never for a fixed time: ``wait_until`` looks at
``predicate()`` until it is truthy and returns that value (so ``row = wait_until(lambda:
store.row(k))`` both waits for the row and hands it over), or raises ``AssertionError``
saying what never happened. ``wait_until_async`` is the same on an asyncio loop (Textual
pilots, async device readers), yielding to the loop between looks. ``while_running`` makes a
wait on a process's condition give up at once, with its log, when the process exits.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: How long a wait gives a condition unless told otherwise (seconds).
DEFAULT_TIMEOUT = 15.0
#: How long a wait sleeps between two looks unless told otherwise (seconds).
DEFAULT_INTERVAL = 0.05

Message = str | Callable[[], str]


def _against_the_clock(
    predicate: Callable[[], T | None], timeout: float, message: Message
) -> Callable[[], T | None]:
    """``predicate`` with the deadline: a look that finds it falsy past the deadline fails."""
    deadline = time.monotonic() + timeout

    def look() -> T | None:
        value = predicate()
        if not value and time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out waiting for {what}")
        return value

    return look


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = DEFAULT_TIMEOUT,
    message: Message = "condition",
    *,
    interval: float = DEFAULT_INTERVAL,
    between: Callable[[], object] | None = None,
) -> T:
    """Look at ``predicate()`` until it is truthy and return that value.

    It is looked at once more at the deadline; if it is still falsy after ``timeout``
    seconds, ``AssertionError("timed out waiting for <message>")`` (a callable ``message``
    is called only then, e.g. to add a log's tail). Between looks the wait sleeps
    ``interval`` seconds, then calls ``between`` if given (something that must run for the
    condition to come true, such as a browser's event pump). An exception the predicate
    raises (say, on a process that has exited) ends the wait at once. A predicate that
    answers ``X | None`` makes the wait's value an ``X``.
    """
    look = _against_the_clock(predicate, timeout, message)
    while not (value := look()):
        time.sleep(interval)
        if between is not None:
            between()
    return value


async def wait_until_async(
    predicate: Callable[[], T | None],
    timeout: float = DEFAULT_TIMEOUT,
    message: Message = "condition",
    *,
    interval: float = DEFAULT_INTERVAL,
    between: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """``wait_until`` on the running event loop: ``await asyncio.sleep(interval)`` between
    looks (so the tasks that make the condition true get to run), then ``await between()``
    if given (a Textual pilot's settle, say)."""
    look = _against_the_clock(predicate, timeout, message)
    while not (value := look()):
        await asyncio.sleep(interval)
        if between is not None:
            await between()
    return value


def while_running(
    proc: subprocess.Popen[Any],
    predicate: Callable[[], T | None],
    name: str = "the process",
    log: Path | None = None,
) -> Callable[[], T | None]:
    """``predicate`` for a condition ``proc`` must bring about: once it is falsy and ``proc``
    has exited, it never will, so the look raises ``AssertionError`` (with ``log``'s text)."""

    def look() -> T | None:
        value = predicate()
        if not value and proc.poll() is not None:
            text = "" if log is None or not log.exists() else f": {log.read_text(errors='replace')}"
            raise AssertionError(f"{name} exited {proc.returncode}{text}")
        return value

    return look
