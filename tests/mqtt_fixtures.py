"""Pytest fixtures for integration tests against a REAL Mosquitto with the fleet's TLS + ACL.

Use it as a plugin, in a test module or the root ``conftest.py``::

    pytest_plugins = ["tests.mqtt_fixtures"]

    def test_something(mosquitto, mqtt_client):
        node = mqtt_client(mosquitto, "sha-lobby-01", "sha-lobby-01")
        office = mqtt_client(mosquitto, "head-office", "ho-test")
        subscribe(office, "sp/v1/node/+/events")
        assert publish(node, "sp/v1/node/sha-lobby-01/events", b"{}") == 0
        office_log = state(office).messages
        office_log.wait_for(1, topic="sp/v1/node/sha-lobby-01/events")

Fixtures
    ``pki`` (session): a :class:`FleetPKI`: a fleet CA and a head-office CA in a temp dir
    with certificates for ``head-office``, ``sha-lobby-01``, ``sha-lobby-02`` and ``enrol``;
    ``pki.tls(identity)`` issues any other identity on demand (head office's from its CA).
    ``mosquitto`` (module): a running :class:`MosquittoBroker` shared by a module's tests.
    ``fresh_mosquitto`` (function): a private broker with its own persistence, for tests
    that stop, kill or restart it.
    ``mqtt_client`` (function): ``make_client`` that disconnects its clients at teardown.

Brokers are started with ``mosquitto -c`` and stopped by PID. A broker has the fleet
listener (``port``: nodes, enrol; the client id is the certificate's CN whatever the client
sends) and head office's (``office_port``: head-office certificates only, client ids free);
:func:`make_client` picks the listener by identity. Tests sharing the module broker should
use client ids of their own (see :func:`unique_client_id`) for head office, and for the
fleet listener identities of their own: there a node's identity *is* its session.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from staypoint.mqtt_tls import use_fleet_tls
from staypoint.provisioning.broker import BrokerFiles, write_broker_files
from staypoint.provisioning.pki import OFFICE_CA_NAME, FleetCA, IssuedCert, TLSFiles, is_head_office_identity

__all__ = [
    "HOST",
    "STANDARD_IDENTITIES",
    "ClientState",
    "FleetPKI",
    "MQTTConnectError",
    "MessageLog",
    "MosquittoBroker",
    "Received",
    "Will",
    "close",
    "make_client",
    "publish",
    "raw_connect",
    "state",
    "subscribe",
    "unique_client_id",
]

HOST = "127.0.0.1"
STANDARD_IDENTITIES = ("head-office", "sha-lobby-01", "sha-lobby-02", "enrol")
MOSQUITTO_BIN = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
)
DEFAULT_TIMEOUT = 5.0


# --------------------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------------------


@dataclass
class FleetPKI:
    """The fleet and head-office CAs for tests plus the key/cert files issued from them,
    cached per identity."""

    ca: FleetCA
    office_ca: FleetCA
    directory: Path
    server: TLSFiles
    issued: dict[str, IssuedCert] = field(default_factory=dict)
    _files: dict[str, TLSFiles] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ca_path(self) -> Path:
        """The CA certificate every client trusts."""
        return self.ca.cert_path

    def issuer(self, identity: str) -> FleetCA:
        """The CA that signs ``identity``: head office's own for ``head-office...``."""
        return self.office_ca if is_head_office_identity(identity) else self.ca

    def tls(self, identity: str) -> TLSFiles:
        """(ca, cert, key) paths for ``identity``, issuing its certificate on first use.

        ``ca`` is always the fleet CA: it signed the broker's certificate.
        """
        with self._lock:
            if identity not in self._files:
                cert = self.issuer(identity).issue_client(identity)
                self.issued[identity] = cert
                self._files[identity] = cert.write(self.directory, self.ca.cert_path)
            return self._files[identity]

    def revoke(self, identity: str) -> None:
        """Revoke ``identity``'s certificate and re-sign the CRL (the broker's crlfile).

        The broker sees it after ``reload()`` or a restart.
        """
        self.tls(identity)
        self.issuer(identity).revoke(self.issued[identity].serial)


