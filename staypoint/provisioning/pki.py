"""The fleet's certificate authorities: kept at head office, one certificate per identity.

Every MQTT client of the fleet authenticates to Mosquitto with a client certificate issued
here. The broker runs with ``use_identity_as_username true``, so the certificate's common
name *is* the MQTT username that the ACL's ``%u`` patterns substitute: a node's CN is its
node id (``sha-lobby-01``), head office's is ``head-office``, and the shared, restricted
bootstrap identity that a new board uses to ask for its own certificate is ``enrol``.

There are two CAs of this one kind. The *fleet* CA signs the broker, the nodes and
``enrol``; they connect on the fleet listener, where ``use_username_as_clientid`` makes the
CN the client id too, so no certificate can take over another's session. The *head-office*
CA signs only head office's certificate, accepted on a listener of its own where client ids
are free, because head office runs many clients at once (ledger, enrolment, fleet monitor,
dashboards). Client ids are one namespace across listeners, so ``head-office`` and every
``head-office-...`` id are reserved: no node may be named so (:func:`is_node_id`).

Layout of a CA directory (everything the CA needs to survive a restart of head office)::

    ca.key        EC P-256 private key, PKCS#8 PEM, mode 0600
    ca.crt        self-signed CA certificate (CA:true, pathlen 0)
    revoked.json  revoked serials with the time of revocation (the CRL's source of truth)
    crl.pem       the current CRL, re-signed on every revocation and by ``provision crl
                  renew`` (its timer) well before its ``nextUpdate``
    issued.json   every certificate issued: serial, CN, notAfter (what the fleet monitor
                  warns about before it expires)

Everything that does not touch the CA directory is a pure function of its arguments; the
current time is an argument (``now``) wherever it matters, defaulting to the clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from staypoint.fsutil import atomic_write
from staypoint.loyalty.events import is_office_stream

__all__ = [
    "CRL_RENEW_BEFORE_DAYS",
    "CRL_VALID_DAYS",
    "ENROL_IDENTITY",
    "HEAD_OFFICE_IDENTITY",
    "NODE_CERT_DAYS",
    "OFFICE_CA_NAME",
    "RESERVED_IDENTITIES",
    "CSRRejected",
    "FleetCA",
    "IssuedCert",
    "TLSFiles",
    "cert_pem",
    "common_name",
    "crl_next_update",
    "generate_key",
    "is_head_office_identity",
    "is_node_id",
    "issued_certificates",
    "key_pem",
    "load_certificate",
    "make_csr",
    "validate_identity",
    "write_cert",
    "write_key",
    "write_key_pair",
]

HEAD_OFFICE_IDENTITY = "head-office"
"""CN of head office's certificate; the ACL grants it ``sp/v1/#``."""

ENROL_IDENTITY = "enrol"
"""CN of the shared bootstrap certificate; the ACL lets it only ask for enrolment."""

RESERVED_IDENTITIES = frozenset({HEAD_OFFICE_IDENTITY, ENROL_IDENTITY})
"""Identities that are never node ids (head office must ignore events "from" them); every
``head-office-...`` identity is reserved too (:func:`is_head_office_identity`)."""

OFFICE_CA_NAME = "Staypoint Head Office CA"
"""Subject CN of the CA that signs head office's certificates (and nothing else)."""

# An identity becomes an MQTT username and, through the ACL's %u, a topic level: it must
# never contain "/", "+" or "#" (which would widen an ACL pattern), nor upper case (one
# spelling per node), and it has to fit in a CN (64 characters).
_IDENTITY_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
REVOKED_FILE = "revoked.json"
CRL_FILE = "crl.pem"
ISSUED_FILE = "issued.json"

CRL_VALID_DAYS = 365
"""How long a CRL is valid (its ``nextUpdate``); past it OpenSSL refuses every client."""
CRL_RENEW_BEFORE_DAYS = 90
"""``provision crl renew`` re-signs a CRL with fewer days than this left (its timer runs daily)."""
NODE_CERT_DAYS = 825
"""Validity of a client or server certificate the CA issues (the browsers' old maximum)."""

_CURVE = ec.SECP256R1()
_HASH = hashes.SHA256()
# Certificates are back-dated a little so a node whose clock is slightly behind head
# office's does not reject a certificate that is "not yet valid".
_BACKDATE = dt.timedelta(minutes=5)


