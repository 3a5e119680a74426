"""The fleet broker for real: Mosquitto with the rendered TLS config, ACL and CRL.

Every test talks to a real ``mosquitto`` process started by ``tests.mqtt_fixtures``.
Tests that stop, kill or restart the broker use ``fresh_mosquitto`` (their own process);
the rest share the module's ``mosquitto`` and use client ids of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509

from staypoint.provisioning.broker import (
    MAX_PAYLOAD_BYTES,
    PRODUCTION_EXAMPLE,
    render_acl,
    render_config,
)
from staypoint.provisioning.pki import (
    CSRRejected,
    FleetCA,
    TLSFiles,
    generate_key,
    make_csr,
    write_key_pair,
)

# Helpers are imported from the plugin too: let pytest rewrite its asserts first.
pytest.register_assert_rewrite("tests.mqtt_fixtures")

from tests.mqtt_fixtures import (  # noqa: E402
    ClientFactory,
    FleetPKI,
    MosquittoBroker,
    MQTTConnectError,
    close,
    make_client,
    publish,
    raw_connect,
    state,
    subscribe,
    tls_context,
    unique_client_id,
)
from tests.waits import wait_until  # noqa: E402

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
NOT_AUTHORIZED = 135
OK_CODES = (0, 16)  # success, or success with "no matching subscribers"


# --- the rendered files -------------------------------------------------------------------


def test_committed_example_matches_the_renderer() -> None:
    """broker/ is rendered from the templates; re-render with
    ``python -m staypoint.provisioning.broker --example broker/`` after changing them."""
    assert (REPO / "broker" / "mosquitto.conf").read_text() == render_config(PRODUCTION_EXAMPLE)
    assert (REPO / "broker" / "acl").read_text() == render_acl()


def test_config_has_two_tls_listeners_and_no_anonymous_access() -> None:
    lines = [
        line.split()
        for line in render_config(PRODUCTION_EXAMPLE).splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Split at each "listener": the settings before the first are the broker's own.
    sections: list[dict[str, list[str]]] = [{}]
    for words in lines:
        if words[0] == "listener":
            sections.append({})
        sections[-1][words[0]] = words[1:]
    settings, fleet, office = sections
    assert fleet["listener"] == ["8883", "0.0.0.0"]
    assert office["listener"] == ["8884", "127.0.0.1"]
    assert settings["allow_anonymous"] == ["false"]
    assert settings["per_listener_settings"] == ["false"]
    for listener in (fleet, office):
        assert listener["require_certificate"] == ["true"]
        assert listener["use_identity_as_username"] == ["true"]
        assert {"cafile", "certfile", "keyfile", "crlfile"} <= listener.keys()
    # Client id = CN for the fleet; head office's listener trusts head office's CA only.
    assert fleet["use_username_as_clientid"] == ["true"]
    assert "use_username_as_clientid" not in office
    assert fleet["cafile"] != office["cafile"]
    assert "acl_file" in settings
    assert settings["max_queued_messages"] == ["100000"]
    assert settings["autosave_on_changes"] == ["true"]
    assert settings["autosave_interval"] == ["1000"]


def test_fleet_ca_round_trip(tmp_path: Path) -> None:
    """The CA survives a restart of head office: keys private, revocations persisted."""
    ca = FleetCA.create(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    basic = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 0
    usage = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    server = ca.issue_server(["broker.staypoint.example"])
    sans = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "broker.staypoint.example"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    node = ca.issue_client("sha-lobby-01")
    with pytest.raises(ValueError):
        ca.issue_client("sha-lobby-01/#")  # would widen an ACL pattern
    ca.revoke(node.serial)
    ca.revoke(node.serial)  # idempotent
    again = FleetCA.load(tmp_path / "ca")
    assert again.revoked_serials() == {node.serial}
    crl = x509.load_pem_x509_crl(again.crl_path.read_bytes())
    assert crl.is_signature_valid(again.cert.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(node.serial) is not None
    (tmp_path / "ca" / "ca.key").chmod(0o644)
    with pytest.raises(PermissionError):
        FleetCA.load(tmp_path / "ca")


# --- who may connect ----------------------------------------------------------------------


def test_client_without_certificate_is_refused(mosquitto: MosquittoBroker) -> None:
    assert raw_connect(mosquitto.host, mosquitto.port, tls_context(None, mosquitto.ca)) is None
    # The same raw CONNECT with a fleet certificate is accepted: the refusal is the cert's.
    good = tls_context(mosquitto.client_tls("sha-lobby-01"), mosquitto.ca)
    assert raw_connect(mosquitto.host, mosquitto.port, good) == 0


def test_certificate_from_another_ca_is_refused(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    rogue_ca = FleetCA.create(tmp_path / "rogue-ca")
    # Same CN as a real node: only the signature tells them apart.
    rogue = rogue_ca.issue_client("sha-lobby-01").write(tmp_path / "rogue", mosquitto.ca)
    assert raw_connect(mosquitto.host, mosquitto.port, tls_context(rogue, mosquitto.ca)) is None
    with pytest.raises(MQTTConnectError):
        make_client(mosquitto, "sha-lobby-01", unique_client_id("rogue"), tls=rogue, timeout=3)


def test_plain_tcp_is_refused(mosquitto: MosquittoBroker) -> None:
    assert raw_connect(mosquitto.host, mosquitto.port, None) is None


def test_certificate_signed_from_a_node_csr_is_accepted(
    mosquitto: MosquittoBroker, pki: FleetPKI, tmp_path: Path
) -> None:
    """The enrolment path: the board makes its key and CSR, head office signs it."""
    key = generate_key()
    with pytest.raises(CSRRejected, match="does not match"):
        pki.ca.sign_csr(make_csr(key, "sha-lobby-77"), "sha-lobby-78")
    for reserved in ("head-office", "head-office-fleet", "enrol"):
        with pytest.raises(CSRRejected, match="reserved"):
            pki.ca.sign_csr(make_csr(key, reserved), reserved)
    with pytest.raises(CSRRejected, match="head office's certificates only"):
        pki.office_ca.sign_csr(make_csr(key, "sha-lobby-77"), "sha-lobby-77")
    issued = pki.ca.sign_csr(make_csr(key, "sha-lobby-77"), "sha-lobby-77")
    assert issued.key is None  # the key never left the "board"
    key_path, cert_path = write_key_pair(key, issued.cert, tmp_path / "node.key", tmp_path / "node.crt")
    assert key_path.stat().st_mode & 0o777 == 0o600
    files = TLSFiles(ca=mosquitto.ca, cert=cert_path, key=key_path)
    node = make_client(mosquitto, "sha-lobby-77", unique_client_id("sha-lobby-77"), tls=files)
    try:
        assert publish(node, "sp/v1/node/sha-lobby-77/events", b"{}") in OK_CODES
        assert publish(node, "sp/v1/node/sha-lobby-01/events", b"{}") == NOT_AUTHORIZED
    finally:
        close(node)


# --- a certificate connects under its own client id only ---------------------------------


def _alive(client: mqtt.Client, broker: MosquittoBroker, identity: str) -> None:
    """``client`` still holds its connection: a round trip on it succeeds (a connection the
    broker closed answers nothing), and the broker never logged a takeover."""
    assert publish(client, f"sp/v1/node/{identity}/events", b"still here") in OK_CODES
    assert state(client).connected.is_set()
    assert "already connected, closing old connection" not in broker.log_text()


@pytest.mark.parametrize("rogue_identity", ["sha-lobby-01", "enrol"])
def test_a_certificate_cannot_take_head_office_client_id(
    fresh_mosquitto: MosquittoBroker, mqtt_client: ClientFactory, rogue_identity: str
) -> None:
    """A node (or enrol) certificate connecting as client id 'head-office' gets its own CN
    as client id: head office stays connected and keeps receiving."""
    broker = fresh_mosquitto
    office = mqtt_client(broker, "head-office", "head-office", clean_start=False)
    assert subscribe(office, "sp/v1/node/+/events") == 1
    rogue = mqtt_client(broker, rogue_identity, "head-office", clean_start=False)
    # The CONNACK came after any takeover: had there been one, head office's connection
    # would be closed by now and the round trips below would fail.
    assert not state(rogue).session_present, "the rogue was handed head office's session"
    assert publish(office, "sp/v1/fleet/changes", b"ping") in OK_CODES
    assert state(office).connected.is_set()
    assert "already connected, closing old connection" not in broker.log_text()
    sender = mqtt_client(broker, "sha-lobby-02", "sha-lobby-02", clean_start=True, session_expiry=0)
    assert publish(sender, "sp/v1/node/sha-lobby-02/events", b"after") == 0
    [got] = state(office).messages.wait_for(1)
    assert got.payload == b"after"
    # And the head-office listener refuses a fleet certificate outright.
    node_ctx = tls_context(broker.client_tls(rogue_identity), broker.ca)
    assert raw_connect(broker.host, broker.office_port, node_ctx) is None


def test_a_node_cannot_take_another_nodes_client_id_or_session(
    fresh_mosquitto: MosquittoBroker, mqtt_client: ClientFactory
) -> None:
    """Node A's certificate connecting as node B leaves B connected; once B is offline,
    A connecting as B is not handed B's session (its subscriptions and queued messages)."""
    broker = fresh_mosquitto
    b_id, a_id = "sha-lobby-02", "sha-lobby-01"
    office = mqtt_client(broker, "head-office", unique_client_id("head-office"), True, 0)
    node_b = mqtt_client(broker, b_id, b_id, clean_start=False)
    assert subscribe(node_b, f"sp/v1/node/{b_id}/changes") == 1
    # (No session of A's own is left behind: the one resumed below could only be B's.)
    node_a = mqtt_client(broker, a_id, b_id, clean_start=True, session_expiry=0)
    assert not state(node_a).session_present
    _alive(node_b, broker, b_id)
    assert publish(office, f"sp/v1/node/{b_id}/changes", b"live") == 0
    assert state(node_b).messages.wait_for(1)[0].payload == b"live"
    close(node_a)

    # B goes offline with a persistent session; a change is queued for it.
    close(node_b)
    assert publish(office, f"sp/v1/node/{b_id}/changes", b"queued") == 0
    thief = mqtt_client(broker, a_id, b_id, clean_start=False)
    assert not state(thief).session_present, "node A resumed node B's session"
    close(thief)
    node_b = mqtt_client(broker, b_id, b_id, clean_start=False)
    assert state(node_b).session_present
    got = state(node_b).messages.wait_for(1, topic=f"sp/v1/node/{b_id}/changes")
    assert [m.payload for m in got] == [b"queued"]
    assert state(thief).messages.all() == []


