"""The partner files: our settlement file (written), the partner's confirmation and credit files (read).

Every file a partner sends is read whole before anything is booked: a bad row is one
numbered line (``credits.csv:7: points 0 is outside 1..1,000,000``), and one bad row books
nothing of the file. Every number is bounded; every text has a length.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_ROWS = 100_000  # per partner file: a larger one is split by the partner
MAX_FILE_BYTES = 64 * 1024 * 1024
REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
MAX_REASON = 500
SETTLEMENT_COLUMNS = ("record", "batch", "partner", "day", "reference", "account", "units", "points", "count")
CONFIRM_STATUSES = ("confirmed", "rejected")


class PartnerFileError(ValueError):
    """A partner file with bad rows: one line per row, nothing booked."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass(frozen=True)
class ConfirmRow:
    line: int
    reference: str
    status: str
    reason: str
    batch: str | None


@dataclass(frozen=True)
class CreditRow:
    line: int
    reference: str
    account: str
    points: int
    note: str


def _rows(
    path: Path, required: Sequence[str], optional: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file with a header naming ``required`` (and maybe ``optional``)."""
    name = path.name
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PartnerFileError([f"{name}: {size:,} bytes is over the {MAX_FILE_BYTES:,}-byte limit"])
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise PartnerFileError([f"{path}: no such file"]) from None
    except UnicodeDecodeError:
        raise PartnerFileError([f"{name}: not UTF-8 text"]) from None
    except OSError as exc:
        raise PartnerFileError([f"{path}: {exc.strerror}"]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise PartnerFileError([f"{name}: empty file (a header line is required)"]) from None
    except csv.Error as exc:
        raise PartnerFileError([f"{name}:1: {exc}"]) from None
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required and c not in optional]
    if missing or unknown or len(set(header)) != len(header):
        what = []
        if missing:
            what.append(f"missing {', '.join(missing)}")
        if unknown:
            what.append(f"unknown {', '.join(unknown)}")
        if len(set(header)) != len(header):
            what.append("a column named twice")
        raise PartnerFileError([f"{name}:1: header: {'; '.join(what)} (columns: {', '.join(required)})"])
    count = 0
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            count += 1
            if count > MAX_ROWS:
                raise PartnerFileError([f"{name}:{line}: more than {MAX_ROWS:,} rows; split the file"])
            if len(fields) != len(header):
                yield line, {"__error__": f"{len(fields)} fields, the header has {len(header)}"}
                continue
            yield line, {h: f.strip() for h, f in zip(header, fields, strict=True)}
    except csv.Error as exc:
        raise PartnerFileError([f"{name}:{reader.line_num}: {exc}"]) from None


def _reference(value: str) -> str | None:
    return value if REFERENCE.fullmatch(value) else None


def read_confirmations(path: Path) -> tuple[list[ConfirmRow], list[str]]:
    """The partner's answer to a settlement file: ``reference,status[,reason][,batch]``."""
    rows, errors = [], []
    for line, row in _rows(path, ("reference", "status"), ("reason", "batch")):
        where = f"{path.name}:{line}"
        if "__error__" in row:
            errors.append(f"{where}: {row['__error__']}")
            continue
        ref = _reference(row["reference"])
        status = row["status"].lower()
        reason = row.get("reason", "")
        batch = row.get("batch") or None
        if ref is None:
            errors.append(
                f"{where}: reference {row['reference'][:70]!r} is not 1..64 letters, digits or ._:/-"
            )
        elif status not in CONFIRM_STATUSES:
            errors.append(f"{where}: status {row['status'][:20]!r} is not confirmed or rejected")
        elif len(reason) > MAX_REASON:
            errors.append(f"{where}: reason is longer than {MAX_REASON} characters")
        elif batch is not None and _reference(batch) is None:
            errors.append(f"{where}: batch {batch[:70]!r} is not a batch id")
        else:
            rows.append(ConfirmRow(line, ref, status, reason, batch))
    return rows, errors


def read_credits(path: Path, max_points: int) -> tuple[list[CreditRow], list[str]]:
    """Points a partner's members bought with us: ``reference,account,points[,note]``."""
    rows, errors = [], []
    for line, row in _rows(path, ("reference", "account", "points"), ("note",)):
        where = f"{path.name}:{line}"
        if "__error__" in row:
            errors.append(f"{where}: {row['__error__']}")
            continue
        ref = _reference(row["reference"])
        text = row["points"]
        note = row.get("note", "")
        account = row["account"].replace(" ", "").upper()
        if ref is None:
            errors.append(
                f"{where}: reference {row['reference'][:70]!r} is not 1..64 letters, digits or ._:/-"
            )
        elif not re.fullmatch(r"[0-9]{1,16}", text):
            errors.append(f"{where}: points {text[:20]!r} is not a whole number")
        elif not 1 <= int(text) <= max_points:
            errors.append(f"{where}: points {int(text):,} is outside 1..{max_points:,}")
        elif not account or len(account) > 64:
            errors.append(f"{where}: account must be 1..64 characters")
        elif len(note) > MAX_REASON:
            errors.append(f"{where}: note is longer than {MAX_REASON} characters")
        else:
            rows.append(CreditRow(line, ref, account, int(text), note))
    return rows, errors


def settlement_csv(batch: str, partner: str, day: str, rows: Sequence[tuple[str, str, int, int]]) -> bytes:
    """Our settlement file: one ``D`` row per transfer (reference, account, units, points), then
    one ``T`` row with the count and totals. The same batch always gives the same bytes."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(SETTLEMENT_COLUMNS)
    for reference, account, units, points in rows:
        w.writerow(("D", batch, partner, day, reference, account, units, points, ""))
    w.writerow(
        ("T", batch, partner, day, "", "", sum(r[2] for r in rows), sum(r[3] for r in rows), len(rows))
    )
    return out.getvalue().encode()
