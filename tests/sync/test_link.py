"""Kiosk ↔ agent: online authorisation and the link's real state over the agent's socket.

Against the real Mosquitto (TLS, ACL) and a real head office (``central serve`` in its own
process). The kiosk side is a second NodeService on the same replica with an AgentLink,
as the kiosk's own process opens it; it holds no MQTT connection.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.central.ledger import Ledger
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.edge.agent_link import MAX_LINE, AgentLink
from staypoint.edge.service import NodeService, OfflineLimitReached
from staypoint.edge.sync.agent import SyncAgent
from staypoint.edge.sync.link import LinkServer
from staypoint.kiosk.session import read_health
from staypoint.loyalty.program import Outlet, default_program_text
from tests.mqtt_fixtures import MosquittoBroker, office_command
from tests.sync.conftest import PIN, Fleet, Node, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
DESK = [sys.executable, "-m", "staypoint.cli.main"]
FLOOR = 2800  # per-redemption offline floor: LATE-CO (2,500) is under it, BREAKFAST (3,000) over
PROGRAM = default_program_text().replace("per_redemption_points = 10000", f"per_redemption_points = {FLOOR}")
AUTH_TIMEOUT = 1.5
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
ECHO = {"echo_interval": 0.5, "echo_timeout": 1.0, "keepalive": 5, "auth_timeout": AUTH_TIMEOUT}


class Clock:
    """The agent's and the kiosk's wall clock: real time plus a shift the test moves on."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return now() + self.shift


class Office:
    """``central serve`` in its own process, on the fleet's ledger file."""

    def __init__(self, fleet: Fleet, log: Path) -> None:
        self.argv = office_command(fleet.broker, fleet.directory / "ledger.db")
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


def make_fleet(broker: MosquittoBroker, tmp: Path) -> Fleet:
    store = SqliteLedgerStore(tmp / "ledger.db", synchronous="NORMAL")
    ledger = Ledger(store)
    ledger.publish_program(PROGRAM, now())
    return Fleet(broker, tmp, ledger)


def add_node(
    fleet: Fleet, node_id: str, clock: Clock, sock_dir: Path | None = None, **kw: object
) -> tuple[Node, LinkServer]:
    db = fleet.directory / f"{node_id}.db"
    service = NodeService.init_node(db, node_id, "HOTEL", PROGRAM, now())
    fleet.ledger.register_node(node_id, service.keys.public_hex())
    node = Node(service, None, fleet.config(node_id, **kw))
    agent = SyncAgent(service, node.config, clock=clock)
    node.agent = agent
    fleet.nodes[node_id] = node
    link = LinkServer(agent, (sock_dir or fleet.directory) / f"{node_id[-2:]}.sock")
    link.start()
    agent.start()
    return node, link


