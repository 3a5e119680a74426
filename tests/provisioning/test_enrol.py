"""Enrolment end to end against a real Mosquitto: CA → token → enrol → sync → revoke."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import stat
import threading
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from staypoint.central.fleet.revoked import RevokedNodes
from staypoint.edge.service import NodeService
from staypoint.edge.sync.config import load_node_config
from staypoint.provisioning import enrol as enrol_mod
from staypoint.provisioning.enrol import EnrolError, EnrolRefused, enrol
from staypoint.provisioning.enrol_service import ProvisioningState
from staypoint.provisioning.pki import TLSFiles, load_certificate
from staypoint.provisioning.render import NODE_UNITS, NodeLayout
from staypoint.provisioning.sealing import new_reply_key, reply_key_hex
from staypoint.provisioning.tokens import TokenRefused
from tests.mqtt_fixtures import MQTTConnectError, close, make_client, state, subscribe, unique_client_id
from tests.provisioning.conftest import Office, enrol_tls_dir
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


def token(office: Office, node: str, ttl: dt.timedelta = dt.timedelta(hours=2), **kw: dt.datetime) -> str:
    return office.state.tokens.create(node, "SHA", ttl, **kw)


def board(office: Office, tmp_path: Path, name: str = "board") -> Path:
    root = tmp_path / name
    enrol_tls_dir(office, root)
    return root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_working_node(layout: NodeLayout, node: str) -> None:
    """node.toml, keys (0600), certificate, replica, Litestream config and units are there."""
    cfg = tomllib.loads(layout.node_toml.read_text())
    assert cfg["node"]["id"] == node
    for secret in (layout.key, *layout.keys.iterdir()):
        assert mode(secret) == 0o600, secret
    assert mode(layout.keys) == 0o700
    svc = NodeService.open(layout.db, keys_dir=layout.keys)
    try:
        assert svc.node_id == node
        assert svc.replica.node_public_keys()[node] == svc.keys.public_hex()
    finally:
        svc.close()
    assert f"path: {json.dumps(str(layout.db))}" in layout.litestream.read_text()
    for unit in NODE_UNITS:
        assert (layout.units_dir / unit).exists()
    sync = load_node_config(layout.node_toml)
    assert sync.db == layout.db and sync.sync.cert == layout.cert
    assert not layout.staging.exists(), "the staging folder (card key inside) must be gone"


def test_enrol_sync_and_revoke(office: Office, tmp_path: Path) -> None:
    node = "e2e-lobby-01"
    root = board(office, tmp_path)
    result = enrol(office.address, token(office, node), root, timeout=10)
    layout = result.layout
    assert result.steps == list(enrol_mod.STEPS)
    assert_working_node(layout, node)
    assert [r.node for r in office.enrolled][-1] == node
    # The private keys never travelled: head office knows only the public halves.
    record = office.state.nodes()[node]
    svc = NodeService.open(layout.db, keys_dir=layout.keys)
    assert record.voucher_public_key == svc.keys.public_hex()
    svc.close()

    # Running it again is harmless: it says so and changes nothing.
    again = enrol(office.address, token(office, node), root, timeout=10)
    assert again.already

    # The node syncs: its certificate is accepted and its events reach head office.
    _sync_one_event(office, layout)

    # Revoke: CRL re-signed, broker reloaded, the certificate is refused from now on.
    office.state.revoke(node)
    assert node in RevokedNodes(office.state.revoked_path)
    office.broker.reload()
    tls = TLSFiles(ca=layout.ca, cert=layout.cert, key=layout.key)
    with pytest.raises(MQTTConnectError):
        make_client(office.broker, node, node, tls=tls, timeout=3)
    # And a revoked node cannot come back through enrolment under the same id.
    with pytest.raises(EnrolRefused, match="revoked"):
        enrol(office.address, token(office, node), board(office, tmp_path, "again"), timeout=10)


def _tls(layout: NodeLayout) -> TLSFiles:
    return TLSFiles(ca=layout.ca, cert=layout.cert, key=layout.key)


def test_enrolling_a_node_again_revokes_its_previous_certificate(office: Office, tmp_path: Path) -> None:
    """A replaced board keeps its node id; the old board's certificate is refused from then on."""
    node = "swap-lobby-01"
    old = enrol(office.address, token(office, node), board(office, tmp_path, "old"), timeout=10).layout
    close(make_client(office.broker, node, node, True, 0, tls=_tls(old), timeout=3))  # accepted so far
    new = enrol(office.address, token(office, node), board(office, tmp_path, "new"), timeout=10).layout
    # The service re-signed the CRL and reloaded the broker before it answered the new board.
    with pytest.raises(MQTTConnectError):
        make_client(office.broker, node, node, True, 0, tls=_tls(old), timeout=3)
    close(make_client(office.broker, node, node, True, 0, tls=_tls(new), timeout=3))
    revoked = office.state.ca().revoked_serials()
    new_serial = load_certificate(new.cert.read_bytes()).serial_number
    assert load_certificate(old.cert.read_bytes()).serial_number in revoked
    assert new_serial not in revoked
    # The node itself is not revoked: its events are still head office's business.
    assert node not in RevokedNodes(office.state.revoked_path)
    assert office.state.nodes()[node].serial == format(new_serial, "x")


