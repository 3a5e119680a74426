"""CRL and node-certificate expiry alerts, ahead of time, on an injected clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from staypoint.central.fleet.alerts import AlertManager, MemorySink
from staypoint.central.fleet.config import load_fleet_config
from staypoint.central.fleet.expiry import ExpirySettings, ExpiryWatch
from staypoint.central.fleet.state import FleetState
from staypoint.provisioning.enrol_service import NodeRecord, ProvisioningState
from staypoint.provisioning.pki import crl_next_update, generate_key, make_csr

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def state(tmp_path: Path) -> ProvisioningState:
    st = ProvisioningState(tmp_path / "provisioning")
    st.init()
    return st


def _enrol(state: ProvisioningState, node: str, *, days: int, at: dt.datetime = T0) -> dt.datetime:
    issued = state.ca().sign_csr(make_csr(generate_key(), node), node, valid_days=days, now=at)
    state.record_node(NodeRecord(node, "SHA", format(issued.serial, "x"), "00" * 32, [100], at.isoformat()))
    return issued.cert.not_valid_after_utc


def test_a_node_certificate_alert_fires_within_the_window_once_and_clears_on_re_enrolment(
    state: ProvisioningState,
) -> None:
    not_after = _enrol(state, "sha-lobby-01", days=100)
    _enrol(state, "sha-lobby-02", days=825)
    watch = ExpiryWatch(ExpirySettings(provisioning=state.directory, cert_days=30))
    sink = MemorySink()
    alerts = AlertManager(FleetState(), [sink], sources=[watch.conditions])

    assert alerts.evaluate(not_after - dt.timedelta(days=31)) == []
    (fired,) = alerts.evaluate(not_after - dt.timedelta(days=29))
    assert (fired.kind, fired.alert.rule, fired.alert.node, fired.property) == (
        "fired",
        "cert",
        "sha-lobby-01",
        "SHA",
    )
    assert "29 days left" in fired.alert.message and "re-enrol" in fired.alert.message
    assert alerts.evaluate(not_after - dt.timedelta(days=20)) == []  # once, not every pass

    # Re-enrolled: a new certificate (the record's serial moves), the alert clears.
    _enrol(state, "sha-lobby-01", days=825, at=not_after - dt.timedelta(days=20))
    (cleared,) = alerts.evaluate(not_after - dt.timedelta(days=19))
    assert (cleared.kind, cleared.alert.node, cleared.property) == ("cleared", "sha-lobby-01", "SHA")


def test_a_revoked_node_is_not_warned_about(state: ProvisioningState) -> None:
    not_after = _enrol(state, "sha-lobby-01", days=10)
    state.revoke("sha-lobby-01", now=T0)
    watch = ExpiryWatch(ExpirySettings(provisioning=state.directory))
    assert [a.rule for a, _ in watch.conditions(not_after)] == []


def test_a_node_enrolled_before_issued_json_counts_from_its_enrolment(state: ProvisioningState) -> None:
    _enrol(state, "sha-lobby-01", days=825)
    (state.ca_dir / "issued.json").unlink()
    watch = ExpiryWatch(ExpirySettings(provisioning=state.directory))
    assert watch.node_expiries()["sha-lobby-01"][1] == T0 + dt.timedelta(days=825)


def test_crl_alert_before_next_update_and_cleared_by_renewal(
    state: ProvisioningState, tmp_path: Path
) -> None:
    for ca in (state.ca(), state.office_ca()):
        ca.write_crl(now=T0)
    due = crl_next_update(state.ca().crl_path.read_bytes())
    watch = ExpiryWatch(ExpirySettings(provisioning=state.directory, crl_days=30))
    alerts = AlertManager(FleetState(), sources=[watch.conditions])

    assert alerts.evaluate(due - dt.timedelta(days=31)) == []
    fired = alerts.evaluate(due - dt.timedelta(days=10))
    assert sorted(e.alert.node for e in fired) == [
        f"crl:{state.ca_dir / 'crl.pem'}",
        f"crl:{state.office_ca_dir / 'crl.pem'}",
    ]
    assert all(e.kind == "fired" and "10 days left" in e.alert.message for e in fired)
    # The timer's renewal (as of that day) moves nextUpdate a year on: both clear.
    renew_at = due - dt.timedelta(days=10)
    for ca in (state.ca(), state.office_ca()):
        assert ca.renew_crl(now=renew_at)
    assert {e.kind for e in alerts.evaluate(renew_at + dt.timedelta(minutes=1))} == {"cleared"}
    assert alerts.active_for() == []


def test_a_crl_missing_where_the_broker_reads_it_is_an_alert(tmp_path: Path) -> None:
    watch = ExpiryWatch(ExpirySettings(crls=(tmp_path / "crl.pem",)))
    ((alert, _),) = watch.conditions(T0)
    assert alert.rule == "crl" and "cannot be read" in alert.message


def test_fleet_toml_expiry_table(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.toml"
    base = '[mqtt]\nhost = "h"\nport = 1\nca = "a"\ncert = "b"\nkey = "c"\n'
    cfg.write_text(base + '[expiry]\nprovisioning = "prov"\ncrls = ["crl.pem"]\ncrl_days = 45\n')
    exp = load_fleet_config(cfg).expiry
    assert exp is not None
    assert (exp.provisioning, exp.crls, exp.crl_days, exp.cert_days) == (
        tmp_path / "prov",
        (tmp_path / "crl.pem",),
        45.0,
        30.0,
    )
    cfg.write_text(base + "[expiry]\ncrl_days = 0\n")
    with pytest.raises(ValueError, match=r"\[expiry\] crl_days must be a positive number"):
        load_fleet_config(cfg)
    cfg.write_text(base + "[expiry]\nwarn = 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_fleet_config(cfg)
