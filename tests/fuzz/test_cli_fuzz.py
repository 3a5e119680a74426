"""Random argument lists to ``staypoint`` (in-process ``main``) against a real node replica:
exit 0, 1 or 2, never a traceback; a refusal is one ``staypoint: ...`` line on stderr (argparse's
usage and one ``error:`` line for exit 2) and writes nothing."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from staypoint.cli.main import main
from staypoint.edge.service import NodeService, StaffProof
from staypoint.loyalty.program import Outlet, default_program_text
from tests.fuzz.strategies import fuzz_settings, nasty_text
from tests.test_cli import digest

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SUPERVISOR = StaffProof("sup-1", "Sup One", "supervisor")

# Each command: its positionals, required options, optional ones (by the kind of value they
# take), and whether it is a staff task (--local-root or --staff/--staff-pin).
Spec = tuple[list[str], dict[str, str], dict[str, str], bool]
COMMANDS: dict[tuple[str, ...], Spec] = {
    ("member", "show"): (["member"], {}, {}, False),
    ("member", "enrol"): ([], {"--name": "text", "--pin": "pin"}, {"--card-uid": "uid"}, True),
    ("member", "adjust"): (["member"], {"--points": "int", "--reason": "text"}, {}, True),
    ("member", "unlock"): (["member"], {}, {}, True),
    ("member", "claim"): (
        ["member"],
        {"--folio": "folio", "--arrival": "date", "--departure": "date"},
        {"--note": "text"},
        False,
    ),
    ("stay", "post"): (
        ["member"],
        {"--folio": "folio", "--nights": "int", "--room": "amount"},
        {"--fnb": "amount", "--spa": "amount", "--other": "amount", "--arrival": "date"},
        True,
    ),
    ("stay", "void"): (["folio"], {"--reason": "text"}, {}, True),
    ("value", "topup"): (["member", "amount"], {}, {}, True),
    ("value", "spend"): (["member", "amount"], {"--pin": "pin"}, {}, False),
    ("redeem",): (["member", "reward"], {"--pin": "pin"}, {}, False),
    ("voucher", "verify"): (["voucher"], {}, {}, False),
    ("voucher", "use"): (["voucher"], {}, {}, True),
    ("voucher", "void"): (["voucher"], {"--reason": "text"}, {}, True),
    ("outbox",): ([], {}, {"--pending": "flag"}, False),
    ("node", "status"): ([], {}, {}, False),
    ("node", "init"): (
        [],
        {"--node": "text", "--property": "text"},
        {"--program": "program", "--member-block": "int"},
        False,
    ),
    ("staff", "add"): (
        ["text"],
        {"--name": "text", "--role": "role", "--pin": "pin"},
        {"--card-uid": "uid"},
        True,
    ),
}
FLAGS = ["--json", "--pending", "--local-root", "--help", "--staff", "--now", "--db"]


@dataclass
class Node:
    folder: Path
    db: Path
    members: list[str]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp("fuzzcli")
    db = folder / "node.db"
    svc = NodeService.init_node(db, "sha-lobby-01", "SHA", default_program_text(), NOW, member_blocks=[42])
    try:
        members = [svc.enrol(name, "2580", NOW, staff=SUPERVISOR).number for name in ("Ada One", "Bo Two")]
        svc.post_stay(members[0], "F200", NOW, nights=3, revenue={Outlet.ROOM: "400.00"}, staff=SUPERVISOR)
    finally:
        svc.close()
    (folder / "node.toml").write_text('[node]\ndb = "node.db"\n')
    (folder / "garbage.toml").write_bytes(b"\xff[node\x00")
    (folder / "garbage.db").write_bytes(b"not a database at all" * 50)
    (folder / "program.toml").write_text(default_program_text().replace("version = 1\n", "version = 1e400\n"))
    old = Path.cwd()
    os.chdir(folder)  # anything a command makes from a relative name lands here
    try:
        yield Node(folder, db, members)
    finally:
        os.chdir(old)


@st.composite
def argvs(draw: st.DrawFn, n: Node) -> list[str]:
    """A command line that would run, with one or two of its values made hostile (and now
    and then an argument dropped or a stray one added): where the bugs were."""
    member, other = n.members
    kinds: dict[str, tuple[list[str], list[str]]] = {  # (values that work, hostile ones)
        "member": ([member, other], [member[:-1] + str((int(member[-1]) + 1) % 10), "0" * 10, "4" * 400]),
        "pin": (["2580"], ["0000", "12", "1234567890123", "٢٥٨٠"]),
        "int": (["1", "3"], ["99999999999999999999", "2147483648", "366", "0", "-1"]),
        "amount": (["100.00", "20"], ["1e400", "1e15", "9" * 60, "0.001", "-5", "nan", "sNaN", "1_0"]),
        "date": (["2026-11-20", "2026-11-22"], ["9999-12-31", "0001-01-01", "2026-02-30", "20261120"]),
        "folio": (["F200", "F201"], ["F" * 41, " ", "F200\n"]),
        "reward": (["LATE-CO", "BREAKFAST"], ["UPGRADE", "late-co", "NOPE"]),
        "voucher": (
            ["ACDE-FGHJ-KMNA"],
            ["SPV1.eyJjb2RlIjoiWCJ9.AAAA", "0000-0000-0000", "SPV1." + "A" * 500],
        ),
        "role": (["staff", "supervisor"], ["technician", "local-root", "root"]),
        "uid": (["04A1B2C3"], ["zz", "04" * 40, ""]),
        "program": (
            [str(n.folder / "program.toml")],
            [str(n.folder / "garbage.toml"), str(n.folder), "missing.toml"],
        ),
        "text": (["Ada Lovelace", "goodwill"], ["", "  ", "x" * 300, "a\nb", "\x1b[2J"]),
        "now": (
            ["2026-11-23T10:00:00Z"],
            ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-11-23", "2026-11-23T10:00:00", "soon"],
        ),
    }
    command = draw(st.sampled_from(sorted(COMMANDS)))
    positionals, required, optional, staff_task = COMMANDS[command]
    slots: list[tuple[str | None, str]] = [(None, k) for k in positionals]
    slots += list(required.items())
    slots += [(opt, kind) for opt, kind in optional.items() if draw(st.booleans())]
    if draw(st.integers(0, 3)) == 0:
        slots.append(("--now", "now"))
    values = [draw(st.sampled_from(kinds[kind][0])) if kind != "flag" else "" for _, kind in slots]
    for _ in range(draw(st.integers(1, 2)) if slots else 0):
        i = draw(st.integers(0, len(slots) - 1))
        if slots[i][1] != "flag":
            values[i] = draw(st.one_of(st.sampled_from(kinds[slots[i][1]][1]), nasty_text))
    pieces = [
        ([opt] if opt else []) + ([v] if kind != "flag" else [])
        for (opt, kind), v in zip(slots, values, strict=True)
    ]
    if staff_task:
        pieces.append(
            draw(
                st.sampled_from(
                    [["--local-root"], ["--local-root"], ["--staff", "desk-7", "--staff-pin", "4826"], []]
                )
            )
        )
    if draw(st.booleans()):
        pieces.append(["--json"])
    if pieces and draw(st.integers(0, 9)) == 0:
        pieces.pop(draw(st.integers(0, len(pieces) - 1)))  # a missing argument
    if draw(st.integers(0, 9)) == 0:
        flag = draw(st.sampled_from(FLAGS))  # a stray option, given a value or not
        pieces.append([flag, draw(nasty_text)] if draw(st.booleans()) else [flag])
    good = ["--db", str(n.db)]
    where = draw(
        st.sampled_from(
            [good] * 6
            + [
                ["--config", str(n.folder / "node.toml")],
                ["--db", str(n.folder / "other.db")],
                ["--db", str(n.folder)],
                ["--db", str(n.folder / "garbage.db")],
                ["--config", str(n.folder / "garbage.toml")],
                [],
            ]
        )
    )
    argv = [*command, "--now", "2026-11-23T10:00:00Z", *where]
    for piece in pieces:
        argv += piece
    # A real argv cannot hold a NUL; everything else a shell can pass, lone surrogates included.
    return [a.replace("\x00", "") for a in argv]


def _files(folder: Path) -> set[str]:
    # SQLite's -wal/-shm come and go with every open and close: not the command's writes.
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith(("-wal", "-shm"))}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO()  # never a terminal: a PIN prompt must not wait for a human
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse (--help, usage errors) and a few commands
                code = exc.code if isinstance(exc.code, int) else 1
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
    finally:
        sys.stdin = stdin
    return code, out.getvalue(), err.getvalue()


@fuzz_settings(200)
@given(data=st.data())
def test_random_command_lines_never_crash_and_refusals_write_nothing(node: Node, data: st.DataObject) -> None:
    argv = data.draw(argvs(node))
    before = (digest(node.db), _files(node.folder))
    code, _, err = _run(argv)
    assert "Traceback" not in err, err
    assert code in (0, 1, 2), (code, err)
    if code == 0:
        return
    lines = err.splitlines()
    assert lines, "a refusal says why"
    if code == 2:  # argparse: its usage, then one error line
        assert lines[-1].startswith("staypoint") and ": error: " in lines[-1], err
        assert not any(": error: " in line for line in lines[:-1]), err
    else:
        # --local-root announces itself on stderr before the command runs; then one error line.
        said = [line for line in lines if "recorded as staff" not in line]
        assert len(said) == 1 and said[0].startswith("staypoint: "), err
    if "PIN" not in err and "locked" not in err:  # a wrong PIN is counted, as it must be
        assert (digest(node.db), _files(node.folder)) == before, (argv, err)
