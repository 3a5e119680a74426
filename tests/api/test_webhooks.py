"""Signed webhooks (central/webhooks.py, docs/api.md) against a real local HTTP receiver: the
signature checks, the first tries fail (backoff), a restart neither loses nor re-sends, a dead
receiver ends in the dead-letter list and comes back with retry. Both stores."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from staypoint.central import webhooks
from staypoint.central.webhooks import Webhooks, Worker
from tests.api.conftest import Api
from tests.waits import wait_until

pytest_plugins = ["tests.pg_fixtures"]


class Receiver:
    """A booking engine's endpoint: checks each signature, fails the first ``fail`` posts."""

    def __init__(self, fail: int = 0) -> None:
        self.secret = ""
        self.fail = fail
        self.posts: list[dict[str, Any]] = []  # every post that arrived, valid or not
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = webhooks.verify(outer.secret, self.headers["Staypoint-Signature"], body, time.time())
                with outer.lock:
                    outer.posts.append(
                        {
                            "valid": ok,
                            "delivery": self.headers["Staypoint-Delivery"],
                            "body": json.loads(body),
                        }
                    )
                    failing = len(outer.posts) <= outer.fail
                self.send_response(500 if failing or not ok else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p for i, p in enumerate(self.posts) if i >= self.fail and p["valid"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


def _worker(api: Api, **kw: Any) -> Worker:
    return Worker(api.ledger.store, api.services.side, base=0.05, cap=0.2, max_attempts=4, **kw)


def _running(worker: Worker) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    t = threading.Thread(target=worker.run, args=(stop, 0.02), daemon=True)
    t.start()
    return stop, t


def test_signed_retried_durable_dead_letter(api: Api, receiver: Receiver) -> None:
    client = api.keys["web"].split("_")[1]
    book = Webhooks(api.services.side)
    _sub, receiver.secret = book.add(client, receiver.url, ["*"], api.clock())
    first = _worker(api)
    first.pull()  # the first run starts from the log's current version
    m = api.enrol(email="hook@example.com")
    assert first.pull() == 1  # member.points_changed, previous None: a new member
    api.stay(m, "F-HOOK", room="3000")  # 30,000 points: Silver by points
    stop, thread = _running(first)
    got = wait_until(
        lambda: [p for p in receiver.accepted() if p["body"]["type"] == "member.tier_changed"],
        30,
        "the tier change",
    )
    assert got[0]["body"]["data"] == {"member": m, "tier": "SILVER", "previous": "MEMBER"}
    balance = api.ledger.member(m)["points"]
    wait_until(
        lambda: [
            p
            for p in receiver.accepted()
            if p["body"]["type"] == "member.points_changed"
            and p["body"]["data"] == {"member": m, "points": balance, "previous": 0}
        ],
        30,
        "the points change",
    )
    assert all(p["valid"] for p in receiver.posts)  # every post, the failed tries too, was signed right
    assert len(receiver.posts) >= 3  # two refused, then delivered: the backoff retried
    wait_until(lambda: not book.deliveries("pending"), 30, "every delivery settled")
    stop.set()
    thread.join(10)
    first.close()
    sent = len(receiver.posts)

    # A restart: the same stores, a new worker. Nothing is re-sent, nothing is lost.
    second = _worker(api)
    assert second.pull() == 0 and second.deliver_due() == 0
    assert len(receiver.posts) == sent
    token = api.login(m)
    r = api.client.post("/v1/me/redemptions", json={"reward": "LATE-CO"}, headers=api.h(token=token))
    assert r.status_code == 201, r.text
    assert second.pull() >= 2  # voucher.changed and member.points_changed
    wait_until(
        lambda: second.deliver_due() == 0 and not book.deliveries("pending"),
        30,
        "the redemption's deliveries",
    )
    voucher = [p["body"]["data"] for p in receiver.accepted() if p["body"]["type"] == "voucher.changed"]
    assert voucher == [
        {
            "code": voucher[0]["code"],
            "reward": "LATE-CO",
            "member": m,
            "status": "issued",
            "expires": r.json()["expires"],
            "points": 2500,
            "previous": None,
        }
    ]
    ids = [p["delivery"] for p in receiver.accepted()]
    assert len(ids) == len(set(ids))  # each delivery accepted once

    # A dead receiver: every try fails, then the dead-letter list; retry sends it again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}/gone"
    dead_sub, _ = book.add(client, dead_url, ["member.points_changed"], api.clock())
    api.stay(m, "F-HOOK-2", room="100")
    stop, thread = _running(second)
    dead = wait_until(lambda: book.dead(), 30, "the dead letter")
    assert dead[0]["subscription"] == dead_sub and dead[0]["attempts"] == 4
    assert "Error" in str(dead[0]["last_error"])
    stop.set()
    thread.join(10)
    assert book.retry(str(dead[0]["id"]), api.clock()) == 1
    assert book.deliveries("pending")[0]["attempts"] == 0
    book.remove(dead_sub)  # its pending delivery dies with it
    assert [d["id"] for d in book.dead()] == [dead[0]["id"]]
    with pytest.raises(webhooks.WebhookError, match="its webhook was removed"):
        book.retry(str(dead[0]["id"]), api.clock())
    second.close()


def test_refusals_and_signature() -> None:
    body = b'{"a":1}'
    header = webhooks.sign("whsec_x", 1_700_000_000, body)
    assert webhooks.verify("whsec_x", header, body, 1_700_000_100)
    assert not webhooks.verify("whsec_y", header, body, 1_700_000_100)
    assert not webhooks.verify("whsec_x", header, body + b" ", 1_700_000_100)
    assert not webhooks.verify("whsec_x", header, body, 1_700_001_000)  # too old: a replay
    assert not webhooks.verify("whsec_x", "garbage", body, 1_700_000_000)
    delays = [webhooks.backoff(n, 1, 8, rng=lambda: 0.999) for n in range(1, 7)]
    assert [round(d) for d in delays] == [1, 2, 4, 8, 8, 8]
    assert webhooks.backoff(3, 1, 8, rng=lambda: 0.0) == 2.0  # jitter: half to all of the step


def test_cli_add_list_dead_retry_refusals(api: Api) -> None:
    side = ["--side", api.services.side.url]
    client = api.keys["web"].split("_")[1]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "staypoint.cli.main", "central", "webhooks", *args, *side],
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = cli("add", client, "https://booking.example/hooks", "--events", "member.tier_changed")
    assert added.returncode == 0, added.stderr
    sub_id, secret = added.stdout.split()
    assert secret.startswith("whsec_") and "shown once" in added.stderr
    listed = json.loads(cli("list", "--json").stdout)
    assert [s["id"] for s in listed] == [sub_id] and secret not in json.dumps(listed)
    assert json.loads(cli("dead", "--json").stdout) == []
    for args, text in [
        (("add", client, "ftp://x/y"), "is not an http(s) URL"),
        (("add", client, "https://x/y", "--events", "member.nope"), "unknown event kinds"),
        (("add", "nokey", "https://x/y"), "no API key 'nokey'"),
        (("remove", "wh_nope"), "no webhook subscription"),
        (("retry", "nope"), "no dead delivery"),
    ]:
        out = cli(*args)
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and text in out.stderr, (args, out.stderr)
    assert cli("remove", sub_id).returncode == 0 and json.loads(cli("list", "--json").stdout) == []
