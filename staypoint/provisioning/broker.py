"""Render the fleet broker's Mosquitto configuration and ACL.

The broker has two TLS listeners, both with client certificates, and no plain one. On the
fleet listener (nodes, enrolment) certificates come from the fleet CA and the CN is both
the MQTT username and the client id, so no client can take over another's session; on head
office's listener only the head-office CA's certificates are accepted and client ids are
free, for head office's several clients. The ACL's ``%u`` patterns confine each node to
``sp/v1/node/<its id>/``. The templates live in
``staypoint/provisioning/templates/`` and carry a comment for every setting; the committed
production example in ``broker/`` is rendered from them (``python -m
staypoint.provisioning.broker --example broker/``) and a test keeps it in step.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from staypoint.mqtt_tls import OFFICE_PORT
from staypoint.provisioning.pki import ENROL_IDENTITY, HEAD_OFFICE_IDENTITY, validate_identity

__all__ = [
    "DEFAULT_MAX_INFLIGHT_MESSAGES",
    "DEFAULT_MAX_QUEUED_MESSAGES",
    "DEFAULT_OFFICE_PORT",
    "MAX_PAYLOAD_BYTES",
    "PRODUCTION_EXAMPLE",
    "BrokerConfig",
    "BrokerFiles",
    "render_acl",
    "render_config",
    "write_broker_files",
]

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest publish payload a sender may use; snapshot chunks and event batches stay under it."""

# Room for the topic, properties and fixed header on top of the largest payload: a payload
# within MAX_PAYLOAD_BYTES always fits in the broker's max_packet_size.
_PACKET_HEADROOM = 8 * 1024

DEFAULT_MAX_QUEUED_MESSAGES = 100_000
"""Per-client queue: ~45 min of head-office downtime at the fleet's peak event rate."""

DEFAULT_AUTOSAVE_CHANGES = 1000
"""Save the broker's database after this many changes: a crash costs at most a resend."""

DEFAULT_MAX_INFLIGHT_MESSAGES = 100
"""Per-client QoS 1 window: lets head office drain a full queue in about a minute."""

DEFAULT_OFFICE_PORT = OFFICE_PORT
"""Head office's listener (the fleet's is 8883)."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Everything that varies between one broker and another.

    ``run_as_user``: Mosquitto started as root drops to user ``mosquitto`` and then cannot
    write root-owned folders; tests pass ``"root"`` (production leaves it ``None`` and
    gives the ``mosquitto`` user its folders and read access to the key).
    ``crlfile``: the CA's CRL; ``None`` leaves revocation off (not for production).
    ``log_dest``: a Mosquitto ``log_dest`` value, e.g. ``"file /var/log/x.log"``,
    ``"stderr"``, ``"syslog"``.
    ``office_port``, ``office_cafile``, ``office_crlfile``, ``office_bind_address``: head
    office's listener and its CA (the fleet CA must not be accepted there).
    """

    port: int
    cafile: Path
    certfile: Path
    keyfile: Path
    acl_file: Path
    persistence_dir: Path
    log_dest: str
    office_port: int
    office_cafile: Path
    crlfile: Path | None = None
    office_crlfile: Path | None = None
    bind_address: str = "127.0.0.1"
    office_bind_address: str = "127.0.0.1"
    run_as_user: str | None = None
    max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES
    max_inflight_messages: int = DEFAULT_MAX_INFLIGHT_MESSAGES
    max_payload: int = MAX_PAYLOAD_BYTES
    persistent_client_expiration: str = "14d"
    autosave_interval: int = DEFAULT_AUTOSAVE_CHANGES
    log_types: tuple[str, ...] = ("error", "warning", "notice")

    def __post_init__(self) -> None:
        for port in (self.port, self.office_port):
            if not 0 < port < 65536:
                raise ValueError(f"port {port} out of range")
        if self.port == self.office_port:
            raise ValueError("the fleet and head office listeners need ports of their own")
        if self.cafile == self.office_cafile:
            # Head office's listener leaves client ids free: a node there could take any id.
            raise ValueError("head office's listener must not accept the fleet CA")
        if self.max_queued_messages <= 0:
            # 0 means "no limit" to Mosquitto: memory would be the only bound.
            raise ValueError("max_queued_messages must be positive")
        if self.max_inflight_messages <= 0:
            raise ValueError("max_inflight_messages must be positive")
        if not 20 <= self.max_payload <= 268_435_455:
            raise ValueError("max_payload must be within MQTT's limits")
        if self.autosave_interval <= 0:
            raise ValueError("autosave_interval must be positive")
        if not self.persistent_client_expiration[:-1].isdigit() or (
            self.persistent_client_expiration[-1] not in "hdwmy"
        ):
            raise ValueError("persistent_client_expiration must look like 14d, 2w, 1y")
        known = {"debug", "error", "warning", "notice", "information", "subscribe", "all"}
        if not self.log_types or not set(self.log_types) <= known:
            raise ValueError(f"log_types must be among {sorted(known)}")
        for value in (self.bind_address, self.office_bind_address, self.log_dest, self.run_as_user or ""):
            if "\n" in value:
                raise ValueError("config values must be single lines")

    @property
    def max_packet_size(self) -> int:
        """The whole-packet limit: the payload limit plus headroom for headers."""
        return self.max_payload + _PACKET_HEADROOM


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """What :func:`write_broker_files` wrote."""

    conf: Path
    acl: Path
    persistence_dir: Path
    log_file: Path


