"""Signed webhooks for the booking engine: a member's tier, points or vouchers changed.

Where the changes come from: the ledger's change log (``LedgerStore.changes_since``, kinds
``member`` and ``voucher``) — the very log every node follows — read by one delivery worker,
``staypoint central webhooks run``, a process of its own (not inside ``central api``): the API
may run as several processes, and the log must be read by one reader with one cursor; a slow
or dead receiver must never hold an API worker; and the worker restarts on its own.

The worker keeps, in head office's side tables (SQLite or PostgreSQL, like the API):

- ``cursors['webhooks']``: the change-log version read up to;
- ``webhook_seen``: the last tier and points sent per member, and the status per voucher, so
  an unrelated change of the member's record (a wrong PIN, a profile) sends nothing;
- ``webhook_deliveries``: one row per (subscription, event), an outbox.

Reading a page of the log, writing its deliveries, the seen state and the new cursor is one
side-table transaction: a restart either redoes the page (nothing of it was written) or goes on
after it, so no event is lost and none is queued twice. Sending is at least once: a POST that
reached the receiver just before a crash is sent again, with the same ``Staypoint-Delivery``
id (and the event ``id`` in the body), by which receivers drop repeats.

The log keeps the latest change per key: a member whose points change twice between two
reads gets one ``member.points_changed`` with the latest figures (``previous`` is what was
last sent).

A delivery is a POST of JSON with ``Staypoint-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the subscription's secret>`` (see :func:`verify`, docs/api.md). A 2xx
answer delivers it; anything else (or no answer in ``TIMEOUT_S``) is retried after
``min(cap, base * 2**(attempt-1))`` seconds times a random factor in [0.5, 1) (jitter), up to
``MAX_ATTEMPTS``; then it is dead: listed by ``central webhooks dead``, and sent again by
``central webhooks retry``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from staypoint.central.application.state import SideStore
from staypoint.central.store import Change, LedgerStore
from staypoint.loyalty.events import iso

EVENTS = ("member.tier_changed", "member.points_changed", "voucher.changed")
CURSOR = "webhooks"
MAX_ATTEMPTS = 8
BASE_S = 10.0
CAP_S = 3600.0
TIMEOUT_S = 10.0
TOLERANCE_S = 300
PAGE = 1000
NAMESPACE = uuid.UUID("1b0b6a4e-53c1-4b7e-9f0e-6a5e7d2c9b11")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS webhook_subscriptions (id TEXT PRIMARY KEY, client TEXT NOT NULL,
        url TEXT NOT NULL, secret TEXT NOT NULL, kinds TEXT NOT NULL, created TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (id TEXT PRIMARY KEY, subscription TEXT NOT NULL,
        event TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
        attempts INTEGER NOT NULL, next_at TEXT NOT NULL, last_error TEXT, created TEXT NOT NULL,
        delivered_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_at)",
    # A subscription's last delivery, read without a scan (the console's Integrations tab).
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_last ON webhook_deliveries (subscription, delivered_at)",
    "CREATE TABLE IF NOT EXISTS webhook_seen (key TEXT PRIMARY KEY, state TEXT NOT NULL)",
)


class WebhookError(ValueError):
    """A refusal in one line (bad URL, unknown event kind, unknown subscription)."""


def ensure_schema(side: SideStore) -> None:
    with side.transaction():
        for stmt in SCHEMA:
            side.execute(stmt)


# -- signatures ------------------------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Staypoint-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: int = TOLERANCE_S) -> bool:
    """What a receiver does: the HMAC over ``"<t>.<body>"`` matches and ``t`` is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    want = sign(secret, t, body).split("v1=", 1)[1]
    return abs(now - t) <= tolerance and hmac.compare_digest(want, parts.get("v1", ""))


def backoff(
    attempt: int, base: float = BASE_S, cap: float = CAP_S, rng: Callable[[], float] = random.random
) -> float:
    """Seconds before try ``attempt + 1`` after ``attempt`` failed ones: exponential, capped, jittered."""
    return float(min(cap, base * 2.0 ** (attempt - 1)) * (0.5 + rng() / 2))


