"""``Idempotency-Key`` on the API's POSTs: a retry after a timeout never redeems twice.

A client sends ``Idempotency-Key: <1-255 printable ASCII characters>`` with a POST (every
POST under ``/v1/`` but the sign-in; the spending ones — redemptions, transfers, stored
value — are why it exists). Head office keeps the first answer (status and body) under
(API key id, member, key) in the side tables (SQLite or PostgreSQL, so it outlives a
restart), for ``KEEP`` (48 h, at least the promised 24 h):

- the same key with the same method, path and body → the first answer again, with
  ``Idempotent-Replayed: true``; nothing is done twice;
- the same key with another path or body → ``422 idempotency_mismatch``;
- the same key while the first request is still running → this one waits for it (up to
  ``WAIT_S``) and answers what it answered, else ``409 idempotency_in_progress``.

The first request claims the key with one ``INSERT ... ON CONFLICT DO NOTHING`` before the
handler runs, so of two concurrent requests exactly one runs (``tests/api/test_idempotency.py``).
Answers kept: 2xx and the programme's refusals (404, 409, 410, 422); answers that may change
on a retry (401, 403, 423, 429, 5xx) free the key again. A process that dies between the
ledger's commit and recording the answer leaves the key claimed: a retry gets ``409
idempotency_in_progress`` until ``STALE`` (then ``409 idempotency_unknown``: look at the
member's vouchers), never a second redemption. The answer is kept just after it is sent
(``finish_later``): a retry that arrives in between waits for it like any running request.

Installed by ``build_app`` with one call (:func:`install`): an ASGI middleware (it needs the
whole answer) and the header in the OpenAPI document of each POST it covers.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from staypoint.central.application.services import Services
from staypoint.central.application.state import SideStore
from staypoint.central.errors import Unauthenticated
from staypoint.loyalty.events import iso, parse_iso

HEADER = "Idempotency-Key"
KEEP = timedelta(hours=48)
STALE = timedelta(minutes=5)
WAIT_S = 10.0
KEPT_STATUSES = frozenset({404, 409, 410, 422}) | frozenset(range(200, 300))
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
EXEMPT = frozenset({"/v1/members/login"})  # a sign-in token is never replayed
# On PostgreSQL the claim and the answer commit without waiting for the WAL flush (SQLite's side
# file never waits: synchronous=NORMAL), in one statement: set_config(..., true) lasts for the
# statement's own transaction. Statements reference ``quiet`` so that it runs.
QUIET = {True: "WITH quiet AS (SELECT set_config('synchronous_commit', 'off', true)) "}
# The claim is one short statement per POST, on threads of its own through asyncio's executor,
# at about a third of the CPU of a Starlette threadpool hop (anyio's capacity limiter and cancel
# scope), and never queued behind the routes' threads. The answers, after their responses have
# gone out, are kept by the next claim on its thread (one statement for all that wait), or within
# ``FLUSH_S`` by the store's poller when no claim comes first: no thread is woken per POST.
SIDE_THREADS = 8
FLUSH_S = 0.02  # an answer not taken by a claim by then is kept by the store's poller
# PostgreSQL: the kept answers of a batch, one JSON array of {c, m, k, s, b}, in one statement.
_KEEP_MANY = (
    "UPDATE idempotency AS i SET state = 'done', status = v.s, body = v.b "
    "FROM quiet, json_to_recordset(?::json) AS v(c text, m text, k text, s integer, b text) "
    "WHERE i.client = v.c AND i.member = v.m AND i.key = v.k"
)
_CLAIM_PG = (
    "INSERT INTO idempotency (client, member, key, fingerprint, state, created) "
    "SELECT ?, ?, ?, ?, 'running', ? FROM quiet ON CONFLICT (client, member, key) DO NOTHING"
)

R = TypeVar("R")
log = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS idempotency (client TEXT NOT NULL, member TEXT NOT NULL,
        key TEXT NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL, status INTEGER,
        body TEXT, created TEXT NOT NULL, PRIMARY KEY (client, member, key))""",
    "CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created)",
)


