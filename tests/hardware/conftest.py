"""Shared fixtures: a private pcscd with virtual readers, socat pty pairs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waits import wait_until, while_running

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_PID_FILE = Path("/run/pcscd/pcscd.pid")


def _free_port_pair() -> int:
    """A port P with P and P+1 free: vpcd opens one reader per port from P."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("0.0.0.0", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for vpcd")


def _pid_file_pid() -> int:
    """The PID pcscd wrote to its PID file (0 if none). pcscd pads the file with a NUL."""
    try:
        return int(PCSCD_PID_FILE.read_text().replace("\0", "").strip() or 0)
    except (OSError, ValueError):
        return 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ask_pcscd(query: Callable[[Any], tuple[int, Any]]) -> tuple[int, Any]:
    """Run one PC/SC ``query`` in a context of its own: ``(hr, result)``, ``hr`` an error
    code when pcscd is not (yet) there."""
    from smartcard import scard

    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        return hr, None
    try:
        return query(ctx)
    finally:
        scard.SCardReleaseContext(ctx)


class Pcscd:
    """A pcscd we start and stop by PID, with our own reader.conf.d.

    Debian's pcscd 1.9.9 ignores PCSCLITE_CSOCK_NAME (only the client library
    reads it), so the socket is the system one; isolation comes from a private
    reader.conf.d (``-c``) putting the virtual readers on free TCP ports.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port_pair()
        conf = workdir / "reader.conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "vpcd").write_text(
            'FRIENDLYNAME "Virtual PCD"\n'
            f"DEVICENAME   /dev/null:{self.port}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    {self.port}\n"
        )
        self.conf = conf
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader_name = "Virtual PCD 00 00"

    def start(self) -> None:
        """Start pcscd and wait until it lists the virtual readers."""
        log = (self.workdir / "pcscd.log").open("ab")
        self.proc = subprocess.Popen(
            ["pcscd", "-f", "-a", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        from smartcard import scard

        proc = self.proc

        def lists_our_readers() -> bool:
            hr, names = _ask_pcscd(lambda ctx: scard.SCardListReaders(ctx, []))
            # The reader list comes from whichever pcscd owns the system socket: it is
            # ours only if the PID file names our process (a second pcscd exits instead).
            return bool(
                hr == scard.SCARD_S_SUCCESS
                and any(self.reader_name in n for n in names)
                and _pid_file_pid() == proc.pid
            )

        try:
            ours = while_running(proc, lists_our_readers, "pcscd", Path(log.name))
            wait_until(ours, 10, "pcscd to list the virtual readers")
        except AssertionError:
            self.stop()
            raise

    def wait_empty(self, timeout: float = 20) -> None:
        """Wait until pcscd reports no card in our reader: a card an earlier test pulled out
        is gone from the socket at once, but pcscd notices at its next poll of the driver, and
        a reader started before then reads the old card (a loaded run counted a garbled card
        of the test before as this test's)."""
        from smartcard import scard

        def empty() -> bool:
            hr, states = _ask_pcscd(
                lambda ctx: scard.SCardGetStatusChange(
                    ctx, 0, [(self.reader_name, scard.SCARD_STATE_UNAWARE)]
                )
            )
            return hr == scard.SCARD_S_SUCCESS and bool(states[0][1] & scard.SCARD_STATE_EMPTY)

        wait_until(empty, timeout, f"pcscd to report {self.reader_name} empty")

    def stop(self) -> None:
        """SIGTERM our pcscd (by PID) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture(scope="session")
def pcscd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """A running pcscd offering vpcd virtual readers (skips if pcscd is truly absent)."""
    if shutil.which("pcscd") is None:
        pytest.skip("pcscd binary not installed")
    if not VPCD_DRIVER.exists():
        pytest.skip(f"vsmartcard-vpcd driver not installed ({VPCD_DRIVER})")
    pytest.importorskip("smartcard", reason="pyscard not installed")
    pid = _pid_file_pid()
    if pid and _pid_alive(pid):
        pytest.skip(f"another pcscd (pid {pid}) is running; pcscd allows one per host")
    daemon = Pcscd(tmp_path_factory.mktemp("pcscd"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def pcscd(pcscd_daemon: Pcscd) -> Pcscd:
    """The session's pcscd, once it reports the reader empty: every PC/SC test starts with
    no card of the test before on the reader."""
    pcscd_daemon.wait_empty()
    return pcscd_daemon


class PtyPair:
    """Two linked pseudo-terminals from ``socat``: bytes written to ``a`` come out of ``b``."""

    def __init__(self, workdir: Path) -> None:
        self.a = str(workdir / "ptyA")
        self.b = str(workdir / "ptyB")
        self.proc = subprocess.Popen(
            ["socat", "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(
                while_running(self.proc, lambda: os.path.exists(self.a) and os.path.exists(self.b), "socat"),
                5,
                "socat to create the pty pair",
            )
        except AssertionError:
            self.close()
            raise

    def close(self) -> None:
        """Stop socat by PID."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    """A fresh socat pty pair (skips if socat is truly absent)."""
    if shutil.which("socat") is None:
        pytest.skip("socat binary not installed")
    pair = PtyPair(tmp_path)
    try:
        yield pair
    finally:
        pair.close()
