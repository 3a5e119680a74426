"""Head office's units: the copies match, `systemd-analyze verify` passes on the set (timers and
their services together), and each service's own ExecStart line starts what it names.

The ExecStart lines are read from the unit files and run as they are, with the installed
paths moved under a temporary root (``/var/lib/staypoint-central``, ``/etc/staypoint-central``,
``/etc/mosquitto/staypoint``), this checkout's ``staypoint`` for ``/usr/bin/staypoint``, and
the broker's and HTTP ports swapped for free ones. The broker is a real Mosquitto on the
certificates ``provision ca init`` made.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from staypoint.loyalty.program import default_program_text
from staypoint.provisioning.enrol_service import ProvisioningState
from staypoint.provisioning.render import HEAD_OFFICE_HELPERS, HEAD_OFFICE_UNITS, unit_text
from tests.mqtt_fixtures import FleetPKI, MosquittoBroker
from tests.waits import wait_until, while_running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
ANALYZE = shutil.which("systemd-analyze")
STAYPOINT = Path(sys.executable).parent / "staypoint"
ALL = (*HEAD_OFFICE_UNITS, *HEAD_OFFICE_HELPERS)


def exec_start(name: str) -> list[str]:
    """The unit's ExecStart line, split as systemd splits it (quotes, no shell)."""
    (line,) = [ln for ln in unit_text(name).splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("name", HEAD_OFFICE_HELPERS)
def test_committed_helper_matches_template(name: str) -> None:
    assert (ROOT / "systemd" / name).read_text() == unit_text(name), f"re-copy {name} into systemd/"


def test_every_unit_is_in_systemd_readme() -> None:
    readme = (ROOT / "systemd" / "README.md").read_text()
    for name in ALL:
        assert f"`{name}`" in readme, f"systemd/README.md does not list {name}"


def test_timers_start_their_oneshots_and_commands_are_installed_ones() -> None:
    for timer, service in (
        ("staypoint-jobs.timer", "staypoint-jobs.service"),
        ("staypoint-crl-renew.timer", "staypoint-crl-renew.service"),
    ):
        assert f"Unit={service}" in unit_text(timer) and "Persistent=true" in unit_text(timer)
        assert "Type=oneshot" in unit_text(service)
    for name in HEAD_OFFICE_UNITS:
        argv = exec_start(name)
        assert argv[0] == "/usr/bin/staypoint", name
        assert "User=staypoint-central" in unit_text(name)
        for arg in argv[1:]:
            if arg.startswith("/"):
                assert arg.startswith(
                    ("/var/lib/staypoint-central/", "/etc/staypoint-central/", "/etc/mosquitto/")
                ), (
                    name,
                    arg,
                )
    # The jobs run as of the current time when the timer starts them: no --now in the unit.
    assert "--now" not in exec_start("staypoint-jobs.service")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (apt-get install systemd)")
def test_systemd_analyze_verify_the_head_office_set(tmp_path: Path) -> None:
    if not STAYPOINT.exists():
        pytest.skip(f"{STAYPOINT} not installed in this venv")
    for name in ALL:
        (tmp_path / name).write_text(unit_text(name).replace("/usr/bin/staypoint ", f"{STAYPOINT} "))
    res = subprocess.run(
        [ANALYZE, "verify", *(str(tmp_path / n) for n in ALL)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


# -- each ExecStart, run -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HeadOfficeRoot:
    """A head office laid out under ``root`` as the units expect it, with a broker."""

    def __init__(self, root: Path, broker: MosquittoBroker, state: ProvisioningState) -> None:
        self.root, self.broker, self.state = root, broker, state
        self.ports = {"8080": _free_port(), "8000": _free_port(), "9108": _free_port()}
        self.procs: list[subprocess.Popen[str]] = []

    def argv(self, name: str) -> list[str]:
        out = []
        for arg in exec_start(name):
            arg = arg.replace("/usr/bin/staypoint", str(STAYPOINT))
            for prefix in ("/var/lib/staypoint-central", "/etc/staypoint-central", "/etc/mosquitto"):
                if arg.startswith(prefix):
                    arg = str(self.root) + arg
                arg = arg.replace(f"sqlite://{prefix}", f"sqlite://{self.root}{prefix}")
            arg = arg.replace("127.0.0.1:8884", f"127.0.0.1:{self.broker.office_port}")
            arg = {"8884": str(self.broker.office_port), **{k: str(v) for k, v in self.ports.items()}}.get(
                arg, arg
            )
            out.append(arg)
        return out

    def start(self, name: str) -> subprocess.Popen[str]:
        log = self.root / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                self.argv(name), cwd=self.root, stdout=out, stderr=subprocess.STDOUT, text=True
            )
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def run(self, name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(name), cwd=self.root, capture_output=True, text=True, timeout=120)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _wait(cond: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[str]) -> None:
    """Wait for ``cond``; fail at once, with its log, if ``proc`` exits first."""
    wait_until(while_running(proc, cond, what, proc.log), timeout, what)  # type: ignore[attr-defined]


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status) < 500
        except urllib.error.HTTPError as err:
            return err.code < 500
        except OSError:
            return False

    return check


@pytest.fixture
def office(tmp_path: Path) -> Iterator[HeadOfficeRoot]:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    root = tmp_path / "root"
    var = root / "var/lib/staypoint-central"
    etc = root / "etc/staypoint-central"
    mosq = root / "etc/mosquitto/staypoint"
    for d in (var, etc, mosq):
        d.mkdir(parents=True)
    subprocess.run(
        [STAYPOINT, "provision", "ca", "init", "--state", str(var / "provisioning")],
        check=True,
        capture_output=True,
    )
    state = ProvisioningState(var / "provisioning")
    for src, dest in (("ca/crl.pem", "crl.pem"), ("office-ca/crl.pem", "office-crl.pem")):
        shutil.copyfile(state.directory / src, mosq / dest)
    # The broker on the certificates `ca init` made, as broker/README.md installs it.
    pki = FleetPKI(
        ca=state.ca(), office_ca=state.office_ca(), directory=state.tls_dir, server=state.tls("broker")
    )
    broker = MosquittoBroker(pki, tmp_path / "mosquitto")
    broker.start()
    ho = HeadOfficeRoot(root, broker, state)
    program = etc / "program.toml"
    program.write_text(default_program_text())
    subprocess.run(
        [STAYPOINT, "central", "publish", "--store", f"sqlite://{var}/ledger.db", str(program)],
        check=True,
        capture_output=True,
    )
    tls = state.tls_dir
    (etc / "fleet.toml").write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.office_port}\nca = "{tls}/ca.crt"\n'
        f'cert = "{tls}/head-office.crt"\nkey = "{tls}/head-office.key"\n\n'
        f'[metrics]\naddr = "127.0.0.1"\nport = {ho.ports["9108"]}\n'
    )
    try:
        yield ho
    finally:
        ho.close()
        broker.stop()