def test_the_answer_is_sealed_to_the_asking_board(office: Office, tmp_path: Path) -> None:
    """Every enrolling board may read the reply topics (they share the enrol client id), so
    what travels there must be useless to all but the board that asked."""
    spy = make_client(office.broker, "head-office", unique_client_id("head-office-spy"), True, 0)
    try:
        assert subscribe(spy, "sp/v1/enrol/reply/+") == 1
        result = enrol(office.address, token(office, "sealed-lobby-01"), board(office, tmp_path), timeout=10)
        [seen] = state(spy).messages.wait_for(1)
    finally:
        close(spy)
    wire = json.loads(seen.payload)
    assert set(wire) == {"v", "sealed"}
    text = seen.payload.decode()
    assert office.state.card_key().hex() not in text
    assert "BEGIN CERTIFICATE" not in text and result.node not in text


def test_an_old_board_is_told_to_upgrade_without_spending_its_token(office: Office) -> None:
    tok = token(office, "old-lobby-01")
    body = {"v": 1, "token": tok, "csr": "-", "voucher_public_key": "00" * 32}
    assert "too old" in office.service.handle(body)["error"]
    for reply_key in ("zz", reply_key_hex(new_reply_key())[:-2]):
        assert "reply_key" in office.service.handle({**body, "v": 2, "reply_key": reply_key})["error"]
    assert all(r.used_at is None for r in office.state.tokens.records() if r.node == "old-lobby-01")