# -- subscriptions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subscription:
    id: str
    client: str
    url: str
    kinds: tuple[str, ...]
    created: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "url": self.url,
            "kinds": list(self.kinds),
            "created": self.created,
        }


@dataclass(frozen=True)
class SubscriptionState:
    """How a subscription is doing: its key's state, its last delivery, what is failing."""

    subscription: Subscription
    key_revoked: bool  # nothing is queued for it any more (the worker skips it)
    last_delivered: str | None
    retrying: int  # pending after at least one failed try
    dead: int  # failed every try: 'central webhooks dead', 'retry'
    last_error: str | None  # of the newest delivery still retrying or dead

    @property
    def state(self) -> str:
        if self.key_revoked:
            return "paused: key revoked"
        return "retrying" if self.retrying else "active"


class Webhooks:
    """Subscriptions and the delivery list, in the side tables."""

    def __init__(self, side: SideStore) -> None:
        self.side = side
        ensure_schema(side)

    def add(self, client: str, url: str, kinds: list[str], now: datetime) -> tuple[str, str]:
        """A subscription for API key ``client``: (its id, its signing secret, shown once)."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise WebhookError(f"{url[:80]!r} is not an http(s) URL")
        kinds = [k.strip() for k in kinds if k.strip()] or ["*"]
        bad = [k for k in kinds if k != "*" and k not in EVENTS]
        if bad:
            raise WebhookError(f"unknown event kinds {bad}; use {', '.join(EVENTS)} or *")
        key = self.side.row("SELECT revoked FROM api_keys WHERE id = ?", (client,))
        if key is None:
            raise WebhookError(f"no API key {client[:40]!r} (staypoint central api keys list)")
        if key[0] is not None:
            raise WebhookError(f"API key {client} is revoked")
        sub_id = "wh_" + secrets.token_hex(6)
        secret = "whsec_" + secrets.token_urlsafe(24)
        self.side.execute(
            "INSERT INTO webhook_subscriptions (id, client, url, secret, kinds, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sub_id, client, url, secret, json.dumps(sorted(kinds)), iso(now)),
        )
        return sub_id, secret

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(str(r[0]), str(r[1]), str(r[2]), tuple(json.loads(r[3])), str(r[4]))
            for r in self.side.all(
                "SELECT id, client, url, kinds, created FROM webhook_subscriptions ORDER BY created, id"
            )
        ]

    def states(self) -> list[SubscriptionState]:
        """Every subscription with its state (read through the indexes: no scan of the deliveries)."""
        failing: dict[tuple[str, str], int] = {}
        errors: dict[str, str] = {}
        for sub, status, attempts, error in self.side.all(
            "SELECT subscription, status, attempts, last_error FROM webhook_deliveries "
            "WHERE status IN ('pending', 'dead') ORDER BY created DESC, id"
        ):
            if status == "pending" and int(attempts) == 0:
                continue  # not tried yet: nothing has failed
            failing[(str(sub), str(status))] = failing.get((str(sub), str(status)), 0) + 1
            if error is not None:
                errors.setdefault(str(sub), str(error))
        out = []
        for s in self.subscriptions():
            revoked = self.side.one("SELECT revoked FROM api_keys WHERE id = ?", (s.client,))
            last = self.side.one(
                "SELECT max(delivered_at) FROM webhook_deliveries WHERE subscription = ?", (s.id,)
            )
            out.append(
                SubscriptionState(
                    s,
                    revoked is not None,
                    None if last is None else str(last),
                    failing.get((s.id, "pending"), 0),
                    failing.get((s.id, "dead"), 0),
                    errors.get(s.id),
                )
            )
        return out

    def remove(self, sub_id: str) -> None:
        with self.side.transaction():
            if not self.side.execute("DELETE FROM webhook_subscriptions WHERE id = ?", (sub_id,)):
                raise WebhookError(
                    f"no webhook subscription {sub_id[:40]!r} (staypoint central webhooks list)"
                )
            self.side.execute(
                "UPDATE webhook_deliveries SET status = 'dead', last_error = 'subscription removed' "
                "WHERE subscription = ? AND status = 'pending'",
                (sub_id,),
            )

    def deliveries(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = ("WHERE d.status = ?", [status]) if status else ("", [])
        rows = self.side.all(
            "SELECT d.id, d.subscription, d.kind, d.status, d.attempts, d.next_at, d.last_error, d.created, "
            f"d.delivered_at, d.event FROM webhook_deliveries d {where} "
            "ORDER BY d.created DESC, d.id LIMIT ?",
            [*args, limit],
        )
        keys = (
            "id",
            "subscription",
            "kind",
            "status",
            "attempts",
            "next_at",
            "last_error",
            "created",
            "delivered_at",
            "event",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def dead(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.deliveries("dead", limit)

    def retry(self, delivery: str | None, now: datetime) -> int:
        """Send dead deliveries again (one by id, or all with None): tries start from zero."""
        sql = "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_at = ? "
        sql += "WHERE status = 'dead'"
        sql += " AND subscription IN (SELECT id FROM webhook_subscriptions)"
        args: list[Any] = [iso(now)]
        if delivery is not None:
            sql += " AND id = ?"
            args.append(delivery)
        n = self.side.execute(sql, args)
        if delivery is not None and n == 0:
            orphan = "SELECT 1 FROM webhook_deliveries WHERE id = ? AND status = 'dead'"
            if self.side.one(orphan, (delivery,)) is not None:  # dead, but its subscription is gone
                raise WebhookError(f"delivery {delivery[:40]}: its webhook was removed, nowhere to send it")
            raise WebhookError(f"no dead delivery {delivery[:40]!r} (staypoint central webhooks dead)")
        return n


# -- the worker ------------------------------------------------------------------------------------------
Post = Callable[[str, bytes, dict[str, str]], int]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body``; the HTTP status (an error status too), or an OSError when nothing answered."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # http(s) only: checked at add
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class Worker:
    """Reads the change log into deliveries and sends the due ones (see the module)."""

    def __init__(
        self,
        store: LedgerStore,
        side: SideStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        post: Post = http_post,
        max_attempts: int = MAX_ATTEMPTS,
        base: float = BASE_S,
        cap: float = CAP_S,
        senders: int = 4,
    ) -> None:
        self.store = store
        self.side = side
        self.book = Webhooks(side)
        self.clock = clock
        self.post = post
        self.max_attempts = max_attempts
        self.base = base
        self.cap = cap
        self.pool = ThreadPoolExecutor(senders, thread_name_prefix="webhook")

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    # reading the log
    def pull(self) -> int:
        """Turn the change log past the cursor into deliveries; returns how many were queued."""
        position = self.side.one("SELECT position FROM cursors WHERE name = ?", (CURSOR,))
        if position is None:  # the first run: from now on, not the whole history
            self.side.set_cursor(CURSOR, self.store.digest()[0])
            return 0
        changes = self.store.changes_since(int(position), PAGE)
        if changes is None:
            changes = self.store.changes_since(int(position), 1_000_000) or []
        if not changes:
            return 0
        now = self.clock()
        queued = 0
        with self.side.transaction():
            subs = [
                s
                for s in self.book.subscriptions()
                if self.side.one("SELECT revoked FROM api_keys WHERE id = ?", (s.client,)) is None
            ]
            for change in changes:
                for kind, data in self._events(change):
                    event = str(uuid.uuid5(NAMESPACE, f"{change.version}:{change.key}:{kind}"))
                    body = {"id": event, "type": kind, "created": iso(now), "data": data}
                    for sub in subs:
                        if "*" not in sub.kinds and kind not in sub.kinds:
                            continue
                        queued += self.side.execute(
                            "INSERT INTO webhook_deliveries (id, subscription, event, kind, body, status, "
                            "attempts, next_at, created) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?) "
                            "ON CONFLICT (id) DO NOTHING",
                            (
                                str(uuid.uuid5(NAMESPACE, f"{sub.id}:{event}")),
                                sub.id,
                                event,
                                kind,
                                json.dumps(body, sort_keys=True, separators=(",", ":")),
                                iso(now),
                                iso(now),
                            ),
                        )
            self.side.set_cursor(CURSOR, max(c.version for c in changes))
        return queued

    def _seen(self, key: str, state: dict[str, Any]) -> dict[str, Any] | None:
        row = self.side.one("SELECT state FROM webhook_seen WHERE key = ?", (key,))
        self.side.execute(
            "INSERT INTO webhook_seen (key, state) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET state = excluded.state",
            (key, json.dumps(state, sort_keys=True)),
        )
        return None if row is None else dict(json.loads(row))

    def _events(self, change: Change) -> list[tuple[str, dict[str, Any]]]:
        body = change.body
        if change.kind == "member":
            now = {"tier": str(body.get("tier", "")), "points": int(body.get("points", 0))}
            before = self._seen(f"member:{change.key}", now)
            out: list[tuple[str, dict[str, Any]]] = []
            if before is not None and before["tier"] != now["tier"]:
                out.append(
                    (
                        "member.tier_changed",
                        {"member": change.key, "tier": now["tier"], "previous": before["tier"]},
                    )
                )
            if before is None or before["points"] != now["points"]:
                out.append(
                    (
                        "member.points_changed",
                        {
                            "member": change.key,
                            "points": now["points"],
                            "previous": None if before is None else before["points"],
                        },
                    )
                )
            return out
        if change.kind == "voucher":
            status = str(body.get("status", ""))
            before = self._seen(f"voucher:{change.key}", {"status": status})
            if before is not None and before["status"] == status:
                return []
            data = {k: body.get(k) for k in ("code", "reward", "member", "status", "expires", "points")}
            return [("voucher.changed", {**data, "previous": None if before is None else before["status"]})]
        return []

    # sending
    def deliver_due(self) -> int:
        """Send every due delivery (in parallel, ``senders`` at a time); returns how many were tried."""
        now = self.clock()
        rows = self.side.all(
            "SELECT d.id, d.body, d.attempts, d.kind, s.url, s.secret FROM webhook_deliveries d "
            "JOIN webhook_subscriptions s ON s.id = d.subscription "
            "WHERE d.status = 'pending' AND d.next_at <= ? ORDER BY d.next_at LIMIT 100",
            (iso(now),),
        )
        list(self.pool.map(lambda r: self._send(*r), rows))
        return len(rows)

    def _send(self, delivery: str, body: str, attempts: int, kind: str, url: str, secret: str) -> None:
        raw = body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Staypoint-Webhooks/1",
            "Staypoint-Delivery": delivery,
            "Staypoint-Event": kind,
            "Staypoint-Signature": sign(secret, int(time.time()), raw),
        }
        try:
            status = self.post(url, raw, headers)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        now = self.clock()
        if error is None:
            self.side.execute(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = ?, delivered_at = ?, "
                "last_error = NULL WHERE id = ?",
                (attempts + 1, iso(now), delivery),
            )
            return
        tries = attempts + 1
        if tries >= self.max_attempts:
            self.side.execute(
                "UPDATE webhook_deliveries SET status = 'dead', attempts = ?, last_error = ? WHERE id = ?",
                (tries, error, delivery),
            )
            return
        due = now + timedelta(seconds=backoff(tries, self.base, self.cap))
        self.side.execute(
            "UPDATE webhook_deliveries SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
            (tries, iso(due), error, delivery),
        )

    def run(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Pull and send until ``stop`` is set."""
        while not stop.is_set():
            self.pull()
            self.deliver_due()
            stop.wait(poll)