class CSRRejected(ValueError):
    """A certificate signing request that the CA refuses to sign, with the reason."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Paths a TLS client (or the broker) needs: the CA to trust, its cert and its key."""

    ca: Path
    cert: Path
    key: Path


def validate_identity(identity: str) -> str:
    """Return ``identity`` if it is a well-formed fleet identity, else raise ``ValueError``.

    Lower-case letters, digits and inner hyphens, 1-64 characters: safe as a CN, an MQTT
    username, an MQTT client id and a single topic level.
    """
    if not _IDENTITY_RE.fullmatch(identity):
        raise ValueError(
            f"invalid identity {identity!r}: use 1-64 of a-z, 0-9 and inner '-' "
            "(it becomes an MQTT username and a topic level)"
        )
    return identity


def is_head_office_identity(identity: str) -> bool:
    """True for ``head-office`` and any ``head-office-...``: the identities and client ids
    kept for head office's own processes."""
    return identity == HEAD_OFFICE_IDENTITY or identity.startswith(HEAD_OFFICE_IDENTITY + "-")


def is_node_id(identity: str) -> bool:
    """True when ``identity`` is well formed and not reserved (``enrol``, head office's)."""
    return (
        bool(_IDENTITY_RE.fullmatch(identity))
        and identity not in RESERVED_IDENTITIES
        and not is_head_office_identity(identity)
        and not is_office_stream(identity)  # head office's own event streams (console, web, pms-…)
    )


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(_CURVE)


def make_csr(key: ec.EllipticCurvePrivateKey, identity: str) -> bytes:
    """A PEM CSR with CN = ``identity``, signed by ``key`` (what a node sends to enrol)."""
    validate_identity(identity)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .sign(key, _HASH)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_certificate(pem: bytes) -> x509.Certificate:
    """Parse one PEM certificate."""
    return x509.load_pem_x509_certificate(pem)