def ensure_schema(side: SideStore) -> None:
    with side.transaction():
        for stmt in SCHEMA:
            side.execute(stmt)


def covered(method: str, path: str) -> bool:
    return method == "POST" and path.startswith("/v1/") and path not in EXEMPT


class Claim:
    """The outcome of claiming a key: run the handler, replay an answer, or refuse."""

    def __init__(self, kind: str, status: int = 0, body: bytes = b"") -> None:
        self.kind = kind  # run | replay | mismatch | busy | unknown
        self.status = status
        self.body = body


class IdempotencyStore:
    """The kept answers, in the side tables."""

    def __init__(self, side: SideStore) -> None:
        self.side = side
        ensure_schema(side)
        self._last_purge = 0.0
        # Answers sent but not kept yet (finish_later): written by the next claim's thread, or
        # by the store's poller when no claim comes first (flush_due), and at exit.
        self._due: list[tuple[str, str, str, int, bytes]] = []
        self._due_lock = threading.Lock()
        self._polling = False
        atexit.register(self.flush_due)

    def claim(self, client: str, member: str, key: str, fingerprint: str, now: datetime) -> Claim:
        self._purge(now)
        # One statement, atomic by itself (of two concurrent claims one inserts): no transaction,
        # no writers' lock. Nor a wait for the disk (QUIET): the request's own ledger commit
        # comes after it in the WAL and flushes it too; one lost with a crash before that lost a
        # request that had done nothing yet.
        args = (client, member, key, fingerprint, iso(now))
        if self.side.pg:
            won = self._claim_pg(args)
        else:
            self.flush_due()  # on this side thread anyway: the answers sent since the last claim
            won = (
                self.side.execute(
                    "INSERT INTO idempotency (client, member, key, fingerprint, state, created) "
                    "VALUES (?, ?, ?, ?, 'running', ?) ON CONFLICT (client, member, key) DO NOTHING",
                    args,
                )
                > 0
            )
        if won:
            return Claim("run")
        row = self.side.row(
            "SELECT fingerprint, state, status, body, created FROM idempotency "
            "WHERE client = ? AND member = ? AND key = ?",
            (client, member, key),
        )
        if row is None:  # freed between the two statements: try again
            return self.claim(client, member, key, fingerprint, now)
        if str(row[0]) != fingerprint:
            return Claim("mismatch")
        if row[1] == "done":
            return Claim("replay", int(row[2]), str(row[3]).encode())
        if now - parse_iso(str(row[4])) > STALE:
            return Claim("unknown")
        return Claim("busy")

    def _claim_pg(self, args: tuple[str, ...]) -> bool:
        """The claim's INSERT, with the answers sent since the last claim kept by the same
        statement (a round trip of the API's each POST, not two); when that fails, they are
        logged as ``flush_due`` logs them and the claim goes alone."""
        kept = self._kept_rows(self._take_due())
        if kept is None:
            return self.side.execute(QUIET[True] + _CLAIM_PG, args) > 0
        try:
            row = self.side.row(
                QUIET[True] + f", kept AS ({_KEEP_MANY}), won AS ({_CLAIM_PG} RETURNING 1) "
                "SELECT count(*) FROM won",
                (kept, *args),
            )
        except Exception:  # the keys stay claimed: a retry gets 409, never a second run
            log.exception("keeping idempotent answers with a claim failed")
            return self.side.execute(QUIET[True] + _CLAIM_PG, args) > 0
        return row is not None and int(row[0]) > 0

    def _take_due(self) -> list[tuple[str, str, str, int, bytes]]:
        with self._due_lock:
            batch, self._due = self._due, []
        return batch

    def _kept_rows(self, batch: list[tuple[str, str, str, int, bytes]]) -> str | None:
        """The answers of ``batch`` that are kept, as ``_KEEP_MANY``'s JSON (None: none); the
        others' keys are released."""
        for client, member, key, status, _ in batch:
            if status not in KEPT_STATUSES:
                self.release(client, member, key)
        rows = [
            {"c": c, "m": m, "k": k, "s": status, "b": body.decode("utf-8", "replace")}
            for c, m, k, status, body in batch
            if status in KEPT_STATUSES
        ]
        return orjson.dumps(rows).decode() if rows else None

    def finish(self, client: str, member: str, key: str, status: int, body: bytes) -> None:
        if status in KEPT_STATUSES:
            # Kept at the side tables' SQLite durability on PostgreSQL too (QUIET): an answer lost
            # with a crash of the database leaves the key claimed, and a retry then gets 409
            # idempotency_unknown, as after a crash of this process; never a second run.
            self.side.execute(
                QUIET.get(self.side.pg, "")
                + "UPDATE idempotency SET state = 'done', status = ?, body = ? "
                + ("FROM quiet " if self.side.pg else "")
                + "WHERE client = ? AND member = ? AND key = ?",
                (status, body.decode("utf-8", "replace"), client, member, key),
            )
        else:
            self.release(client, member, key)

    def finish_later(self, client: str, member: str, key: str, status: int, body: bytes) -> None:
        """``finish``, soon: the answer waits with the others for the next claim's thread (or the
        store's poller, within ``FLUSH_S``) to keep them all in one statement.

        The answer has gone out already: nothing waits for it to be kept but a retry with the
        same key, which waits for a running request anyway. No thread is woken for it (a wake
        per POST cost more of the API's core than the statement). Answers that fail to be kept
        are logged and their keys stay claimed, as after a crash before ``finish``."""
        with self._due_lock:
            self._due.append((client, member, key, status, body))
            if self._polling:
                return
            self._polling = True
        threading.Thread(target=self._poll, name="idempotency-answers", daemon=True).start()

    def _poll(self) -> None:
        """Keep what waits every ``FLUSH_S`` (claims usually take it first); end after a second
        with nothing to keep (the next ``finish_later`` starts it again)."""
        idle = 0.0
        while True:
            time.sleep(FLUSH_S)
            with self._due_lock:
                if not self._due:
                    idle += FLUSH_S
                    if idle >= 1.0:
                        self._polling = False
                        return
                    continue
            idle = 0.0
            self.flush_due()

    def flush_due(self) -> None:
        """Keep every answer waiting (blocking I/O: a side thread, never the event loop)."""
        batch = self._take_due()
        if not batch:
            return
        try:
            self.finish_many(batch)
        except Exception:  # the keys stay claimed: a retry gets 409, never a second run
            log.exception("keeping %d idempotent answers failed", len(batch))

    def finish_many(self, batch: list[tuple[str, str, str, int, bytes]]) -> None:
        """``finish`` of several (client, member, key, status, body) answers: on PostgreSQL the
        kept ones in one statement."""
        if not self.side.pg:
            for client, member, key, status, body in batch:
                self.finish(client, member, key, status, body)
            return
        kept = self._kept_rows(batch)
        if kept is not None:
            self.side.execute(QUIET[True] + _KEEP_MANY, (kept,))

    def release(self, client: str, member: str, key: str) -> None:
        self.side.execute(
            "DELETE FROM idempotency WHERE client = ? AND member = ? AND key = ? AND state = 'running'",
            (client, member, key),
        )

    def _purge(self, now: datetime) -> None:
        if time.monotonic() - self._last_purge < 600:
            return
        self._last_purge = time.monotonic()
        self.side.execute("DELETE FROM idempotency WHERE created < ?", (iso(now - KEEP),))


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


