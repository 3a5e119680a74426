"""``node.toml``: every section and key a node reads, with its type, bound and default, in one place.

The kiosk (``staypoint kiosk``), the sync agent (``staypoint sync run``), the desk's commands
(``--config``), the backup (``staypoint node backup`` / ``restore``) and the self-test
(``staypoint provision selftest``) all read the file through :func:`load_node_toml` and take
the sections they need from the typed result. A section or key this module does not know is
refused, with the file and the key named (and the nearest known key, for a typo): a misspelt
``[hardware]`` key must not quietly leave a kiosk on simulated devices.

The schema is the dataclasses below: each field is one key, its metadata the check and the
line of documentation that ``docs/node-toml.md`` is generated from
(``python -m staypoint.edge.nodeconfig > docs/node-toml.md``; a test keeps the two equal).
Relative paths are taken from the file's folder. Every error is one :class:`NodeConfigError`
line that starts with the file.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from staypoint.tomlfile import TomlFileError, parse_toml, path_text, read_toml

__all__ = [
    "AUTHORISERS",
    "BROKER_MESSAGE_LIMIT",
    "MODES",
    "PINPADS",
    "PRINTERS",
    "READERS",
    "SECTIONS",
    "BackupSection",
    "HardwareSection",
    "HealthSection",
    "KioskSection",
    "MqttSection",
    "NodeConfigError",
    "NodeSection",
    "NodeToml",
    "SyncSection",
    "load_node_toml",
    "node_toml_from_data",
    "parse_node_toml",
    "reference_markdown",
]

#: The broker's message size limit (``staypoint.edge.sync.agent.MAX_PAYLOAD``; a test keeps
#: them equal): a batch must fit in one message.
BROKER_MESSAGE_LIMIT = 256 * 1024
#: ``[node] mode``: an enrolled board is "production" (the self-test fails simulated devices).
MODES = ("production", "demo", "dev")
#: ``[kiosk] authoriser``: head office through the sync agent's socket, or the offline limits only.
AUTHORISERS = ("agent", "offline")
#: The drivers ``staypoint.kiosk.hardware.factory`` builds (a test keeps them equal).
READERS = ("pcsc", "evdev", "sim")
PINPADS = ("serial", "sim", "none")
PRINTERS = ("escpos", "sim")
EVDEV_MODES = ("auto", "member", "uid")


class NodeConfigError(ValueError):
    """node.toml cannot be used: one line, starting with the file, naming the section and key."""


class _Bad(Exception):
    """A value's problem ("must be ..."); the loader adds the file, section and key."""


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Check:
    """How one key's value is checked and converted; ``what`` is its line in the reference."""

    what: str
    convert: Callable[[Any, Path], Any]


def number(low: float, high: float) -> Check:
    def convert(value: Any, base: Path) -> float:
        # bool is an int in Python (`true` is not 1 second); TOML has nan and inf, which pass
        # any `< low` test, and a timer of 1e300 s overflows.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(f"must be a number from {_num(low)} to {_num(high)}, not {_brief(value)}")
        if not math.isfinite(value) or not low <= value <= high:
            raise _Bad(f"must be from {_num(low)} to {_num(high)}, not {_brief(value)}")
        return float(value)

    return Check(f"number, {_num(low)} to {_num(high)}", convert)


def whole(low: int, high: int) -> Check:
    def convert(value: Any, base: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"must be a whole number, not {_brief(value)}")
        if not low <= value <= high:
            raise _Bad(f"must be from {low} to {high}, not {_brief(value)}")
        return value

    return Check(f"whole number, {low} to {high}", convert)


def choice(*allowed: str) -> Check:
    def convert(value: Any, base: Path) -> str:
        if value not in allowed:
            raise _Bad(f"must be one of {', '.join(allowed)}, not {_brief(value)}")
        return str(value)

    return Check(" \\| ".join(f'`"{a}"`' for a in allowed), convert)


def text(*, empty: bool = True, limit: int = 1000) -> Check:
    def convert(value: Any, base: Path) -> str:
        if not isinstance(value, str) or len(value) > limit or (not empty and not value.strip()):
            raise _Bad(f"must be {'' if empty else 'non-empty '}text, not {_brief(value)}")
        return value

    return Check("text", convert)


def optional_text() -> Check:
    """Text where "" means "not set" (None)."""

    def convert(value: Any, base: Path) -> str | None:
        if not isinstance(value, str) or len(value) > 1000:
            raise _Bad(f"must be text, not {_brief(value)}")
        return value if value.strip() else None

    return Check('text ("" = not set)', convert)


