"""A head office with its own provisioning folder, on a real Mosquitto, for enrolment tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from staypoint.loyalty.program import default_program_text
from staypoint.provisioning.enrol_service import EnrolService, NodeRecord, ProvisioningState
from tests.mqtt_fixtures import MOSQUITTO_BIN, FleetPKI, MosquittoBroker


@dataclass
class Office:
    """Head office for a test: provisioning state, its broker, the enrolment responder."""

    state: ProvisioningState
    broker: MosquittoBroker
    service: EnrolService
    enrolled: list[NodeRecord]

    @property
    def address(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"


def pki_from_state(state: ProvisioningState) -> FleetPKI:
    """The test fixtures' FleetPKI over the certificates ``provision ca init`` made."""
    pki = FleetPKI(
        ca=state.ca(), office_ca=state.office_ca(), directory=state.tls_dir, server=state.tls("broker")
    )
    for identity in ("head-office", "enrol"):
        pki._files[identity] = state.tls(identity)
    return pki


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    if MOSQUITTO_BIN is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    base = tmp_path_factory.mktemp("office")
    state = ProvisioningState(base / "provisioning")
    state.init()
    broker = MosquittoBroker(pki_from_state(state), base / "mosquitto")
    broker.start()
    enrolled: list[NodeRecord] = []
    service = EnrolService(
        state,
        default_program_text,
        host=broker.host,
        port=broker.office_port,
        on_enrolled=enrolled.append,
        # The broker reads the CA's crl.pem itself: a reload is all a revocation needs.
        on_crl_changed=broker.reload,
        backup_url=f"file://{base}/backups/{{node}}",
    )
    service.start()
    try:
        yield Office(state, broker, service, enrolled)
    finally:
        service.stop()
        broker.stop()


def enrol_tls_dir(office: Office, root: Path) -> None:
    """What the technician copies onto the board: CA + the shared enrol identity."""
    target = root / "etc" / "staypoint" / "enrol"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "enrol.crt", "enrol.key"):
        (target / name).write_bytes((office.state.tls_dir / name).read_bytes())