def common_name(name: x509.Name) -> str:
    """The single CN of ``name``; ``ValueError`` if there is none or more than one."""
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        raise ValueError(f"expected exactly one CN, found {len(cns)}")
    value = cns[0].value
    return value if isinstance(value, str) else value.decode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of ``key`` (files holding it must be mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM of ``cert``."""
    return cert.public_bytes(serialization.Encoding.PEM)


def crl_next_update(pem: bytes) -> dt.datetime:
    """The ``nextUpdate`` of a PEM CRL (UTC); ``ValueError`` when it is not one or has none."""
    crl = x509.load_pem_x509_crl(pem)
    when = crl.next_update_utc
    if when is None:
        raise ValueError("the CRL has no nextUpdate")
    return when


def issued_certificates(directory: Path) -> dict[int, tuple[str, dt.datetime]]:
    """serial -> (CN, notAfter) of every certificate the CA in ``directory`` recorded."""
    path = Path(directory) / ISSUED_FILE
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        int(e["serial"], 16): (str(e["cn"]), dt.datetime.fromisoformat(e["not_after"]))
        for e in raw.get("issued", [])
    }


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two head-office processes (enrolment, `ca init`) may issue at once: one writer at a time.
    with open(path.with_name(path.name + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """Write ``key`` as PEM to ``path`` with mode 0600; return ``path``."""
    atomic_write(path, key_pem(key), 0o600)
    return path


def write_cert(path: Path, cert: x509.Certificate) -> Path:
    """Write ``cert`` as PEM to ``path`` with mode 0644; return ``path``."""
    atomic_write(path, cert_pem(cert), 0o644)
    return path


def write_key_pair(
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    key_path: Path,
    cert_path: Path,
) -> tuple[Path, Path]:
    """Write a key (0600) and its certificate (0644); return ``(key_path, cert_path)``."""
    if key.public_key().public_numbers() != _ec_public(cert).public_numbers():
        raise ValueError("the certificate does not belong to this key")
    write_key(key_path, key)
    write_cert(cert_path, cert)
    return key_path, cert_path


def _ec_public(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ValueError("expected an EC public key")
    return public


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate the CA issued, with its private key when the CA generated it.

    ``key`` is ``None`` for a certificate signed from a CSR: the key never left the board.
    """

    identity: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | None

    @property
    def serial(self) -> int:
        """The certificate's serial number (what ``FleetCA.revoke`` takes)."""
        return self.cert.serial_number

    def cert_pem(self) -> bytes:
        """PEM of the certificate."""
        return cert_pem(self.cert)

    def write(self, directory: Path, ca_cert: Path | None = None) -> TLSFiles:
        """Write ``<identity>.crt`` and ``<identity>.key`` (0600) into ``directory``.

        ``ca_cert`` is the CA certificate's path to record in the result (defaults to
        ``directory / "ca.crt"``, which the caller is expected to provide).
        """
        if self.key is None:
            raise ValueError(f"no private key for {self.identity!r}: it was signed from a CSR")
        key_path, crt_path = write_key_pair(
            self.key,
            self.cert,
            directory / f"{self.identity}.key",
            directory / f"{self.identity}.crt",
        )
        return TLSFiles(ca=ca_cert or directory / CA_CERT_FILE, cert=crt_path, key=key_path)


def _utcnow(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


class FleetCA:
    """The head-office CA: issues node, head-office, enrol and broker certificates.

    Create once with :meth:`create`, then :meth:`load` it from its directory. Issuing writes
    only a line of ``issued.json`` (serial, CN, notAfter: what expiry alerts read); the
    caller stores the certificate itself (e.g. with :meth:`IssuedCert.write`). :meth:`revoke`
    re-signs the CRL, since it must outlive the process.
    """

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate):
        self.directory = directory
        self.key = key
        self.cert = cert

    # -- creation and storage -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        name: str = "Staypoint Fleet CA",
        valid_days: int = 3650,
        now: dt.datetime | None = None,
    ) -> FleetCA:
        """Make a new CA in ``directory`` (which must not already hold one) and save it.

        The CA is CA:true with pathlen 0 (it signs leaf certificates only, no
        intermediates) and key usage keyCertSign + cRLSign. An empty CRL is written too,
        so a broker can point ``crlfile`` at it from day one.
        """
        directory = Path(directory)
        if (directory / CA_KEY_FILE).exists():
            raise FileExistsError(f"{directory / CA_KEY_FILE} exists: load it instead")
        now = _utcnow(now)
        key = generate_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Staypoint"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, _HASH)
        )
        directory.mkdir(parents=True, exist_ok=True)
        write_key(directory / CA_KEY_FILE, key)
        write_cert(directory / CA_CERT_FILE, cert)
        ca = cls(directory, key, cert)
        ca._save_revoked({})
        ca.write_crl(now=now)
        return ca

    @classmethod
    def load(cls, directory: Path) -> FleetCA:
        """Load a CA saved by :meth:`create`; refuses a key file readable by others."""
        directory = Path(directory)
        key_path = directory / CA_KEY_FILE
        if key_path.stat().st_mode & 0o077:
            raise PermissionError(f"{key_path} is readable by group/others: chmod 600 it")
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        cert = load_certificate((directory / CA_CERT_FILE).read_bytes())
        if key.public_key().public_numbers() != _ec_public(cert).public_numbers():
            raise ValueError(f"{key_path} does not match {directory / CA_CERT_FILE}")
        return cls(directory, key, cert)

    @property
    def cert_path(self) -> Path:
        """Path of the CA certificate (the ``cafile`` of the broker and of every client)."""
        return self.directory / CA_CERT_FILE

    @property
    def crl_path(self) -> Path:
        """Path of the current CRL (the broker's ``crlfile``)."""
        return self.directory / CRL_FILE

    def cert_pem(self) -> bytes:
        """PEM of the CA certificate."""
        return cert_pem(self.cert)

    @property
    def is_office(self) -> bool:
        """True for the head-office CA (:data:`OFFICE_CA_NAME`), which signs head office only."""
        return common_name(self.cert.subject) == OFFICE_CA_NAME

    # -- issuing --------------------------------------------------------------------------

    def _leaf(
        self,
        subject_cn: str,
        public_key: ec.EllipticCurvePublicKey,
        *,
        usage: x509.ObjectIdentifier,
        sans: Sequence[x509.GeneralName],
        valid_days: int,
        now: dt.datetime | None,
    ) -> x509.Certificate:
        now = _utcnow(now)
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Staypoint"),
                        x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(self.key, _HASH)
        self._record_issued(cert)
        return cert

    def _record_issued(self, cert: x509.Certificate) -> None:
        path = self.directory / ISSUED_FILE
        if not self.directory.is_dir():
            return  # a CA held in memory only (never in tests of the real layout)
        with _locked(path):
            known = issued_certificates(self.directory)
            known[cert.serial_number] = (common_name(cert.subject), cert.not_valid_after_utc)
            body = {
                "issued": [
                    {"serial": format(serial, "x"), "cn": cn, "not_after": at.isoformat()}
                    for serial, (cn, at) in sorted(known.items())
                ]
            }
            atomic_write(path, (json.dumps(body, indent=2) + "\n").encode(), 0o644)

    def issued(self) -> dict[int, tuple[str, dt.datetime]]:
        """serial -> (CN, notAfter) of every certificate this CA issued (and recorded)."""
        return issued_certificates(self.directory)

    def issue_server(
        self,
        hostnames: Iterable[str] = (),
        *,
        ips: Iterable[str] = (),
        name: str = "mqtt-broker",
        valid_days: int = NODE_CERT_DAYS,
        now: dt.datetime | None = None,
    ) -> IssuedCert:
        """A broker (TLS server) certificate with a new key.

        SANs always include IP 127.0.0.1 and DNS ``localhost`` (tests and an on-box
        bridge) plus the given ``hostnames`` and ``ips``; clients verify the host against
        the SANs, never the CN.
        """
        dns = ["localhost", *(h for h in hostnames if h != "localhost")]
        addrs = ["127.0.0.1", *(i for i in ips if i != "127.0.0.1")]
        sans: list[x509.GeneralName] = [x509.DNSName(h) for h in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in addrs]
        key = generate_key()
        cert = self._leaf(
            name,
            key.public_key(),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=sans,
            valid_days=valid_days,
            now=now,
        )
        return IssuedCert(identity=name, cert=cert, key=key)

    def issue_client(
        self,
        identity: str,
        *,
        valid_days: int = NODE_CERT_DAYS,
        now: dt.datetime | None = None,
    ) -> IssuedCert:
        """A client certificate with a new key; CN = ``identity`` (the MQTT username).

        Use this for head office, the ``enrol`` bootstrap identity, tests, and boards
        provisioned on the bench; a board in the field should send a CSR instead
        (:meth:`sign_csr`), so its key never travels.

        Head office's identities come from the head-office CA and every other from the
        fleet CA: a ``head-office`` certificate of the fleet CA would connect on the fleet
        listener under head office's client id, and knock head office off.
        """
        validate_identity(identity)
        if is_head_office_identity(identity) != self.is_office:
            raise ValueError(
                f"{identity!r} is not for this CA: head office's identities come from the "
                "head-office CA, and all others from the fleet CA"
            )
        key = generate_key()
        cert = self._leaf(
            identity,
            key.public_key(),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=(),
            valid_days=valid_days,
            now=now,
        )
        return IssuedCert(identity=identity, cert=cert, key=key)

    def sign_csr(
        self,
        csr_pem: bytes,
        expected_identity: str,
        *,
        valid_days: int = NODE_CERT_DAYS,
        now: dt.datetime | None = None,
    ) -> IssuedCert:
        """Sign a node's CSR as a client certificate, after checking it.

        Refused (:class:`CSRRejected`) unless the CSR parses, its self-signature is valid
        (the requester holds the key), it carries exactly one CN equal to
        ``expected_identity`` (the node id head office assigned, never one the board
        picked), that identity is a node id (not ``enrol`` nor head office's), and the
        key is EC P-256. Extensions the CSR asks for are ignored: the CA decides them.
        """
        try:
            validate_identity(expected_identity)
        except ValueError as err:
            raise CSRRejected(str(err)) from err
        if self.is_office:
            raise CSRRejected("the head-office CA signs head office's certificates only")
        if not is_node_id(expected_identity):
            raise CSRRejected(f"{expected_identity!r} is reserved, not a node id")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as err:
            raise CSRRejected(f"not a PEM CSR: {err}") from err
        if not csr.is_signature_valid:
            raise CSRRejected("the CSR's signature does not verify")
        try:
            cn = common_name(csr.subject)
        except ValueError as err:
            raise CSRRejected(str(err)) from err
        if cn != expected_identity:
            raise CSRRejected(f"CN {cn!r} does not match the expected node id {expected_identity!r}")
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != _CURVE.name:
            raise CSRRejected("the key must be EC P-256")
        cert = self._leaf(
            cn,
            public,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=(),
            valid_days=valid_days,
            now=now,
        )
        return IssuedCert(identity=cn, cert=cert, key=None)

    # -- revocation -----------------------------------------------------------------------

    def _load_revoked(self) -> dict[int, str]:
        path = self.directory / REVOKED_FILE
        if not path.exists():
            return {}
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {int(entry["serial"], 16): str(entry["at"]) for entry in raw["revoked"]}

    def _save_revoked(self, revoked: dict[int, str]) -> None:
        # Serials are hex strings: they are 159-bit integers, beyond what many JSON readers
        # (and jq) hold exactly.
        body = {
            "revoked": [{"serial": format(serial, "x"), "at": at} for serial, at in sorted(revoked.items())]
        }
        atomic_write(
            self.directory / REVOKED_FILE,
            (json.dumps(body, indent=2) + "\n").encode(),
            0o644,
        )

    def revoked_serials(self) -> frozenset[int]:
        """Serials revoked so far."""
        return frozenset(self._load_revoked())

    def revoke(self, serial: int, *, now: dt.datetime | None = None) -> None:
        """Revoke a certificate by serial, persist it, and re-sign ``crl.pem``.

        Idempotent. The broker only reads the CRL when it (re)starts or reloads, and a
        revoked client that is *already connected* stays connected until it reconnects:
        after revoking, reload the broker and kick the client (or restart the broker).
        """
        now = _utcnow(now)
        revoked = self._load_revoked()
        revoked.setdefault(serial, now.isoformat())
        self._save_revoked(revoked)
        self.write_crl(now=now)

    def crl_pem(self, *, now: dt.datetime | None = None, valid_days: int = CRL_VALID_DAYS) -> bytes:
        """A freshly signed PEM CRL listing every revoked serial.

        Mind ``next_update``: OpenSSL (so Mosquitto) refuses *every* client once the CRL
        it loaded has expired, so head office must re-issue it (call :meth:`write_crl`)
        and reload the broker well before ``valid_days`` run out.
        """
        now = _utcnow(now)
        revoked = self._load_revoked()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - _BACKDATE)
            .next_update(now + dt.timedelta(days=valid_days))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            # Monotonic enough for a CRL number: seconds since the epoch of this signing.
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        )
        for serial, at in sorted(revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(dt.datetime.fromisoformat(at))
                .build()
            )
        return builder.sign(self.key, _HASH).public_bytes(serialization.Encoding.PEM)

    def write_crl(self, *, now: dt.datetime | None = None, valid_days: int = CRL_VALID_DAYS) -> Path:
        """Write :meth:`crl_pem` to ``crl.pem`` in the CA directory; return its path."""
        atomic_write(self.crl_path, self.crl_pem(now=now, valid_days=valid_days), 0o644)
        return self.crl_path

    def crl_next_update(self) -> dt.datetime | None:
        """``nextUpdate`` of ``crl.pem`` (None when there is none, or it does not parse)."""
        try:
            return crl_next_update(self.crl_path.read_bytes())
        except (OSError, ValueError):
            return None

    def renew_crl(
        self,
        *,
        now: dt.datetime | None = None,
        before_days: float = CRL_RENEW_BEFORE_DAYS,
        valid_days: int = CRL_VALID_DAYS,
        force: bool = False,
    ) -> bool:
        """Re-sign ``crl.pem`` when fewer than ``before_days`` are left before its
        ``nextUpdate`` (or it is missing, unreadable, or ``force``); True when it did.

        The revoked set is unchanged: the new CRL lists exactly what the old one did, with a
        later ``nextUpdate`` and a higher CRL number.
        """
        now = _utcnow(now)
        due = self.crl_next_update()
        if not force and due is not None and due - now > dt.timedelta(days=before_days):
            return False
        self.write_crl(now=now, valid_days=valid_days)
        return True
