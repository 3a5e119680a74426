"""Head office's side of enrolment: the provisioning state folder and the MQTT responder.

State folder (``--state``, default ``/var/lib/staypoint-central/provisioning``)::

    ca/                 the fleet CA (pki.FleetCA): ca.key 0600, ca.crt, crl.pem, revoked.json
    office-ca/          the head-office CA, same layout: it signs head office's certificate only
    tls/                ca.crt, office-ca.crt, broker.{crt,key}, head-office.{crt,key},
                        enrol.{crt,key}
    tokens.json         one-time tokens, hashed (tokens.TokenStore), 0600
    nodes.json          enrolled nodes: property, cert serial, voucher key, member blocks
    fleet-card.key      the fleet-wide card-UID hash key (hex), 0600
    revoked-nodes.json  revoked node ids (central.fleet.revoked.RevokedNodes)

The responder listens on ``sp/v1/enrol/request/+`` as head office and answers on
``sp/v1/enrol/reply/<the request topic's last level>`` — never on a Response Topic the
board chose. Every enrolling board is the same MQTT client (the ``enrol`` certificate's CN
is its client id) and may read every reply topic, so the answer, which carries the fleet
card key, is sealed to the key the board sent in its request (:mod:`.sealing`).

A node enrolled again (a replaced board keeping its id) gets a new certificate, and the
one it had is revoked at once: the CRL is re-signed and ``on_crl_changed`` publishes it to
the broker, so a lost or stolen old board cannot connect any more.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from staypoint.central.fleet.revoked import RevokedNodes
from staypoint.loyalty.program import ProgramError, parse_program
from staypoint.mqtt_tls import OFFICE_PORT, use_fleet_tls
from staypoint.provisioning.pki import (
    ENROL_IDENTITY,
    HEAD_OFFICE_IDENTITY,
    OFFICE_CA_NAME,
    CSRRejected,
    FleetCA,
    TLSFiles,
    load_certificate,
)
from staypoint.provisioning.sealing import parse_reply_key, seal_reply
from staypoint.provisioning.tokens import TokenRefused, TokenStore, atomic_write, locked

__all__ = [
    "ENROL_REPLY_PREFIX",
    "ENROL_REQUEST_PREFIX",
    "EnrolService",
    "NodeRecord",
    "ProvisioningState",
    "key_fingerprint",
]

log = logging.getLogger("staypoint.provisioning")

ENROL_REQUEST_PREFIX = "sp/v1/enrol/request/"
ENROL_REPLY_PREFIX = "sp/v1/enrol/reply/"
FIRST_NODE_BLOCK = 100  # blocks 0-99 are head office's own (member_numbers.py)
LAST_NODE_BLOCK = 8999  # 9000-9999 are demo and benchmark data
MAX_REQUEST_BYTES = 16 * 1024  # a CSR and a token: anything bigger is not a board asking


def key_fingerprint(csr_pem: bytes) -> str:
    """sha256 of the CSR's public key (SubjectPublicKeyInfo DER), hex."""
    csr = x509.load_pem_x509_csr(csr_pem)
    der = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class NodeRecord:
    """One enrolled node, as head office's provisioning remembers it."""

    node: str
    property: str
    serial: str  # hex: CA serials are 159-bit, beyond what many JSON readers hold exactly
    voucher_public_key: str
    member_blocks: list[int]
    enrolled_at: str
    revoked_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "node": self.node,
            "property": self.property,
            "serial": self.serial,
            "voucher_public_key": self.voucher_public_key,
            "member_blocks": self.member_blocks,
            "enrolled_at": self.enrolled_at,
            "revoked_at": self.revoked_at,
        }