def _template(name: str) -> Template:
    text = resources.files("staypoint.provisioning.templates").joinpath(name).read_text("utf-8")
    return Template(text)


def _path(path: Path) -> str:
    text = str(path)
    # Mosquitto splits config lines on whitespace: a path with a space silently breaks.
    if any(ch.isspace() for ch in text):
        raise ValueError(f"Mosquitto cannot take a path with whitespace: {text!r}")
    return text


def render_config(config: BrokerConfig) -> str:
    """The ``mosquitto.conf`` text for ``config`` (pure)."""
    user_block = ""
    if config.run_as_user is not None:
        user_block = (
            "# Run as this user instead of dropping to 'mosquitto' (tests run as root in\n"
            "# root-owned temporary folders).\n"
            f"user {config.run_as_user}\n"
        )
    crl_block = (
        "# Revoked client certificates. Read at start and on reload (SIGHUP); a revoked\n"
        "# client already connected stays connected until it reconnects. Re-issue the CRL\n"
        "# before its next_update: once it expires OpenSSL refuses every client.\n"
        f"crlfile {_path(config.crlfile)}\n"
        if config.crlfile is not None
        else ""
    )
    office_crl_block = (
        "# The head-office CA's CRL: the same rules (reload, expiry) as the fleet's.\n"
        f"crlfile {_path(config.office_crlfile)}\n"
        if config.office_crlfile is not None
        else ""
    )
    return _template("mosquitto.conf").substitute(
        acl_file=_path(config.acl_file),
        user_block=user_block,
        persistence_dir=_path(config.persistence_dir),
        autosave_interval=config.autosave_interval,
        persistent_client_expiration=config.persistent_client_expiration,
        max_queued_messages=config.max_queued_messages,
        max_inflight_messages=config.max_inflight_messages,
        max_payload=config.max_payload,
        max_packet_size=config.max_packet_size,
        log_dest=config.log_dest,
        log_types="".join(f"log_type {kind}\n" for kind in config.log_types),
        port=config.port,
        bind_address=config.bind_address,
        cafile=_path(config.cafile),
        certfile=_path(config.certfile),
        keyfile=_path(config.keyfile),
        crl_block=crl_block,
        office_port=config.office_port,
        office_bind_address=config.office_bind_address,
        office_cafile=_path(config.office_cafile),
        office_crl_block=office_crl_block,
    )


