"""tests/waits.py, the tests' one polling wait: what it returns, when and how it gives up."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waits import wait_until, wait_until_async, while_running


def test_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "ready", 5, interval=0) == "ready"


def test_times_out_saying_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="timed out waiting for the impossible"):
        wait_until(lambda: False, 0.05, "the impossible", interval=0.01)


def test_a_callable_message_is_built_only_on_timeout() -> None:
    built: list[int] = []

    def message() -> str:
        built.append(1)
        return "a thing\nwith a log"

    assert wait_until(lambda: True, 1, message) is True
    assert built == []
    with pytest.raises(AssertionError, match="a thing\nwith a log"):
        wait_until(lambda: 0, 0.02, message, interval=0.01)
    assert built == [1]


def test_looks_once_even_with_no_time_and_runs_between_looks() -> None:
    assert wait_until(lambda: 1, 0) == 1
    pumped: list[int] = []
    assert wait_until(lambda: len(pumped) >= 2, 5, interval=0, between=lambda: pumped.append(1))
    assert len(pumped) == 2


def test_a_predicate_that_raises_ends_the_wait() -> None:
    def exited() -> bool:
        raise AssertionError("the process exited")

    with pytest.raises(AssertionError, match="the process exited"):
        wait_until(exited, 5)


async def test_async_wait_yields_to_the_loop() -> None:
    settled: list[int] = []

    async def settle() -> None:
        settled.append(1)

    got = await wait_until_async(lambda: len(settled) >= 2 and settled, 5, interval=0, between=settle)
    assert got == [1, 1]
    with pytest.raises(AssertionError, match="timed out waiting for the reader"):
        await wait_until_async(lambda: None, 0.05, "the reader", interval=0.01)


def test_while_running_gives_up_when_the_process_exits(tmp_path: Path) -> None:
    log = tmp_path / "proc.log"
    log.write_text("bind: address in use\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    assert wait_until(while_running(proc, lambda: "ok", "a done process", log), 5) == "ok"
    with pytest.raises(AssertionError, match="a done process exited 3: bind: address in use"):
        wait_until(while_running(proc, lambda: False, "a done process", log), 30)