# --- what each identity may do ------------------------------------------------------------


def test_node_publishes_its_events_and_head_office_receives_them(
    mosquitto: MosquittoBroker, mqtt_client: ClientFactory
) -> None:
    office = mqtt_client(mosquitto, "head-office", unique_client_id("ho"), clean_start=True, session_expiry=0)
    assert subscribe(office, "sp/v1/node/+/events") == 1
    node = mqtt_client(mosquitto, "sha-lobby-01", unique_client_id("sha-lobby-01"), True, 0)
    body = json.dumps({"v": 1, "node": "sha-lobby-01", "seq": 1}).encode()
    assert publish(node, "sp/v1/node/sha-lobby-01/events", body) == 0
    [got] = state(office).messages.wait_for(1)
    assert (got.topic, got.payload, got.qos) == ("sp/v1/node/sha-lobby-01/events", body, 1)


def test_node_cannot_publish_as_another_node(mosquitto: MosquittoBroker, mqtt_client: ClientFactory) -> None:
    office = mqtt_client(mosquitto, "head-office", unique_client_id("ho"), clean_start=True, session_expiry=0)
    assert subscribe(office, "sp/v1/node/#") == 1
    node = mqtt_client(mosquitto, "sha-lobby-01", unique_client_id("sha-lobby-01"), True, 0)
    # MQTT 5 makes the refusal visible; under 3.1.1 it would be a silent normal PUBACK.
    assert publish(node, "sp/v1/node/sha-lobby-02/events", b"forged") == NOT_AUTHORIZED
    # Barrier: a permitted publish on the same connection arrives after the denied one
    # would have, so once it is in, the forged one is known not to have been delivered.
    assert publish(node, "sp/v1/node/sha-lobby-01/events", b"barrier") == 0
    state(office).messages.wait_for(1, topic="sp/v1/node/sha-lobby-01/events")
    assert state(office).messages.all("sp/v1/node/sha-lobby-02/events") == []
    # The connection survives the refusal.
    assert state(node).connected.is_set()


