"""Fleet health benchmark against one real Mosquitto (TLS, the fleet's ACL): prints JSON.

    .venv/bin/python bench/fleet.py [--nodes 100000] [--rounds 1] [--connections 8] [--properties 2000]

Every heartbeat goes through the real broker: the ACL lets head office's identity write any
node's topics, so a few publisher connections (in a separate process) carry all the
simulated nodes' heartbeats, each on its own node's topic, as ``tests/fleet/sim.py`` does.

Figures:
- ho_cpu_s_per_1000_heartbeats: process CPU time (user + system) of head office's fleet
  monitor (paho network thread parsing and folding real heartbeats from the broker, TLS
  included) per 1,000 heartbeats. The simulated nodes publish from a *separate process*,
  so their CPU is not counted.
- max_nodes_at_30s_one_core: 30 s / (CPU per heartbeat), i.e. the fleet whose heartbeats
  would use one whole core; max_nodes_at_30s_half_core keeps half a core spare (alerts,
  scrapes, bursts after a broker restart).
- max_nodes_at_30s_all_in_one_core: the same with each node's share of the alert
  evaluation (every 5 s) and of a Prometheus scrape (every 15 s), measured at ``--nodes``.
- direct_check: ``--nodes`` nodes each sending one heartbeat (one full 30 s period of
  load) in a burst: every node tracked and online, the burst's wall time (must be well
  under 30 s), the time of one alert evaluation and of one /metrics scrape at that size.
- metrics: one /metrics scrape over HTTP at ``--nodes`` (seconds, bytes, series; goals
  < 1 s and < 2 MB), and the reference fold of every view that the rollup replaces.
- api: ``GET /fleet/nodes`` page latencies (unfiltered page 2, state + property filter,
  trouble filter, one node), median of several.
- raw: the same run's floor: json.loads of 1,000 of the heartbeat payloads alone, and the
  monitor's own ingest (parse, validate, fold, rollup) of 1,000 payloads without a broker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from staypoint.central.fleet.metrics import aggregate
from staypoint.central.fleet.monitor import FleetMonitor, MonitorSettings
from staypoint.central.fleet.state import FleetConfig, FleetState, utcnow
from staypoint.mqtt_tls import use_fleet_tls


def payload(n: int, properties: int, now: object) -> tuple[str, bytes]:
    """Node ``n``'s heartbeat (topic, JSON bytes), as the node's agent builds it."""
    from staypoint.edge.sync.heartbeat import build_health, health_topic

    class Dev:
        def __init__(self, kind: str) -> None:
            self.kind, self.driver, self.state, self.detail = kind, "sim", "ok", ""

    node = f"bench-{n:06d}"
    status = {
        "node": node,
        "property": f"P{n % properties:04d}",
        "outbox_depth": n % 7,
        "oldest_pending": None,
        "staleness_s": 4,
        "program_version": 3,
        "epoch": 1,
    }
    doc = build_health(
        status,
        now=now,
        devices=[Dev("reader"), Dev("pinpad"), Dev("printer")],
        session=1,
        applied_version=100 + n % 5,
        disk_free=55.0,
        litestream_lag=1.0 + n % 3,
        version="0.1.0",
        uptime_s=100.0,
        max_staleness_s=86400,
    )
    return health_topic(node), json.dumps(doc, separators=(",", ":")).encode()


def publisher(
    host: str, port: int, ca: str, cert: str, key: str, nodes: int, rounds: int, conns: int, properties: int
) -> None:
    """Child process: ``rounds`` heartbeats from each of ``nodes`` nodes over ``conns`` connections."""

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    clients = []
    for i in range(conns):
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-pub-{os.getpid()}-{i}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        use_fleet_tls(c, ca, cert, key)
        c.max_queued_messages_set(0)
        c.connect(host, port)
        c.loop_start()
        clients.append(c)
    time.sleep(0.5)
    # Every payload is built before the clock starts: the burst measures the broker and head
    # office, not this process's json.dumps of 100,000 documents (the nodes build their own).
    now = utcnow()
    messages = [payload(n, properties, now) for n in range(nodes)]
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    t0 = time.perf_counter()
    for _ in range(rounds):
        for n, (topic, body) in enumerate(messages):
            clients[n % conns].publish(topic, body, qos=0)
    for c in clients:  # QoS 0: sent once paho's queue is empty (its socket buffer is the kernel's)
        while c.want_write():
            time.sleep(0.01)
    print(f"sent {time.perf_counter() - t0:.3f}", flush=True)
    time.sleep(1.0)  # let the kernel hand the last bytes on before the connections close
    for c in clients:
        c.disconnect()
        c.loop_stop()


def run_publisher(
    broker: object, tls: object, nodes: int, rounds: int, conns: int, properties: int
) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        __file__,
        "--publisher",
        broker.host,
        str(broker.office_port),  # type: ignore[attr-defined]
        str(tls.ca),
        str(tls.cert),  # type: ignore[attr-defined]
        str(tls.key),
        str(nodes),
        str(rounds),
        str(conns),
        str(properties),
    ]  # type: ignore[attr-defined]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("bench publisher failed to start")
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    """Start the publisher's burst (its payloads are built)."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def sent_s(proc: subprocess.Popen[str]) -> float:
    """The publisher's own time to hand every message to the broker: the raw floor of a burst."""
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    proc.wait(60)
    return float(line[1]) if len(line) == 2 and line[0] == "sent" else float("nan")


