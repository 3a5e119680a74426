"""The board's side of enrolment: ``staypoint provision enrol --broker H:P --token T``.

Steps, each idempotent, each writing with temp file + rename (see :data:`STEPS`):

1. ``keys``     make the node's TLS key (EC P-256) and Ed25519 voucher key *on the board*,
                in a private staging folder (``var/lib/staypoint/.enrol``, 0700); a re-run
                reuses them, so the same board keeps the same key.
2. ``request``  connect as the shared ``enrol`` identity (the broker makes that the client
                id too), send the token + CSR + voucher public key + a one-off reply key
                on ``sp/v1/enrol/request/<random id>``, wait for head office's answer,
                sealed to that key, on ``sp/v1/enrol/reply/<id>``; a board that another
                board enrolling knocked off the broker asks again. The opened answer is
                kept (0600) in staging, so a crash after it never needs the token again.
3. ``tls``      CA certificate, node certificate, node TLS key (0600).
4. ``secrets``  voucher key and fleet card-hash key into ``var/lib/staypoint/keys`` (0600).
5. ``replica``  initialise the replica with the programme, member blocks and the fleet's
                voucher public keys (built in staging, renamed into place).
6. ``services`` Litestream config, systemd units, sysusers entry.
7. ``config``   ``etc/staypoint/node.toml`` — written last: its presence means "enrolled".

Private keys never leave the board: only the CSR and the voucher *public* key travel. A
failure at any step leaves every file either absent or whole, and ``node.toml`` absent;
running the same command again finishes the job.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import random
import shutil
import ssl
import threading
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from staypoint.edge.backup import check_replica_url, replica_dir
from staypoint.edge.keys import CARD_KEY, VOUCHER_KEY, public_key_hex
from staypoint.edge.service import NodeService
from staypoint.localtime import ZoneError, zone
from staypoint.mqtt_tls import use_fleet_tls
from staypoint.provisioning.enrol_service import ENROL_REPLY_PREFIX, ENROL_REQUEST_PREFIX
from staypoint.provisioning.pki import (
    ENROL_IDENTITY,
    TLSFiles,
    generate_key,
    key_pem,
    load_certificate,
    make_csr,
)
from staypoint.provisioning.render import (
    NODE_UNITS,
    NodeLayout,
    default_backup_url,
    render_litestream,
    render_node_toml,
    unit_text,
)
from staypoint.provisioning.sealing import new_reply_key, open_reply, reply_key_hex
from staypoint.provisioning.tokens import atomic_write, split_token

__all__ = ["STEPS", "EnrolError", "EnrolRefused", "EnrolResult", "enrol", "parse_broker"]

STEPS = ("keys", "request", "tls", "secrets", "replica", "services", "config")
SERVICE_USER = "staypoint"
SYSUSERS = 'u staypoint - "Staypoint node services" /var/lib/staypoint\n'


class EnrolError(RuntimeError):
    """Enrolment could not finish; the message says what to do. Safe to run again."""


class EnrolRefused(EnrolError):
    """Head office refused (token used, expired, for another node, revoked...)."""


@dataclass
class EnrolResult:
    """What an enrolment run did."""

    node: str
    property: str
    layout: NodeLayout
    steps: list[str] = field(default_factory=list)
    already: bool = False

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "node": self.node,
            "property": self.property,
            "already_enrolled": self.already,
            "steps": self.steps,
            "node_toml": str(self.layout.node_toml),
            "db": str(self.layout.db),
        }


def parse_broker(text: str) -> tuple[str, int]:
    """``host:port`` (port defaults to 8883; IPv6 as ``[addr]:port``)."""
    host, sep, port = text.rpartition(":")
    if not sep or host.endswith(":"):
        host, port = text, "8883"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EnrolError(f"--broker {text!r}: expected HOST:PORT, e.g. mqtt.example.net:8883")
    return host, int(port)


# -- steps -----------------------------------------------------------------------------------


def _load_or_make_tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise EnrolError(f"{path}: not an EC key; delete the staging folder and run again")
        return key
    key = generate_key()
    atomic_write(path, key_pem(key), 0o600)
    return key


def _load_or_make_voucher_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise EnrolError(f"{path}: not an Ed25519 key; delete the staging folder and run again")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(path, pem, 0o600)
    return key


def step_keys(layout: NodeLayout, node: str) -> tuple[ec.EllipticCurvePrivateKey, Ed25519PrivateKey]:
    """Step 1: the board's own keys, made here and kept in staging until installed."""
    layout.staging.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.staging, 0o700)
    # A board re-enrolled after a half-finished run keeps the keys already installed.
    tls_src = layout.key if layout.key.exists() and not (layout.staging / "tls.key").exists() else None
    if tls_src is not None:
        shutil.copy2(tls_src, layout.staging / "tls.key")
    voucher_src = layout.keys / VOUCHER_KEY
    if voucher_src.exists() and not (layout.staging / VOUCHER_KEY).exists():
        shutil.copy2(voucher_src, layout.staging / VOUCHER_KEY)
    return (
        _load_or_make_tls_key(layout.staging / "tls.key"),
        _load_or_make_voucher_key(layout.staging / VOUCHER_KEY),
    )