def path() -> Check:
    """A file or folder, relative to node.toml's folder; "" means "not set" (the default)."""

    def convert(value: Any, base: Path) -> Path | None:
        if value == "":
            return None
        found = path_text(value)
        if found is None:
            raise _Bad(f"must be a path, not {_brief(value)}")
        return base / found

    return Check("path (relative: from node.toml's folder)", convert)


def host() -> Check:
    def convert(value: Any, base: Path) -> str:
        if path_text(value) is None or any(c.isspace() for c in str(value)) or len(str(value)) > 253:
            raise _Bad(f"must be a host name, not {_brief(value)}")
        return str(value)

    return Check("host name or address", convert)


def group() -> Check:
    def convert(value: Any, base: Path) -> str:
        if not isinstance(value, str) or not value or len(value) > 32 or any(c.isspace() for c in value):
            raise _Bad(f"must be a group name, not {_brief(value)}")
        return value

    return Check("group name", convert)


def uids() -> Check:
    def convert(value: Any, base: Path) -> tuple[int, ...]:
        if not isinstance(value, list) or not all(
            isinstance(u, int) and not isinstance(u, bool) and 0 <= u < 2**32 for u in value
        ):
            raise _Bad(f"must be a list of user ids, not {_brief(value)}")
        return tuple(value)

    return Check("list of user ids", convert)


# Go durations, as Litestream reads them: "1s", "500ms", "1m30s".
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")


def duration() -> Check:
    def convert(value: Any, base: Path) -> str:
        if not isinstance(value, str) or not _DURATION.fullmatch(value):
            raise _Bad(f'must be a duration such as "1s" or "500ms", not {_brief(value)}')
        return value

    return Check('duration (`"1s"`, `"500ms"`)', convert)


def zone() -> Check:
    """An IANA time zone name (``zoneinfo``): the property's local time on slips and screens."""

    def convert(value: Any, base: Path) -> str:
        if not isinstance(value, str) or not value or len(value) > 100:
            raise _Bad(f'must be a time zone name such as "Asia/Shanghai", not {_brief(value)}')
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise _Bad(f"is not a known time zone: {_brief(value)}") from None
        return value

    return Check('IANA time zone (`"Asia/Shanghai"`)', convert)


def meta(check: Check, doc: str, *, needed_by: str = "") -> dict[str, Any]:
    """One key of a section (a dataclass field's metadata): its check and documentation."""
    return {"check": check, "doc": doc, "needed_by": needed_by}