class IdempotencyMiddleware:
    """Keeps the first answer of a POST that carries ``Idempotency-Key`` (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: IdempotencyStore,
        member_of: Callable[[str | None], str | None],
        clock: Callable[[], datetime],
    ) -> None:
        self.app = app
        self.store = store
        self.member_of = member_of
        self.clock = clock
        self._pool = ThreadPoolExecutor(SIDE_THREADS, thread_name_prefix="idempotency")

    async def _off_loop(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on the middleware's own threads (blocking I/O: never on the loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not covered(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get(HEADER.lower())
        api_key = headers.get("x-api-key") or ""
        parts = api_key.split("_", 2)
        if key is not None and not KEY_PATTERN.match(key):
            answer = _error(422, f"{HEADER}: 1 to 255 printable ASCII characters, no spaces", "invalid")
            await answer(scope, receive, send)
            return
        if key is None or len(parts) != 3:
            # No key, or no API key to scope it by (the route answers 401): nothing to keep.
            await self.app(scope, receive, send)
            return
        auth = headers.get("authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        member = await self._off_loop(self.member_of, token) if token else ""
        if member is None:  # a bad token: the route answers 401, nothing kept
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        fingerprint = hashlib.sha256(
            scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + body
        ).hexdigest()
        client = parts[1]
        deadline = time.monotonic() + WAIT_S
        while True:
            claim = await self._off_loop(self.store.claim, client, member, key, fingerprint, self.clock())
            if claim.kind != "busy" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        if claim.kind == "mismatch":
            answer = _error(
                422,
                f"this {HEADER} was used with another request: use a new key for a new request",
                "idempotency_mismatch",
            )
        elif claim.kind == "busy":
            answer = _error(
                409,
                f"a request with this {HEADER} is still running: retry shortly",
                "idempotency_in_progress",
            )
        elif claim.kind == "unknown":
            answer = _error(
                409,
                f"a request with this {HEADER} did not finish: check the member's account before retrying "
                "with a new key",
                "idempotency_unknown",
            )
        elif claim.kind == "replay":
            answer = JSONResponse(
                json.loads(claim.body), status_code=claim.status, headers={"Idempotent-Replayed": "true"}
            )
        else:
            await self._run(scope, body, receive, send, client, member, key)
            return
        await answer(scope, receive, send)

    async def _run(
        self, scope: Scope, body: bytes, receive: Receive, send: Send, client: str, member: str, key: str
    ) -> None:
        whole: Message | None = {"type": "http.request", "body": body, "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        status = 500
        out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay, capture)
        except BaseException:
            await self._off_loop(self.store.release, client, member, key)
            raise
        self.store.finish_later(client, member, key, status, b"".join(out))


def add_header_to_openapi(schema: dict[str, Any]) -> None:
    """Declare the optional ``Idempotency-Key`` header on every POST the middleware covers."""
    param = {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": "a retry with the same key and body gets the first answer; kept 48 h (docs/api.md)",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN.pattern},
    }
    for path, item in schema.get("paths", {}).items():
        op = item.get("post")
        if op is not None and covered("POST", path):
            params = op.setdefault("parameters", [])
            if not any(p.get("name") == HEADER for p in params):
                params.append(param)


def require_all_credentials(schema: dict[str, Any]) -> None:
    """FastAPI lists one security requirement per credential, which OpenAPI reads as "any of";
    a member route needs the API key *and* the member token, so they become one requirement."""
    for item in schema.get("paths", {}).values():
        for op in item.values():
            reqs = op.get("security") if isinstance(op, dict) else None
            if reqs and len(reqs) > 1:
                op["security"] = [{name: scopes for req in reqs for name, scopes in req.items()}]
    described = {
        "ApiKey": "the client's key, sp_<id>_<secret> (staypoint central api keys create)",
        "MemberToken": "a member's token from POST /v1/members/login (15 minutes)",
    }
    for name, scheme in schema.get("components", {}).get("securitySchemes", {}).items():
        if name in described:
            scheme.setdefault("description", described[name])


def install(app: Any, services: Services, clock: Callable[[], datetime]) -> None:
    """Add the middleware and the header to ``app`` (a FastAPI app). Call it before the body
    limit's middleware is added, so that one stays outermost."""

    def member_of(token: str | None) -> str | None:
        try:
            return services.member_from_token(token, clock())
        except Unauthenticated:
            return None

    store = IdempotencyStore(services.side)
    app.add_middleware(IdempotencyMiddleware, store=store, member_of=member_of, clock=clock)
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            add_header_to_openapi(schema)
            require_all_credentials(schema)
        return app.openapi_schema  # type: ignore[no-any-return]

    app.openapi = openapi