class _Dropped(EnrolError):
    """The broker closed the connection before the answer came (see :func:`_ask`)."""


def _mqtt_request(
    host: str, port: int, tls: TLSFiles, body: dict[str, Any], request_id: str, deadline: float
) -> dict[str, Any]:
    """One MQTT 5 request/response as the ``enrol`` identity; the answer as it came."""
    reply_topic = ENROL_REPLY_PREFIX + request_id
    correlation = uuid.uuid4().bytes
    subscribed, answered, failed = threading.Event(), threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            result["refused"] = f"broker refused the enrol identity: {rc}"
            failed.set()
            return
        client.subscribe(reply_topic, qos=1)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        got = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        if msg.topic != reply_topic or (got is not None and bytes(got) != correlation):
            return  # not the answer to this request
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict):
            result["reply"] = body
            answered.set()

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if not answered.is_set():
            result.setdefault("dropped", f"broker closed the connection ({rc})")
            failed.set()

    # The broker replaces the client id by the certificate's CN: say so instead of
    # pretending to a session of our own.
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=ENROL_IDENTITY,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,
    )
    use_fleet_tls(client, tls.ca, tls.cert, tls.key)
    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_message, client.on_disconnect = on_message, on_disconnect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0  # a one-off exchange: nothing to keep
    try:
        client.connect(host, port, keepalive=30, clean_start=True, properties=props)
    except (OSError, ssl.SSLError) as err:
        raise EnrolError(f"cannot reach the broker at {host}:{port}: {err}") from None
    client.loop_start()

    def wait(event: threading.Event) -> bool:
        while not event.is_set() and not failed.is_set() and time.monotonic() < deadline:
            event.wait(0.05)
        return event.is_set()

    try:
        if not wait(subscribed):
            if "refused" in result:
                raise EnrolError(result["refused"])
            if "dropped" in result:
                raise _Dropped(result["dropped"])
            raise EnrolError(f"no answer from the broker at {host}:{port}")
        pub = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        pub.ResponseTopic = reply_topic
        pub.CorrelationData = correlation
        client.publish(ENROL_REQUEST_PREFIX + request_id, json.dumps(body).encode(), qos=1, properties=pub)
        if not wait(answered):
            if "dropped" in result:
                raise _Dropped(result["dropped"])
            raise EnrolError("head office did not answer: is `staypoint provision serve` running?")
        reply: dict[str, Any] = result["reply"]
        return reply
    finally:
        client.disconnect()
        client.loop_stop()