# -- the sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSection:
    TABLE: ClassVar[str] = "node"
    DOC: ClassVar[str] = "who the node is and where its replica is"
    ALIASES: ClassVar[Mapping[str, str]] = {"keys": "keys_dir"}

    id: str = field(
        default="", metadata=meta(text(), "the node's id (enrolment writes it; default: the replica's own)")
    )
    property: str = field(
        default="", metadata=meta(text(), "the property code (enrolment writes it; informational)")
    )
    mode: str = field(
        default="dev",
        metadata=meta(
            choice(*MODES), "`production` on an enrolled board: the self-test fails simulated devices"
        ),
    )
    db: Path | None = field(
        default=None,
        metadata=meta(
            path(), "the replica (SQLite)", needed_by="kiosk, sync run, --config, node backup/restore"
        ),
    )
    keys_dir: Path | None = field(
        default=None,
        metadata=meta(
            path(), "the voucher key and card-UID hash key folder (default: `<db>.keys`); `keys` is an alias"
        ),
    )
    timezone: str = field(
        default="UTC",
        metadata=meta(
            zone(),
            "the property's time zone: slips, staff screens and the desk show local time "
            "(enrolment writes it)",
        ),
    )

    def tz(self) -> ZoneInfo:
        """``timezone`` as a ``ZoneInfo`` (checked at load)."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class KioskSection:
    TABLE: ClassVar[str] = "kiosk"
    DOC: ClassVar[str] = "the lobby kiosk (`staypoint kiosk`); `authoriser` also for the desk's `--config`"

    property_name: str | None = field(
        default=None,
        metadata=meta(optional_text(), "the hotel's name on screen and vouchers (default: the property)"),
    )
    idle_timeout_s: float = field(
        default=30.0, metadata=meta(number(5, 3600), "seconds without a touch before the attract screen")
    )
    offline_after_s: float = field(
        default=120.0,
        metadata=meta(
            number(1, 86_400), 'authoriser "offline" only: replica unconfirmed this long = offline'
        ),
    )
    offers_rotate_s: float = field(
        default=6.0, metadata=meta(number(0, 3600), "the attract screen's offers strip; 0 = still")
    )
    authoriser: str = field(
        default="agent",
        metadata=meta(
            choice(*AUTHORISERS),
            "`agent`: redemptions ask head office through the sync agent; `offline`: limits only",
        ),
    )


@dataclass(frozen=True)
class HardwareSection:
    TABLE: ClassVar[str] = "hardware"
    DOC: ClassVar[str] = "the kiosk's devices (docs/hardware.md); `[devices]` is an alias"

    reader: str = field(default="sim", metadata=meta(choice(*READERS), "card reader driver"))
    reader_name: str = field(
        default="", metadata=meta(text(), "pcsc: part of the PC/SC reader name (empty: any)")
    )
    evdev_device: str = field(default="", metadata=meta(text(), "evdev: `/dev/input/by-id/...`"))
    evdev_mode: str = field(
        default="auto", metadata=meta(choice(*EVDEV_MODES), "evdev: what the wedge types")
    )
    pinpad: str = field(
        default="sim", metadata=meta(choice(*PINPADS), "PIN pad driver; `none`: the on-screen keypad")
    )
    pinpad_port: str = field(default="", metadata=meta(text(), "serial: a device path or pyserial URL"))
    pinpad_baudrate: int = field(default=9600, metadata=meta(whole(50, 4_000_000), "serial: baud rate"))
    printer: str = field(default="sim", metadata=meta(choice(*PRINTERS), "voucher printer driver"))
    printer_url: str = field(
        default="",
        metadata=meta(
            text(), "escpos: `serial:/dev/ttyUSB0?baudrate=19200` \\| `tcp://host:9100` \\| `usb:04b8:0202`"
        ),
    )
    printer_profile: str = field(default="", metadata=meta(text(), "escpos: python-escpos printer profile"))
    printer_font: str = field(default="", metadata=meta(text(), "escpos: font"))

    def as_dict(self) -> dict[str, Any]:
        """For ``staypoint.kiosk.hardware.factory``."""
        return asdict(self)


@dataclass(frozen=True)
class MqttSection:
    TABLE: ClassVar[str] = "mqtt"
    DOC: ClassVar[str] = "the broker the sync agent connects to (TLS, the node's own certificate)"

    host: str | None = field(default=None, metadata=meta(host(), "broker host", needed_by="sync run"))
    port: int | None = field(
        default=None, metadata=meta(whole(1, 65_535), "broker port", needed_by="sync run")
    )
    ca: Path | None = field(
        default=None, metadata=meta(path(), "the fleet CA certificate", needed_by="sync run")
    )
    cert: Path | None = field(
        default=None, metadata=meta(path(), "the node's certificate", needed_by="sync run")
    )
    key: Path | None = field(
        default=None, metadata=meta(path(), "the node's private key", needed_by="sync run")
    )


@dataclass(frozen=True)
class SyncSection:
    """The agent's pacing; the same names and defaults as ``SyncConfig`` (a test keeps them equal)."""

    TABLE: ClassVar[str] = "sync"
    DOC: ClassVar[str] = "the sync agent's pacing and its socket for the kiosk and the desk"

    batch_events: int = field(default=500, metadata=meta(whole(1, 100_000), "events per batch"))
    batch_bytes: int = field(
        default=96 * 1024,
        metadata=meta(whole(1024, BROKER_MESSAGE_LIMIT), "bytes per batch (one broker message)"),
    )
    window_batches: int = field(
        default=64, metadata=meta(whole(1, 10_000), "unacknowledged batches in flight")
    )
    ack_timeout: float = field(
        default=10.0, metadata=meta(number(0.1, 3600), "no ack progress this long: send again")
    )
    auth_timeout: float = field(
        default=2.0, metadata=meta(number(0.1, 60), "online authorisation: then the offline limits decide")
    )
    resync_timeout: float = field(
        default=15.0, metadata=meta(number(0.1, 3600), "a resync answer's deadline")
    )
    session_expiry: int = field(
        default=7 * 24 * 3600, metadata=meta(whole(0, 2**32 - 1), "MQTT session expiry, seconds")
    )
    keepalive: int = field(default=30, metadata=meta(whole(1, 65_535), "MQTT keep-alive, seconds"))
    backoff_min: float = field(default=0.2, metadata=meta(number(0.01, 3600), "reconnect back-off, shortest"))
    backoff_max: float = field(default=30.0, metadata=meta(number(0.01, 3600), "reconnect back-off, longest"))
    health_interval: float = field(
        default=30.0, metadata=meta(number(0.1, 86_400), "heartbeat period (else `[health] heartbeat_s`)")
    )
    contact_interval: float = field(
        default=5.0, metadata=meta(number(0.1, 3600), "how often the last contact is recorded")
    )
    echo_interval: float = field(default=5.0, metadata=meta(number(0.1, 3600), "link echo period"))
    echo_timeout: float = field(
        default=5.0,
        metadata=meta(number(0.1, 3600), "link echo: unanswered this long past the period = offline"),
    )
    current_interval: float = field(
        default=60.0, metadata=meta(number(1, 86_400), "a quiet replica asks to be confirmed current")
    )
    link_socket: Path | None = field(
        default=None, metadata=meta(path(), "the agent's socket (default: `<db>.agent.sock`)")
    )
    link_group: str | None = field(default=None, metadata=meta(group(), "the socket's group (mode 0660)"))
    link_uids: tuple[int, ...] = field(
        default=(), metadata=meta(uids(), "further users allowed on the socket")
    )
    devices_file: Path | None = field(
        default=None, metadata=meta(path(), "the kiosk's device states (default: beside the replica)")
    )
    backup_dir: Path | None = field(
        default=None, metadata=meta(path(), "the backup folder whose age is the heartbeat's Litestream lag")
    )

    def check(self) -> tuple[str, str] | None:
        if self.backoff_min > self.backoff_max:
            return "backoff_min", "is above backoff_max"
        return None


