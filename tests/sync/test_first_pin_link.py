"""An imported member sets a first PIN at the kiosk: kiosk → agent socket → MQTT → head office.

End to end on the real parts: Mosquitto with the fleet's TLS and ACL, ``central serve --side``
in its own process (as production runs it), the node's sync agent with its socket, and the
kiosk app driven by Pilot on a second NodeService over the same replica with an AgentLink (as
the kiosk's own process opens it: no MQTT). The members come in with ``central import members
--codes``, exactly as a chain moving from its property system brings them; the codes are the
ones that file holds.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from staypoint.central import first_pin
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.cli.main import main
from staypoint.edge.agent_link import AgentLink
from staypoint.edge.service import BadInput, FirstPinOffline, FirstPinRefused, NodeService
from staypoint.edge.sync.agent import SyncAgent
from staypoint.edge.sync.link import LinkServer
from staypoint.kiosk.app import Devices, KioskApp, make_app
from staypoint.kiosk.hardware.printer.sim import SimPrinter
from staypoint.kiosk.hardware.reader.sim import SimReader
from staypoint.kiosk.screens.dashboard import DashboardScreen
from staypoint.kiosk.screens.first_pin import FirstPinScreen
from staypoint.kiosk.screens.identify import IdentifyScreen
from staypoint.kiosk.screens.pin import PinScreen
from staypoint.loyalty import pins
from staypoint.loyalty.program import default_program_text
from tests.kiosk.helpers import keypad, settle, text_of
from tests.mqtt_fixtures import MosquittoBroker, office_command
from tests.sync.conftest import Fleet, Node
from tests.waits import wait_until, wait_until_async

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
NODE = "sha-lobby-01"
ECHO = {"echo_interval": 0.5, "echo_timeout": 1.0, "keepalive": 5, "auth_timeout": 2.0}
HEADER = "Guest ID,First Name,Last Name,E-mail,Points\n"
ROWS = "G1,Ada,Lovelace,ada@example.com,1200\nG2,Mei,Lin,mei@example.cn,0\nG3,Bob,Ray,bob@example.org,5\n"
NEW_PIN = "4826"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Setup:
    fleet: Fleet
    node: Node
    link: LinkServer
    office: subprocess.Popen[bytes]
    office_log: Path
    side_url: str
    codes: dict[str, str]  # member number -> code, from the import's --codes file
    members: dict[str, str]  # e-mail -> member number

    def office_tail(self) -> str:
        return "\n".join(self.office_log.read_text(errors="replace").splitlines()[-30:])


def import_members(tmp: Path, side_url: str) -> tuple[dict[str, str], dict[str, str]]:
    export, codes = tmp / "guests.csv", tmp / "codes.csv"
    export.write_text(HEADER + ROWS, encoding="utf-8")
    argv = ["central", "import", "members", str(export), "--store", f"sqlite:///{tmp / 'ledger.db'}"]
    argv += ["--side", side_url, "--profiles", str(tmp / "profiles.db"), "--codes", str(codes), "--quiet"]
    assert main(argv) == 0
    with codes.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {r["member"]: r["code"] for r in rows}, {r["email"]: r["member"] for r in rows}


@pytest.fixture
def setup(fresh_mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Setup]:
    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db", synchronous="NORMAL"))
    ledger.publish_program(default_program_text(), now())
    fleet = Fleet(fresh_mosquitto, tmp_path, ledger)
    side_url = f"sqlite://{tmp_path / 'side.db'}"
    codes, members = import_members(tmp_path, side_url)

    log = tmp_path / "office.log"
    argv = [*office_command(fresh_mosquitto, tmp_path / "ledger.db"), "--side", side_url]
    with open(log, "ab") as out:
        office = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=out)

    service = NodeService.init_node(tmp_path / "node.db", NODE, "HOTEL", default_program_text(), now())
    ledger.register_node(NODE, service.keys.public_hex())
    node = Node(service, None, fleet.config(NODE, **ECHO))
    node.agent = SyncAgent(service, node.config)
    fleet.nodes[NODE] = node
    link = LinkServer(node.agent, tmp_path / "01.sock")
    link.start()
    node.agent.start()
    setup = Setup(fleet, node, link, office, log, side_url, codes, members)
    try:
        yield setup
    finally:
        link.stop()
        if office.poll() is None:
            office.send_signal(signal.SIGTERM)
            office.wait(10)
        fleet.close()


def kiosk_app(setup: Setup) -> tuple[KioskApp, NodeService, AgentLink]:
    """The kiosk's own process: the same replica, head office only through the agent's socket."""
    client = AgentLink(setup.link.path, timeout=2.0)
    service = NodeService.open(setup.node.service.replica.path, authoriser=client)
    devices = Devices(reader=SimReader(), pinpad=None, printer=SimPrinter())
    app = make_app(service, devices, now, 30.0, offers_rotate_s=0, health_interval_s=0, link=client)
    return app, service, client


def code_keys(code: str) -> list[str]:
    return [f"#code-key-{ch}" for ch in code.replace("-", "")]


def wrong(code: str) -> str:
    """Another code of the right shape (its last letter changed)."""
    return code[:-1] + ("A" if code[-1] != "A" else "B")


async def test_kiosk_first_pin_wrong_code_refused_right_code_sets_it_then_sign_in_and_no_reuse(
    setup: Setup,
) -> None:
    ada = setup.members["ada@example.com"]
    code = setup.codes[ada]
    replica = setup.node.service.replica
    wait_until(lambda: replica.member(ada) is not None, 30, lambda: f"Ada on the node\n{setup.office_tail()}")
    assert replica.member(ada).pin_hash == ""  # type: ignore[union-attr]
    app, service, client = kiosk_app(setup)
    wait_until(lambda: client.status().online, 15, "the agent's link online")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.click("#type-number")
            await settle(pilot)
            assert isinstance(app.screen, IdentifyScreen)
            await keypad(pilot, ada)
            assert isinstance(app.screen, FirstPinScreen)
            await pilot.click("#start")
            await settle(pilot)

            # A wrong code: head office counts it and says how many tries are left.
            for key in [*code_keys(wrong(code)), "#code-key-ok"]:
                await pilot.click(key)
            await settle(pilot)
            await keypad(pilot, NEW_PIN)
            await keypad(pilot, NEW_PIN)
            message = text_of(app, "#first-pin-message")
            assert message == "This code is not right (4 tries left)", setup.office_tail()
            assert replica.member(ada).pin_hash == ""  # type: ignore[union-attr]

            # The right one (the PIN chosen is kept): head office books pin.set, the fan-out
            # brings the PIN to the node, and the kiosk hands over to the PIN screen.
            for key in [*code_keys(code), "#code-key-ok"]:
                await pilot.click(key)
            await wait_until_async(
                lambda: isinstance(app.screen, PinScreen),
                30,
                lambda: f"the PIN screen\n{setup.office_tail()}",
            )
            assert pins.verify_pin(NEW_PIN, replica.member(ada).pin_hash)  # type: ignore[union-attr]
            await settle(pilot)
            await keypad(pilot, NEW_PIN)
            assert isinstance(app.screen, DashboardScreen)
            assert app.session is not None and app.session.member == ada
    finally:
        service.close()

    # Head office: one pin.set on its kiosk stream; the PIN it holds is the one typed.
    ledger = setup.fleet.ledger
    doc = ledger.member(ada)
    assert doc is not None and pins.verify_pin(NEW_PIN, str(doc["pin_hash"]))
    events = [json.loads(body) for _, body in ledger.store.events_after(0, ["pin.set"], limit=10)]
    assert [(e["node"], e["member"]) for e in events] == [("web-kiosk", ada)]
    assert NEW_PIN not in json.dumps(events)

    # The code is spent: through the agent again (a PIN already) and at its keeper.
    answer = client.ask_first_pin(ada, code.replace("-", ""), pins.hash_pin("1111", os.urandom(16)))
    assert answer is not None and not answer.ok and answer.code == "has_pin"
    side = SideStore(setup.side_url)
    try:
        with pytest.raises(first_pin.CodeSpent) as spent:
            first_pin.consume(side, ada, code, now())
        assert spent.value.code == "code_used"
    finally:
        side.close()
    assert code not in setup.office_log.read_text(errors="replace")  # never logged


def test_five_wrong_codes_void_it_and_head_office_down_is_offline(setup: Setup) -> None:
    mei, bob = setup.members["mei@example.cn"], setup.members["bob@example.org"]
    replica = setup.node.service.replica
    wait_until(lambda: replica.member(bob) is not None, 30, lambda: f"Bob on the node\n{setup.office_tail()}")
    client = AgentLink(setup.link.path, timeout=2.0)
    kiosk = NodeService.open(replica.path, authoriser=client)
    try:
        wait_until(lambda: client.status().online, 15, "the agent's link online")
        code = setup.codes[mei]
        answers = []
        for _ in range(5):
            with pytest.raises(FirstPinRefused) as refused:
                kiosk.set_first_pin(mei, wrong(code), NEW_PIN, now())
            answers.append((refused.value.reason_code, str(refused.value)))
        assert answers == [
            *[("bad_code", f"this code is not right ({left} tries left)") for left in (4, 3, 2, 1)],
            ("code_void", "too many wrong codes: ask head office for a new one"),
        ], setup.office_tail()
        with pytest.raises(FirstPinRefused) as void:  # the right one, too late
            kiosk.set_first_pin(mei, code, NEW_PIN, now())
        assert void.value.reason_code == "code_void"

        # A code of the wrong shape never reaches head office (no try spent).
        with pytest.raises(BadInput, match="12 letters and digits"):
            kiosk.set_first_pin(bob, "ABCD", NEW_PIN, now())

        # Head office stopped, the broker up: no answer within the wait, "needs head office".
        setup.office.send_signal(signal.SIGTERM)
        setup.office.wait(10)
        with pytest.raises(FirstPinOffline, match="needs head office"):
            kiosk.set_first_pin(bob, setup.codes[bob], NEW_PIN, now())
        assert replica.member(bob).pin_hash == ""  # type: ignore[union-attr]
    finally:
        kiosk.close()
    # Bob's code still works (the request never reached head office's keeper).
    side = SideStore(setup.side_url)
    try:
        assert first_pin.live(side, [bob], now()) == {bob}
        assert first_pin.live(side, [mei], now()) == set()
    finally:
        side.close()