def _ask(host: str, port: int, tls: TLSFiles, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Ask head office, with a fresh request id and reply key per attempt; the opened answer.

    Every board enrolling connects under the one client id of the enrol certificate, so a
    second board starting meanwhile disconnects this one: it then asks again (the token
    lets the same CSR key finish), after a random pause so that two boards stop
    alternating, until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        request_id = uuid.uuid4().hex
        key = new_reply_key()
        try:
            answer = _mqtt_request(
                host, port, tls, {**body, "reply_key": reply_key_hex(key)}, request_id, deadline
            )
        except _Dropped:
            attempt += 1
            pause = random.uniform(0.05, min(2.0, 0.1 * 2**attempt))
            if time.monotonic() + pause >= deadline:
                raise
            time.sleep(pause)
            continue
        if "sealed" not in answer:
            if answer.get("ok") is False:
                # Head office could not seal a refusal of a request it could not read.
                return answer
            raise EnrolError("head office answered in the clear: upgrade head office")
        try:
            return open_reply(answer, key, request_id)
        except ValueError as err:
            raise EnrolError(f"head office's answer is unreadable ({err}): run the enrolment again") from None


def step_request(
    layout: NodeLayout,
    host: str,
    port: int,
    token: str,
    node: str,
    tls_key: ec.EllipticCurvePrivateKey,
    voucher: Ed25519PrivateKey,
    enrol_tls: TLSFiles,
    timeout: float,
) -> dict[str, Any]:
    """Step 2: ask head office (or reuse its answer kept from an earlier run)."""
    cached = layout.staging / "reply.json"
    if cached.exists():
        reply: dict[str, Any] = json.loads(cached.read_text("utf-8"))
        if reply.get("node") == node:
            return reply
    for path in (enrol_tls.ca, enrol_tls.cert, enrol_tls.key):
        if not path.exists():
            raise EnrolError(
                f"{path}: missing enrol credentials (copy ca.crt, enrol.crt and enrol.key from "
                "head office's provisioning tls/ folder, or pass --enrol-tls DIR)"
            )
    body = {
        "v": 2,
        "token": token,
        "csr": make_csr(tls_key, node).decode(),
        "voucher_public_key": public_key_hex(voucher.public_key()),
    }
    reply = _ask(host, port, enrol_tls, body, timeout)
    if not reply.get("ok"):
        raise EnrolRefused(f"head office refused the enrolment: {reply.get('error', 'no reason given')}")
    for key, kind in (
        ("cert", str),
        ("ca", str),
        ("card_key", str),
        ("program", str),
        ("voucher_keys", dict),
    ):
        if not isinstance(reply.get(key), kind):
            raise EnrolError(f"head office's answer lacks {key!r}: upgrade head office or the board")
    if reply.get("node") != node:
        raise EnrolError(f"head office answered for {reply.get('node')!r}, not {node!r}")
    # The answer carries the fleet card key: private to root, like the keys.
    atomic_write(cached, json.dumps(reply).encode(), 0o600)
    return reply


def step_tls(layout: NodeLayout, reply: dict[str, Any], tls_key: ec.EllipticCurvePrivateKey) -> None:
    """Step 3: the node's TLS identity (cert must match the key made on this board)."""
    cert = load_certificate(reply["cert"].encode())
    if cert.public_key().public_numbers() != tls_key.public_key().public_numbers():  # type: ignore[union-attr]
        raise EnrolError("head office signed a different key: delete var/lib/staypoint/.enrol and retry")
    atomic_write(layout.ca, reply["ca"].encode(), 0o644)
    atomic_write(layout.cert, reply["cert"].encode(), 0o644)
    atomic_write(layout.key, key_pem(tls_key), 0o600)


def step_secrets(layout: NodeLayout, reply: dict[str, Any], voucher: Ed25519PrivateKey) -> None:
    """Step 4: the voucher signing key and the fleet card-hash key, 0600 in a 0700 folder."""
    layout.keys.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.keys, 0o700)
    pem = voucher.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(layout.keys / VOUCHER_KEY, pem, 0o600)
    card = bytes.fromhex(reply["card_key"])
    atomic_write(layout.keys / CARD_KEY, card.hex().encode(), 0o600)


def step_replica(layout: NodeLayout, reply: dict[str, Any], now: dt.datetime) -> None:
    """Step 5: the replica, with the programme, member blocks and fleet voucher keys.

    A new replica is built in staging and renamed into place, so ``node.db`` is either
    absent or complete; an existing one (a re-run) is finished in place, which
    ``init_node`` supports (it refuses a replica of another node).
    """
    layout.state.mkdir(parents=True, exist_ok=True)
    target = layout.db if layout.db.exists() else layout.staging / "node.db"
    svc = NodeService.init_node(
        target,
        reply["node"],
        reply["property"],
        reply["program"],
        now,
        member_blocks=[int(b) for b in reply.get("member_blocks", [])],
        keys_dir=layout.keys,
        card_key=bytes.fromhex(reply["card_key"]),
    )
    try:
        with svc.replica.write():
            for other, public in sorted(reply["voucher_keys"].items()):
                svc.replica.set_node_key(str(other), str(public))
    finally:
        svc.close()
    if target != layout.db:
        os.replace(target, layout.db)


#: Drop-in letting the Litestream unit write a file:// backup outside /var/backups/staypoint.
LITESTREAM_DROPIN = "staypoint-litestream.service.d/backup.conf"
#: udev rule giving the service user's ``lp`` group a USB printer (pyusb needs the device node).
PRINTER_UDEV_RULE = "60-staypoint-printer.rules"


def backup_target(reply: dict[str, Any], backup_url: str | None) -> str:
    """The technician's ``--backup``, else head office's answer, else the default folder."""
    chosen = backup_url or reply.get("backup_url") or default_backup_url(str(reply["node"]))
    try:
        return check_replica_url(str(chosen))
    except ValueError as err:
        raise EnrolError(f"--{err}" if backup_url else f"head office's {err}") from None


