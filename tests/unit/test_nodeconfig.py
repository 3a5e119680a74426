"""node.toml has one loader (staypoint.edge.nodeconfig): every command that reads the file
refuses a misspelt key or section in one line naming the file and the key; every node.toml
enrolment writes and every example in docs/ loads; the reference page is the schema's."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from staypoint.cli.main import main
from staypoint.edge import backup, nodeconfig
from staypoint.edge.nodeconfig import NodeConfigError, load_node_toml, parse_node_toml
from staypoint.edge.sync.config import load_node_config
from staypoint.kiosk.config import kiosk_config, load_config
from staypoint.kiosk.hardware import factory
from staypoint.provisioning import selftest
from staypoint.provisioning.hardware_spec import parse_pinpad, parse_printer, parse_reader
from staypoint.provisioning.render import NodeLayout, render_node_toml

ROOT = Path(__file__).resolve().parents[2]

# A complete node.toml: every section, as a board's would be.
FULL = """\
[node]
id = "sha-lobby-01"
property = "SHA"
mode = "dev"
db = "node.db"
keys_dir = "node.db.keys"

[kiosk]
property_name = "Harbour"
idle_timeout_s = 30
authoriser = "offline"

[hardware]
reader = "sim"
pinpad = "none"
printer = "sim"

[mqtt]
host = "broker.example.net"
port = 8883
ca = "ca.pem"
cert = "node.pem"
key = "node.key"

[sync]
batch_events = 500

[health]
heartbeat_s = 30

