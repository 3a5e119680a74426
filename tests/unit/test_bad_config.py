"""Garbled configs and absurd numbers: each parser's own one-line error, with a stated bound."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from staypoint.edge import backup
from staypoint.edge.sync import config as sync_config
from staypoint.edge.sync.agent import SyncConfig
from staypoint.kiosk import config as kiosk_config
from staypoint.loyalty.money import MoneyError, parse_amount
from staypoint.loyalty.program import ProgramError, default_program_text, parse_program

NODE = '[node]\ndb = "node.db"\n'
MQTT = '[mqtt]\nhost = "broker"\nport = 8883\nca = "ca.pem"\ncert = "n.pem"\nkey = "n.key"\n'


# -- money --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("1e400", "below 1,000,000,000,000,000"),
        ("1000000000000000", "below"),
        ("9" * 5000, "below"),
        ("1e-400", "two decimal places"),
        ("1e999999999999999999", "below"),
        ("sNaN", "not an amount"),
    ],
)
def test_absurd_amounts_are_money_errors(raw: str, problem: str) -> None:
    with pytest.raises(MoneyError, match=problem) as exc:
        parse_amount(raw)
    assert len(str(exc.value)) < 100


def test_the_largest_amount_still_keeps_its_cents() -> None:
    assert str(parse_amount("999999999999999.99")) == "999999999999999.99"


# -- programme ----------------------------------------------------------------------------------


def _with(old: str, new: str) -> str:
    text = default_program_text()
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("version = 1\n", "version = 2147483648\n", "program.version: must be at most 2,147,483,647"),
        ("voucher_days = 30", "voucher_days = 99999999999", "voucher_days: must be at most 3,660"),
        ("lockout_minutes = 30", "lockout_minutes = 10000000000", "pin.lockout_minutes: must be at most"),
        ("max_staleness_hours = 72", "max_staleness_hours = 9999999", "max_staleness_hours: must be at most"),
        ("months_without_activity = 24", "months_without_activity = 99999", "must be at most 1,200"),
        ("warn_days = 90", "warn_days = 99999", "expiry.warn_days: must be at most 3,660"),
        ("bonus = 500", "bonus = 9007199254740992", "bonus: must be at most 9,007,199,254,740,991"),
        ('point_value = "0.005"', 'point_value = "1e400"', "program.point_value: must be below"),
        (
            "bonus = 500",
            "bonus = " + "7" * 4000,
            "bonus: must be at most 9,007,199,254,740,991, got 777777777777... (4000 characters)",
        ),
        ("bonus = 500", "bonus = " + "7" * 5000, "(document): not valid TOML"),
    ],
)
def test_programme_numbers_have_stated_bounds(old: str, new: str, problem: str) -> None:
    with pytest.raises(ProgramError) as exc:
        parse_program(_with(old, new), "p.toml")
    message = str(exc.value)
    assert message.startswith("p.toml: ") and problem in message, message
    assert "\n" not in message and len(message) < 300


def test_a_huge_whole_number_is_quoted_short() -> None:
    with pytest.raises(ProgramError, match=r"got 100000000000\.\.\. \(40 characters\)"):
        parse_program(_with("version = 1\n", "version = " + "1" + "0" * 39 + "\n"), "p.toml")


def test_a_deeply_nested_programme_is_a_programme_error() -> None:
    with pytest.raises(ProgramError, match="nested too deeply"):
        parse_program("a = " + "[" * 5000 + "]" * 5000, "p.toml")


# -- kiosk config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kiosk", "problem"),
    [
        ("idle_timeout_s = nan", "[kiosk] idle_timeout_s must be from 5 to 3600, not nan"),
        ("idle_timeout_s = inf", "[kiosk] idle_timeout_s must be from 5 to 3600, not inf"),
        ("offline_after_s = 1e300", "[kiosk] offline_after_s must be from 1 to 86400"),
        ("offers_rotate_s = -inf", "[kiosk] offers_rotate_s must be from 0 to 3600"),
        ("offers_rotate_s = 99999", "[kiosk] offers_rotate_s must be from 0 to 3600"),
    ],
)
def test_kiosk_timers_are_bounded(kiosk: str, problem: str) -> None:
    with pytest.raises(kiosk_config.ConfigError, match=re.escape(problem)):
        kiosk_config.parse_config(f"{NODE}[kiosk]\n{kiosk}\n", "node.toml")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[node]\ndb = "a\\u0000b"\n', "[node] db"),
        ('[node]\ndb = "n.db"\nkeys_dir = 3\n', "[node] keys_dir must be a path"),
        ("a = " + "[" * 5000 + "]" * 5000, "not valid TOML (nested too deeply)"),
        ("a = " + "1" * 5000, "not valid TOML"),
    ],
)
def test_kiosk_config_garbage_is_a_config_error(text: str, problem: str) -> None:
    with pytest.raises(kiosk_config.ConfigError) as exc:
        kiosk_config.parse_config(text, "node.toml")
    assert str(exc.value).startswith("node.toml: ") and problem in str(exc.value)


def test_kiosk_config_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_bytes(b"\xff" + NODE.encode())
    with pytest.raises(kiosk_config.ConfigError, match="not a UTF-8 text file"):
        kiosk_config.load_config(tmp_path / "node.toml")


# -- sync agent's node.toml ---------------------------------------------------------------------


def _sync(tmp_path: Path, text: str | bytes) -> sync_config.NodeConfig:
    path = tmp_path / "node.toml"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return sync_config.load_node_config(path)


def test_every_sync_setting_the_file_may_set_is_in_the_schema_with_the_agents_default() -> None:
    from staypoint.edge import nodeconfig
    from staypoint.edge.sync.agent import MAX_PAYLOAD

    settable = {f.name: f.default for f in dataclasses.fields(SyncConfig)}
    for name in ("node_id", "host", "port", "ca", "cert", "key"):
        del settable[name]
    schema = {f.name: f.default for f in dataclasses.fields(nodeconfig.SyncSection)}
    assert schema == settable
    assert all("check" in f.metadata for f in dataclasses.fields(nodeconfig.SyncSection))
    assert nodeconfig.BROKER_MESSAGE_LIMIT == MAX_PAYLOAD


def test_sync_settings_in_bounds_are_taken(tmp_path: Path) -> None:
    cfg = _sync(
        tmp_path,
        NODE + MQTT + '[sync]\nbatch_events = 25\nbackoff_max = 1\ndevices_file = "d.json"\n'
        '[backup]\nreplica = "file://bk"\n',
    )
    assert cfg.sync.batch_events == 25 and cfg.sync.backoff_max == 1.0
    assert isinstance(cfg.sync.backoff_max, float) and cfg.sync.devices_file == tmp_path / "d.json"
    assert cfg.sync.backup_dir == tmp_path / "bk"
    # A [sync] backup_dir wins over [backup]'s (it once passed the same field twice).
    cfg = _sync(tmp_path, NODE + MQTT + '[sync]\nbackup_dir = "mine"\n[backup]\nreplica = "bk"\n')
    assert cfg.sync.backup_dir == tmp_path / "mine"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (NODE + MQTT.replace("8883", "70000"), "[mqtt] port must be from 1 to 65535"),
        (NODE + MQTT.replace("8883", "0"), "[mqtt] port must be from 1 to 65535"),
        (NODE + MQTT.replace("8883", '"8883"'), "[mqtt] port must be a whole number"),
        (NODE + MQTT.replace('"broker"', '""'), "[mqtt] host must be a host name"),
        (NODE + MQTT.replace('"ca.pem"', '"a\\u0000b"'), "[mqtt] ca must be a path"),
        (NODE + MQTT + "[sync]\nbatch_events = 0\n", "[sync] batch_events must be from 1 to 100000"),
        (NODE + MQTT + '[sync]\nbatch_events = "many"\n', "[sync] batch_events must be a whole number"),
        (NODE + MQTT + "[sync]\nbatch_events = 2.5\n", "[sync] batch_events must be a whole number"),
        (NODE + MQTT + "[sync]\nbatch_bytes = 10000000\n", "[sync] batch_bytes must be from 1024 to 262144"),
        (NODE + MQTT + "[sync]\nack_timeout = nan\n", "[sync] ack_timeout must be from"),
        (NODE + MQTT + "[sync]\nkeepalive = 100000\n", "[sync] keepalive must be from 1 to 65535"),
        (NODE + MQTT + "[sync]\nsession_expiry = 99999999999\n", "[sync] session_expiry must be from 0"),
        (NODE + MQTT + "[sync]\nbackoff_min = 5\nbackoff_max = 1\n", "backoff_min is above backoff_max"),
        (NODE + MQTT + "[sync]\ndevices_file = 3\n", "[sync] devices_file must be a path"),
        (NODE + MQTT + "[sync]\nnode_id = 'x'\n", "unknown key [sync] node_id"),
        (NODE + MQTT + "[health]\nheartbeat_s = inf\n", "[health] heartbeat_s must be from 0.1 to 86400"),
        (NODE + "id = 3\n" + MQTT, "[node] id must be text"),
        ('[node]\ndb = "n.db"\nkeys_dir = 3\n' + MQTT, "[node] keys_dir must be a path"),
        ("mqtt = 1\n" + NODE, "[mqtt] must be a table"),
        ("a = " + "[" * 5000 + "]" * 5000, "not valid TOML (nested too deeply)"),
        ("a = " + "1" * 5000, "not valid TOML"),
    ],
)
def test_sync_config_garbage_is_one_line_naming_the_file(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(sync_config.ConfigError) as exc:
        _sync(tmp_path, text)
    message = str(exc.value)
    assert message.startswith(f"{tmp_path / 'node.toml'}: ") and problem in message, message
    assert "\n" not in message


def test_sync_config_that_is_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(sync_config.ConfigError, match="not a UTF-8 text file"):
        _sync(tmp_path, b"\xff\xfe" + (NODE + MQTT).encode())


# -- backup's node.toml -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff[node]\n", "not a UTF-8 text file"),
        (b"a = " + b"[" * 5000 + b"]" * 5000, "not valid TOML"),
        (b'[node]\ndb = "a\\u0000b"\n[backup]\nreplica = "bk"\n', "[node] db must be a path"),
        (
            b'[node]\ndb = "n.db"\n[backup]\nreplica = "bk"\nlitestream_config = 3\n',
            "litestream_config must be a path",
        ),
    ],
)
def test_backup_config_garbage_is_a_backup_error(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "node.toml").write_bytes(content)
    with pytest.raises(backup.BackupError) as exc:
        backup.load_backup_config(tmp_path / "node.toml")
    assert problem in str(exc.value) and str(exc.value).startswith(str(tmp_path / "node.toml"))


def test_agent_link_settings_are_checked(tmp_path: Path) -> None:
    link = '[sync]\nlink_socket = "a.sock"\nlink_group = "staff"\nlink_uids = [7]\n'
    cfg = _sync(tmp_path, NODE + MQTT + link)
    assert cfg.sync.link_socket == tmp_path / "a.sock" and cfg.sync.link_uids == (7,)
    bad_values = ('link_group = ""', "link_group = 3", 'link_uids = ["x"]', "link_uids = [-1]", "link_uids=5")
    for bad in bad_values:
        with pytest.raises(sync_config.ConfigError, match=r"\[sync\] link_"):
            _sync(tmp_path, NODE + MQTT + f"[sync]\n{bad}\n")