def step_services(
    layout: NodeLayout, reply: dict[str, Any], url: str, hardware: dict[str, str | int] | None = None
) -> None:
    """Step 6: Litestream config, systemd units and the service user's sysusers entry.

    Also what the chosen devices and backup need from the system: a ``ReadWritePaths=``
    drop-in for a file:// backup folder the Litestream unit cannot otherwise write, and a
    udev rule for a USB printer (group ``lp``, which the kiosk unit has).
    """
    atomic_write(layout.litestream, render_litestream(layout, node=reply["node"], url=url).encode(), 0o644)
    for name in NODE_UNITS:
        atomic_write(layout.units_dir / name, unit_text(name).encode(), 0o644)
    dropin = layout.units_dir / LITESTREAM_DROPIN
    folder = replica_dir(url)
    if folder is not None and not folder.is_relative_to("/var/backups/staypoint"):
        text = (
            "# Written by `staypoint provision enrol`: the backup folder of node.toml's [backup].\n"
            f"[Service]\nReadWritePaths={folder.parent}\n"
        )
        atomic_write(dropin, text.encode(), 0o644)
    else:
        dropin.unlink(missing_ok=True)
    rule = Path(layout.root).resolve() / "etc" / "udev" / "rules.d" / PRINTER_UDEV_RULE
    printer_url = str((hardware or {}).get("printer_url", ""))
    if printer_url.startswith("usb:"):
        vid, _, pid = printer_url.removeprefix("usb:").partition(":")
        text = (
            "# Written by `staypoint provision enrol --printer usb:VID:PID`: the kiosk (group lp) may\n"
            "# open the receipt printer through libusb and its usblp node.\n"
            f'SUBSYSTEM=="usb", ATTR{{idVendor}}=="{vid}", ATTR{{idProduct}}=="{pid}", '
            'GROUP="lp", MODE="0660"\n'
        )
        atomic_write(rule, text.encode(), 0o644)
    sysusers = Path(layout.root).resolve() / "etc" / "sysusers.d" / "staypoint.conf"
    atomic_write(sysusers, SYSUSERS.encode(), 0o644)


