"""Enrolment end to end against a real Mosquitto: CA → token → enrol → sync → revoke."""

from __future__ import annotations

import dataclasses
import datetime as dt
import stat
import time
import tomllib
from pathlib import Path

import pytest

from staypoint.central.fleet.revoked import RevokedNodes
from staypoint.edge.service import NodeService
from staypoint.edge.sync.config import load_node_config
from staypoint.provisioning import enrol as enrol_mod
from staypoint.provisioning.enrol import EnrolError, EnrolRefused, enrol
from staypoint.provisioning.pki import TLSFiles
from staypoint.provisioning.render import NODE_UNITS, NodeLayout
from staypoint.provisioning.tokens import TokenRefused
from tests.mqtt_fixtures import MQTTConnectError, make_client
from tests.provisioning.conftest import Office, enrol_tls_dir

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
    assert f"path: {layout.db}" in layout.litestream.read_text()
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
        MqttSettings(office.broker.host, office.broker.port, ho.ca, ho.cert, ho.key, client_id="ho-e2e"),
    )
    head.start()
    cfg = load_node_config(layout.node_toml)
    svc = NodeService.open(cfg.db, keys_dir=cfg.keys)
    agent = SyncAgent(svc, dataclasses.replace(cfg.sync, node_id=svc.node_id))
    try:
        number = svc.enrol("Ana Example", "2580", dt.datetime.now(dt.UTC)).number
        agent.start()
        deadline = time.monotonic() + 15
        while agent.pending() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.pending() == 0, "head office never acknowledged the node's event"
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