def raw_figures(properties: int) -> dict[str, object]:
    """The floor in this run: json.loads of 1,000 heartbeats, and the monitor's own ingest."""
    now = utcnow()
    payloads = [payload(n, properties, now) for n in range(1000)]
    c0 = time.process_time()
    for _ in range(5):
        for _topic, body in payloads:
            json.loads(body)
    json_ms = (time.process_time() - c0) / 5 * 1000
    state = FleetState(FleetConfig(period_s=3600))
    c0 = time.process_time()
    for _ in range(5):
        for topic, body in payloads:
            state.ingest(topic, body, now)
    ingest_ms = (time.process_time() - c0) / 5 * 1000
    return {
        "payload_bytes": len(payloads[0][1]),
        "json_loads_cpu_ms_per_1000": round(json_ms, 2),
        "monitor_ingest_cpu_ms_per_1000_no_broker": round(ingest_ms, 2),
        "ingest_over_json": round(ingest_ms / json_ms, 2),
    }


def api_figures(port: int) -> dict[str, object]:
    """Median latency of a few /fleet/nodes requests, and what they returned."""
    base = f"http://127.0.0.1:{port}/fleet/nodes"
    out: dict[str, object] = {}
    for name, url in (
        ("page_2_of_100_s", f"{base}?page=2&per_page=100"),
        ("online_at_one_property_s", f"{base}?state=online&property=P0007&per_page=100"),
        ("offline_fleet_wide_s", f"{base}?state=offline&per_page=100"),
        ("trouble_s", f"{base}?trouble=1&per_page=100"),
        ("one_node_s", f"{base}/bench-000042"),
    ):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            reply = json.loads(urllib.request.urlopen(url, timeout=60).read())
            times.append(time.perf_counter() - t0)
        out[name] = round(sorted(times)[2], 4)
        if "total" in reply:
            out[name.replace("_s", "_total")] = reply["total"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1, help="heartbeats per node in the CPU measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--properties", type=int, default=2000, help="properties the nodes are spread over")
    parser.add_argument("--publisher", nargs=9, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        host, port, ca, cert, key, nodes, rounds, conns, props = args.publisher
        publisher(host, int(port), ca, cert, key, int(nodes), int(rounds), int(conns), int(props))
        return
    raw = raw_figures(args.properties)

    from tests.mqtt_fixtures import MosquittoBroker, _make_pki

    with tempfile.TemporaryDirectory() as tmp:
        pki = _make_pki(Path(tmp) / "pki")
        broker = MosquittoBroker(pki, Path(tmp) / "mosquitto")
        broker.start()
        tls = broker.client_tls("head-office")
        # A long period: every node stays "online" however long the run takes.
        monitor = FleetMonitor(
            MonitorSettings(
                broker.host, broker.office_port, tls.ca, tls.cert, tls.key, client_id="head-office-bench"
            ),
            FleetConfig(period_s=3600),
            tick_s=3600,
        )
        monitor.start()
        try:
            total = args.nodes * args.rounds
            # -- CPU per heartbeat ----------------------------------------------------------
            pub = run_publisher(broker, tls, args.nodes, args.rounds, args.connections, args.properties)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            go(pub)
            got_all = monitor.wait_for(lambda s: s.received["health"] >= total, 600)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            sent_s(pub)
            received = monitor.state.received["health"]
            per_msg = cpu / max(1, received)
            # -- direct check: one period's load of --nodes, fresh state ------------------------
            monitor.state.clear()
            base = monitor.state.received["health"]
            pub = run_publisher(broker, tls, args.nodes, 1, args.connections, args.properties)
            t0 = time.perf_counter()
            go(pub)
            burst_ok = monitor.wait_for(lambda s: s.received["health"] >= base + args.nodes, 120)
            burst_s = time.perf_counter() - t0
            publish_s = sent_s(pub)
            counts = monitor.state.counts(utcnow())
            t1 = time.perf_counter()
            monitor.alerts.evaluate(utcnow())
            evaluate_s = time.perf_counter() - t1
            port = monitor.serve_metrics(0)
            scrapes = []
            for _ in range(3):
                c0, t2 = time.process_time(), time.perf_counter()
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read()
                scrapes.append((time.perf_counter() - t2, time.process_time() - c0))
            scrape_s = sorted(scrapes)[1][0]
            scrape_cpu_s = sorted(scrapes)[1][1]
            series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            t3 = time.perf_counter()
            aggregate(monitor.state.views(), utcnow(), monitor.state.config)
            fold_s = time.perf_counter() - t3
            api = api_figures(port)
        finally:
            monitor.stop()
            broker.stop()
    # Everything one node costs head office per 30 s period: its heartbeat, its share of the
    # alert evaluation (every 5 s: 6 per period) and of the /metrics scrape (every 15 s: 2).
    per_node_period = per_msg + 6 * evaluate_s / args.nodes + 2 * scrape_cpu_s / args.nodes
    result = {
        "heartbeats_sent": total,
        "heartbeats_received": received,
        "all_received": got_all,
        "ho_cpu_s": round(cpu, 3),
        "ho_wall_s": round(wall, 3),
        "ho_cpu_s_per_1000_heartbeats": round(per_msg * 1000, 4),
        "ho_heartbeats_per_cpu_s": round(1 / per_msg) if per_msg else None,
        "max_nodes_at_30s_one_core": int(30 / per_msg) if per_msg else None,
        "max_nodes_at_30s_half_core": int(15 / per_msg) if per_msg else None,
        "max_nodes_at_30s_all_in_one_core": int(30 / per_node_period),
        "goal_nodes": 100_000,
        "direct_check": {
            "nodes": args.nodes,
            "all_tracked_online": burst_ok and counts["online"] == args.nodes,
            "counts": counts,
            "burst_wall_s": round(burst_s, 3),
            # the raw floor in this run: the publisher's own time to hand the burst to the broker
            "burst_publish_s": round(publish_s, 3),
            "head_office_done_after_last_publish_s": round(burst_s - publish_s, 3),
            "fits_in_30s_period": burst_ok and burst_s < 30,
            "alert_evaluation_s": round(evaluate_s, 3),
        },
        "metrics": {
            "nodes": args.nodes,
            "properties": args.properties,
            "scrape_s_median_of_3": round(scrape_s, 3),
            "scrape_cpu_s": round(scrape_cpu_s, 3),
            "bytes": len(body),
            "series": series,
            "per_node_series": b'node="' in body,
            "under_1s_and_2MB": scrape_s < 1 and len(body) < 2_000_000,
            "reference_fold_of_every_view_s": round(fold_s, 3),
        },
        "api": api,
        "raw": raw,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "notes": "TLS, QoS 0 heartbeats of ~480 bytes, all through Mosquitto (head office's identity may "
        "write every node's topic: few connections carry all nodes), publishers in a separate process; "
        "CPU is process_time of the monitor process (paho thread + JSON + state + rollup), idle poll "
        "included; the machine's load average is in machine.",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
