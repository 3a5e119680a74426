"""The kiosk's config file: good files load, bad ones are one clear line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from staypoint.edge.nodeconfig import HardwareSection
from staypoint.kiosk.cli import register
from staypoint.kiosk.config import ConfigError, load_config, parse_config


def test_good_config(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[node]\ndb = "node.db"\n[kiosk]\nidle_timeout_s = 45\nproperty_name = "Harbour"\n'
        '[hardware]\nreader = "sim"\nprinter = "sim"\npinpad = "none"\n'
    )
    cfg = load_config(path)
    assert cfg.db == tmp_path / "node.db"
    assert cfg.idle_timeout_s == 45 and cfg.property_name == "Harbour"
    expected = {**HardwareSection().as_dict(), "reader": "sim", "printer": "sim", "pinpad": "none"}
    assert cfg.hardware == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[node\ndb=1", "not valid TOML"),
        ("[kiosk]\nidle_timeout_s = 30\n", "db"),
        ('[node]\ndb = "x"\n[kiosk]\nidle_timeout_s = true\n', "idle_timeout_s"),
        ('[node]\ndb = "x"\n[kiosk]\nidle_timeout_s = 1\n', "from 5 to 3600"),
        ('kiosk = 3\n[node]\ndb = "x"\n', "[kiosk] must be a table"),
    ],
)
def test_bad_config_is_one_line(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "node.toml")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_register_adds_kiosk_subcommand() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["kiosk", "--config", "node.toml"])
    assert args.config == "node.toml" and callable(args.fn)


def test_kiosk_never_imports_paho() -> None:
    import subprocess
    import sys

    code = (
        "import sys, staypoint.kiosk.app, staypoint.kiosk.cli;"
        "bad = [m for m in sys.modules"
        " if m.startswith(('paho', 'staypoint.central', 'staypoint.edge.sync'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