def test_two_boards_enrolling_at_once_both_finish(office: Office, tmp_path: Path) -> None:
    """They share the enrol certificate's client id, so one may knock the other off the
    broker mid-request: that one asks again."""
    nodes = ["twin-lobby-01", "twin-lobby-02"]
    tokens = {n: token(office, n) for n in nodes}
    start = threading.Barrier(len(nodes))
    results: dict[str, object] = {}

    def run(node: str) -> None:
        root = board(office, tmp_path, node)
        start.wait()
        try:
            results[node] = enrol(office.address, tokens[node], root, timeout=30).node
        except Exception as err:  # reported below, with the other board's outcome
            results[node] = err

    threads = [threading.Thread(target=run, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {n: n for n in nodes}


def test_ca_init_replaces_a_head_office_certificate_of_the_fleet_ca(tmp_path: Path) -> None:
    """Before head office had a CA of its own its certificate came from the fleet CA; the
    fleet listener would take that one, under client id head-office."""
    state = ProvisioningState(tmp_path / "provisioning")
    state.init()
    fleet = state.ca()
    files = state.tls("head-office")
    key = load_certificate(files.cert.read_bytes()).public_key()
    # Only an old release could make this: the CA refuses to now.
    with pytest.raises(ValueError, match="head-office CA"):
        fleet.issue_client("head-office")
    legacy = fleet._leaf(  # type: ignore[arg-type]
        "head-office", key, usage=x509.ExtendedKeyUsageOID.CLIENT_AUTH, sans=(), valid_days=30, now=None
    )
    files.cert.write_bytes(legacy.public_bytes(serialization.Encoding.PEM))
    done = state.init()
    assert done["head-office"] == "replaced" and done["enrol"] == "kept"
    assert legacy.serial_number in fleet.revoked_serials()
    assert load_certificate(files.cert.read_bytes()).issuer == state.office_ca().cert.subject
    assert state.init()["head-office"] == "kept"


def _sync_one_event(office: Office, layout: NodeLayout) -> None:
    """Start head office's ledger and the node's sync agent from node.toml; one stay syncs."""
    from staypoint.central.ledger import Ledger
    from staypoint.central.server import HeadOffice, MqttSettings
    from staypoint.central.store_sqlite import SqliteLedgerStore
    from staypoint.edge.sync.agent import SyncAgent
    from staypoint.loyalty.program import default_program_text

    ledger = Ledger(SqliteLedgerStore(layout.state / "ledger.db", synchronous="NORMAL"))
    ledger.publish_program(default_program_text(), NOW)
    for rec in office.state.nodes().values():
        ledger.register_node(rec.node, rec.voucher_public_key)
    ho = office.state.tls("head-office")
    head = HeadOffice(
        ledger,
        MqttSettings(
            office.broker.host, office.broker.office_port, ho.ca, ho.cert, ho.key, client_id="head-office-e2e"
        ),
    )
    head.start()
    cfg = load_node_config(layout.node_toml)
    svc = NodeService.open(cfg.db, keys_dir=cfg.keys)
    agent = SyncAgent(svc, dataclasses.replace(cfg.sync, node_id=svc.node_id))
    try:
        number = svc.enrol("Ana Example", "2580", dt.datetime.now(dt.UTC)).number
        agent.start()
        wait_until(lambda: agent.pending() == 0, 15, "head office to acknowledge the node's event")
        assert ledger.member(str(number)) is not None
    finally:
        agent.stop()
        svc.close()
        head.stop()
        ledger.store.close()


def test_used_token_is_refused(office: Office, tmp_path: Path) -> None:
    tok = token(office, "reuse-lobby-01")
    enrol(office.address, tok, board(office, tmp_path, "first"), timeout=10)
    with pytest.raises(EnrolRefused, match="already used"):
        enrol(office.address, tok, board(office, tmp_path, "second"), timeout=10)


def test_expired_token_is_refused(office: Office, tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    tok = token(office, "late-lobby-01", dt.timedelta(hours=2), now=past)
    with pytest.raises(EnrolRefused, match="expired"):
        enrol(office.address, tok, board(office, tmp_path), timeout=10)
    assert not NodeLayout(tmp_path / "board").node_toml.exists()


def test_wrong_node_token_is_refused(office: Office, tmp_path: Path) -> None:
    tok = token(office, "right-lobby-01")
    # On the board: the technician said which node this is, and the token is another's.
    with pytest.raises(EnrolRefused, match="issued for node 'right-lobby-01', not 'wrong-lobby-01'"):
        enrol(office.address, tok, board(office, tmp_path), node="wrong-lobby-01", timeout=10)
    # At head office: a token edited to name another node matches nothing it issued as such.
    forged = "wrong-lobby-01." + tok.rsplit(".", 1)[1]
    with pytest.raises(EnrolRefused, match="issued for node 'right-lobby-01', not 'wrong-lobby-01'"):
        enrol(office.address, forged, board(office, tmp_path, "b2"), timeout=10)
    # The refusals did not use the token up.
    enrol(office.address, tok, board(office, tmp_path, "b3"), timeout=10)


def test_unknown_and_malformed_tokens(office: Office, tmp_path: Path) -> None:
    with pytest.raises(EnrolRefused, match="unknown enrolment token"):
        enrol(office.address, "ghost-lobby-01." + "a" * 32, board(office, tmp_path), timeout=10)
    with pytest.raises(TokenRefused, match="malformed"):
        enrol(office.address, "not a token", board(office, tmp_path), timeout=10)


def test_missing_enrol_credentials_say_what_to_copy(office: Office, tmp_path: Path) -> None:
    with pytest.raises(EnrolError, match="missing enrol credentials"):
        enrol(office.address, token(office, "bare-lobby-01"), tmp_path / "bare", timeout=5)


@pytest.mark.parametrize("step", enrol_mod.STEPS)
def test_failure_at_each_step_then_rerun_finishes(
    office: Office, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    node = f"crash-{step}-01"
    root = board(office, tmp_path)
    tok = token(office, node)
    real = getattr(enrol_mod, f"step_{step}")

    def boom(*args: object, **kwargs: object) -> object:
        if step == "request":
            # Fail *after* head office answered: the worst moment, the token is spent.
            real(*args, **kwargs)
        raise OSError(f"injected failure in {step}")

    monkeypatch.setattr(enrol_mod, f"step_{step}", boom)
    with pytest.raises(OSError, match="injected"):
        enrol(office.address, tok, root, timeout=10)
    layout = NodeLayout(root)
    assert not layout.node_toml.exists(), "node.toml must only appear when everything else is in place"
    leftovers = [p for p in root.rglob("*.tmp")]
    assert not leftovers, f"half-written files left: {leftovers}"
    monkeypatch.undo()
    result = enrol(office.address, tok, root, timeout=10)
    assert not result.already
    assert_working_node(result.layout, node)
