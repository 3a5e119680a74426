"""``staypoint provision ...`` as a technician runs it: one process per command."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path


def prov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "staypoint.provisioning.cli", "provision", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ca_init_token_and_errors(tmp_path: Path) -> None:
    state = str(tmp_path / "prov")
    res = prov("ca", "init", "--state", state, "--broker-host", "mqtt.example.net", "--json")
    assert res.returncode == 0, res.stderr
    made = json.loads(res.stdout)
    assert made["ca"] == made["broker"] == made["head-office"] == made["enrol"] == "created"
    assert stat.S_IMODE((tmp_path / "prov" / "ca" / "ca.key").stat().st_mode) == 0o600
    # Again: nothing replaced under a fleet that already trusts this CA.
    again = json.loads(prov("ca", "init", "--state", state, "--json").stdout)
    assert set(again.values()) >= {"kept"} and again["ca"] == "kept"

    res = prov(
        "token",
        "create",
        "--state",
        state,
        "--node",
        "sha-lobby-07",
        "--property",
        "SHA",
        "--ttl",
        "2h",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    tok = json.loads(res.stdout)["token"]
    assert tok.startswith("sha-lobby-07.")
    stored = (tmp_path / "prov" / "tokens.json").read_text()
    assert tok.split(".")[1] not in stored, "only the hash is kept"
    listed = json.loads(prov("token", "list", "--state", state, "--json").stdout)
    assert listed[0]["status"] == "open"

    for bad, message in (
        (
            ("token", "create", "--state", state, "--node", "Bad_Id", "--property", "SHA"),
            "not a valid node id",
        ),
        (
            ("token", "create", "--state", state, "--node", "x-1", "--property", "SHA", "--ttl", "9d"),
            "at most 7d",
        ),
        (("revoke", "--state", state, "--node", "never-enrolled", "--reload", ""), "never enrolled"),
        (
            ("token", "create", "--state", str(tmp_path / "none"), "--node", "a-1", "--property", "S"),
            "ca init",
        ),
        (
            ("enrol", "--broker", "nowhere", "--token", "junk", "--printer", "sim"),
            "malformed enrolment token",
        ),
        (("enrol", "--broker", "nowhere", "--token", "junk"), "--printer is required"),
    ):
        res = prov(*bad)
        assert res.returncode == 1, bad
        assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr, res.stderr


def test_every_command_has_help() -> None:
    for args in (
        ("ca", "init"),
        ("token", "create"),
        ("token", "list"),
        ("serve",),
        ("enrol",),
        ("revoke",),
        ("nodes",),
        ("selftest",),
    ):
        res = prov(*args, "--help")
        assert res.returncode == 0 and "usage:" in res.stdout, args
