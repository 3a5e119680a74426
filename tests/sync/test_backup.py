"""Backups for real: Litestream streams a node's replica; a restore older than the last acked
event continues in a new epoch, reuses no (epoch, seq), and converges with head office."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from staypoint.edge import backup
from staypoint.edge.service import NodeService
from staypoint.loyalty.program import Outlet
from tests.mqtt_fixtures import MosquittoBroker
from tests.sync.conftest import PIN, Fleet, now
from tests.waits import wait_until

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _stay(service: NodeService, member: str, folio: str) -> None:
    service.post_stay(member, folio, now(), nights=1, revenue={Outlet.ROOM: Decimal("100")})


def _max_seq(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox WHERE epoch = 1").fetchone()[0])
    finally:
        conn.close()


def test_restore_from_a_lagging_backup_starts_a_new_epoch_and_converges(
    mosquitto: MosquittoBroker, fleet_factory: Callable[[MosquittoBroker], Fleet], tmp_path: Path
) -> None:
    fleet = fleet_factory(mosquitto)
    fleet.start_office()
    node = fleet.add_node("sha-lobby-01")
    db = fleet.directory / "sha-lobby-01.db"
    conf = tmp_path / "node.toml"
    conf.write_text(f'[node]\ndb = "{db}"\n[backup]\nreplica = "backup"\nsync_interval = "200ms"\n')
    cfg = backup.load_backup_config(conf)
    assert cfg.replica_url == (tmp_path / "backup").resolve().as_uri()

    member = node.service.enrol("Grace Hopper", PIN, now()).number
    for i in range(10):
        _stay(node.service, member, f"G-{i}")
    fleet.settle()
    backed = 11  # enrolment + 10 stays, every one acknowledged by head office

    litestream = backup.start_replication(cfg, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = backup.BackupConfig(tmp_path / "probe.db", cfg.replica_url, tmp_path / "probe.yml")
    try:

        def backup_has_everything() -> bool:
            try:
                backup.restore(probe, force=True)
            except backup.BackupError:
                return False
            return _max_seq(probe.db) >= backed

        wait_until(backup_has_everything, 30, "Litestream to back the replica up")
    finally:
        litestream.send_signal(signal.SIGTERM)
        litestream.wait(10)

    # The backup now lags: these are acknowledged by head office but not in the backup.
    for i in range(10, 25):
        _stay(node.service, member, f"G-{i}")
    fleet.settle()
    acked = 26
    assert fleet.ledger.store.high_water("sha-lobby-01", 1) == acked
    before = fleet.ledger.member(member)
    assert before is not None

    # The board dies; a technician restores it from the (older) backup.
    fleet.stop_agent(node)
    node.service.close()
    with pytest.raises(backup.BackupError, match="--force"):
        backup.restore(cfg)
    first = backup.restore(cfg, force=True)
    # The same stale backup restored again (a technician repeats the step): another epoch,
    # so the two restores can never issue the same (node, epoch, seq) with other bodies.
    epoch = backup.restore(cfg, force=True)
    assert epoch != first and min(epoch, first) > 1
    assert _max_seq(db) == backed  # older than the last acknowledged event
    node.service = NodeService.open(db)
    assert node.service.replica.meta("epoch") == str(epoch)

    # It keeps working in the new epoch, online or not; nothing reuses an (epoch, seq).
    _stay(node.service, member, "G-after-restore")
    fleet.start_agent(node)
    fleet.settle()

    store = fleet.ledger.store
    assert store.event_count() == acked + 1
    assert sorted(store.streams()) == [("sha-lobby-01", 1, acked), ("sha-lobby-01", epoch, 1)]
    assert not [a for a in store.alarms() if a["kind"] in ("conflicting_body", "duplicate_id")]
    central = fleet.ledger.member(member)
    assert central is not None
    assert central["points"] > before["points"]  # the new stay counted, once
    # The stays lost in the restore came back downstream: the node shows head office's figures.
    wait_until(lambda: node.points(member) == central["points"], 15, "the node to converge")
    row = node.service.replica.member(member)
    assert (
        row is not None and row.qual_nights == central["qual_nights"] == 26
    )  # 25 stays + 1 after the restore
    assert node.service.status(now())["outbox_depth"] == 0


def test_restore_errors_are_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "node.toml"
    conf.write_text('[node]\ndb = "node.db"\n')
    with pytest.raises(backup.BackupError, match=r"\[backup\] replica is missing"):
        backup.load_backup_config(conf)
    conf.write_text('[node]\ndb = "node.db"\n[backup]\nreplica = "nowhere"\n')
    cfg = backup.load_backup_config(conf)
    with pytest.raises(backup.BackupError, match="litestream restore from file://") as info:
        backup.restore(cfg)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "node.db").exists()
