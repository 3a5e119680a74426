"""The installed fleet, end to end, by the documents (issue 13, item 6).

The commands run here are the ones docs/head-office.md ("First run") and docs/technician.md
give, read from their fenced blocks marked ``<!-- installed-fleet-test: NAME -->``; the test
adds none of its own to those steps. What a page shows is a production host, so each host
here is a folder standing in for ``/``:

- every absolute ``/etc/...`` and ``/var/...`` path in a command (also after ``sqlite://`` and
  ``file://``) moves under that host's folder, and so does every such path in a unit's
  ``ExecStart`` line and in the broker's rendered ``mosquitto.conf``;
- ``mqtt.example.net`` is ``localhost``, the listeners 8883/8884 and the HTTP ports
  8080/8000/9108 are free ports; the token placeholder ``sha-lobby-07.k3j...`` is the token
  ``provision token create`` printed, ``'...'`` is the test's password; a second board takes
  the node id ``sha-lobby-01`` (the token head office's first run makes) for ``sha-lobby-07``;
- ``provision enrol`` on a board gets ``--root BOARD`` (its documented option for that);
- commands that only exist for a real system do what the system would: ``useradd``,
  ``systemd-sysusers`` and ``systemctl daemon-reload`` nothing (the test runs as one user);
  ``systemctl restart mosquitto`` starts ``mosquitto -c`` on the host's
  ``/etc/mosquitto/mosquitto.conf`` (run as root, so with ``user root``);
  ``systemctl enable --now|start|stop UNIT`` runs or stops the ``ExecStart`` line of the unit
  file the commands installed (a notify unit is waited for its ``READY=1``, a timer or path
  unit starts nothing: its schedule is not this test's); the kiosk unit's line
  (``staypoint kiosk --config ...``) builds the same app (``build_kiosk``) and runs it
  headless (Textual's ``run_test``) in a thread of this process, so the test can touch it.

Then the fleet is used as a hotel would: a member enrolled at one board's desk redeems at the
other board's kiosk online (a hold at head office), the broker stops and the kiosk says
Offline and redeems within the offline limits, the broker returns and everything reconciles
once, a board is restored from its Litestream backup and carries on in a new epoch, and the
web console (its unit) signs head office's administrator in and finds the member in Chromium.

Every wait polls a condition with a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual._context import active_app
from textual.pilot import Pilot

from staypoint.edge import backup
from staypoint.kiosk.app import KioskApp, build_kiosk
from staypoint.kiosk.hardware.printer.sim import PrinterSink
from staypoint.provisioning.enrol_service import ProvisioningState
from tests.console.test_web import CHROMIUM, sign_in_and_find
from tests.hardware.conftest import PtyPair
from tests.kiosk.helpers import keypad, settle, text_of
from tests.provisioning.test_head_office_units import HeadOfficeRoot, exec_start
from tests.waits import wait_until, while_running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
STAYPOINT = Path(sys.executable).parent / "staypoint"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWORD = "correct horse battery"
BOARD_A, BOARD_B = "sha-lobby-07", "sha-lobby-01"  # technician.md's node, head-office.md's token
MARK = re.compile(r"<!-- installed-fleet-test: ([\w-]+) -->\s*\n\s*```(\w+)\n(.*?)\n\s*```", re.S)
KIOSK_SIZE = (100, 30)
PIN = "2580"


# -- the documents' blocks ------------------------------------------------------------------


def doc_block(page: str, name: str) -> str:
    """The text of the block marked ``name`` on ``docs/<page>``."""
    found = {m.group(1): m.group(3) for m in MARK.finditer((DOCS / page).read_text("utf-8"))}
    assert name in found, f"docs/{page} has no block marked installed-fleet-test: {name}"
    return "\n".join(line.strip() for line in found[name].splitlines())


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines left out."""
    out: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    assert not pending, block
    return out