@dataclass(frozen=True)
class HealthSection:
    TABLE: ClassVar[str] = "health"
    DOC: ClassVar[str] = "the heartbeat on `sp/v1/node/<id>/health`"

    heartbeat_s: float | None = field(
        default=None, metadata=meta(number(0.1, 86_400), "heartbeat period (`[sync] health_interval` wins)")
    )
    litestream_config: Path | None = field(
        default=None, metadata=meta(path(), "Litestream's config (enrolment writes it; informational)")
    )


@dataclass(frozen=True)
class BackupSection:
    TABLE: ClassVar[str] = "backup"
    DOC: ClassVar[str] = "Litestream's replica of the node file (`staypoint node backup` / `restore`)"

    replica: str | None = field(
        default=None,
        metadata=meta(
            text(empty=False),
            "a path or a `file://`, `sftp://`, `s3://` URL",
            needed_by="node backup/restore",
        ),
    )
    litestream_config: Path | None = field(
        default=None, metadata=meta(path(), "where its config is written (default: `<db>.litestream.yml`)")
    )
    sync_interval: str = field(default="1s", metadata=meta(duration(), "how often Litestream ships the WAL"))


SECTIONS: dict[str, type[Any]] = {
    cls.TABLE: cls
    for cls in (
        NodeSection,
        KioskSection,
        HardwareSection,
        MqttSection,
        SyncSection,
        HealthSection,
        BackupSection,
    )
}
SECTION_ALIASES = {"devices": "hardware"}


@dataclass(frozen=True)
class NodeToml:
    """A checked node.toml; each section its defaults when the file has none."""

    where: str
    base: Path
    node: NodeSection = field(default_factory=NodeSection)
    kiosk: KioskSection = field(default_factory=KioskSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    sync: SyncSection = field(default_factory=SyncSection)
    health: HealthSection = field(default_factory=HealthSection)
    backup: BackupSection = field(default_factory=BackupSection)
    given: frozenset[str] = frozenset()  # "section.key" for every key the file sets

    def fail(self, section: str, name: str, problem: str) -> NodeConfigError:
        return NodeConfigError(f"{self.where}: [{section}] {name} {problem}")

    def db(self) -> Path:
        """``[node] db``, which everything but the self-test needs."""
        if self.node.db is None:
            raise self.fail("node", "db", "(the replica's path) is required")
        return self.node.db

    def require(self, section: str, name: str, hint: str = "") -> Any:
        """A key a command cannot do without; "[section] key is missing" otherwise."""
        value = getattr(getattr(self, section), name)
        if value is None:
            raise self.fail(section, name, "is missing" + (f" ({hint})" if hint else ""))
        return value


def _unknown(where: str, what: str, name: str, known: list[str]) -> NodeConfigError:
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}?" if near else f"one of: {', '.join(known)}"
    shown = name if name.isprintable() and len(name) <= 60 else _brief(name)
    return NodeConfigError(f"{where}: unknown {what} {shown} ({hint})")


