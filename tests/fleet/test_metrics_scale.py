"""/metrics at fleet scale: no per-node series, a series count that does not grow with the
nodes, and the incrementally kept rollup equal to a fold of the views; the /fleet/nodes
API's paging and filters over HTTP. Fixed clocks, states filled by hand (no broker)."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from staypoint.central.fleet.alerts import AlertManager, MemorySink
from staypoint.central.fleet.metrics import aggregate, make_registry
from staypoint.central.fleet.state import FleetConfig, FleetState
from staypoint.central.fleet.web import FleetHttpServer, make_app
from tests.fleet.sim import SimNode

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = FleetConfig(period_s=30)
PROPERTIES = ("SHA", "LON", "NYC")


def fleet(n: int, *, seed: int = 1) -> FleetState:
    """``n`` nodes at three properties: mostly online, some stale, offline, out of paper."""
    rnd = random.Random(seed)
    state = FleetState(CONFIG)
    for i in range(n):
        node = SimNode(
            f"n-{i:05d}",
            PROPERTIES[i % 3],
            outbox_depth=rnd.choice((0, 0, 3)),
            oldest_pending_s=rnd.uniform(0, 2000),
            litestream_lag_s=rnd.uniform(0, 400),
            paper=rnd.choice(("ok", "ok", "paper_out")),
        )
        at = NOW - timedelta(seconds=rnd.choice((2, 10, 25, 200)))
        state.ingest(f"sp/v1/node/{node.node}/health", json.dumps(node.doc(at)).encode(), at)
        if i % 10 == 0:
            state.ingest(f"sp/v1/node/{node.node}/status", b'{"state":"offline","session":1}', at)
    return state


def series(state: FleetState, alerts: AlertManager | None = None) -> list[tuple[str, dict[str, str]]]:
    body = generate_latest(make_registry(state, alerts, clock=lambda: NOW)).decode()
    return [(s.name, s.labels) for fam in text_string_to_metric_families(body) for s in fam.samples]


def test_no_per_node_labels_and_bounded_series() -> None:
    small, large = fleet(10), fleet(1000)
    a_small, a_large = series(small), series(large)
    assert len(a_small) == len(a_large), "10 and 1,000 nodes at 3 properties: the same series"
    assert {name for name, _ in a_small} == {name for name, _ in a_large}
    labels = {k for _, lv in a_large for k in lv}
    assert "node" not in labels
    assert labels <= {"state", "property", "device", "le", "quantile", "kind", "reason", "rule", "severity"}
    # Per-property figures are there, and sum to the fleet's.
    body = generate_latest(make_registry(large, clock=lambda: NOW)).decode()
    assert 'staypoint_fleet_nodes{state="offline"} 100.0' in body
    assert 'staypoint_property_nodes{property="SHA",state="offline"} 34.0' in body
    assert "staypoint_fleet_heartbeat_age_seconds_bucket" in body


def test_alert_counts_by_rule_and_severity() -> None:
    state = fleet(60)
    alerts = AlertManager(state, [MemorySink()])
    alerts.evaluate(NOW)
    body = generate_latest(make_registry(state, alerts, clock=lambda: NOW)).decode()
    paper = sum(a.rule == "paper" for a in alerts.active_for())
    assert paper > 0
    assert f'staypoint_alerts_active{{rule="paper",severity="warning"}} {float(paper)}' in body
    assert 'staypoint_alerts_active{rule="crl",severity="critical"} 0.0' in body


def test_rollup_equals_a_fold_of_the_views() -> None:
    """Random heartbeats, births, Wills, property moves and garbage, at moving times: after
    each step the incremental aggregates equal the ones computed from scratch."""
    rnd = random.Random(7)
    state = FleetState(CONFIG, properties={"pre-1": "SHA"})
    t = NOW
    for step in range(600):
        t += timedelta(seconds=rnd.choice((0, 1, 3, 40)))
        node = f"r-{rnd.randrange(25):02d}"
        roll = rnd.random()
        if roll < 0.15:
            session = rnd.randrange(1, 4)
            verdict = rnd.choice(("online", "offline"))
            state.ingest(
                f"sp/v1/node/{node}/status", json.dumps({"state": verdict, "session": session}).encode(), t
            )
        elif roll < 0.2:
            state.ingest(
                f"sp/v1/node/{node}/health", rnd.choice((b"{", b"[]", b'{"outbox_depth": 1e999}')), t
            )
        else:
            sim = SimNode(
                node,
                rnd.choice(PROPERTIES),
                outbox_depth=rnd.choice((0, 2)),
                oldest_pending_s=float(rnd.randrange(0, 3000)),
                litestream_lag_s=rnd.choice((None, 1.0, float(rnd.randrange(500)))),
                paper=rnd.choice(("ok", "paper_out", "jammed")),
                session=rnd.randrange(1, 4),
            )
            doc = sim.doc(t)
            doc["applied_version"] = rnd.randrange(90, 110)
            # Now and then the clock reads earlier than before (the rollup must re-sort).
            at = t - timedelta(seconds=50) if rnd.random() < 0.05 else t
            state.ingest(f"sp/v1/node/{node}/health", json.dumps(doc).encode(), at)
        if step % 7 == 0:
            at = t + timedelta(seconds=rnd.choice((0, 30, 100, 1000)))
            assert state.aggregates(at).comparable() == aggregate(state.views(), at, CONFIG).comparable(), (
                step
            )


def test_garbage_numbers_are_ignored() -> None:
    state = FleetState(CONFIG)
    doc = SimNode("g-1", "SHA").doc(NOW)
    doc.update(outbox_depth=float("inf"), litestream_lag_s=float("nan"), applied_version=10**400)
    assert state.ingest("sp/v1/node/g-1/health", json.dumps(doc).encode(), NOW)
    last = state.nodes["g-1"].last
    assert last is not None and last.outbox_depth is None and last.litestream_lag_s is None
    assert last.applied_version is None
    body = generate_latest(make_registry(state, clock=lambda: NOW)).decode()
    assert "nan" not in body.lower().replace("staypoint", "")


# -- the API ----------------------------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[str]:
    state = fleet(1000)
    alerts = AlertManager(state, [MemorySink()])
    alerts.evaluate(NOW)
    server = FleetHttpServer(
        make_app(state, make_registry(state, alerts, clock=lambda: NOW), alerts, None, lambda: NOW),
        0,
        "127.0.0.1",
    )
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_api_pages_and_filters(api: str) -> None:
    status, first = get(f"{api}/fleet/nodes")
    assert status == 200 and first["total"] == 1000 and first["pages"] == 10 and first["per_page"] == 100
    rows = first["nodes"]
    assert isinstance(rows, list) and len(rows) == 100
    assert [(r["property"], r["node"]) for r in rows] == sorted((r["property"], r["node"]) for r in rows)
    # Every node exactly once across the pages, in order.
    seen: list[str] = []
    for page in range(1, 11):
        _, body = get(f"{api}/fleet/nodes?page={page}")
        seen += [r["node"] for r in body["nodes"]]  # type: ignore[attr-defined]
    assert len(seen) == len(set(seen)) == 1000
    _, beyond = get(f"{api}/fleet/nodes?page=11")
    assert beyond["nodes"] == [] and beyond["total"] == 1000

    _, offline = get(f"{api}/fleet/nodes?state=offline&property=sha&page=2&per_page=10")
    assert offline["total"] == 34 and offline["pages"] == 4
    nodes = offline["nodes"]
    assert isinstance(nodes, list) and len(nodes) == 10
    assert all(r["state"] == "offline" and r["property"] == "SHA" for r in nodes)
    _, trouble = get(f"{api}/fleet/nodes?trouble=1&per_page=1000")
    assert all(
        r["state"] != "online" or r["alerts"] or r["devices"]["printer"] != "ok"
        for r in trouble["nodes"]  # type: ignore[attr-defined]
    )

    status, one = get(f"{api}/fleet/nodes/n-00003")
    assert status == 200 and one["node"] == "n-00003" and one["history"] and one["last"]


@pytest.mark.parametrize(
    "query",
    ["state=asleep", "page=0", "page=x", "per_page=5000", "per_page=-1", "trouble=maybe", "colour=red"],
)
def test_api_refuses_bad_parameters(api: str, query: str) -> None:
    status, body = get(f"{api}/fleet/nodes?{query}")
    assert status == 400 and isinstance(body["error"], str)


def test_api_unknown_node_and_path(api: str) -> None:
    assert get(f"{api}/fleet/nodes/nobody")[0] == 404
    assert get(f"{api}/fleet/nodes/{'x' * 500}")[0] == 404
    assert get(f"{api}/elsewhere")[0] == 404
    with urllib.request.urlopen(f"{api}/metrics", timeout=10) as reply:
        assert b"staypoint_fleet_nodes" in reply.read()