def test_node_cannot_read_another_nodes_topics(
    mosquitto: MosquittoBroker, mqtt_client: ClientFactory
) -> None:
    """Mosquitto 2.0's acl_file checks *read* access when delivering, not at SUBSCRIBE:
    the SUBACK grants the subscription (0.x-2.0 behaviour, eclipse/mosquitto#803), but
    neither a retained nor a live message on another node's topics ever arrives."""
    office = mqtt_client(mosquitto, "head-office", unique_client_id("ho"), clean_start=True, session_expiry=0)
    assert publish(office, "sp/v1/node/sha-lobby-02/ack", b'{"hw": 5}', retain=True) in OK_CODES
    node = mqtt_client(mosquitto, "sha-lobby-01", unique_client_id("sha-lobby-01"), True, 0)
    suback = subscribe(node, "sp/v1/node/sha-lobby-02/#")
    assert suback in (0, 1, NOT_AUTHORIZED)  # 2.0.11 grants; a later broker may refuse
    assert subscribe(node, "sp/v1/node/sha-lobby-01/ack") == 1
    assert publish(office, "sp/v1/node/sha-lobby-02/changes", b"secret") in OK_CODES
    assert publish(office, "sp/v1/node/sha-lobby-01/ack", b"barrier") == 0
    state(node).messages.wait_for(1, topic="sp/v1/node/sha-lobby-01/ack")
    assert [m.topic for m in state(node).messages.all()] == ["sp/v1/node/sha-lobby-01/ack"]
    publish(office, "sp/v1/node/sha-lobby-02/ack", b"", retain=True)  # clear the retained