def _section(cls: type[Any], table: Mapping[str, Any], name: str, where: str, base: Path) -> Any:
    keys = [f.name for f in fields(cls)]
    aliases: Mapping[str, str] = getattr(cls, "ALIASES", {})
    for k in table:
        if k not in keys and k not in aliases:
            raise _unknown(where, "key", f"[{name}] {k}", [f"[{name}] {x}" for x in keys])
    values: dict[str, Any] = {}
    for f in fields(cls):
        given = [k for k in (f.name, *(a for a, to in aliases.items() if to == f.name)) if k in table]
        for k in given:
            try:
                value = f.metadata["check"].convert(table[k], base)
            except _Bad as bad:
                raise NodeConfigError(f"{where}: [{name}] {k} {bad}") from None
            if f.name in values and values[f.name] != value:
                raise NodeConfigError(f"{where}: [{name}] {given[0]} and {k} differ: give one")
            values[f.name] = value
    section = cls(**values)
    problem = section.check() if hasattr(section, "check") else None
    if problem is not None:
        raise NodeConfigError(f"{where}: [{name}] {problem[0]} {problem[1]}")
    return section


def node_toml_from_data(data: Mapping[str, Any], where: str, base: Path) -> NodeToml:
    """Check a parsed document (``where`` names it in errors; ``base`` is its folder)."""
    tables: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for name, value in data.items():
        canonical = SECTION_ALIASES.get(name, name)
        if canonical not in SECTIONS:
            what = "section" if isinstance(value, dict) else "key"
            raise _unknown(
                where,
                what,
                f"[{name}]" if isinstance(value, dict) else name,
                [f"[{s}]" if isinstance(value, dict) else s for s in SECTIONS],
            )
        if not isinstance(value, dict):
            raise NodeConfigError(f"{where}: [{name}] must be a table")
        if canonical in tables:
            raise NodeConfigError(
                f"{where}: [{tables[canonical][0]}] and [{name}] are the same section: give one"
            )
        tables[canonical] = (name, value)
    sections = {
        canonical: _section(SECTIONS[canonical], table, name, where, base)
        for canonical, (name, table) in tables.items()
    }
    given = frozenset(f"{c}.{k}" for c, (_, t) in tables.items() for k in t)
    return NodeToml(where=where, base=base, given=given, **sections)


def parse_node_toml(text_: str, where: str = "node.toml", base: Path | None = None) -> NodeToml:
    """Check node.toml's text; relative paths are taken from ``base`` (default: the current folder)."""
    try:
        data = parse_toml(text_, where)
    except TomlFileError as exc:
        raise NodeConfigError(str(exc)) from None
    return node_toml_from_data(data, where, base or Path.cwd())


def load_node_toml(path_: Path) -> NodeToml:
    """Read and check a node.toml file."""
    try:
        data = read_toml(path_)
    except TomlFileError as exc:
        raise NodeConfigError(str(exc)) from None
    return node_toml_from_data(data, str(path_), path_.parent)


# -- the reference page -------------------------------------------------------------------------


def reference_markdown() -> str:
    """docs/node-toml.md: every section and key, from the schema above."""
    out = [
        "# node.toml reference",
        "",
        "<!-- Generated by `python -m staypoint.edge.nodeconfig > docs/node-toml.md`; do not edit. -->",
        "",
        "One file configures a node: `/etc/staypoint/node.toml` on an enrolled board (written by",
        "`staypoint provision enrol`, docs/technician.md). The kiosk, the sync agent, the desk's",
        "`--config`, the backup and the self-test read it through one loader",
        "(`staypoint/edge/nodeconfig.py`): a section or key not listed here is refused in one line",
        "naming the file and the key, with the nearest known key. Relative paths are taken from",
        'the file\'s folder. Every section is optional; "needed by" names the commands that refuse',
        "to start without the key.",
        "",
    ]
    for name, cls in SECTIONS.items():
        out += [f"## [{name}]", "", cls.DOC[0].upper() + cls.DOC[1:] + ".", ""]
        out += ["| key | value | default | needed by | meaning |", "|---|---|---|---|---|"]
        for f in fields(cls):
            default = f.default if f.default is not MISSING else None
            shown = "" if default in (None, "", ()) else f"`{_toml_value(default)}`"
            out.append(
                f"| `{f.name}` | {f.metadata['check'].what} | {shown} | {f.metadata['needed_by']} "
                f"| {f.metadata['doc']} |"
            )
        out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return _num(value) + ("" if not float(value).is_integer() else ".0")
    return str(value)


if __name__ == "__main__":
    print(reference_markdown(), end="")