@pytest.fixture
def setup(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[tuple[Fleet, Office, Node, LinkServer, Clock]]:
    fleet = make_fleet(fresh_mosquitto, tmp_path)
    office = Office(fleet, tmp_path / "office.log")
    office.start()
    clock = Clock()
    node, link = add_node(fleet, "sha-lobby-01", clock, **ECHO)
    try:
        yield fleet, office, node, link, clock
    finally:
        link.stop()
        office.stop()
        fleet.close()


def kiosk_service(node: Node, link: LinkServer) -> tuple[NodeService, AgentLink]:
    """What the kiosk's process opens: the same replica, head office through the socket."""
    client = AgentLink(link.path, timeout=AUTH_TIMEOUT)
    return NodeService.open(node.service.replica.path, authoriser=client), client


def earn(kiosk: NodeService, fleet: Fleet) -> str:
    member = kiosk.enrol("Ada Lovelace", PIN, now()).number
    kiosk.post_stay(member, "F-1", now(), nights=4, revenue={Outlet.ROOM: Decimal("2000")})
    fleet.settle(60)
    return member


def test_online_through_the_socket_then_offline_within_keepalive_and_timeout(
    setup: tuple[Fleet, Office, Node, LinkServer, Clock],
) -> None:
    fleet, office, node, link, _ = setup
    kiosk, client = kiosk_service(node, link)
    try:
        member = earn(kiosk, fleet)
        wait_until(lambda: client.status().online, 10, "the link online")
        before = kiosk.resolve_member(member).points
        assert before >= 3 * 3000

        # Above the offline floor: only head office can allow it, and it places a hold.
        red = kiosk.redeem(kiosk.verify_pin(member, PIN, now()), "BREAKFAST", now())
        assert red.auth == "online" and red.points > FLOOR
        hold = red.event.data["hold"]
        assert isinstance(hold, str) and hold
        held = fleet.ledger.store.hold(hold)
        assert held is not None and held.member == member and held.points == 3000
        fleet.settle(60)
        wait_until(lambda: fleet.ledger.store.hold(hold).status == "settled", 15, "the hold settled")  # type: ignore[union-attr]

        # The desk's own command, given the node config, goes the same way.
        toml = fleet.directory / "node.toml"
        toml.write_text(f'[node]\ndb = "{node.service.replica.path}"\n[sync]\nlink_socket = "{link.path}"\n')
        desk = subprocess.run(
            [*DESK, "redeem", "--config", str(toml), member, "BREAKFAST", "--pin", PIN, "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert desk.returncode == 0, desk.stderr
        assert json.loads(desk.stdout)["auth"] == "online"

        # Head office silent, the broker up: the link is online, the request times out and
        # the offline limits decide, within the timeout.
        office.stop()
        assert client.status().online
        started = time.monotonic()
        with pytest.raises(OfflineLimitReached):
            kiosk.redeem(kiosk.verify_pin(member, PIN, now()), "BREAKFAST", now())
        assert time.monotonic() - started < AUTH_TIMEOUT + 1.0 + 0.5  # + the PIN's scrypt

        # The broker stopped: the socket says offline within the keep-alive...
        fleet.broker.stop()
        stopped = time.monotonic()
        wait_until(lambda: not client.status().online, 5, "the link offline")
        assert time.monotonic() - stopped < 5  # keepalive
        health = read_health(kiosk, [], now(), 120.0, client)
        assert not health.online and health.link_problem == "broker not connected"
        # ...and a redemption under the floor goes through offline at once, one over it is refused.
        proof = kiosk.verify_pin(member, PIN, now())
        started = time.monotonic()
        offline = kiosk.redeem(proof, "LATE-CO", now())
        assert offline.auth == "offline" and offline.event.data["hold"] is None
        with pytest.raises(OfflineLimitReached):
            kiosk.redeem(proof, "BREAKFAST", now())
        assert time.monotonic() - started < AUTH_TIMEOUT
    finally:
        kiosk.close()


def test_quiet_link_stays_online_and_the_replica_is_confirmed_current(
    setup: tuple[Fleet, Office, Node, LinkServer, Clock],
) -> None:
    fleet, _, node, link, clock = setup
    assert node.agent is not None
    # A long currency interval first: nothing at all confirms the replica while we look.
    node.agent.config = dataclasses.replace(node.agent.config, current_interval=300.0)
    kiosk, client = kiosk_service(node, link)
    try:
        fleet.settle(60)
        wait_until(lambda: node.agent is not None and node.agent.known_current_at is not None, 15, "current")
        clock.shift = timedelta(seconds=200)  # past the old 130 s that showed "Offline"
        health = read_health(kiosk, [], clock(), 120.0, client)
        assert health.staleness_s is not None and health.staleness_s >= 200
        assert health.online and client.status().online  # connected and answered: online
        # The old guess (traffic age, no agent asked) said "Offline" here; unless a digest or a
        # fan-out happened to arrive this very moment, it still does.
        guess = read_health(kiosk, [], clock(), 120.0, None)
        assert guess.online is False or (guess.staleness_s or 0) < 120

        checks = node.agent.stats["currency_checks"]
        agent = node.agent
        moved = [0.0]

        def asked() -> bool:
            # Past current_interval the agent asks head office. Another confirmation (a digest
            # or fan-out that happens to arrive) may make the check unnecessary for a while:
            # then the clock moves on again (every 2 s at most), so the agent has to ask.
            if agent.stats["currency_checks"] > checks:
                return True
            if time.monotonic() - moved[0] > 2:
                clock.shift += timedelta(seconds=400)
                moved[0] = time.monotonic()
            return False

        wait_until(asked, 20, "a currency check")
        wait_until(
            lambda: (kiosk.status(clock())["staleness_s"] or 10**9) < 60, 15, "the replica confirmed current"
        )
        assert client.status().online
    finally:
        kiosk.close()


@pytest.mark.skipif(
    os.geteuid() != 0 or SYSTEM_PYTHON is None,
    reason="needs root and a system python3 to run a client as nobody",
)
def test_a_client_not_allowed_is_refused_and_garbage_is_counted(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    fleet = make_fleet(fresh_mosquitto, tmp_path)
    # A folder others may pass through (pytest's are 0700): the socket's own mode must refuse.
    run = Path(tempfile.mkdtemp(prefix="sp-link-", dir="/tmp"))
    run.chmod(0o755)
    node, link = add_node(fleet, "sha-lobby-02", Clock(), run, **ECHO)
    assert node.agent is not None
    client = AgentLink(link.path)
    probe = (
        "import json,socket,sys\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(link.path)!r})\n"
        "except OSError as e:\n"
        "    print('connect', e.errno); sys.exit()\n"
        # A refused peer is answered and hung up on at once: its send may meet a closed socket,
        # and the refusal is still there to read.
        "try:\n"
        '    s.sendall(b\'{"op":"status"}\\n\')\n'
        "except BrokenPipeError:\n"
        "    pass\n"
        "print(s.makefile().readline().strip())\n"
    )

    def as_nobody() -> str:
        def drop() -> None:
            os.setgid(65534)
            os.setuid(65534)

        # The system interpreter: the venv's may sit where another user cannot read.
        res = subprocess.run(
            [SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, preexec_fn=drop, cwd="/"
        )
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    try:
        wait_until(lambda: client.status().online, 15, "the link online")
        assert oct(link.path.stat().st_mode & 0o777) == "0o660"
        assert as_nobody() == "connect 13"  # EACCES: the file's mode keeps others out
        os.chmod(link.path, 0o666)  # past the file: the peer credentials still refuse
        answer = json.loads(as_nobody())
        assert answer["ok"] is False and "uid 65534" in answer["error"]
        assert node.agent.dropped["link_not_allowed"] == 1

        def raw(data: bytes) -> bytes:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(link.path))
                try:
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                    return s.makefile("rb").read()
                except ConnectionError:  # reset or broken pipe: the agent hung up on an oversized line
                    return b""

        assert b"not JSON" in raw(b"\xff\xfe garbage\n")
        raw(b"x" * (MAX_LINE * 4))  # the answer may be lost to the reset of the unread rest
        assert b"authorise needs" in raw(
            b'{"op":"authorise","member":1,"points":"9","reward":"X","timeout":1}\n'
        )
        assert b"authorise needs" in raw(
            b'{"op":"authorise","member":"1","points":5,"reward":"X","timeout":1e9}\n'
        )
        assert b"op must be" in raw(b'{"op":"shutdown"}\n')
        assert b"a request is" in raw(b"[1,2]\n")
        assert raw(b'{"op":"sta') == b""  # closed half-way: counted, no answer
        dropped = node.agent.dropped
        for reason in ("malformed", "oversized", "wrong_type", "unknown_op", "short"):
            assert dropped[f"link_{reason}"] >= 1, dict(dropped)
        assert client.status().online  # the agent serves on
    finally:
        link.stop()
        fleet.close()
        run.rmdir()