class ProvisioningState:
    """Paths and operations of head office's provisioning folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    # -- paths ------------------------------------------------------------------------------

    @property
    def ca_dir(self) -> Path:
        return self.directory / "ca"

    @property
    def office_ca_dir(self) -> Path:
        return self.directory / "office-ca"

    @property
    def tls_dir(self) -> Path:
        return self.directory / "tls"

    @property
    def nodes_path(self) -> Path:
        return self.directory / "nodes.json"

    @property
    def card_key_path(self) -> Path:
        return self.directory / "fleet-card.key"

    @property
    def revoked_path(self) -> Path:
        return self.directory / "revoked-nodes.json"

    @property
    def tokens(self) -> TokenStore:
        return TokenStore(self.directory / "tokens.json")

    @property
    def revoked(self) -> RevokedNodes:
        return RevokedNodes(self.revoked_path)

    def tls(self, identity: str) -> TLSFiles:
        """The key/cert files of ``head-office``, ``enrol`` or ``broker`` in ``tls/``.

        ``ca`` is the fleet CA, which signed the broker's certificate: what every client
        trusts, whichever CA signed its own certificate.
        """
        return TLSFiles(
            ca=self.tls_dir / "ca.crt",
            cert=self.tls_dir / f"{identity}.crt",
            key=self.tls_dir / f"{identity}.key",
        )

    # -- set-up -----------------------------------------------------------------------------

    def init(self, *, broker_hosts: tuple[str, ...] = (), broker_ips: tuple[str, ...] = ()) -> dict[str, str]:
        """``provision ca init``: the fleet and head-office CAs, broker, head-office and
        enrol certificates, card key.

        Idempotent: what exists is kept (a second run never replaces the CA under a fleet
        that trusts it); what is missing is made. Returns what was created, kept or
        replaced: a head-office certificate from the fleet CA (made before head office
        had a CA of its own) is revoked and replaced, since the fleet listener would still
        take it, as client id ``head-office``; copy the CRL to the broker after that.
        """
        done: dict[str, str] = {}
        if (self.ca_dir / "ca.key").exists():
            ca = FleetCA.load(self.ca_dir)
            done["ca"] = "kept"
        else:
            ca = FleetCA.create(self.ca_dir)
            done["ca"] = "created"
        if (self.office_ca_dir / "ca.key").exists():
            office = FleetCA.load(self.office_ca_dir)
            done["office_ca"] = "kept"
        else:
            office = FleetCA.create(self.office_ca_dir, name=OFFICE_CA_NAME)
            done["office_ca"] = "created"
        atomic_write(self.tls_dir / "ca.crt", ca.cert_pem(), 0o644)
        atomic_write(self.tls_dir / "office-ca.crt", office.cert_pem(), 0o644)
        if self.tls("broker").key.exists():
            done["broker"] = "kept"
        else:
            ca.issue_server(broker_hosts, ips=broker_ips, name="broker").write(
                self.tls_dir, self.tls_dir / "ca.crt"
            )
            done["broker"] = "created"
        for identity, issuer in ((HEAD_OFFICE_IDENTITY, office), (ENROL_IDENTITY, ca)):
            files = self.tls(identity)
            if files.key.exists():
                cert = load_certificate(files.cert.read_bytes())
                if cert.issuer == issuer.cert.subject:
                    done[identity] = "kept"
                    continue
                # Not from the CA it belongs to: a head-office certificate from the fleet
                # CA, which the fleet listener would still take.
                ca.revoke(cert.serial_number)
                done[identity] = "replaced"
            else:
                done[identity] = "created"
            issuer.issue_client(identity).write(self.tls_dir, self.tls_dir / "ca.crt")
        if self.card_key_path.exists():
            done["card_key"] = "kept"
        else:
            atomic_write(self.card_key_path, secrets.token_bytes(32).hex().encode(), 0o600)
            done["card_key"] = "created"
        return done

    def ca(self) -> FleetCA:
        """The fleet CA; a clear error when ``ca init`` has not been run."""
        if not (self.ca_dir / "ca.key").exists():
            raise FileNotFoundError(f"{self.ca_dir}: no fleet CA here (run `staypoint provision ca init`)")
        return FleetCA.load(self.ca_dir)

    def office_ca(self) -> FleetCA:
        """The head-office CA; a clear error when ``ca init`` has not been run since it came."""
        if not (self.office_ca_dir / "ca.key").exists():
            raise FileNotFoundError(
                f"{self.office_ca_dir}: no head-office CA here (run `staypoint provision ca init`)"
            )
        return FleetCA.load(self.office_ca_dir)

    def card_key(self) -> bytes:
        """The fleet-wide card-UID hash key."""
        if not self.card_key_path.exists():
            raise FileNotFoundError(f"{self.card_key_path}: missing (run `staypoint provision ca init`)")
        return bytes.fromhex(self.card_key_path.read_text().strip())

    # -- the node registry ------------------------------------------------------------------

    def nodes(self) -> dict[str, NodeRecord]:
        """Enrolled nodes by id."""
        if not self.nodes_path.exists():
            return {}
        raw = json.loads(self.nodes_path.read_text("utf-8"))
        return {k: NodeRecord(**v) for k, v in raw.get("nodes", {}).items()}

    def _save_nodes(self, nodes: dict[str, NodeRecord]) -> None:
        body = {"nodes": {k: v.to_json() for k, v in sorted(nodes.items())}}
        atomic_write(self.nodes_path, (json.dumps(body, indent=2) + "\n").encode(), 0o644)

    def blocks_for(self, node: str) -> list[int]:
        """The node's member-number blocks: its existing ones, or the next free block.

        A re-enrolment (a replaced board keeping its id) keeps its blocks; numbers it
        already handed out stay unique because head office has seen them.
        """
        with locked(self.nodes_path):
            nodes = self.nodes()
            if node in nodes:
                return list(nodes[node].member_blocks)
            used = {b for rec in nodes.values() for b in rec.member_blocks}
            for block in range(FIRST_NODE_BLOCK, LAST_NODE_BLOCK + 1):
                if block not in used:
                    return [block]
        raise RuntimeError("no free member-number block left for a new node")

    def record_node(self, record: NodeRecord) -> None:
        """Add or replace a node's record."""
        with locked(self.nodes_path):
            nodes = self.nodes()
            nodes[record.node] = record
            self._save_nodes(nodes)

    def enrolled(self, record: NodeRecord, *, now: dt.datetime | None = None) -> int | None:
        """Record a node's (new) certificate and revoke the one it replaces, if any.

        Returns the serial revoked (``None`` for a first enrolment); the CRL is re-signed
        then, and the caller publishes it to the broker. The old certificate is revoked
        *before* the new record is saved: a crash in between leaves a revoked certificate
        on record, and the board's re-run of enrolment (it has no answer yet) fixes that,
        whereas the other order could leave the old certificate valid for good.
        """
        previous = self.nodes().get(record.node)
        revoked = None
        if previous is not None and previous.serial != record.serial:
            revoked = int(previous.serial, 16)
            self.ca().revoke(revoked, now=now)
        self.record_node(record)
        return revoked

    def revoke(self, node: str, *, now: dt.datetime | None = None) -> NodeRecord:
        """Revoke the node's certificate (CRL re-signed) and add it to the revoked set.

        The caller then copies ``ca/crl.pem`` to the broker and reloads it (SIGHUP).
        """
        now = now or dt.datetime.now(dt.UTC)
        nodes = self.nodes()
        if node not in nodes:
            raise KeyError(f"node {node!r} was never enrolled here")
        record = nodes[node]
        self.ca().revoke(int(record.serial, 16), now=now)
        at = record.revoked_at or now.isoformat()
        self.revoked.add(node, at)
        revoked = NodeRecord(**{**record.to_json(), "revoked_at": at})
        self.record_node(revoked)
        return revoked


