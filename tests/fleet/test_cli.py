"""``staypoint fleet ...``: help, one-line errors, and ``status --json`` against a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.fleet.sim import SimNode
from tests.mqtt_fixtures import ClientFactory, MosquittoBroker, publish, unique_client_id

pytest_plugins = ["tests.mqtt_fixtures"]


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "staypoint.central.fleet.cli", "fleet", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_and_errors(tmp_path: Path) -> None:
    for cmd in ("serve", "status", "dashboard"):
        assert fleet(cmd, "--help").returncode == 0
    res = fleet("status", "--config", str(tmp_path / "missing.toml"))
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "cannot read" in res.stderr
    bad = tmp_path / "fleet.toml"
    bad.write_text('[mqtt]\nhost = "x"\nport = "8883"\n')
    res = fleet("status", "--config", str(bad))
    assert res.returncode == 1 and "[mqtt] port must be int" in res.stderr


def test_status_json(mosquitto: MosquittoBroker, mqtt_client: ClientFactory, tmp_path: Path) -> None:
    tls = mosquitto.client_tls("head-office")
    cfg = tmp_path / "fleet.toml"
    client_id = unique_client_id("cli")
    cfg.write_text(
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.office_port}\nca = "{tls.ca}"\n'
        f'cert = "{tls.cert}"\nkey = "{tls.key}"\nclient_id = "{client_id}"\n'
    )
    node = mqtt_client(mosquitto, "sha-lobby-01", unique_client_id("sha-lobby-01"))
    # Retained birth: the status command sees it as soon as it subscribes.
    assert publish(
        node, "sp/v1/node/sha-lobby-01/status", b'{"state":"online","session":7}', retain=True
    ) in (0, 16)
    proc = subprocess.Popen(
        [sys.executable, "-m", "staypoint.central.fleet.cli", "fleet", "status", "--config", str(cfg),
         "--wait", "1.5", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The health document is not retained: publish it only once the broker has logged
        # the command's subscription (its own client id, "-status-..." appended).
        mosquitto.wait_subscribed(client_id, "sp/v1/node/+/health", timeout=30)
    except TimeoutError:
        proc.kill()
        raise
    doc = SimNode("sha-lobby-01", "SHA", paper="paper_out").doc(datetime.now(UTC))
    doc["session"] = 7
    publish(node, "sp/v1/node/sha-lobby-01/health", json.dumps(doc).encode(), qos=1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    rows = {r["node"]: r for r in json.loads(out)}
    assert rows["sha-lobby-01"]["state"] == "online"
    assert rows["sha-lobby-01"]["devices"]["printer"] == "paper_out"
    # Leave no retained status behind for the module's other tests.
    publish(node, "sp/v1/node/sha-lobby-01/status", b"", retain=True)