# -- CLI -----------------------------------------------------------------------------------------------
def _open(args: argparse.Namespace, *, create: bool = False) -> SideStore:
    from staypoint.central.api.cli import _side_store

    return _side_store(args, create=create)  # type: ignore[no-any-return]


def cmd_webhooks(args: argparse.Namespace) -> None:
    now = datetime.now(UTC)
    if args.webhooks_cmd == "run":
        return _run(args)
    side = _open(args)
    book = Webhooks(side)
    try:
        if args.webhooks_cmd == "add":
            sub_id, secret = book.add(args.client, args.url, args.events.split(","), now)
            print(f"{sub_id} {secret}")
            print("(the signing secret is shown once: give it to the receiver now)", file=sys.stderr)
        elif args.webhooks_cmd == "remove":
            book.remove(args.id)
            print(f"removed {args.id}")
        elif args.webhooks_cmd == "retry":
            n = book.retry(None if args.id == "all" else args.id, now)
            print(f"{n} deliveries queued again")
        else:
            rows: list[dict[str, Any]] = (
                [s.as_dict() for s in book.subscriptions()]
                if args.webhooks_cmd == "list"
                else book.dead(args.limit)
            )
            if args.json:
                print(json.dumps(rows, indent=2))
            elif args.webhooks_cmd == "list":
                for s in rows:
                    print(f"{s['id']}  key {s['client']}  {','.join(s['kinds']):<24} {s['url']}")
            else:
                for d in rows:
                    print(
                        f"{d['id']}  {d['subscription']}  {d['kind']:<22} {d['attempts']} tries  "
                        f"{d['last_error']}"
                    )
    except WebhookError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    finally:
        side.close()