def expand_braces(word: str) -> list[str]:
    """Bash's ``a{b,c}d`` -> ``abd acd`` (what the first-run's ``cp`` line uses)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if m is None:
        return [word]
    return [
        w for alt in m.group(1).split(",") for w in expand_braces(word[: m.start()] + alt + word[m.end() :])
    ]


# -- waiting ------------------------------------------------------------------------------------


def log_tail(log: Path) -> str:
    """The end of a unit's log, for a wait's failure (tests.waits.wait_until does the waiting)."""
    return "" if not log.exists() else f"\n{log.read_text(errors='replace')[-3000:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- the kiosk, headless ------------------------------------------------------------------------


class KioskUnit:
    """``staypoint kiosk --config PATH`` as the unit runs it, headless in a thread of its own."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kiosk", daemon=True)
        self.stack = contextlib.AsyncExitStack()
        self.app: KioskApp | None = None
        self.pilot: Pilot[None] | None = None

    def start(self) -> None:
        self.thread.start()

        async def enter() -> None:
            self.app = build_kiosk(self.config)
            self.pilot = await self.stack.enter_async_context(self.app.run_test(size=KIOSK_SIZE))
            await settle(self.pilot)

        self.call(enter())

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def do(self, fn: Callable[[Pilot[None]], Coroutine[Any, Any, Any]], timeout: float = 60.0) -> Any:
        assert self.pilot is not None and self.app is not None
        app, pilot = self.app, self.pilot

        async def in_app() -> Any:
            # A coroutine handed over from the test's thread runs in a context copied from that
            # thread, where Textual's active_app is unset; a click whose pause happens to render
            # a frame then fails (seen once in five loaded runs). Pilot's own tasks have it set.
            active_app.set(app)
            return await fn(pilot)

        return self.call(in_app(), timeout)

    def status_bar(self) -> str:
        async def read(pilot: Pilot[None]) -> str:
            assert self.app is not None
            return text_of(self.app, "#status-bar")

        return str(self.do(read))

    def stop(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                self.call(self.stack.aclose())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        if self.app is not None:
            self.app.service.close()
            self.app = None


# -- hosts and what their commands do -----------------------------------------------------------


class Fleet:
    """Head office's host, the boards, the broker, and every process the commands started."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.fleet_port, self.office_port = _free_port(), _free_port()
        self.tokens: dict[str, str] = {}
        self.broker: subprocess.Popen[bytes] | None = None
        self.office = Host(self, "head-office", base / "head-office")
        self.boards: dict[str, Host] = {}
        # Head office's units run by the helper tests/provisioning/test_head_office_units.py has.
        self.units = HeadOfficeRoot(self.office.root, self, ProvisioningState(self.office.root))  # type: ignore[arg-type]

    def board(self, node: str) -> Host:
        if node not in self.boards:
            self.boards[node] = Host(self, node, self.base / node, node=node)
        return self.boards[node]

    # The broker, as `systemctl restart mosquitto` runs it on head office's host.
    def start_broker(self) -> None:
        self.stop_broker()
        root = self.office.root
        conf = (root / "etc/mosquitto/mosquitto.conf").read_text()
        conf = self.office.rewrite_text(conf)
        conf = re.sub(r"^listener 8883 .*$", f"listener {self.fleet_port} 127.0.0.1", conf, flags=re.M)
        conf = re.sub(r"^listener 8884 .*$", f"listener {self.office_port} 127.0.0.1", conf, flags=re.M)
        if os.geteuid() == 0:  # root-owned temporary folders: do not drop to user mosquitto
            conf += "\nuser root\n"
        running = root / "run/mosquitto.conf"
        running.write_text(conf)
        with open(root / "var/log/mosquitto/stderr.log", "ab") as err:
            self.broker = subprocess.Popen(
                [MOSQUITTO, "-c", str(running)], stdout=err, stderr=err, start_new_session=True
            )
        wait_until(
            lambda: _listening(self.fleet_port) and _listening(self.office_port),
            15,
            lambda: f"mosquitto's listeners{log_tail(root / 'var/log/mosquitto/mosquitto.log')}",
        )

    def stop_broker(self) -> None:
        if self.broker is not None and self.broker.poll() is None:
            self.broker.send_signal(signal.SIGTERM)
            self.broker.wait(15)
        self.broker = None

    def close(self) -> None:
        for host in (*self.boards.values(), self.office):
            host.close()
        self.units.close()
        self.stop_broker()


class Host:
    """One machine: a folder standing in for ``/``, and what its commands started."""

    def __init__(self, fleet: Fleet, name: str, root: Path, node: str | None = None) -> None:
        self.fleet, self.name, self.root, self.node = fleet, name, root, node
        # What a Debian host has before the first command (mosquitto's package at head office).
        for folder in ("etc/systemd/system", "var/lib", "var/backups", "run"):
            (root / folder).mkdir(parents=True)
        if node is None:
            for folder in ("etc/mosquitto/conf.d", "var/lib/mosquitto", "var/log/mosquitto"):
                (root / folder).mkdir(parents=True)
        self.vars: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kiosk: KioskUnit | None = None
        self.ran: list[list[str]] = []

    # -- rewriting -------------------------------------------------------------------------

    def rewrite_text(self, text: str) -> str:
        """Absolute /etc and /var paths under this host's folder (also after sqlite:// file://)."""
        return re.sub(
            r"(^|[\s=:'\"]|//)(/(?:etc|var)/)", lambda m: m.group(1) + str(self.root) + m.group(2), text
        )

    def rewrite(self, arg: str) -> str:
        if self.node is not None:
            arg = arg.replace(BOARD_A, self.node)
        if arg == f"{self.node}.k3j...":
            return self.fleet.tokens[str(self.node)]
        arg = arg.replace("mqtt.example.net:8883", f"localhost:{self.fleet.fleet_port}")
        arg = arg.replace("mqtt.example.net", "localhost")
        arg = arg.replace("127.0.0.1:8884", f"127.0.0.1:{self.fleet.office_port}")
        arg = arg.replace("/usr/bin/staypoint", str(STAYPOINT))
        arg = arg.replace("/usr/bin/litestream", backup.litestream_binary())
        return self.rewrite_text(arg)

    def words(self, line: str) -> list[str]:
        line = line.replace("'...'", shlex.quote(PASSWORD))
        for var, value in self.vars.items():
            line = line.replace(f"${{{var}}}", value).replace(f"${var}", value)
        return [self.rewrite(w) for word in shlex.split(line, comments=True) for w in expand_braces(word)]

    # -- running ---------------------------------------------------------------------------

    def run_block(self, page: str, name: str) -> list[subprocess.CompletedProcess[str]]:
        return [r for line in commands(doc_block(page, name)) if (r := self.run(line)) is not None]

    def run(self, line: str) -> subprocess.CompletedProcess[str] | None:
        assign = re.fullmatch(r"(\w+)=(\S+)", line)
        if assign:
            self.vars[assign.group(1)] = assign.group(2)
            return None
        return self.exec(self.words(line), {})

    def exec(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str] | None:
        self.ran.append(argv)
        cmd, args = argv[0], argv[1:]
        if cmd in ("useradd", "systemd-sysusers", "udevadm"):
            return None  # one user runs everything here
        if cmd == "runuser":
            assert args[:1] == ["-u"] and args[2] == "--", argv
            return self.exec(args[3:], env)
        if cmd == "env":
            while "=" in args[0]:
                key, _, value = args.pop(0).partition("=")
                env[key] = value
            return self.exec(args, env)
        if cmd == "install":
            return self.install(args)
        if cmd == "cp":
            *sources, dest = args
            for src in sources:
                shutil.copy(ROOT / src if not os.path.isabs(src) else src, dest)
            return None
        if cmd == "systemctl":
            return self.systemctl(args)
        if cmd == "python3":
            return self.process([sys.executable, *args], env)
        if cmd == "staypoint":
            if args[:2] == ["provision", "serve"]:
                # The enrolment service is already running by its unit: the same line.
                assert args == self.fleet.units.argv("staypoint-enrol.service")[1:], args
                assert self.fleet.units.procs, "staypoint-enrol.service is not running"
                return None
            if args[:2] == ["provision", "enrol"]:
                args = [*args, "--root", str(self.root), "--timeout", "30"]
            return self.process([str(STAYPOINT), *args], env)
        raise AssertionError(f"the test does not know how to run {argv}")

    def process(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
        )
        assert res.returncode == 0, f"{argv}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res

    def install(self, args: list[str]) -> None:
        directory, paths = False, []
        it = iter(args)
        for arg in it:
            if arg == "-d":
                directory = True
            elif arg in ("-o", "-g", "-m"):
                next(it)
            else:
                paths.append(arg)
        if directory:
            for p in paths:
                Path(p).mkdir(parents=True, exist_ok=True)
            return None
        *sources, dest = paths
        for src in sources:
            source = ROOT / src if not os.path.isabs(src) else Path(src)
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, dest)
        return None

    # -- systemd ---------------------------------------------------------------------------

    def unit_argv(self, name: str) -> list[str]:
        """The ExecStart line of the unit file installed on this host, split as systemd does."""
        text = (self.root / "etc/systemd/system" / name).read_text()
        (line,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
        return shlex.split(line.removeprefix("ExecStart="))

    def systemctl(self, args: list[str]) -> None:
        verb, units = args[0], [u for u in args[1:] if not u.startswith("-")]
        if verb == "daemon-reload":
            return
        if verb == "restart" and units == ["mosquitto"]:
            assert self is self.fleet.office, "the broker runs beside head office"
            self.fleet.start_broker()
            return
        waits: list[Callable[[], None]] = []
        for unit in units if verb != "stop" else reversed(units):
            name = unit if "." in unit else f"{unit}.service"
            if name.endswith((".timer", ".path")):
                continue  # a schedule or a watch: nothing runs now
            if verb in ("enable", "start", "restart"):
                if verb == "restart":
                    self.stop_unit(name)
                waits.append(self.start_unit(name))
            elif verb == "stop":
                self.stop_unit(name)
            else:
                raise AssertionError(f"systemctl {args}")
        for wait in waits:  # the units start side by side, as systemd starts them
            wait()

    def start_unit(self, name: str) -> Callable[[], None]:
        """Start the unit's ExecStart line; returns what waits until it serves."""
        argv = self.unit_argv(name)
        if self is self.fleet.office:
            # The file the first run copied is the unit the repository ships.
            assert argv == exec_start(name), name
            proc = self.fleet.units.start(name)
            self.procs[name] = proc  # type: ignore[assignment]
            return lambda: self.wait_ready(name, proc)  # type: ignore[arg-type]
        argv = [self.rewrite(a) for a in argv]
        if argv[1:2] == ["kiosk"]:
            assert argv[2] == "--config" and len(argv) == 4, argv
            self.kiosk = KioskUnit(Path(argv[3]))
            self.kiosk.start()
            return lambda: None
        log = self.root / f"{name}.log"
        notify = None
        env = dict(os.environ)
        if "Type=notify" in (self.root / "etc/systemd/system" / name).read_text():
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            path = self.root / f"{name}.notify"
            path.unlink(missing_ok=True)
            notify.bind(str(path))
            env["NOTIFY_SOCKET"] = str(path)
        with open(log, "ab") as out:
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        if notify is not None:  # `systemctl start` of a notify unit returns on READY=1
            notify.settimeout(0.2)
            got = bytearray()

            def ready() -> bool:
                with contextlib.suppress(TimeoutError):
                    got.extend(notify.recv(4096))  # waits up to the 0.2 s timeout
                return b"READY=1" in got

            wait_until(
                while_running(self.procs[name], ready, name, log),
                30,
                lambda: f"{name}'s READY=1{log_tail(log)}",
                interval=0,
            )
            notify.close()
        return lambda: None

    def wait_ready(self, name: str, proc: subprocess.Popen[str]) -> None:
        """Head office's simple units: wait until each serves (the next step uses them)."""
        log: Path = proc.log  # type: ignore[attr-defined]
        ports = self.fleet.units.ports

        ready = {
            "staypoint-central.service": lambda: "head office serving" in log.read_text(),
            "staypoint-enrol.service": lambda: "enrolment service answering" in log.read_text(),
            "staypoint-fleet.service": lambda: _listening(ports["9108"]),
            "staypoint-api.service": lambda: _listening(ports["8080"]),
            "staypoint-console.service": lambda: _listening(ports["8000"]),
            "staypoint-webhooks.service": lambda: "webhooks: delivering from version" in log.read_text(),
        }[name]
        wait_until(while_running(proc, ready, name, log), 60, lambda: f"{name}{log_tail(log)}")

    def stop_unit(self, name: str) -> None:
        if name == "staypoint-kiosk.service":
            if self.kiosk is not None:
                self.kiosk.stop()
                self.kiosk = None
            return
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        for name in [*self.procs, "staypoint-kiosk.service"]:
            self.stop_unit(name)


# -- the test -----------------------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    if shutil.which("mosquitto") is None and not os.access(MOSQUITTO, os.X_OK):
        pytest.skip("mosquitto is not installed")
    # A short folder of its own: the agent's socket path (under the board's /var/lib) must fit
    # a Unix socket's 107 bytes, which pytest's tmp_path does not leave room for.
    base = Path(tempfile.mkdtemp(prefix="sp-fleet-", dir="/tmp"))
    made = Fleet(base)
    try:
        yield made
    finally:
        made.close()
        shutil.rmtree(base, ignore_errors=True)


def head_office_first_run(fleet: Fleet) -> None:
    """docs/head-office.md "First run", with fleet.toml written from the page's example."""
    office = fleet.office
    lines = commands(doc_block("head-office.md", "head-office-first-run"))
    start = next(i for i, ln in enumerate(lines) if ln.startswith("systemctl daemon-reload"))
    for line in lines[:start]:
        office.run(line)
    # Step 5: the operator writes fleet.toml; the page's example, without mail.
    example = tomllib.loads(doc_block("head-office.md", "fleet-toml"))
    example.pop("smtp")
    text = office.rewrite_text(_toml(example))
    text = text.replace("port = 8884", f"port = {fleet.office_port}")
    text = text.replace("port = 9108", f"port = {fleet.units.ports['9108']}")
    (office.root / "etc/staypoint-central/fleet.toml").write_text(text)
    results = [office.run(line) for line in lines[start:]]
    token = results[-1]
    assert token is not None
    fleet.tokens[BOARD_B] = token.stdout.split()[0]


def _toml(doc: dict[str, Any]) -> str:
    out = []
    for section, body in doc.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {json.dumps(v)}" for k, v in body.items())
    return "\n".join(out) + "\n"


def enrol_board(fleet: Fleet, node: str, printer: PtyPair) -> Host:
    """docs/technician.md "Enrol the board": the kit copied, enrol, start, devices edited."""
    board = fleet.board(node)
    kit = board.root / "etc/staypoint/enrol"
    kit.mkdir(parents=True)
    tls = fleet.office.root / "var/lib/staypoint-central/provisioning/tls"
    for name in ("ca.crt", "enrol.crt", "enrol.key"):
        shutil.copy(tls / name, kit / name)
    (res,) = board.run_block("technician.md", "enrol")
    assert "config" in res.stdout, res.stdout
    toml = board.root / "etc/staypoint/node.toml"
    cfg = tomllib.loads(toml.read_text())
    assert cfg["node"]["mode"] == "production" and cfg["node"]["id"] == node
    assert cfg["backup"]["replica"] == f"file://{board.root}/var/backups/staypoint/{node}"
    # Step 5: this board's devices. There is no touchscreen PIN pad or USB printer here: the
    # on-screen keypad, and an ESC/POS printer on a pty (the enrolled pcsc reader stays; a
    # guest types the member number).
    text = toml.read_text()
    text = re.sub(r'^pinpad = "serial"$', 'pinpad = "none"', text, flags=re.M)
    text = re.sub(
        r'^printer_url = ".*"$', f'printer_url = "serial:{printer.a}?baudrate=19200"', text, flags=re.M
    )
    toml.write_text(text)
    board.run_block("technician.md", "start-services")
    return board


def desk(board: Host, *args: str) -> Any:
    """A front-desk command on the board with its node.toml (README.md), as JSON."""
    res = board.process(
        [str(STAYPOINT), *args, "--config", str(board.root / "etc/staypoint/node.toml"), "--json"], {}
    )
    return json.loads(res.stdout) if res.stdout.strip() else None


def outbox(board: Host) -> list[dict[str, Any]]:
    rows = desk(board, "outbox")
    assert isinstance(rows, list)
    return rows


def ledger_events(fleet: Fleet) -> list[tuple[str, str, int, int]]:
    db = fleet.office.root / "var/lib/staypoint-central/ledger.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return [tuple(r) for r in con.execute("SELECT id, node, epoch, seq FROM events")]


def ledger_row(fleet: Fleet, sql: str, *params: Any) -> tuple[Any, ...] | None:
    db = fleet.office.root / "var/lib/staypoint-central/ledger.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        row = con.execute(sql, params).fetchone()
    return None if row is None else tuple(row)


def backed_up(board: Host) -> bool:
    """The board's Litestream replica restores to a copy holding the replica's last event."""
    cfg = backup.load_backup_config(board.root / "etc/staypoint/node.toml")
    probe = backup.BackupConfig(board.root / "probe.db", cfg.replica_url, board.root / "probe.yml")
    try:
        backup.restore(probe, force=True)
    except backup.BackupError:
        return False
    with contextlib.closing(sqlite3.connect(probe.db)) as con:
        got = con.execute("SELECT max(seq) FROM outbox").fetchone()[0]
    return bool(got == outbox(board)[-1]["seq"])


async def kiosk_redeem(pilot: Pilot[None], member: str, pin: str, reward: str) -> str:
    """A guest at the kiosk: types the member number and PIN, redeems ``reward``; the screen."""
    app = pilot.app
    await pilot.click("#type-number")
    await settle(pilot)
    await keypad(pilot, member)
    await keypad(pilot, pin)
    await pilot.click("#rewards")
    await settle(pilot)
    await pilot.click(f"#reward-{reward}")
    await settle(pilot)
    await pilot.click("#yes")
    await settle(pilot)
    shown = "\n".join(str(w.render()) for w in app.screen.query("Static"))
    await pilot.click("#back")
    await settle(pilot)
    await pilot.click("#done")
    await settle(pilot)
    return shown


def test_the_installed_fleet_by_the_documents(fleet: Fleet, tmp_path: Path) -> None:
    if shutil.which("socat") is None or not os.path.exists(CHROMIUM):
        pytest.skip("socat or Debian's chromium is not installed")
    # 1. Head office: user, units, CAs, broker, programme, its services, first sign-in, a token.
    head_office_first_run(fleet)
    # technician.md's part at head office: ca init again keeps the CA, the enrolment service
    # is the unit's line, a token per node.
    results = fleet.office.run_block("technician.md", "head-office-prepares")
    assert '"ca": "kept"' in results[0].stdout or "kept" in results[0].stdout, results[0].stdout
    fleet.tokens[BOARD_A] = results[-1].stdout.split()[0]

    # 2. Two boards, each with its own token.
    printers, sinks = [], []
    for node in (BOARD_A, BOARD_B):
        (tmp_path / f"printer-{node}").mkdir()
        printers.append(PtyPair(tmp_path / f"printer-{node}"))
        sinks.append(PrinterSink(printers[-1].b))
    try:
        a = enrol_board(fleet, BOARD_A, printers[0])
        b = enrol_board(fleet, BOARD_B, printers[1])
        assert a.kiosk is not None and b.kiosk is not None
        kiosk_b = b.kiosk
        wait_until(lambda: "Online" in kiosk_b.status_bar(), 60, "board B's kiosk online")

        # 3. A guest joins at board A's front desk (README.md's commands, with --config).
        desk(
            a,
            "staff",
            "add",
            "desk-1",
            "--name",
            "Dee Desk",
            "--role",
            "staff",
            "--pin",
            "4826",
            "--local-root",
        )
        staff = ("--staff", "desk-1", "--staff-pin", "4826")
        enrolled = desk(a, "member", "enrol", "--name", "Mei Lin", "--pin", PIN, *staff)
        member = str(enrolled["member"])
        desk(a, "stay", "post", member, "--folio", "F-1001", "--nights", "4", "--room", "1000.00", *staff)

        def points_at(board: Host) -> int:
            try:
                return int(desk(board, "member", "show", member)["points"])
            except AssertionError:
                return -1  # not there yet

        wait_until(lambda: points_at(b) >= 3000 + 2500, 60, "the member's points at board B")

        # 4. Online at board B's kiosk: head office authorises and holds the points.
        shown = kiosk_b.do(lambda pilot: kiosk_redeem(pilot, member, PIN, "BREAKFAST"))
        assert "Online" in shown or "voucher" in shown.lower(), shown
        redeemed = [e for e in outbox(b) if e["type"] == "points.redeemed"]
        assert len(redeemed) == 1, (shown, [e["type"] for e in outbox(b)])
        online = redeemed[0]
        assert online["data"]["hold"], online
        hold = ledger_row(
            fleet, "SELECT member, points, status FROM holds WHERE id = ?", online["data"]["hold"]
        )
        assert hold is not None and hold[0] == member and hold[1] == 3000, hold

        # 5. The link is cut: the broker stops. The kiosk says so within its keep-alive and
        #    redeems within the offline limits.
        fleet.stop_broker()
        cut = time.monotonic()
        # Within the keep-alive (30 s, [sync] keepalive): a loaded run took more than 15 s.
        wait_until(lambda: "Offline" in kiosk_b.status_bar(), 30, "board B's kiosk offline")
        assert time.monotonic() - cut < 30
        kiosk_b.do(lambda pilot: kiosk_redeem(pilot, member, PIN, "LATE-CO"))
        offline = [e for e in outbox(b) if e["type"] == "points.redeemed"][-1]
        assert offline["data"]["hold"] is None and offline["data"]["reward"] == "LATE-CO", offline
        assert not offline["acked"]

        # 6. The link returns (the first run's own command): everything reconciles, once.
        fleet.office.run("systemctl restart mosquitto")
        wait_until(lambda: "Online" in kiosk_b.status_bar(), 60, "board B's kiosk online again")
        for board in (a, b):

            def all_acked(board: Host = board) -> bool:
                return all(e["acked"] for e in outbox(board))

            wait_until(all_acked, 60, f"{board.name} acked")
        booked = ledger_events(fleet)
        ids = [row[0] for row in booked]
        assert len(ids) == len(set(ids))
        for board in (a, b):
            mine = {e["id"] for e in outbox(board)}
            assert mine == {row[0] for row in booked if row[1] == board.name}
        wait_until(lambda: points_at(a) == points_at(b), 60, "one balance on both boards")
        settled = ledger_row(fleet, "SELECT status FROM holds WHERE id = ?", online["data"]["hold"])
        assert settled == ("settled",), settled
        central_points = ledger_row(fleet, "SELECT points FROM members WHERE number = ?", member)
        assert central_points is not None and central_points[0] == points_at(a)

        # 7. Board A's SD card fails: restored from its backup (technician.md), a new epoch.
        wait_until(lambda: backed_up(a), 60, "board A's Litestream backup to hold its last event")
        old_epoch = outbox(a)[-1]["epoch"]
        stop, *restore = commands(doc_block("technician.md", "restore"))
        a.run(stop)
        db = a.root / "var/lib/staypoint/node.db"
        with db.open("r+b") as f:  # the corrupted replica
            f.write(b"\0" * 4096)
        for line in restore:
            a.run(line)
        assert a.kiosk is not None
        desk(a, "stay", "post", member, "--folio", "F-1002", "--nights", "1", "--room", "200.00", *staff)
        last = outbox(a)[-1]
        assert last["epoch"] > old_epoch and last["seq"] == 1, last
        wait_until(lambda: outbox(a)[-1]["acked"], 60, "the new epoch acknowledged")
        assert (last["id"], BOARD_A, last["epoch"], 1) in ledger_events(fleet)
        # Nothing of the old epoch came back twice.
        ids = [row[0] for row in ledger_events(fleet)]
        assert len(ids) == len(set(ids))

        # 8. Head office's desk in a browser: the console its unit serves, the administrator
        #    the first run added, the member found. docs/console.md's usage names the unit's options.
        usage = (DOCS / "console.md").read_text("utf-8")
        for arg in exec_start("staypoint-console.service")[1:]:
            if arg.startswith("-"):
                assert arg in usage, f"docs/console.md does not show {arg}"
            elif "/" in arg:
                assert arg.removeprefix("sqlite://") in usage, f"docs/console.md does not show {arg}"
        sign_in_and_find(
            fleet.units.ports["8000"],
            "admin",
            PASSWORD,
            "Signed in: Ada Admin (administrator)",
            member,
            "Mei",
            fleet.base,
        )
    finally:
        fleet.close()  # the kiosks let go of their printers first
        for sink in sinks:
            sink.close()
        for pair in printers:
            pair.close()