def render_acl(*, head_office: str = HEAD_OFFICE_IDENTITY, enrol: str = ENROL_IDENTITY) -> str:
    """The ACL file text (pure). Identities are the CNs of those two certificates."""
    return _template("acl.conf").substitute(
        head_office=validate_identity(head_office),
        enrol=validate_identity(enrol),
    )


def write_broker_files(
    directory: Path,
    *,
    port: int,
    cafile: Path,
    certfile: Path,
    keyfile: Path,
    office_port: int,
    office_cafile: Path,
    crlfile: Path | None = None,
    office_crlfile: Path | None = None,
    bind_address: str = "127.0.0.1",
    run_as_user: str | None = None,
    max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
    max_inflight_messages: int = DEFAULT_MAX_INFLIGHT_MESSAGES,
    max_payload: int = MAX_PAYLOAD_BYTES,
    autosave_interval: int = DEFAULT_AUTOSAVE_CHANGES,
    log_types: tuple[str, ...] = ("error", "warning", "notice"),
) -> BrokerFiles:
    """Write ``mosquitto.conf`` and ``acl`` into ``directory``, with ``data/`` for
    persistence and ``mosquitto.log`` for the log; return their paths.

    Start the broker with ``mosquitto -c <conf>``.
    """
    directory = Path(directory).resolve()
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    acl = directory / "acl"
    log_file = directory / "mosquitto.log"
    config = BrokerConfig(
        port=port,
        cafile=Path(cafile).resolve(),
        certfile=Path(certfile).resolve(),
        keyfile=Path(keyfile).resolve(),
        acl_file=acl,
        persistence_dir=data,
        log_dest=f"file {_path(log_file)}",
        office_port=office_port,
        office_cafile=Path(office_cafile).resolve(),
        crlfile=Path(crlfile).resolve() if crlfile is not None else None,
        office_crlfile=Path(office_crlfile).resolve() if office_crlfile is not None else None,
        bind_address=bind_address,
        run_as_user=run_as_user,
        max_queued_messages=max_queued_messages,
        max_inflight_messages=max_inflight_messages,
        max_payload=max_payload,
        autosave_interval=autosave_interval,
        log_types=log_types,
    )
    acl.write_text(render_acl(), encoding="utf-8")
    conf = directory / "mosquitto.conf"
    conf.write_text(render_config(config), encoding="utf-8")
    os.chmod(conf, 0o644)
    return BrokerFiles(conf=conf, acl=acl, persistence_dir=data, log_file=log_file)


PRODUCTION_EXAMPLE = BrokerConfig(
    port=8883,
    bind_address="0.0.0.0",
    cafile=Path("/etc/mosquitto/staypoint/ca.crt"),
    certfile=Path("/etc/mosquitto/staypoint/broker.crt"),
    # Owned root:mosquitto, mode 0640: read at start (as root) and on reload (as mosquitto).
    keyfile=Path("/etc/mosquitto/staypoint/broker.key"),
    crlfile=Path("/etc/mosquitto/staypoint/crl.pem"),
    office_port=DEFAULT_OFFICE_PORT,
    # Head office's processes run beside the broker (docs/head-office.md); bind head
    # office's own network address instead when they do not, never one the hotels reach.
    office_bind_address="127.0.0.1",
    office_cafile=Path("/etc/mosquitto/staypoint/office-ca.crt"),
    office_crlfile=Path("/etc/mosquitto/staypoint/office-crl.pem"),
    acl_file=Path("/etc/mosquitto/staypoint/acl"),
    persistence_dir=Path("/var/lib/mosquitto"),
    log_dest="file /var/log/mosquitto/mosquitto.log",
)
"""The settings of the committed example in ``broker/``."""


def main(argv: list[str] | None = None) -> int:
    """``python -m staypoint.provisioning.broker --example DIR``: (re)write the example."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--example", type=Path, required=True, help="folder to write into")
    args = parser.parse_args(argv)
    out: Path = args.example
    out.mkdir(parents=True, exist_ok=True)
    (out / "mosquitto.conf").write_text(render_config(PRODUCTION_EXAMPLE), encoding="utf-8")
    (out / "acl").write_text(render_acl(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
