"""``staypoint central api keys create|list|revoke`` (docs/api.md): a key made at the command line
works against the API; revoked there, the next request is a 401; refusals are one line."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.api.conftest import Api

pytest_plugins = ["tests.pg_fixtures"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "staypoint.cli.main", "central", "api", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_list_revoke(api: Api) -> None:
    side = ["--side", api.services.side.url]
    made = _cli("create", "booking engine", "member,enrol", "*", *side)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sp_") and "shown once" in made.stderr
    r = api.client.post(
        "/v1/members/login", json={"login": "0000000000", "pin": "1"}, headers={"X-API-Key": key}
    )
    assert r.status_code == 401 and r.json()["code"] == "bad_login"  # the key passed; the member did not
    listed = json.loads(_cli("list", "--json", *side).stdout)
    mine = next(k for k in listed if k["name"] == "booking engine")
    assert mine["scopes"] == ["enrol", "member"] and mine["revoked"] is None
    assert key.split("_", 2)[2] not in json.dumps(listed)  # the secret is never shown again
    gone = _cli("revoke", mine["id"], *side)
    assert gone.returncode == 0 and f"revoked {mine['id']}" in gone.stdout
    r = api.client.post(
        "/v1/members/login", json={"login": "0000000000", "pin": "1"}, headers={"X-API-Key": key}
    )
    assert r.status_code == 401 and r.json()["code"] == "revoked"
    again = _cli("revoke", key, *side)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "revoked already" in again.stderr
    for args, text in [
        (("revoke", "nope", *side), "no API key 'nope'"),
        (("create", "x", "bogus", "*", *side), "unknown scopes"),
        (("create", "x", "member", "S HA", *side), "bad properties"),
        (("list",), "--side is needed"),
    ]:
        out = _cli(*args)
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and text in out.stderr, (args, out.stderr)