[backup]
replica = "file:///var/backups/staypoint/sha-lobby-01"
sync_interval = "1s"
"""

# One misspelling per section: (section, the typo, the key it should have been).
TYPOS = [
    ("node", "dbb", "db"),
    ("kiosk", "idle_timeout", "idle_timeout_s"),
    ("hardware", "raeder", "reader"),
    ("mqtt", "hots", "host"),
    ("sync", "batch_event", "batch_events"),
    ("health", "heartbeat", "heartbeat_s"),
    ("backup", "replca", "replica"),
]


def with_typo(section: str, typo: str) -> str:
    header = f"[{section}]\n"
    assert header in FULL
    return FULL.replace(header, f'{header}{typo} = "x"\n', 1)


def test_the_full_example_loads_in_every_view(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(FULL)
    cfg = load_node_toml(path)
    assert cfg.node.db == tmp_path / "node.db" and cfg.kiosk.authoriser == "offline"
    kiosk = load_config(path)
    assert kiosk.property_name == "Harbour" and kiosk.link is not None and kiosk.link.link() is None
    sync = load_node_config(path)
    assert (
        sync.sync.port == 8883 and sync.sync.health_interval == 30.0 and sync.sync.node_id == "sha-lobby-01"
    )
    assert backup.load_backup_config(path).sync_interval == "1s"
    assert selftest.load_hardware(path)["reader"] == "sim" and not selftest.is_production(path)


@pytest.mark.parametrize(("section", "typo", "meant"), TYPOS, ids=[t[0] for t in TYPOS])
def test_a_misspelt_key_in_any_section_is_named_with_the_file(
    tmp_path: Path, section: str, typo: str, meant: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(with_typo(section, typo))
    with pytest.raises(NodeConfigError) as err:
        load_node_toml(path)
    assert str(err.value) == f"{path}: unknown key [{section}] {typo} (did you mean [{section}] {meant}?)"


def test_a_misspelt_section_is_named_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(FULL.replace("[hardware]", "[hardwre]"))
    with pytest.raises(
        NodeConfigError, match=re.escape(f"{path}: unknown section [hardwre] (did you mean [hardware]?)")
    ):
        load_node_toml(path)
    with pytest.raises(NodeConfigError, match=r"unknown key colour \(one of: node, kiosk"):
        parse_node_toml('colour = "red"\n')
    with pytest.raises(NodeConfigError, match=r"\[hardware\] and \[devices\] are the same section"):
        parse_node_toml('[hardware]\nreader = "sim"\n[devices]\nreader = "sim"\n')
    with pytest.raises(NodeConfigError, match=r"\[node\] keys_dir and keys differ"):
        parse_node_toml('[node]\nkeys_dir = "a"\nkeys = "b"\n')


# Each command a user runs with node.toml, as argv after "staypoint".
COMMANDS = {
    "kiosk": ["kiosk", "--config"],
    "sync run": ["sync", "run", "--config"],
    "member show": ["member", "show", "0001000009", "--config"],
    "provision selftest": ["provision", "selftest", "--config"],
    "node restore": ["node", "restore", "--config"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("section", "typo", "meant"), TYPOS, ids=[t[0] for t in TYPOS])
def test_every_command_refuses_a_misspelt_key_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, section: str, typo: str, meant: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(with_typo(section, typo))
    try:
        code = main([*COMMANDS[command], str(path)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    err = capsys.readouterr().err
    assert code != 0
    # "error: " is how the node's backup commands start theirs.
    assert [re.sub(r"^(staypoint|error): ", "", line) for line in err.splitlines()] == [
        f"{path}: unknown key [{section}] {typo} (did you mean [{section}] {meant}?)"
    ], err
    assert not (tmp_path / "node.db").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_installed_command_refuses_a_hardware_typo(tmp_path: Path, command: str) -> None:
    """As a technician runs it: the console script, its own process, no traceback."""
    path = tmp_path / "node.toml"
    path.write_text(with_typo("hardware", "printer_ulr"))
    exe = Path(sys.executable).parent / "staypoint"
    res = subprocess.run(
        [str(exe), *COMMANDS[command], str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode != 0
    assert [re.sub(r"^(staypoint|error): ", "", line) for line in res.stderr.splitlines()] == [
        f"{path}: unknown key [hardware] printer_ulr (did you mean [hardware] printer_url?)"
    ], res.stderr


@pytest.mark.parametrize(
    ("printer", "reader", "pinpad"),
    [
        ("usb:04b8:0202", "pcsc", "none"),
        ("serial:/dev/ttyUSB0:38400", "pcsc:ACS ACR122U", "serial:/dev/ttyUSB1"),
        ("network:10.0.0.5:9100", "evdev:/dev/input/by-id/usb-wedge-event-kbd", "serial:/dev/ttyS0:115200"),
        ("sim", "sim", "sim"),
    ],
)
@pytest.mark.parametrize("hotel", [None, 'Staypoint "Harbour" 港湾酒店'])
@pytest.mark.parametrize("backup_url", [None, "s3://bucket/sha", "sftp://backup.example.net/sha"])
def test_every_node_toml_enrolment_writes_loads(
    tmp_path: Path, printer: str, reader: str, pinpad: str, hotel: str | None, backup_url: str | None
) -> None:
    layout = NodeLayout(tmp_path)
    hardware = {**parse_reader(reader), **parse_pinpad(pinpad), **parse_printer(printer)}
    text = render_node_toml(
        layout,
        node="sha-lobby-07",
        property_="SHA",
        host="broker.example.net",
        port=8883,
        hardware=hardware,
        backup_url=backup_url,
        hotel_name=hotel,
    )
    layout.node_toml.parent.mkdir(parents=True, exist_ok=True)
    layout.node_toml.write_text(text)
    cfg = load_node_toml(layout.node_toml)
    assert cfg.node.mode == "production" and cfg.node.id == "sha-lobby-07"
    assert {k: v for k, v in cfg.hardware.as_dict().items() if k in hardware} == hardware
    kiosk = load_config(layout.node_toml)
    assert kiosk.db == layout.db and kiosk.property_name == (" ".join(hotel.split()) if hotel else None)
    assert load_node_config(layout.node_toml).sync.cert == layout.cert
    assert backup.load_backup_config(layout.node_toml).litestream_config == layout.litestream
    assert selftest.is_production(layout.node_toml)
    # The enrolment template's default hardware too.
    default = render_node_toml(layout, node="sha-lobby-08", property_="SHA", host="b", port=8883)
    assert parse_node_toml(default, "default").hardware.reader == "pcsc"


def _docs_examples() -> list[tuple[str, str]]:
    """Every ```toml block in docs/ that is (part of) a node.toml."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        blocks = re.findall(r"^( *)```toml\n(.*?)^\1```", page.read_text("utf-8"), re.S | re.M)
        for n, (_, indented) in enumerate(blocks):
            block = textwrap.dedent(indented)
            sections = set(re.findall(r"^\[([a-z_]+)\]", block, re.M))
            node_toml = sections and sections <= set(nodeconfig.SECTIONS) | set(nodeconfig.SECTION_ALIASES)
            if node_toml and sections & {"node", "kiosk", "hardware", "backup", "sync", "health"}:
                found.append((f"{page.name}#{n}", block))
    return found


def test_the_docs_have_node_toml_examples() -> None:
    assert {w.split("#")[0] for w, _ in _docs_examples()} >= {"kiosk.md", "sync.md", "technician.md"}


@pytest.mark.parametrize(("where", "block"), _docs_examples(), ids=[w for w, _ in _docs_examples()])
def test_every_node_toml_example_in_the_docs_loads(where: str, block: str) -> None:
    cfg = parse_node_toml(block, where)
    if cfg.node.db is not None:  # a whole file: the kiosk starts on it
        assert kiosk_config(cfg).db == cfg.node.db


def test_the_reference_page_is_the_schema() -> None:
    page = ROOT / "docs" / "node-toml.md"
    assert page.read_text("utf-8") == nodeconfig.reference_markdown(), (
        "regenerate: python -m staypoint.edge.nodeconfig > docs/node-toml.md"
    )


def test_every_key_has_a_check_and_a_line_of_documentation() -> None:
    for name, cls in nodeconfig.SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert isinstance(f.metadata.get("check"), nodeconfig.Check), (name, f.name)
            assert f.metadata.get("doc"), (name, f.name)


def test_the_driver_names_are_the_factorys() -> None:
    assert nodeconfig.READERS == factory.READERS
    assert nodeconfig.PINPADS == factory.PINPADS
    assert nodeconfig.PRINTERS == factory.PRINTERS
    hardware_fields = {f.name for f in dataclasses.fields(factory.HardwareConfig)} - {"extra"}
    assert {f.name for f in dataclasses.fields(nodeconfig.HardwareSection)} == hardware_fields


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[hardware]\nreader = "pscs"\n', "[hardware] reader must be one of pcsc, evdev, sim, not 'pscs'"),
        ("[hardware]\npinpad_baudrate = 0\n", "[hardware] pinpad_baudrate must be from 50 to 4000000, not 0"),
        ('[node]\nmode = "prod"\n', "[node] mode must be one of production, demo, dev, not 'prod'"),
        ('[backup]\nsync_interval = "soon"\n', '[backup] sync_interval must be a duration such as "1s"'),
        (
            "[kiosk]\nidle_timeout_s = true\n",
            "[kiosk] idle_timeout_s must be a number from 5 to 3600, not True",
        ),
        ("[sync]\nlink_uids = [-1]\n", "[sync] link_uids must be a list of user ids, not [-1]"),
        ('[node]\nid = "' + "x" * 5000 + '"\n', "[node] id must be text, not 'xxxxxxxx"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(text: str, problem: str) -> None:
    with pytest.raises(NodeConfigError) as err:
        parse_node_toml(text, "node.toml")
    message = str(err.value)
    assert message.startswith("node.toml: ") and problem in message and "\n" not in message, message
    assert len(message) < 200
