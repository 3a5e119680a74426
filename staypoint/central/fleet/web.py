"""The fleet monitor's HTTP server: ``/metrics`` for Prometheus and the per-node API.

    GET /metrics                          fleet and per-property aggregates (:mod:`.metrics`)
    GET /fleet/nodes?state=offline&property=SHA&trouble=1&page=2&per_page=100
                                          one page of nodes, by property then node
    GET /fleet/nodes/{id}                 one node: its last heartbeat, recent history, alerts

Read-only JSON, served on the monitor's metrics address (127.0.0.1 by default). A bad
query parameter is a 400 with ``{"error": ...}``, an unknown node or path a 404: nothing a
client sends reaches more than a lookup in :class:`FleetState`. One WSGI app (the
``/metrics`` part is prometheus-client's own, with its gzip and content negotiation) on a
threading server, so a slow client does not hold up a scrape.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from staypoint.central.fleet.alerts import AlertManager, MemorySink, conditions
from staypoint.central.fleet.state import STATES, FleetState, HealthSample, NodeView, in_trouble, utcnow

__all__ = ["MAX_PER_PAGE", "FleetHttpServer", "make_app", "node_detail", "node_row", "page_of"]

MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100


def _sample(s: HealthSample) -> dict[str, Any]:
    return {
        "received": s.received.isoformat(),
        "sent": s.sent.isoformat() if s.sent else None,
        "outbox_depth": s.outbox_depth,
        "oldest_pending_s": s.oldest_pending_s,
        "applied_version": s.applied_version,
        "staleness_s": s.staleness_s,
        "max_staleness_s": s.max_staleness_s,
        "litestream_lag_s": s.litestream_lag_s,
        "disk_free_pct": s.disk_free_pct,
        "clock_skew_s": s.skew_s,
        "devices": s.devices,
        "version": s.version,
        "program_version": s.program_version,
        "uptime_s": s.uptime_s,
    }


def node_row(view: NodeView, now: datetime, state: FleetState, alerts: int = 0) -> dict[str, Any]:
    """One node as a row of ``GET /fleet/nodes``."""
    last = view.last
    return {
        "node": view.node,
        "property": view.property,
        "state": view.state(now, state.config),
        "last_heartbeat": view.last_seen.isoformat() if view.last_seen else None,
        "outbox_depth": last.outbox_depth if last else None,
        "oldest_pending_s": last.oldest_pending_s if last else None,
        "applied_version": last.applied_version if last else None,
        "litestream_lag_s": last.litestream_lag_s if last else None,
        "disk_free_pct": last.disk_free_pct if last else None,
        "version": last.version if last else None,
        "program_version": last.program_version if last else None,
        "devices": {k: d["state"] for k, d in last.devices.items()} if last else {},
        "alerts": alerts,
    }


def node_detail(
    view: NodeView, now: datetime, state: FleetState, alerts: AlertManager | None, memory: MemorySink | None
) -> dict[str, Any]:
    """One node for ``GET /fleet/nodes/{id}``: the row, its session, history and alerts."""
    active = alerts.active_for(view.node) if alerts is not None else conditions(view, now, state.config)
    out = node_row(view, now, state, len(active))
    out.update(
        session=view.session,
        status=view.status,
        status_at=view.status_at.isoformat() if view.status_at else None,
        heartbeats=view.heartbeats,
        last=_sample(view.last) if view.last else None,
        history=[_sample(s) for s in reversed(view.history)],
        active_alerts=[{"rule": a.rule, "message": a.message} for a in active],
        alert_events=[
            {"kind": e.kind, "rule": e.alert.rule, "message": e.alert.message, "at": e.at.isoformat()}
            for e in (memory.recent(view.node) if memory is not None else [])
        ],
    )
    return out


class BadRequest(ValueError):
    """A query parameter out of range: the message is the 400's ``error``."""


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name, [str(default)])[-1]
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {raw[:20]!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


def page_of(
    state: FleetState,
    now: datetime,
    query: dict[str, list[str]],
    alerts: AlertManager | None = None,
) -> dict[str, Any]:
    """``GET /fleet/nodes``: filters ``state``, ``property`` (exact, any case), ``trouble``
    (1/true); ``page`` (from 1) of ``per_page`` (1-1000, 100) rows; totals for the filter."""
    unknown = set(query) - {"state", "property", "trouble", "page", "per_page"}
    if unknown:
        raise BadRequest(f"unknown parameter {sorted(unknown)[0]!r}")
    wanted = query.get("state", [None])[-1]
    if wanted is not None and wanted not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    prop = query.get("property", [None])[-1]
    trouble = query.get("trouble", ["0"])[-1].lower()
    if trouble not in ("0", "1", "true", "false"):
        raise BadRequest("trouble must be 1 or 0")
    page = _int(query, "page", 1, 1, 10**9)
    per_page = _int(query, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    alerting = alerts.by_node() if alerts is not None else {}
    where = (lambda v: in_trouble(v, now, state, alerting)) if trouble in ("1", "true") else None
    views = state.select(now, state=wanted, property=prop, where=where)
    total = len(views)
    rows = views[(page - 1) * per_page : page * per_page]
    return {
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": (total + per_page - 1) // per_page,
        "nodes": [node_row(v, now, state, alerting.get(v.node, 0)) for v in rows],
    }


def make_app(
    state: FleetState,
    registry: CollectorRegistry,
    alerts: AlertManager | None = None,
    memory: MemorySink | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """The WSGI app: ``/metrics`` and ``/fleet/nodes[/{id}]``."""
    metrics = make_wsgi_app(registry)

    def reply(start: StartResponse, status: str, body: Any) -> list[bytes]:
        data = json.dumps(body, separators=(",", ":")).encode()
        start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def app(environ: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path == "/metrics":
            body: Iterable[bytes] = metrics(environ, start)
            return body
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return reply(start, "405 Method Not Allowed", {"error": "read-only: GET only"})
        if path in ("/fleet/nodes", "/fleet/nodes/"):
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            try:
                return reply(start, "200 OK", page_of(state, clock(), query, alerts))
            except BadRequest as err:
                return reply(start, "400 Bad Request", {"error": str(err)})
        if path.startswith("/fleet/nodes/"):
            node = unquote(path[len("/fleet/nodes/") :])
            view = state.get(node) if node and len(node) <= 64 else None
            if view is None:
                return reply(start, "404 Not Found", {"error": f"no node {node[:64]!r} heard of"})
            return reply(start, "200 OK", node_detail(view, clock(), state, alerts, memory))
        return reply(start, "404 Not Found", {"error": "try /metrics or /fleet/nodes"})

    return app


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per request on stderr (a scrape every 15 s)."""


class FleetHttpServer:
    """The app on ``addr:port`` (0: any free port) in a background thread."""

    def __init__(
        self, app: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]], port: int, addr: str
    ) -> None:
        self._server = make_server(addr, port, app, server_class=_Server, handler_class=_QuietHandler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="fleet-http", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