def _run(args: argparse.Namespace) -> None:
    from staypoint.central.store import StoreConfigError, open_ledger_store, store_url

    try:
        store = open_ledger_store(store_url(args), must_exist=True)
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    side = _open(args, create=True)
    worker = Worker(store, side)
    stop = threading.Event()
    print(f"webhooks: delivering from version {side.cursor_position(CURSOR)}", file=sys.stderr)
    try:
        worker.run(stop, args.poll)
    except KeyboardInterrupt:
        stop.set()
    finally:
        worker.close()
        side.close()


def register(central_sub: Any) -> None:
    """``staypoint central webhooks list|add|remove|dead|retry|run``."""
    p = central_sub.add_parser(
        "webhooks", help="signed webhooks to the booking engine: subscriptions, dead letters, the worker"
    )
    sub = p.add_subparsers(dest="webhooks_cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", help="the ledger (its PostgreSQL holds the side tables too)")
    common.add_argument("--side", help="head office's side tables: sqlite:///path/side.db or PostgreSQL")
    ls = sub.add_parser("list", parents=[common], help="the subscriptions (never their secrets)")
    ls.add_argument("--json", action="store_true")
    a = sub.add_parser("add", parents=[common], help="subscribe a URL; prints its id and signing secret once")
    a.add_argument("client", help="the API key id of the client (staypoint central api keys list)")
    a.add_argument("url", help="http(s) URL the events are POSTed to")
    a.add_argument("--events", default="*", help=f"comma-separated: {', '.join(EVENTS)} (default *: all)")
    r = sub.add_parser("remove", parents=[common], help="remove a subscription (its pending deliveries die)")
    r.add_argument("id")
    d = sub.add_parser("dead", parents=[common], help="deliveries that failed every try (the dead letters)")
    d.add_argument("--limit", type=int, default=100)
    d.add_argument("--json", action="store_true")
    t = sub.add_parser("retry", parents=[common], help="send a dead delivery again (an id, or all)")
    t.add_argument("id", help="a delivery id from 'dead', or all")
    w = sub.add_parser("run", parents=[common], help="the delivery worker: read the change log, send, retry")
    w.add_argument("--db", help="the ledger as a SQLite file: same as --store sqlite:PATH")
    w.add_argument("--poll", type=float, default=1.0, help="seconds between reads of the change log")
    for parser in (ls, a, r, d, t, w):
        parser.set_defaults(fn=cmd_webhooks)
