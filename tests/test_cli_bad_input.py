"""Bad input on the command line (issue 12, item 9): one clear line on stderr and a non-zero
exit, never a traceback, and a refused command writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from staypoint.edge.service import NodeService, StaffProof
from staypoint.loyalty.program import default_program_text
from tests.test_cli import NOW, digest

SUPERVISOR = StaffProof("sup-1", "Sup One", "supervisor")


def run(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60
    )


def sp(*args: str) -> subprocess.CompletedProcess[str]:
    return run("-m", "staypoint.cli.main", *args, "--now", NOW)


def one_line_error(res: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("staypoint: "), res.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader has gone (``| head -1`` after its line)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return run(*args, stdout=write)
    finally:
        os.close(write)


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "node.db"
    from datetime import UTC, datetime

    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    svc = NodeService.init_node(db, "sha-lobby-01", "SHA", default_program_text(), now, member_blocks=[42])
    try:
        member = svc.enrol("Ada Lovelace", "2580", now, staff=SUPERVISOR).number
    finally:
        svc.close()
    return db, member


# -- stdout closed early ------------------------------------------------------------------------


def test_a_reader_that_closes_stdout_early_is_no_traceback(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    res = into_closed_pipe(
        "-m", "staypoint.cli.main", "node", "init", "--db", str(db), "--node", "n", "--property", "P"
    )
    assert res.returncode == 1 and res.stderr == "", res.stderr
    assert db.exists()  # the work was done; only its report had nowhere to go
    res = into_closed_pipe("-m", "staypoint.cli.main", "outbox", "--db", str(db), "--json")
    assert res.returncode == 1 and res.stderr == "", res.stderr


def test_a_python_m_group_with_stdout_closed_early_is_no_traceback() -> None:
    # staypoint.entry.run_group: the OpenAPI document is big enough to need several writes.
    res = into_closed_pipe("-m", "staypoint.central.api.cli", "api", "--openapi", "-")
    assert res.returncode == 1 and res.stderr == "", res.stderr


# -- amounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1e400", "1e15", "9" * 5000])
def test_an_absurd_amount_is_refused_in_one_line(node: tuple[Path, str], amount: str) -> None:
    db, member = node
    before = digest(db)
    res = sp("value", "spend", "--db", str(db), member, amount, "--pin", "2580")
    line = one_line_error(res, "the amount must be below 1,000,000,000,000,000")
    assert len(line) < 200
    assert digest(db) == before


def test_a_stay_of_1e400_is_refused_and_writes_nothing(node: tuple[Path, str]) -> None:
    # `stay post --room 1e400` goes to exactly this call (the CLI adds only who is acting).
    from datetime import UTC, datetime

    from staypoint.edge.service import NodeError
    from staypoint.loyalty.program import Outlet

    db, member = node
    before = digest(db)
    svc = NodeService.open(db)
    try:
        with pytest.raises(NodeError, match="the amount must be below"):
            svc.post_stay(
                member,
                "F1",
                datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
                nights=1,
                revenue={Outlet.ROOM: "1e400"},
                staff=SUPERVISOR,
            )
    finally:
        svc.close()
    assert digest(db) == before


# -- programme files ----------------------------------------------------------------------------


def _version(text: str, version: str) -> str:
    head, sep, rest = text.partition("version = 1\n")
    assert sep, "the shipped programme's version line moved"
    return f"{head}version = {version}\n{rest}"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe\x00garbage", "(file): not UTF-8 text"),
        (b"[program\nname = ", "(document): not valid TOML"),
        (b"program = 3\n", "program: must be a table"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "(document): not valid TOML"),
        (b"a = " + b"1" * 5000 + b"\n", "(document): not valid TOML"),
        (
            _version(default_program_text(), str(10**20)).encode(),
            "program.version: must be at most 2,147,483,647",
        ),
        (_version(default_program_text(), "0").encode(), "program.version: must be at least 1"),
    ],
    ids=["not-utf8", "not-toml", "number-for-table", "nested", "huge-int", "version-1e20", "version-0"],
)
def test_a_garbage_programme_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    bad = tmp_path / "program.toml"
    bad.write_bytes(content)
    db = tmp_path / "n.db"
    res = sp("node", "init", "--db", str(db), "--node", "n", "--property", "P", "--program", str(bad))
    line = one_line_error(res, str(bad), problem)
    assert len(line) < 300
    assert not db.exists()


def test_a_programme_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    res = sp(
        "node",
        "init",
        "--db",
        str(tmp_path / "n.db"),
        "--node",
        "n",
        "--property",
        "P",
        "--program",
        str(tmp_path),
    )
    one_line_error(res, str(tmp_path), "cannot read")
    assert not (tmp_path / "n.db").exists()


# -- node.toml ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe[node]\n", "not a UTF-8 text file"),
        (b"[node\n", "not valid TOML"),
        (b"node = 3\n", "[node] must be a table"),
        (b"[node]\ndb = 3\n", "[node] db must be a path, not 3"),
        (b'[node]\ndb = "a\\u0000b"\n', "[node] db must be a path"),
        (b'[node]\ndb = "n.db"\nkeys_dir = 7\n', "[node] keys_dir must be a path"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid TOML (nested too deeply)"),
        (b"a = " + b"1" * 5000 + b"\n", "not valid TOML"),
    ],
    ids=[
        "not-utf8",
        "not-toml",
        "number-for-table",
        "db-number",
        "db-nul",
        "keys-number",
        "nested",
        "huge-int",
    ],
)
def test_a_garbage_node_config_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_bytes(content)
    res = sp("outbox", "--config", str(cfg))
    one_line_error(res, str(cfg), problem)


def test_a_newline_in_a_name_keeps_the_error_on_one_line(tmp_path: Path) -> None:
    # Paths are quoted as given: a name with a newline (or a terminal escape) in it must not
    # split the error, or draw on the technician's screen.
    res = sp("outbox", "--config", str(tmp_path / "x\ny\x1b[2J.toml"))
    one_line_error(res, "x\\ny\\x1b[2J.toml", "cannot read the config")
    res = sp("outbox", "--db", str(tmp_path / "n.db"), "extra\narg")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.splitlines()[-1] == "staypoint: error: unrecognized arguments: extra\\narg"


def test_a_staff_card_already_registered_is_a_refusal_not_an_integrity_error(node: tuple[Path, str]) -> None:
    # Found by tests/fuzz/test_cli_fuzz.py: `staff add` with another staff member's card.
    from staypoint.edge.service import NodeError

    db, _ = node
    svc = NodeService.open(db)
    try:
        svc.add_staff("desk-1", "Desk One", "staff", "4826", "04A1B2C3")
        before = digest(db)
        with pytest.raises(NodeError, match="already another staff member's"):
            svc.add_staff("desk-2", "Desk Two", "staff", "4827", "04A1B2C3")
    finally:
        svc.close()
    assert digest(db) == before