def test_each_head_office_unit_starts_from_its_exec_start(office: HeadOfficeRoot) -> None:
    central = office.start("staypoint-central.service")
    fleet = office.start("staypoint-fleet.service")
    enrol = office.start("staypoint-enrol.service")
    api = office.start("staypoint-api.service")
    console = office.start("staypoint-console.service")

    def says(proc: subprocess.Popen[str], text: str) -> Callable[[], bool]:
        return lambda: text in proc.log.read_text()  # type: ignore[attr-defined]

    _wait(says(central, "head office serving"), 60, "central serve", central)
    _wait(says(enrol, "enrolment service answering"), 60, "provision serve", enrol)
    _wait(_http_ok(f"http://127.0.0.1:{office.ports['9108']}/metrics"), 60, "fleet /metrics", fleet)
    _wait(_http_ok(f"http://127.0.0.1:{office.ports['8080']}/openapi.json"), 60, "the API", api)
    _wait(_http_ok(f"http://127.0.0.1:{office.ports['8000']}/"), 60, "the web console", console)
    for proc in (central, fleet, enrol, api, console):
        assert proc.poll() is None


def test_daily_jobs_run_once_as_of_now(office: HeadOfficeRoot) -> None:
    res = office.run("staypoint-jobs.service")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def test_crl_renew_gives_a_later_next_update_where_the_broker_reads_it(office: HeadOfficeRoot) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=300)  # 65 days left: due (90)
    for ca in (office.state.ca(), office.state.office_ca()):
        ca.write_crl(now=old)
    crls = [office.root / "etc/mosquitto/staypoint" / n for n in ("crl.pem", "office-crl.pem")]
    for crl, ca in zip(crls, (office.state.ca(), office.state.office_ca()), strict=True):
        shutil.copyfile(ca.crl_path, crl)
    before = [x509.load_pem_x509_crl(p.read_bytes()).next_update_utc for p in crls]

    res = office.run("staypoint-crl-renew.service")
    assert res.returncode == 0, res.stderr
    after = [x509.load_pem_x509_crl(p.read_bytes()).next_update_utc for p in crls]
    for b, a in zip(before, after, strict=True):
        assert a is not None and b is not None and a - b > dt.timedelta(days=200)
    # The broker takes the renewed CRL (SIGHUP, as staypoint-crl-reload.service does) and a
    # head-office client still connects.
    office.broker.reload()
    ok = subprocess.run(
        [
            STAYPOINT,
            "fleet",
            "status",
            "--config",
            str(office.root / "etc/staypoint-central/fleet.toml"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert isinstance(json.loads(ok.stdout), list)
    # A second run has nothing to do: nothing copied, no reload.
    again = office.run("staypoint-crl-renew.service")
    assert again.returncode == 0 and "renewed" not in again.stdout and "copied" not in again.stdout
    assert re.search(r"fleet\s+CRL kept", again.stdout)