def _existing_name(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        kiosk = tomllib.loads(path.read_text("utf-8")).get("kiosk")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = kiosk.get("property_name") if isinstance(kiosk, dict) else None
    return name if isinstance(name, str) and name.strip() else None


def _existing_timezone(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        table = tomllib.loads(path.read_text("utf-8")).get("node")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    found = table.get("timezone") if isinstance(table, dict) else None
    return found if isinstance(found, str) and found else None


def choose_timezone(given: str | None, reply: dict[str, Any], existing: str | None, warn: Say) -> str:
    """``--timezone``, else head office's property record (``timezone`` in its answer), else the one
    already in node.toml, else UTC with a warning (the slips then show UTC)."""
    for name in (given, reply.get("timezone"), existing):
        if isinstance(name, str) and name:
            try:
                zone(name)
            except ZoneError as err:
                if name == given:
                    raise EnrolError(f"--timezone: {err}") from None
                warn(f"warning: head office's time zone for {reply.get('property')}: {err}; ignored")
                continue
            return name
    warn(
        f"warning: no time zone for property {reply.get('property')} (give --timezone, e.g. "
        '"Asia/Shanghai"): node.toml says UTC, and slips and staff screens show UTC'
    )
    return "UTC"


def _existing_hardware(path: Path) -> dict[str, str | int] | None:
    if not path.exists():
        return None
    try:
        table = tomllib.loads(path.read_text("utf-8")).get("hardware")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(table, dict):
        return None
    return {k: v for k, v in table.items() if isinstance(v, str | int) and not isinstance(v, bool)}


def step_config(
    layout: NodeLayout,
    reply: dict[str, Any],
    host: str,
    port: int,
    hardware: dict[str, str | int] | None,
    backup_url: str | None = None,
    hotel_name: str | None = None,
    timezone: str = "UTC",
) -> None:
    """Step 7: ``node.toml``, last; a technician's ``[hardware]`` edits survive a re-run.

    The hotel's display name: ``hotel_name``, else head office's ``property_name`` in the
    answer, else the one already in node.toml.
    """
    hw = hardware if hardware is not None else _existing_hardware(layout.node_toml)
    answered = reply.get("property_name")
    name = hotel_name or (answered if isinstance(answered, str) else None) or _existing_name(layout.node_toml)
    text = render_node_toml(
        layout,
        node=reply["node"],
        property_=reply["property"],
        host=host,
        port=port,
        hardware=hw,
        backup_url=backup_target(reply, backup_url),
        hotel_name=name,
        timezone=timezone,
    )
    atomic_write(layout.node_toml, text.encode(), 0o644)


def _hand_to_service_user(layout: NodeLayout) -> None:
    """On a real board (root, user exists): the service user owns its state and TLS key.

    systemd's StateDirectory= fixes /var/lib/staypoint's owner at start, but nothing
    does that for the key under /etc/staypoint, which the agent must read.
    """
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return
    for path in (layout.key, layout.state, layout.keys, layout.db, *layout.keys.glob("*")):
        if path.exists():
            os.chown(path, user.pw_uid, user.pw_gid)


# -- the command ------------------------------------------------------------------------------


Say = Callable[[str], None]


def enrol(
    broker: str,
    token: str,
    root: Path = Path("/"),
    *,
    enrol_tls: TLSFiles | None = None,
    node: str | None = None,
    hardware: dict[str, str | int] | None = None,
    backup_url: str | None = None,
    hotel_name: str | None = None,
    timezone: str | None = None,
    timeout: float = 30.0,
    now: dt.datetime | None = None,
    say: Say = lambda line: None,
    warn: Say = lambda line: None,
) -> EnrolResult:
    """Enrol this board under ``root``; safe to run again after any failure.

    ``hardware`` is the ``[hardware]`` table (see :mod:`.hardware_spec` for the CLI's
    ``--printer``/``--reader``/``--pinpad``), ``backup_url`` Litestream's replica
    (``--backup``; default: head office's answer), ``hotel_name`` the display name,
    ``timezone`` the property's zone (default: head office's, else UTC with a ``warn``).
    """
    host, port = parse_broker(broker)
    if timezone is not None:
        try:
            zone(timezone)
        except ZoneError as err:
            raise EnrolError(f"--timezone: {err}") from None
    if backup_url is not None:
        try:
            backup_url = check_replica_url(backup_url)
        except ValueError as err:
            raise EnrolError(f"--{err}") from None
    claimed, _ = split_token(token)
    if node is not None and node != claimed:
        raise EnrolRefused(f"token was issued for node {claimed!r}, not {node!r}")
    node = claimed
    layout = NodeLayout(Path(root))
    now = now or dt.datetime.now(dt.UTC)
    enrol_tls = enrol_tls or TLSFiles(
        ca=layout.enrol_tls / "ca.crt",
        cert=layout.enrol_tls / "enrol.crt",
        key=layout.enrol_tls / "enrol.key",
    )
    if layout.node_toml.exists() and not layout.staging.exists():
        try:
            have = tomllib.loads(layout.node_toml.read_text("utf-8"))["node"]
        except (OSError, tomllib.TOMLDecodeError, KeyError):
            have = {}
        if have.get("id") == node:
            say(f"{node} is already enrolled ({layout.node_toml})")
            return EnrolResult(node, str(have.get("property", "")), layout, already=True)
        raise EnrolError(f"{layout.node_toml} belongs to node {have.get('id')!r}: this board is taken")

    result = EnrolResult(node, "", layout)
    say(f"[1/7] keys: making this board's TLS and voucher keys for {node}")
    tls_key, voucher = step_keys(layout, node)
    result.steps.append("keys")
    say(f"[2/7] request: asking head office through {host}:{port}")
    reply = step_request(layout, host, port, token, node, tls_key, voucher, enrol_tls, timeout)
    result.property = str(reply["property"])
    result.steps.append("request")
    say("[3/7] tls: node certificate and key")
    step_tls(layout, reply, tls_key)
    result.steps.append("tls")
    say("[4/7] secrets: voucher key and fleet card key")
    step_secrets(layout, reply, voucher)
    result.steps.append("secrets")
    say("[5/7] replica: programme, member blocks, fleet voucher keys")
    step_replica(layout, reply, now)
    result.steps.append("replica")
    say("[6/7] services: litestream and systemd units")
    url = backup_target(reply, backup_url)
    step_services(layout, reply, url, hardware)
    result.steps.append("services")
    say("[7/7] config: node.toml")
    tz = choose_timezone(timezone, reply, _existing_timezone(layout.node_toml), warn)
    step_config(layout, reply, host, port, hardware, url, hotel_name, tz)
    result.steps.append("config")
    _hand_to_service_user(layout)
    # Done: the staging folder (the kept answer holds the card key) goes.
    shutil.rmtree(layout.staging, ignore_errors=True)
    return result