def test_node_receives_fleet_changes(mosquitto: MosquittoBroker, mqtt_client: ClientFactory) -> None:
    node = mqtt_client(mosquitto, "sha-lobby-01", unique_client_id("sha-lobby-01"), True, 0)
    assert subscribe(node, "sp/v1/fleet/changes") == 1
    # A node may read the fleet topics but never write them.
    assert publish(node, "sp/v1/fleet/changes", b"forged") == NOT_AUTHORIZED
    office = mqtt_client(mosquitto, "head-office", unique_client_id("ho"), clean_start=True, session_expiry=0)
    assert publish(office, "sp/v1/fleet/changes", b'{"version": 42}') == 0
    [got] = state(node).messages.wait_for(1)
    assert got.payload == b'{"version": 42}'


def test_payload_limit(mosquitto: MosquittoBroker, mqtt_client: ClientFactory) -> None:
    """A payload of MAX_PAYLOAD_BYTES goes through; a packet over max_packet_size costs the
    sender its connection and is never delivered (so senders must size chunks, see
    broker.MAX_PAYLOAD_BYTES)."""
    office = mqtt_client(mosquitto, "head-office", unique_client_id("ho"), clean_start=True, session_expiry=0)
    topic = "sp/v1/node/sha-lobby-01/events"
    assert subscribe(office, topic) == 1
    node = mqtt_client(mosquitto, "sha-lobby-01", unique_client_id("sha-lobby-01"), True, 0)
    assert publish(node, topic, b"x" * MAX_PAYLOAD_BYTES) == 0
    node.publish(topic, b"y" * (PRODUCTION_EXAMPLE.max_packet_size + 1), qos=1)
    wait_until(lambda: not state(node).connected.is_set(), 5, "the broker to drop the oversized sender")
    # Barrier: a later publish from another connection arrives; the oversized one never did.
    other = mqtt_client(mosquitto, "sha-lobby-01", unique_client_id("sha-lobby-01"), True, 0)
    assert publish(other, topic, b"after") == 0
    got = state(office).messages.wait_for(2)
    assert [m.payload[:1] for m in got] == [b"x", b"a"]