def _make_pki(directory: Path) -> FleetPKI:
    ca = FleetCA.create(directory / "ca")
    office_ca = FleetCA.create(directory / "office-ca", name=OFFICE_CA_NAME)
    creds = directory / "creds"
    server = ca.issue_server(["localhost"]).write(creds, ca.cert_path)
    pki = FleetPKI(ca=ca, office_ca=office_ca, directory=creds, server=server)
    for identity in STANDARD_IDENTITIES:
        pki.tls(identity)
    return pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FleetPKI:
    """Session-wide fleet CA with head-office, sha-lobby-01, sha-lobby-02 and enrol certs."""
    return _make_pki(tmp_path_factory.mktemp("fleet-pki"))


# --------------------------------------------------------------------------------------
# Raw MQTT (for refusal checks that must not depend on a client library's behaviour)
# --------------------------------------------------------------------------------------


def _connect_packet(client_id: str) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT, clean session, keepalive 30."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x1e" + len(cid).to_bytes(2, "big") + cid
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def raw_connect(
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> int | None:
    """Send one MQTT CONNECT over a fresh socket (TLS when ``context`` is given).

    Returns the CONNACK return code (0 = accepted), or ``None`` when the broker refuses the
    connection without a CONNACK: a failed TLS handshake, a TLS alert, or a closed socket.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as plain:
            sock: socket.socket | ssl.SSLSocket = plain
            if context is not None:
                sock = context.wrap_socket(plain, server_hostname=host)
            sock.sendall(_connect_packet(unique_client_id("raw")))
            head = sock.recv(4)
            if len(head) < 4 or head[0] != 0x20:
                return None
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return head[3]
    except (TimeoutError, ssl.SSLError, ConnectionError):
        return None


def tls_context(files: TLSFiles | None, ca: Path) -> ssl.SSLContext:
    """A client TLS context trusting ``ca``, presenting ``files``' cert when given."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if files is not None:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


# --------------------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------------------


def _free_port(*, not_: int | None = None) -> int:
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port: int = s.getsockname()[1]
        if port != not_:
            return port


class MosquittoBroker:
    """A real ``mosquitto`` process with the fleet's TLS listeners, ACL and CRLs.

    ``host``/``port`` for the fleet listener, ``office_port`` for head office's
    (:meth:`port_for` says which an identity uses); ``ca`` is the CA certificate clients trust.
    ``stop()`` sends SIGTERM (Mosquitto saves its database), ``kill()`` SIGKILL,
    ``start()`` starts it again on the same port and persistence folder, ``reload()``
    sends SIGHUP (re-reads ACL, CRL and certificates).
    """

    host = HOST

    def __init__(self, pki: FleetPKI, directory: Path, port: int | None = None, **overrides: Any) -> None:
        """Write the broker's files into ``directory`` (it is not started: ``start()``).

        ``overrides`` go to ``write_broker_files``, e.g. ``max_queued_messages=10`` to
        test an overflow, ``autosave_interval=1`` to save on every change (production
        saves every 1,000, so a SIGKILL loses what came since), or ``log_types=(..., "debug")``
        to see each PUBLISH received in :meth:`log_text`.
        """
        if MOSQUITTO_BIN is None:
            raise RuntimeError("mosquitto is not installed")
        self.pki = pki
        self.directory = directory
        self.port = port or _free_port()
        self.office_port = _free_port(not_=self.port)
        self.files: BrokerFiles = write_broker_files(
            directory,
            port=self.port,
            cafile=pki.ca_path,
            certfile=pki.server.cert,
            keyfile=pki.server.key,
            crlfile=pki.ca.crl_path,
            office_port=self.office_port,
            office_cafile=pki.office_ca.cert_path,
            office_crlfile=pki.office_ca.crl_path,
            # Tests run as root in root-owned temp dirs: without this, Mosquitto drops to
            # user "mosquitto" and cannot write its log or database.
            run_as_user="root" if os.geteuid() == 0 else None,
            # "information" logs each autosave: useful when a test fails; "subscribe" logs
            # "<client id> <qos> <filter>" per subscription, which wait_subscribed() reads.
            log_types=overrides.pop("log_types", ("error", "warning", "notice", "information", "subscribe")),
            **overrides,
        )
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths -----------------------------------------------------------------------------

    @property
    def ca(self) -> Path:
        """The CA certificate (``cafile``) clients must trust."""
        return self.pki.ca_path

    @property
    def db_path(self) -> Path:
        """The persistence file."""
        return self.files.persistence_dir / "mosquitto.db"

    @property
    def pid(self) -> int | None:
        """PID of the running broker, if any."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.pid is not None

    def client_tls(self, identity: str) -> TLSFiles:
        """(ca, cert, key) paths for a client with CN = ``identity`` (issued on demand)."""
        return self.pki.tls(identity)

    def port_for(self, identity: str) -> int:
        """The listener ``identity`` connects to: head office's own, or the fleet's."""
        return self.office_port if is_head_office_identity(identity) else self.port

    def log_text(self) -> str:
        """The broker's log so far (plus anything it wrote to stderr)."""
        parts = []
        for path in (self.files.log_file, self.directory / "stderr.log"):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def wait_logged(self, pattern: str, timeout: float = DEFAULT_TIMEOUT) -> re.Match[str]:
        """Wait until a line of the broker's log matches the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern, re.MULTILINE)
        while True:
            found = compiled.search(self.log_text())
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing in the broker's log matches {pattern!r}:\n{self.log_text()}")
            time.sleep(0.02)

    def wait_subscribed(self, client_id_prefix: str, topic: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait until a client whose id starts with ``client_id_prefix`` has subscribed to
        ``topic`` (the filter exactly); return that client's id. For a subprocess that
        prints nothing when it is ready: the broker says when it is."""
        found = self.wait_logged(
            rf"(?:^|: )({re.escape(client_id_prefix)}\S*) \d {re.escape(topic)}$", timeout
        )
        return found.group(1)

    # -- process control ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) the broker and wait until it completes an MQTT CONNECT."""
        if self.running:
            return
        assert MOSQUITTO_BIN is not None
        with open(self.directory / "stderr.log", "ab") as err:
            self._proc = subprocess.Popen(
                [MOSQUITTO_BIN, "-c", str(self.files.conf)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # a Ctrl-C in pytest does not reach it first
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until head office's certificate gets a CONNACK; raise with the log if not.

        On head office's listener, where the probe's own random client id disconnects
        nobody (on the fleet listener it would be the CN's, and knock that client off).
        Mosquitto opens every listener before it serves any.
        """
        ctx = tls_context(self.pki.tls("head-office"), self.ca)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log_text()}")
            if raw_connect(self.host, self.office_port, ctx, timeout=1.0) == 0:
                return
            time.sleep(0.02)
        raise TimeoutError(f"mosquitto not ready after {timeout}s:\n{self.log_text()}")

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: Mosquitto saves its in-memory database on the way out."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: no final save; only what autosave already wrote survives."""
        self._signal_and_wait(signal.SIGKILL, 5.0)

    def restart(self) -> None:
        """``stop()`` then ``start()``."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: re-read ACL, CRL and certificates; sessions and connections stay."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("broker is not running")
        marker = self.log_text().count("Reloading config")
        self._proc.send_signal(signal.SIGHUP)
        # Mosquitto handles the signal at its next loop iteration; wait for it to say so.
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while self.log_text().count("Reloading config") <= marker:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reload seen in the log:\n{self.log_text()}")
            time.sleep(0.02)

    def wait_persisted(self, quiet: float = 0.2, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the database file has stopped changing for ``quiet`` seconds.

        Mosquitto autosaves *after* it has sent the PUBACK, by writing ``mosquitto.db.new``
        and renaming it; a SIGKILL in between loses the message even with
        ``autosave_interval 1``. Tests about surviving a SIGKILL wait for the save here;
        production relies on the node's outbox instead.
        """
        deadline = time.monotonic() + timeout
        last: tuple[int, int, int] | None = (-1, -1, -1)  # "not looked yet"
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            temp = self.db_path.with_name(self.db_path.name + ".new")
            try:
                st = self.db_path.stat()
                now = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                now = None
            if temp.exists() or now != last:
                last = now
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= quiet:
                return
            time.sleep(0.02)
        raise TimeoutError("mosquitto's database never settled")


def office_command(broker: MosquittoBroker, db: Path) -> list[str]:
    """The argv of ``staypoint central serve`` for ledger ``db`` on ``broker``, with head
    office's certificate: head office in its own process, as production runs it."""
    tls = broker.client_tls("head-office")
    return [
        sys.executable,
        "-m",
        "staypoint.central.cli",
        "central",
        "serve",
        "--db",
        str(db),
        "--host",
        broker.host,
        "--port",
        str(broker.office_port),
        "--ca",
        str(tls.ca),
        "--cert",
        str(tls.cert),
        "--key",
        str(tls.key),
    ]


def _require_mosquitto() -> None:
    if MOSQUITTO_BIN is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


@pytest.fixture(scope="module")
def mosquitto(pki: FleetPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A running broker shared by the tests of one module; stopped by PID at teardown."""
    _require_mosquitto()
    broker = MosquittoBroker(pki, tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def fresh_mosquitto(pki: FleetPKI, tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private broker for one test (own port and persistence): stop, kill and restart it."""
    _require_mosquitto()
    broker = MosquittoBroker(pki, tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------


def unique_client_id(prefix: str) -> str:
    """``prefix`` plus a random suffix: client ids are sessions, never share one by accident."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Received:
    """One message a client received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None


class MessageLog:
    """Thread-safe record of received messages, with waiting."""

    def __init__(self) -> None:
        self._items: list[Received] = []
        self._cond = threading.Condition()

    def append(self, item: Received) -> None:
        """Record ``item`` (called from paho's network thread)."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def all(self, topic: str | None = None) -> list[Received]:
        """Messages so far, optionally only those on ``topic`` (exact match)."""
        with self._cond:
            return [m for m in self._items if topic is None or m.topic == topic]

    def wait_for(
        self, count: int = 1, *, topic: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> list[Received]:
        """Wait until at least ``count`` messages (on ``topic``) arrived; return them all.

        Raises ``TimeoutError`` listing what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self._items if topic is None or m.topic == topic]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"wanted {count} on {topic!r}, got {got!r}")
                self._cond.wait(remaining)

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._cond:
            self._items.clear()


@dataclass
class Will:
    """An MQTT Last Will: published by the broker when the connection drops uncleanly."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MQTTConnectError(ConnectionError):
    """The broker refused the connection (CONNACK failure, TLS failure or drop)."""


@dataclass
class ClientState:
    """What :func:`make_client` attaches to a client as its userdata."""

    messages: MessageLog = field(default_factory=MessageLog)
    connack: ReasonCode | None = None
    session_present: bool | None = None
    disconnect_reason: ReasonCode | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    _acks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def record_ack(self, mid: int, codes: list[ReasonCode]) -> None:
        """Record a PUBACK or SUBACK for ``mid`` (paho's thread)."""
        with self._cond:
            self._acks[mid] = codes
            self._cond.notify_all()

    def wait_ack(self, mid: int, timeout: float) -> list[ReasonCode]:
        """Wait for the PUBACK/SUBACK of ``mid``; ``TimeoutError`` if it never comes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._acks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no ack for mid {mid}")
                self._cond.wait(remaining)
            return self._acks.pop(mid)


def state(client: mqtt.Client) -> ClientState:
    """The :class:`ClientState` of a client made by :func:`make_client`."""
    st = client.user_data_get()
    assert isinstance(st, ClientState)
    return st


def _on_connect(client: mqtt.Client, st: ClientState, flags: Any, rc: ReasonCode, props: Any) -> None:
    st.connack = rc
    st.session_present = bool(flags.session_present)
    if not rc.is_failure:
        st.connected.set()
    st.done.set()


def _on_disconnect(client: mqtt.Client, st: ClientState, flags: Any, rc: ReasonCode, props: Any) -> None:
    st.disconnect_reason = rc
    st.connected.clear()
    st.done.set()


def _on_message(client: mqtt.Client, st: ClientState, msg: mqtt.MQTTMessage) -> None:
    props = getattr(msg, "properties", None)
    st.messages.append(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), props))


def _on_publish(client: mqtt.Client, st: ClientState, mid: int, rc: ReasonCode, props: Any) -> None:
    st.record_ack(mid, [rc])


def _on_subscribe(client: mqtt.Client, st: ClientState, mid: int, rcs: list[ReasonCode], props: Any) -> None:
    st.record_ack(mid, list(rcs))


def make_client(
    broker: MosquittoBroker,
    identity: str,
    client_id: str,
    clean_start: bool = False,
    session_expiry: int = 3600,
    *,
    will: Will | None = None,
    tls: TLSFiles | None = None,
    port: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> mqtt.Client:
    """A paho client (MQTT 5, TLS as ``identity``) connected to ``broker``, loop running.

    It connects to ``broker.port_for(identity)`` unless ``port`` says otherwise; on the
    fleet listener the broker uses the certificate's CN as client id, not ``client_id``.

    ``clean_start`` and the session expiry are always sent explicitly: paho 2.x with
    MQTT 5 otherwise starts clean on the first connect of every process, wiping the
    session. Keep ``clean_start=False`` even on a client's very first connect when the
    session must survive a broker restart: Mosquitto 2.0.11 does not restore, from its
    database, a session whose last CONNECT had clean start set (whatever its expiry),
    though it keeps it while it runs. ``tls`` overrides the credentials (e.g. a certificate from another CA).
    Raises :class:`MQTTConnectError` when the broker refuses. The client's userdata is a
    :class:`ClientState` (see :func:`state`): received messages, CONNACK, session flag.
    Close it with :func:`close`.
    """
    st = ClientState()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        userdata=st,
        reconnect_on_failure=False,
    )
    files = tls or broker.client_tls(identity)
    use_fleet_tls(client, files.ca, files.cert, files.key)
    client.on_connect = _on_connect
    client.on_disconnect = _on_disconnect
    client.on_message = _on_message
    client.on_publish = _on_publish
    client.on_subscribe = _on_subscribe
    if will is not None:
        client.will_set(will.topic, will.payload, will.qos, will.retain)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry
    try:
        client.connect(
            broker.host,
            port if port is not None else broker.port_for(identity),
            keepalive=30,
            clean_start=clean_start,
            properties=props,
        )
    except (ssl.SSLError, OSError) as err:
        raise MQTTConnectError(f"{identity}: connect failed: {err}") from err
    client.loop_start()
    if not st.done.wait(timeout) or not st.connected.is_set():
        close(client)
        reason = st.connack if st.connack is not None else st.disconnect_reason
        raise MQTTConnectError(f"{identity}: refused ({reason})")
    return client


def close(client: mqtt.Client, *, timeout: float = 2.0) -> None:
    """DISCONNECT cleanly (no Will) and stop the network thread."""
    st = client.user_data_get()
    if isinstance(st, ClientState) and st.connected.is_set():
        st.done.clear()
        client.disconnect()
        st.done.wait(timeout)
    client.loop_stop()


def publish(
    client: mqtt.Client,
    topic: str,
    payload: bytes | str,
    qos: int = 1,
    retain: bool = False,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """Publish and, for QoS 1/2, wait for the broker's ack; return its reason code value.

    0 (or 16, "no matching subscribers") is success; 135 is "Not authorized" (ACL). A
    packet over the broker's ``max_packet_size`` gets no ack: the broker disconnects the
    sender (``TimeoutError`` here). QoS 0 returns 0 once handed to the socket.
    """
    info = client.publish(topic, payload, qos=qos, retain=retain)
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        raise MQTTConnectError(f"publish failed locally: {mqtt.error_string(info.rc)}")
    codes = state(client).wait_ack(info.mid, timeout)
    return int(codes[0].value)


def subscribe(client: mqtt.Client, topic: str, qos: int = 1, *, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Subscribe and wait for the SUBACK; return its reason code value (>= 128: refused)."""
    rc, mid = client.subscribe(topic, qos)
    if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
        raise MQTTConnectError(f"subscribe failed locally: {mqtt.error_string(rc)}")
    return int(state(client).wait_ack(mid, timeout)[0].value)


ClientFactory = Callable[..., mqtt.Client]


@pytest.fixture
def mqtt_client() -> Iterator[ClientFactory]:
    """``make_client`` whose clients are closed at teardown, even when the test fails.

    ``mqtt_client(broker, identity, client_id, clean_start=False, session_expiry=3600,
    will=None, tls=None, port=None)``.
    """
    made: list[mqtt.Client] = []

    def factory(*args: Any, **kwargs: Any) -> mqtt.Client:
        client = make_client(*args, **kwargs)
        made.append(client)
        return client

    yield factory
    for client in made:
        with contextlib.suppress(Exception):
            close(client)
