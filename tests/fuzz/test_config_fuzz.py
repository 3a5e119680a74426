"""Random and garbled TOML for the programme parser and every node.toml loader: a valid
result, or the parser's own error type with one line naming the file; never anything else."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from staypoint.cli.main import CliError, _node_paths
from staypoint.edge import backup, nodeconfig
from staypoint.edge.nodeconfig import SyncSection
from staypoint.edge.sync import config as sync_config
from staypoint.kiosk import config as kiosk_config
from staypoint.loyalty.program import (
    SECTIONS,
    Program,
    ProgramError,
    default_program_text,
    load_program,
    parse_program,
)
from staypoint.provisioning import selftest
from tests.fuzz.strategies import AWKWARD, fuzz_settings, mutated_lines, toml_documents

# The parsers' own lists: a section added to either is fuzzed without a change here.
PROGRAM_TABLES = SECTIONS
NODE_TABLES = (*nodeconfig.SECTIONS, *nodeconfig.SECTION_ALIASES)

NODE_TOML = """[node]
id = "sha-lobby-01"
db = "var/node.db"
keys_dir = "var/keys"

[mqtt]
host = "broker.example.net"
port = 8883
ca = "ca.pem"
cert = "node.pem"
key = "node.key"

[sync]
batch_events = 500
window_batches = 8
ack_timeout = 10.0
backoff_min = 0.2
backoff_max = 30.0
devices_file = "devices.json"

[health]
heartbeat_s = 30

[backup]
replica = "file:///var/backups/node"
sync_interval = "1s"

[kiosk]
idle_timeout_s = 30
offline_after_s = 120
offers_rotate_s = 6

[hardware]
reader = "sim"
"""

texts = st.one_of(st.text(max_size=200), st.text(alphabet=AWKWARD, max_size=200))


def one_line(message: str, source: str) -> None:
    assert message.startswith(f"{source}: "), message
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 2000, message[:200]


@fuzz_settings(250)
@given(
    st.one_of(
        mutated_lines(default_program_text()),
        toml_documents(PROGRAM_TABLES),
        texts,
    )
)
def test_programme_parser_gives_a_programme_or_a_programme_error(text: str) -> None:
    try:
        program = parse_program(text, "fuzz.toml")
    except ProgramError as exc:
        one_line(str(exc), "fuzz.toml")
        return
    assert isinstance(program, Program)
    assert 1 <= program.version <= 2**31 - 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzconfig")


@fuzz_settings(60)
@given(st.binary(max_size=200))
def test_programme_files_of_random_bytes(folder: Path, data: bytes) -> None:
    path = folder / "program.toml"
    path.write_bytes(data)
    try:
        load_program(path)
    except ProgramError as exc:
        one_line(str(exc), str(path))


def _cli_node_paths(path: Path) -> Any:
    return _node_paths(argparse.Namespace(db=None, config=str(path)))


LOADERS: dict[str, tuple[Callable[[Path], Any], type[Exception]]] = {
    "sync": (sync_config.load_node_config, sync_config.ConfigError),
    "kiosk": (kiosk_config.load_config, kiosk_config.ConfigError),
    "backup": (backup.load_backup_config, backup.BackupError),
    "cli": (_cli_node_paths, CliError),
    "selftest": (selftest.load_hardware, ValueError),
}


def _check_loaded(name: str, cfg: Any, folder: Path) -> None:
    """What a loader accepts is within its stated bounds."""
    if name == "sync":
        for f in dataclasses.fields(SyncSection):
            value = getattr(cfg.sync, f.name)
            if isinstance(value, int | float):  # every number within its check's bounds
                assert math.isfinite(value) and value == f.metadata["check"].convert(value, folder)
        assert 1 <= cfg.sync.port <= 65_535
    elif name == "kiosk":
        assert 5 <= cfg.idle_timeout_s <= 3600 and 1 <= cfg.offline_after_s <= 86_400
        assert 0 <= cfg.offers_rotate_s <= 3600


@pytest.mark.parametrize("loader", sorted(LOADERS))
@fuzz_settings(120)
@given(
    data=st.one_of(
        mutated_lines(NODE_TOML).map(lambda t: t.encode("utf-8", "surrogatepass")),
        toml_documents(NODE_TABLES).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=120),
    )
)
def test_node_config_loaders_give_a_config_or_their_own_error(folder: Path, loader: str, data: bytes) -> None:
    load, error = LOADERS[loader]
    path = folder / f"{loader}.toml"
    path.write_bytes(data)
    try:
        cfg = load(path)
    except error as exc:
        one_line(str(exc), str(path))
        return
    _check_loaded(loader, cfg, folder)