NODE_SCRIPT = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
host, port, ca, cert, key, node, client_id = sys.argv[1:8]
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                protocol=MQTTProtocolVersion.MQTTv5)
c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
status = f"sp/v1/node/{node}/status"
c.will_set(status, '{"state": "offline", "session": 7}', qos=1, retain=True)
c.connect(host, int(port), keepalive=30, clean_start=True)
c.loop_start()
c.publish(status, '{"state": "online", "session": 7}', qos=1, retain=True).wait_for_publish(5)
print("ready", flush=True)
time.sleep(60)
"""


def test_last_will_and_retained_status_when_a_node_dies(
    mosquitto: MosquittoBroker, mqtt_client: ClientFactory
) -> None:
    """A node process killed outright (no DISCONNECT) gets its retained 'offline' Will."""
    node_id = "sha-lobby-02"
    files = mosquitto.client_tls(node_id)
    topic = f"sp/v1/node/{node_id}/status"
    proc = subprocess.Popen(
        [sys.executable, "-c", NODE_SCRIPT, mosquitto.host, str(mosquitto.port),
         str(files.ca), str(files.cert), str(files.key), node_id, unique_client_id(node_id)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        office = mqtt_client(
            mosquitto, "head-office", unique_client_id("ho"), clean_start=True, session_expiry=0
        )
        assert subscribe(office, topic) == 1
        [birth] = state(office).messages.wait_for(1)
        assert birth.retain and json.loads(birth.payload)["state"] == "online"
        proc.kill()
        proc.wait(5)
        will = state(office).messages.wait_for(2)[1]
        assert json.loads(will.payload) == {"state": "offline", "session": 7}
        # A late subscriber (head office after a restart) sees the retained Will.
        late = mqtt_client(
            mosquitto, "head-office", unique_client_id("ho"), clean_start=True, session_expiry=0
        )
        assert subscribe(late, topic) == 1
        [seen] = state(late).messages.wait_for(1)
        assert seen.retain and json.loads(seen.payload)["state"] == "offline"
    finally:
        proc.kill()
        proc.wait(5)
        office_clear = make_client(mosquitto, "head-office", unique_client_id("ho"), True, 0)
        publish(office_clear, topic, b"", retain=True)
        close(office_clear)


# --- persistence --------------------------------------------------------------------------


def _queue_while_offline(broker: MosquittoBroker, count: int) -> tuple[str, list[bytes]]:
    """Subscribe node B persistently, disconnect it, and have head office publish."""
    topic = "sp/v1/node/sha-lobby-02/changes"
    node = make_client(broker, "sha-lobby-02", "sha-lobby-02", clean_start=False)
    try:
        assert subscribe(node, topic) == 1
    finally:
        close(node)  # a clean DISCONNECT keeps the session: it has an expiry of 3600 s
    office = make_client(broker, "head-office", "head-office", clean_start=True)
    payloads = [f"change-{i}".encode() for i in range(count)]
    try:
        for payload in payloads:
            assert publish(office, topic, payload) == 0
    finally:
        close(office)
    return topic, payloads


def _resume(broker: MosquittoBroker, topic: str, payloads: list[bytes]) -> None:
    node = make_client(broker, "sha-lobby-02", "sha-lobby-02", clean_start=False)
    try:
        assert state(node).session_present
        got = state(node).messages.wait_for(len(payloads), topic=topic)
        # At-least-once: after a crash some may come twice; none may be missing.
        assert {m.payload for m in got} == set(payloads)
        assert all(m.qos == 1 for m in got)
    finally:
        close(node)


def test_persistent_session_survives_sigterm_and_restart(fresh_mosquitto: MosquittoBroker) -> None:
    topic, payloads = _queue_while_offline(fresh_mosquitto, 20)
    fresh_mosquitto.stop()  # SIGTERM: Mosquitto saves on the way out
    fresh_mosquitto.start()
    _resume(fresh_mosquitto, topic, payloads)


def test_persistent_session_survives_sigkill_with_autosave(pki: FleetPKI, tmp_path: Path) -> None:
    """With a save on every change, a SIGKILL keeps the session and its queue. Production
    saves every 1,000 changes instead (a crash costs a resend: tests/sync/test_crash.py)."""
    broker = MosquittoBroker(pki, tmp_path / "mosquitto", autosave_interval=1)
    broker.start()
    try:
        topic, payloads = _queue_while_offline(broker, 20)
        # The autosave follows the PUBACK; give it its moment, then pull the plug.
        broker.wait_persisted()
        broker.kill()
        broker.start()
        _resume(broker, topic, payloads)
    finally:
        broker.stop()


def test_without_autosave_a_sigkill_loses_the_queue(pki: FleetPKI, tmp_path: Path) -> None:
    """Negative control for the test above: the same steps, with saves only every 10,000
    changes, lose the session and its queue (the outbox is what makes that harmless)."""
    broker = MosquittoBroker(pki, tmp_path / "mosquitto", autosave_interval=10_000)
    broker.start()
    try:
        _queue_while_offline(broker, 5)
        broker.wait_persisted()
        broker.kill()
        broker.start()
        node = make_client(broker, "sha-lobby-02", "sha-lobby-02", clean_start=False)
        try:
            assert not state(node).session_present
        finally:
            close(node)
    finally:
        broker.stop()


def test_clean_start_session_is_not_restored_after_restart(fresh_mosquitto: MosquittoBroker) -> None:
    """Pins a Mosquitto 2.0.11 pitfall: a session whose last CONNECT had clean start set is
    kept while the broker runs, but not restored from its database after a restart, even
    with a session expiry. Agents must send clean_start=False on every connect, the
    first one included. If this fails after a Mosquitto upgrade, the pitfall is gone:
    update this test and the note in tests.mqtt_fixtures.make_client."""
    broker = fresh_mosquitto
    topic = "sp/v1/node/{}/changes"
    for node_id in ("sha-lobby-01", "sha-lobby-02"):
        node = make_client(broker, node_id, node_id, clean_start=True, session_expiry=3600)
        assert subscribe(node, topic.format(node_id)) == 1
        close(node)
    # sha-lobby-02 resumes once with clean_start=False: its session is there while running.
    node = make_client(broker, "sha-lobby-02", "sha-lobby-02", clean_start=False)
    assert state(node).session_present
    close(node)
    broker.restart()
    present = {}
    for node_id in ("sha-lobby-01", "sha-lobby-02"):
        node = make_client(broker, node_id, node_id, clean_start=False)
        present[node_id] = state(node).session_present
        close(node)
    assert present == {"sha-lobby-01": False, "sha-lobby-02": True}


# --- revocation ---------------------------------------------------------------------------


def test_revoked_node_is_refused_after_reload_and_restart(
    fresh_mosquitto: MosquittoBroker, pki: FleetPKI
) -> None:
    broker = fresh_mosquitto
    victim = "sha-lobby-90"
    ctx = tls_context(pki.tls(victim), broker.ca)
    assert raw_connect(broker.host, broker.port, ctx) == 0
    pki.revoke(victim)
    broker.reload()  # SIGHUP re-reads the crlfile
    assert raw_connect(broker.host, broker.port, ctx) is None
    with pytest.raises(MQTTConnectError):
        make_client(broker, victim, unique_client_id(victim), timeout=3)
    broker.stop()
    broker.start()
    assert raw_connect(broker.host, broker.port, ctx) is None
    # Everyone else is unaffected.
    other = tls_context(pki.tls("sha-lobby-01"), broker.ca)
    assert raw_connect(broker.host, broker.port, other) == 0


# --- enrolment ----------------------------------------------------------------------------


def test_enrol_identity_may_only_ask_for_enrolment(
    mosquitto: MosquittoBroker, mqtt_client: ClientFactory
) -> None:
    """Boards enrolling share the enrol certificate, so on the fleet listener they share
    its client id: the ACL can confine them to enrolment, not one board to its own reply
    (that is the seal's job, see tests/provisioning/test_enrol.py)."""
    office = mqtt_client(mosquitto, "head-office", unique_client_id("ho"), clean_start=True, session_expiry=0)
    assert subscribe(office, "sp/v1/enrol/request/+") == 1
    assert subscribe(office, "sp/v1/node/enrol/#") == 1

    rid = unique_client_id("request")
    board = mqtt_client(mosquitto, "enrol", unique_client_id("enrol"), clean_start=True, session_expiry=0)
    # Anything but a request topic is refused, including posing as a node named "enrol".
    for topic in (
        "sp/v1/node/enrol/events",
        "sp/v1/node/sha-lobby-01/events",
        "sp/v1/fleet/changes",
        f"sp/v1/enrol/reply/{rid}",
        "sp/v1/other",
    ):
        assert publish(board, topic, b"x") == NOT_AUTHORIZED, topic
    subscribe(board, "sp/v1/fleet/#")  # granted at SUBACK on 2.0.11; nothing may arrive
    subscribe(board, "sp/v1/node/#")
    subscribe(board, "sp/v1/enrol/request/+")  # nor another board's request (its token)
    assert subscribe(board, f"sp/v1/enrol/reply/{rid}") == 1

    request = json.dumps({"code": "ONE-TIME", "csr": "..."}).encode()
    assert publish(board, f"sp/v1/enrol/request/{rid}", request) == 0
    [got] = state(office).messages.wait_for(1)
    assert got.topic == f"sp/v1/enrol/request/{rid}" and got.payload == request

    assert publish(office, "sp/v1/fleet/changes", b"member directory") in OK_CODES
    assert publish(office, "sp/v1/node/sha-lobby-01/changes", b"node data") in OK_CODES
    assert publish(office, f"sp/v1/enrol/reply/{rid}", b"sealed answer") == 0
    [reply] = state(board).messages.wait_for(1, topic=f"sp/v1/enrol/reply/{rid}")
    assert reply.payload == b"sealed answer"
    # The fleet and node messages were published before the reply, which has arrived.
    assert [m.payload for m in state(board).messages.all()] == [b"sealed answer"]