ProgramSource = Callable[[], str]
Enrolled = Callable[[NodeRecord], None]
CrlChanged = Callable[[], None]


class EnrolService:
    """The enrolment responder: token check, CSR signing, the answer a new board needs.

    Runs its own paho client as head office (``start``/``stop``), on head office's
    listener; :meth:`handle` is the pure-ish core (request body in, reply body out, not
    yet sealed), usable without a broker. ``program`` returns the programme document to
    hand out; ``on_enrolled`` is told of each node enrolled (head office registers the
    voucher key with the ledger there); ``on_crl_changed`` is called when a re-enrolment
    revoked a node's previous certificate, to copy the CRL to the broker and reload it
    (an error there is logged and counted, and the enrolment still answered).
    """

    def __init__(
        self,
        state: ProvisioningState,
        program: ProgramSource,
        *,
        host: str = "127.0.0.1",
        port: int = OFFICE_PORT,
        tls: TLSFiles | None = None,
        on_enrolled: Enrolled | None = None,
        on_crl_changed: CrlChanged | None = None,
        backup_url: str = "file:///var/backups/staypoint/{node}",
        timezones: Mapping[str, str] | None = None,
        client_id: str = "head-office-enrol",
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.state = state
        self.program = program
        self.host = host
        self.port = port
        self.tls = tls or state.tls(HEAD_OFFICE_IDENTITY)
        self.on_enrolled = on_enrolled
        self.on_crl_changed = on_crl_changed
        self.backup_url = backup_url
        #: Property code -> IANA zone (head office's property records): the node's [node] timezone.
        self.timezones = dict(timezones or {})
        self.client_id = client_id
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()  # one enrolment at a time: the files are shared
        self._ready = threading.Event()
        self.client: mqtt.Client | None = None

    # -- the core ---------------------------------------------------------------------------

    def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one request ``{"v": 2, "token", "csr", "voucher_public_key", "reply_key"}``."""
        try:
            token = body.get("token")
            csr = body.get("csr")
            voucher = body.get("voucher_public_key")
            if body.get("v") != 2 or "reply_key" not in body:
                # Checked before the token: an old board must not spend it on an answer
                # that could not be sealed.
                raise TokenRefused(
                    "this board's staypoint is too old for head office (enrolment answers are "
                    "sealed since protocol 2): upgrade it and run the enrolment again"
                )
            try:
                parse_reply_key(body.get("reply_key"))
            except ValueError:
                raise TokenRefused("malformed request: reply_key must be 32 bytes of hex") from None
            if not isinstance(token, str) or not isinstance(csr, str) or not isinstance(voucher, str):
                raise TokenRefused("malformed request: token, csr and voucher_public_key are required")
            try:
                if len(bytes.fromhex(voucher)) != 32:
                    raise ValueError
            except ValueError:
                raise TokenRefused("malformed request: voucher_public_key must be 32 bytes of hex") from None
            try:
                fingerprint = key_fingerprint(csr.encode())
            except ValueError as err:
                raise CSRRejected(f"not a PEM CSR: {err}") from None
            with self._lock:
                return self._enrol(token, csr.encode(), voucher, fingerprint)
        except (TokenRefused, CSRRejected) as err:
            self.counts["refused"] += 1
            log.warning("enrolment refused: %s", err)
            return {"v": 2, "ok": False, "error": str(err)}

    def _enrol(self, token: str, csr: bytes, voucher: str, fingerprint: str) -> dict[str, Any]:
        now = self.clock()
        try:
            cn = x509.load_pem_x509_csr(csr).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            asked = str(cn[0].value) if len(cn) == 1 else None
        except ValueError:
            asked = None
        record = self.state.tokens.redeem(token, fingerprint, node=asked, now=now)
        node = record.node
        if node in self.state.revoked:
            raise TokenRefused(f"node {node!r} is revoked: enrol the board under a new node id")
        issued = self.state.ca().sign_csr(csr, node, now=now)
        blocks = self.state.blocks_for(node)
        entry = NodeRecord(
            node=node,
            property=record.property,
            serial=format(issued.serial, "x"),
            voucher_public_key=voucher,
            member_blocks=blocks,
            enrolled_at=now.isoformat(),
        )
        superseded = self.state.enrolled(entry, now=now)
        if superseded is not None:
            self.counts["superseded"] += 1
            log.info("%s enrolled again: its previous certificate, serial %x, is revoked", node, superseded)
            self._publish_crl()
        if self.on_enrolled is not None:
            self.on_enrolled(entry)
        keys = {n: rec.voucher_public_key for n, rec in self.state.nodes().items() if rec.revoked_at is None}
        self.counts["enrolled"] += 1
        log.info("enrolled %s (%s), serial %s", node, record.property, entry.serial)
        program_text = self.program()
        zone = self.timezones.get(record.property) or _programme_zone(program_text, record.property)
        return {
            **({"timezone": zone} if zone else {}),
            "v": 2,
            "ok": True,
            "node": node,
            "property": record.property,
            "cert": issued.cert_pem().decode(),
            "ca": self.state.ca().cert_pem().decode(),
            "voucher_keys": keys,
            "card_key": self.state.card_key().hex(),
            "member_blocks": blocks,
            "program": program_text,
            "backup_url": self.backup_url.format(node=node),
        }

    def _publish_crl(self) -> None:
        if self.on_crl_changed is None:
            return
        try:
            self.on_crl_changed()
        except Exception:
            # The new board is legitimate and gets its answer; the broker still takes the
            # old certificate until someone copies the CRL and reloads it.
            self.counts["crl_not_published"] += 1
            log.exception(
                "the new CRL did not reach the broker: copy %s there and reload it",
                self.state.ca_dir / "crl.pem",
            )

    # -- MQTT -------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect as head office (its listener) and serve requests on a paho network thread."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        use_fleet_tls(client, self.tls.ca, self.tls.cert, self.tls.key)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: self._ready.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Requests are worth nothing once the board gave up waiting: no persistent session.
        props.SessionExpiryInterval = 0
        client.connect(self.host, self.port, keepalive=30, clean_start=True, properties=props)
        client.loop_start()
        self.client = client
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"enrolment service: no connection to {self.host}:{self.port}")

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("enrolment service refused by the broker: %s", rc)
            return
        client.subscribe(ENROL_REQUEST_PREFIX + "+", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        requester = msg.topic[len(ENROL_REQUEST_PREFIX) :]
        if not msg.topic.startswith(ENROL_REQUEST_PREFIX) or not requester or "/" in requester:
            self.counts["dropped"] += 1
            return
        if len(msg.payload) > MAX_REQUEST_BYTES:
            self.counts["dropped"] += 1
            return
        try:
            body = json.loads(msg.payload)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            reply: dict[str, Any] = {"v": 2, "ok": False, "error": "malformed request: not a JSON object"}
        else:
            try:
                reply = self.handle(body)
            except Exception as err:  # a bug answers the board instead of leaving it waiting
                log.exception("enrolment failed")
                reply = {"v": 2, "ok": False, "error": f"head office error: {err}"}
            try:
                reply = seal_reply(reply, parse_reply_key(body.get("reply_key")), requester)
            except ValueError:
                # No key to seal to: handle() refused it, and a refusal carries no secret.
                reply = {"v": 2, "ok": False, "error": reply.get("error", "malformed request")}
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        request_props = getattr(msg, "properties", None)
        correlation = getattr(request_props, "CorrelationData", None)
        if correlation is not None:
            props.CorrelationData = correlation
        client.publish(
            ENROL_REPLY_PREFIX + requester,
            json.dumps(reply).encode(),
            qos=1,
            properties=props,
        )


def _programme_zone(text: str, property_code: str) -> str | None:
    """The property's zone in the programme's ``[[properties]]`` (head office's record of it)."""
    try:
        return parse_program(text).timezone_of(property_code)
    except ProgramError:  # refused when it was published or loaded; no zone rather than no node
        return None
