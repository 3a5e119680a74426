"""``staypoint central import members FILE.csv``: members from a property system's export.

docs/head-office.md, "Importing members". What a row becomes, and where:

- a member number from head office's own blocks (0000-0099), the counter online enrolment
  uses (``SideStore.next_counter("enrol_serial")``), reserved a batch at a time;
- a ``member.enrolled`` event (display name, base tier, no PIN) and, for an opening balance,
  a ``points.adjusted`` event with reason "opening balance (import)", both on head office's
  ``console-import`` stream and applied by ``Ledger.ingest`` like every other event: one
  ledger transaction per batch, so a batch is in the ledger whole or not at all, and the
  change log takes the members to every node;
- the personal data (full name in the ledger's ``personal`` table; e-mail, phone, birth date,
  language, address in the profiles file), which never reaches a node.

Every row is checked before its batch writes anything; a batch with one bad row writes
nothing (the others land). The enrolment's event id is a name-based UUID of the row's key
(external id, else e-mail, else phone), so a re-run finds each member it imported before and
imports nothing twice. Duplicates (the same external id, e-mail or phone twice in the file,
or an e-mail or phone a member already has) are refused or merged (``--on-duplicate``):
merging keeps the first record and fills only what it lacks; an opening balance on a merged
row is not booked (the member has a balance already).
"""

from __future__ import annotations

import csv
import json
import re
import tomllib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from staypoint.central import first_pin
from staypoint.central.application.members import HEAD_OFFICE_BLOCKS, display_name
from staypoint.central.application.sources import Draft, EventSources
from staypoint.central.application.state import SideStore
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import LANGUAGES, ProfileError, Profiles, check_contact, open_profiles
from staypoint.loyalty import member_numbers
from staypoint.loyalty.bounds import Bounds
from staypoint.loyalty.events import iso

BATCH = 10_000
MAX_CELL = 1_000
MAX_ERRORS_SHOWN = 200
STREAM = "console"  # with the suffix "import": head office's stream ``console-import``
STREAM_SUFFIX = "import"
OPENING_REASON = "opening balance (import)"
NAMESPACE = uuid.UUID("3b0c1f5e-9a43-4c55-8f0e-6a1d2b7c9e14")
FIELDS = (
    "external_id",
    "name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "language",
    "address",
    "points",
    "home_property",
)
# Headers property systems' exports commonly use, compared without case, spaces, _ or -.
DEFAULT_HEADERS: dict[str, tuple[str, ...]] = {
    "external_id": (
        "externalid",
        "guestid",
        "profileid",
        "guestnumber",
        "memberid",
        "pmsid",
        "customerid",
        "id",
    ),
    "name": ("name", "fullname", "guestname", "guest"),
    "first_name": ("firstname", "givenname", "forename"),
    "last_name": ("lastname", "surname", "familyname"),
    "email": ("email", "emailaddress", "mail"),
    "phone": ("phone", "mobile", "mobilephone", "telephone", "phonenumber", "cell", "tel"),
    "birth_date": ("birthdate", "dateofbirth", "dob", "birthday"),
    "language": ("language", "lang", "preferredlanguage"),
    "address": ("address", "streetaddress", "postaladdress"),
    "points": ("points", "balance", "pointsbalance", "openingpoints", "openingbalance"),
    "home_property": ("property", "homeproperty", "hotel", "propertycode"),
}
LANGUAGE_NAMES = {"english": "en", "chinese": "zh", "中文": "zh"}
PROPERTY = re.compile(r"[A-Za-z0-9_-]{1,32}")


class ImportError_(ValueError):
    """A file, mapping or option that stops the whole import (one line for the CLI)."""


def _squash(header: str) -> str:
    return re.sub(r"[\s_\-.]+", "", header.strip().lower())


def parse_map(text: str | None) -> dict[str, str]:
    """``email=E-mail,phone=Mobile`` → {field: header}."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, header = part.partition("=")
        if not sep or not header.strip():
            raise ImportError_(f"--map {part.strip()!r}: write FIELD=Header (e.g. email=E-mail)")
        out[name.strip()] = header.strip()
    return out


def load_mapping(path: Path) -> dict[str, str]:
    """A mapping file: ``[columns]`` with ``field = "Header"`` lines."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ImportError_(f"mapping {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    cols = doc.get("columns", {})
    if not isinstance(cols, dict) or not all(isinstance(v, str) for v in cols.values()):
        raise ImportError_(f'mapping {path}: give a [columns] table of field = "Header" lines')
    return {str(k): str(v) for k, v in cols.items()}


def resolve_columns(header: Sequence[str], mapping: dict[str, str]) -> dict[str, int]:
    """{field: column index} from the explicit mapping, then the default header names."""
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise ImportError_(f"unknown field {unknown[0]!r} in the mapping: fields are {', '.join(FIELDS)}")
    exact = {h.strip(): i for i, h in enumerate(header)}
    squashed: dict[str, int] = {}
    for i, h in enumerate(header):
        squashed.setdefault(_squash(h), i)
    cols: dict[str, int] = {}
    for name, wanted in mapping.items():
        found = exact.get(wanted, squashed.get(_squash(wanted)))
        if found is None:
            shown = ", ".join(h.strip() for h in header[:12])
            raise ImportError_(f"no column {wanted!r} (for {name}) in the file; its columns: {shown}")
        cols[name] = found
    taken = set(cols.values())
    for name, candidates in DEFAULT_HEADERS.items():
        if name in cols:
            continue
        for c in candidates:
            at = squashed.get(c)
            if at is not None and at not in taken:
                cols[name] = at
                taken.add(at)
                break
    if "name" not in cols and "first_name" not in cols and "last_name" not in cols:
        raise ImportError_("no name column: map one with --map name=<header> (or first_name, last_name)")
    if not {"external_id", "email", "phone"} & set(cols):
        raise ImportError_(
            "no external id, e-mail or phone column: a member could not be recognised on a re-run "
            "(--map external_id=<header>)"
        )
    return cols


@dataclass
class Row:
    line: int
    name: str
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    birth_date: date | None = None
    language: str | None = None
    address: str | None = None
    points: int = 0
    home_property: str | None = None

    @property
    def key(self) -> str:
        if self.external_id:
            return f"ext:{self.external_id}"
        if self.email:
            return f"email:{self.email.lower()}"
        return f"phone:{self.phone}"

    @property
    def enrol_id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, self.key))

    @property
    def opening_id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, self.key + "#opening"))

    def fill_from(self, other: Row) -> None:
        """Merging: keep what this record has, take what it lacks from ``other``."""
        for name in ("email", "phone", "birth_date", "language", "address", "home_property"):
            if getattr(self, name) is None and getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))


def check_row(
    line: int,
    cells: Sequence[str],
    cols: dict[str, int],
    width: int,
    bounds: Bounds,
    today: date,
    default_property: str | None,
) -> Row | list[str]:
    """The row as a member, or its errors (each one line: ``row 17: email "x" is not an address``)."""
    errors: list[str] = []
    if len(cells) != width:
        return [f"row {line}: {len(cells)} columns, the header has {width}"]

    def cell(name: str) -> str:
        i = cols.get(name)
        if i is None:
            return ""
        value = cells[i].strip()
        if len(value) > MAX_CELL:
            errors.append(f"row {line}: {name} is longer than {MAX_CELL:,} characters")
            return ""
        if name != "address" and not value.isprintable():
            errors.append(f"row {line}: {name} holds a control character")
            return ""
        return value

    name = " ".join(cell("name").split()) or " ".join(f"{cell('first_name')} {cell('last_name')}".split())
    if not name:
        errors.append(f"row {line}: no name")
    elif len(name) > 120:
        errors.append(f"row {line}: name is longer than 120 characters")
    row = Row(line, name)
    ext = cell("external_id")
    if len(ext) > 64:
        errors.append(f"row {line}: external id {ext[:20]!r}... is longer than 64 characters")
    row.external_id = ext or None
    email = cell("email")
    if email:
        try:
            row.email = check_contact(email, None)[0]
        except ProfileError:
            errors.append(f"row {line}: email {json.dumps(email, ensure_ascii=False)} is not an address")
    phone = cell("phone")
    if phone:
        raw = phone
        if phone.startswith("00"):
            phone = "+" + phone[2:]
        try:
            row.phone = check_contact(None, phone.replace("(", "").replace(")", "").replace(".", ""))[1]
        except ProfileError:
            errors.append(
                f"row {line}: phone {json.dumps(raw, ensure_ascii=False)} is not in international "
                "form (+4930...)"
            )
    born = cell("birth_date")
    if born:
        parsed = _date(born)
        if parsed is None:
            errors.append(f"row {line}: birth date {json.dumps(born)} is not a date (YYYY-MM-DD)")
        elif not date(1900, 1, 1) <= parsed <= today:
            errors.append(f"row {line}: birth date {parsed} is not between 1900-01-01 and today")
        else:
            row.birth_date = parsed
    lang = cell("language").lower()
    if lang:
        code = LANGUAGE_NAMES.get(lang, re.split(r"[-_]", lang)[0])
        if code not in LANGUAGES:
            errors.append(f"row {line}: language {json.dumps(lang)} is not one of {', '.join(LANGUAGES)}")
        row.language = code
    address = ", ".join(p.strip() for p in cell("address").splitlines() if p.strip())
    if address and (len(address) > 300 or not address.isprintable()):
        errors.append(f"row {line}: address must be at most 300 printable characters")
    row.address = address or None
    points = cell("points").replace(",", "").replace("_", "").replace(" ", "")
    if points:
        if not points.isascii() or not points.isdigit():
            errors.append(
                f"row {line}: points {json.dumps(cell('points'))} is not a whole number of 0 or more"
            )
        else:
            value = int(points)
            cap = min(bounds.points_per_event, bounds.balance_points)
            if value > cap:
                errors.append(
                    f"row {line}: opening balance {value:,} is above the programme's bound of {cap:,}"
                )
            row.points = value
    prop = cell("home_property") or default_property or ""
    if prop and not PROPERTY.fullmatch(prop):
        errors.append(f"row {line}: property {json.dumps(prop)} is not a property code (A-Z, 0-9, - or _)")
    row.home_property = prop.upper() or None
    if not (row.external_id or row.email or row.phone) and not errors:
        errors.append(f"row {line}: no external id, e-mail or phone: it could not be recognised on a re-run")
    return errors or row


def _date(text: str) -> date | None:
    for pattern, order in (
        (r"(\d{4})-(\d{1,2})-(\d{1,2})", "ymd"),
        (r"(\d{4})/(\d{1,2})/(\d{1,2})", "ymd"),
        (r"(\d{1,2})\.(\d{1,2})\.(\d{4})", "dmy"),
    ):
        m = re.fullmatch(pattern, text)
        if m:
            a, b, c = (int(g) for g in m.groups())
            try:
                return date(a, b, c) if order == "ymd" else date(c, b, a)
            except ValueError:
                return None
    return None


@dataclass
class Batch:
    index: int
    first_row: int
    last_row: int
    status: str = "pending"  # landed | refused | checked (dry run) | nothing new
    imported: int = 0
    errors: int = 0


@dataclass
class Report:
    dry_run: bool
    rows: int = 0
    imported: int = 0
    already: int = 0
    merged: int = 0
    opening_points: int = 0
    codes: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    batches: list[Batch] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # the first few numbers taken, for the summary

    def error(self, line: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append(line)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "rows": self.rows,
            "imported": self.imported,
            "already_imported": self.already,
            "merged": self.merged,
            "opening_points": self.opening_points,
            "codes_issued": self.codes,
            "errors": self.error_count,
            "batches": [b.__dict__ for b in self.batches],
        }


@dataclass
class Importer:
    ledger: Ledger
    profiles: Profiles | None  # None on a dry run with no profiles file yet
    side: SideStore | None  # None on a dry run
    now: datetime
    on_duplicate: str = "refuse"  # refuse | merge
    dry_run: bool = False
    default_property: str | None = None
    codes_out: Any = None  # a csv.writer for the mailing, or None
    batch_size: int = BATCH
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        program = self.ledger.program()
        if program is None:
            raise ImportError_(
                "no programme published in this ledger: publish one first (staypoint central publish)"
            )
        self.program = program
        self.sources = EventSources(self.ledger, suffix=STREAM_SUFFIX)

    # -- reading ----------------------------------------------------------------------------
    def run(
        self, records: Iterator[list[str]], cols: dict[str, int], width: int, advance: Any = None
    ) -> Report:
        report = Report(self.dry_run)
        batch: list[tuple[int, list[str]]] = []
        line = 1
        for cells in records:
            line += 1
            batch.append((line, cells))
            if len(batch) >= self.batch_size:
                self._batch(batch, cols, width, report)
                if advance:
                    advance(len(batch))
                batch = []
        if batch:
            self._batch(batch, cols, width, report)
            if advance:
                advance(len(batch))
        return report

    # -- one batch --------------------------------------------------------------------------
    def _batch(
        self, raw: list[tuple[int, list[str]]], cols: dict[str, int], width: int, report: Report
    ) -> None:
        b = Batch(len(report.batches) + 1, raw[0][0], raw[-1][0])
        report.batches.append(b)
        report.rows += len(raw)
        errors: list[str] = []
        today = self.now.date()
        bounds = self.program.bounds
        new: list[Row] = []
        fills: list[tuple[str, Row]] = []  # (existing member, row whose fields fill its blanks)
        heal: list[tuple[str, Row]] = []  # imported before, its profile not written (a crash between)
        no_pin: list[str] = []  # members already imported who may need a code
        by: dict[str, dict[str, Row]] = {"external id": {}, "e-mail": {}, "phone": {}}
        already = merged = 0
        for line, cells in raw:
            checked = check_row(line, cells, cols, width, bounds, today, self.default_property)
            if isinstance(checked, list):
                errors.extend(checked)
                continue
            row = checked
            stored = self.ledger.store.event_by_id(row.enrol_id)
            if stored is not None:
                body = json.loads(stored.body)
                number = str(body["member"])
                if body.get("data", {}).get("import_run") == self.run_id:  # an earlier row of this file
                    if self.on_duplicate == "refuse":
                        errors.append(f"row {line}: {_what(row)} appears twice in the file (member {number})")
                    else:
                        fills.append((number, row))
                        merged += 1
                    continue
                already += 1
                if self.profiles is not None and self.profiles.get(number) is None:
                    heal.append((number, row))
                no_pin.append(number)
                continue
            twin = self._twin_in_batch(row, by)
            if twin is not None:
                kind, first = twin
                if self.on_duplicate == "refuse":
                    errors.append(f"row {line}: same {kind} as row {first.line}")
                else:
                    first.fill_from(row)
                    merged += 1
                continue
            existing = self._existing(row)
            if existing is not None:
                kind, number = existing
                if self.on_duplicate == "refuse":
                    errors.append(f"row {line}: {kind} {_value(row, kind)} is already member {number}")
                else:
                    fills.append((number, row))
                    merged += 1
                continue
            for kind, value in (
                ("external id", row.external_id),
                ("e-mail", row.email and row.email.lower()),
                ("phone", row.phone),
            ):
                if value:
                    by[kind][value] = row
            new.append(row)
        if errors:
            b.status, b.errors = "refused", len(errors)
            for e in errors:
                report.error(e)
            return
        report.already += already
        report.merged += merged
        if self.dry_run:
            b.status, b.imported = ("checked" if new else "nothing new"), len(new)
            report.imported += len(new)
            report.opening_points += sum(r.points for r in new)
            return
        assert self.side is not None and self.profiles is not None
        numbers: list[str] = []
        if new:
            serial = self.side.next_counter("enrol_serial", count=len(new))
            numbers = [
                member_numbers.next_number(list(HEAD_OFFICE_BLOCKS), serial + i) for i in range(len(new))
            ]
            drafts: list[Draft] = []
            for row, number in zip(new, numbers, strict=True):
                drafts.append(
                    Draft(
                        "member.enrolled",
                        number,
                        {
                            "display_name": display_name(row.name),
                            "name": row.name,
                            "pin_hash": "",
                            "tier": self.program.base_tier.code,
                            "home_property": row.home_property or "IMPORT",
                            "import_run": self.run_id,
                        },
                        id=row.enrol_id,
                    )
                )
                if row.points:
                    drafts.append(
                        Draft(
                            "points.adjusted",
                            number,
                            {"points": row.points, "reason": OPENING_REASON, "staff": "import"},
                            id=row.opening_id,
                        )
                    )
            self.sources.emit(STREAM, drafts, self.now)  # one ledger transaction: the batch whole
        at = iso(self.now)
        self.profiles.add_many(
            [_profile(r, n) for r, n in [*zip(new, numbers, strict=True), *[(r, n) for n, r in heal]]],
            [
                (n, r.address)
                for r, n in [*zip(new, numbers, strict=True), *[(r, n) for n, r in heal]]
                if r.address
            ],
            at,
        )
        for number, row in fills:
            self._fill_profile(number, row, at)
        b.status, b.imported = ("landed" if new else "nothing new"), len(new)
        report.imported += len(new)
        report.opening_points += sum(r.points for r in new)
        if len(report.members) < 3:
            report.members.extend(numbers[: 3 - len(report.members)])
        if self.codes_out is not None:
            self._codes(list(zip(numbers, new, strict=True)), no_pin, report)

    def _twin_in_batch(self, row: Row, by: dict[str, dict[str, Row]]) -> tuple[str, Row] | None:
        for kind, value in (
            ("external id", row.external_id),
            ("e-mail", row.email and row.email.lower()),
            ("phone", row.phone),
        ):
            if value and value in by[kind]:
                return kind, by[kind][value]
        return None

    def _existing(self, row: Row) -> tuple[str, str] | None:
        if self.profiles is None:
            return None
        if row.email:
            p = self.profiles.by_email(row.email)
            if p is not None:
                return "e-mail", p.member
        if row.phone:
            p = self.profiles.by_phone(row.phone)
            if p is not None:
                return "phone", p.member
        return None

    def _fill_profile(self, number: str, row: Row, at: str) -> None:
        assert self.profiles is not None
        p = self.profiles.get(number)
        if p is None:
            return
        changes: dict[str, Any] = {}
        if p.email is None and row.email and self.profiles.by_email(row.email) is None:
            changes["email"] = row.email
        if p.phone is None and row.phone and self.profiles.by_phone(row.phone) is None:
            changes["phone"] = row.phone
        if p.birth_date is None and row.birth_date:
            changes["birth_date"] = row.birth_date
        if changes:
            self.profiles.upsert(number, at=at, **changes)
        if row.address and self.profiles.address(number) is None:
            self.profiles.add_many([], [(number, row.address)], at)

    def _codes(self, fresh: list[tuple[str, Row]], earlier: list[str], report: Report) -> None:
        """First-use codes for the members just imported, and for those imported before who have
        no PIN yet and no code that still works (a code expired, or a run that stopped)."""
        assert self.side is not None and self.profiles is not None
        want = [n for n, _ in fresh]
        if earlier:
            live = first_pin.live(self.side, earlier, self.now)
            for n in earlier:
                m = self.ledger.member(n)
                if n not in live and m is not None and not m.get("pin_hash"):
                    want.append(n)
        report.codes += self.write_codes(want)

    def write_codes(self, members: list[str]) -> int:
        """Issue a code for each of ``members`` and write the mailing's rows; how many."""
        assert self.side is not None and self.profiles is not None
        issued = first_pin.issue(self.side, members, self.now)
        for item in issued:
            p = self.profiles.get(item.member)
            self.codes_out.writerow(
                [
                    item.member,
                    p.full_name if p else "",
                    (p.email or "") if p else "",
                    (p.phone or "") if p else "",
                    p.language if p else "en",
                    self.profiles.address(item.member) or "",
                    item.code,
                    item.expires.date().isoformat(),
                ]
            )
        return len(issued)


CODES_HEADER = ["member", "name", "email", "phone", "language", "address", "code", "expires"]


def _profile(row: Row, number: str) -> dict[str, Any]:
    return {
        "member": number,
        "full_name": row.name,
        "email": row.email,
        "phone": row.phone,
        "birth_date": row.birth_date.isoformat() if row.birth_date else None,
        "language": row.language or "en",
        "home_property": row.home_property,
    }


def _what(row: Row) -> str:
    if row.external_id:
        return f"external id {json.dumps(row.external_id)}"
    if row.email:
        return f"e-mail {row.email}"
    return f"phone {row.phone}"


def _value(row: Row, kind: str) -> str:
    return str(row.email if kind == "e-mail" else row.phone)


def count_rows(path: Path) -> int:
    """Lines in the file less the header: the bar's total (a cell holding a newline counts twice)."""
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return max(0, n - 1)


# -- the command --------------------------------------------------------------------------------


def register(central: Any) -> None:
    """``central import members FILE.csv`` and ``central import codes``."""
    from staypoint.central.store import add_store_option
    from staypoint.progress import add_quiet_option

    group = central.add_parser("import", help="members from a property system's CSV export").add_subparsers(
        dest="import_cmd", required=True
    )
    p = group.add_parser("members", help="import members from a CSV file (docs/head-office.md)")
    p.add_argument("file", help="the CSV export (UTF-8, a header row)")
    add_store_option(p)
    _locations(p)
    p.add_argument(
        "--map", help="FIELD=Header,...: which column is which (fields: " + ", ".join(FIELDS) + ")"
    )
    p.add_argument("--mapping", help='a TOML file with a [columns] table of field = "Header" lines')
    p.add_argument(
        "--on-duplicate",
        choices=("refuse", "merge"),
        default="refuse",
        help="a row with an e-mail, phone or external id seen before: refuse it (the batch "
        "lands without it only once fixed) or merge it into the first (default refuse)",
    )
    p.add_argument("--dry-run", action="store_true", help="check every row and report; write nothing")
    p.add_argument("--codes", help="write each new member's first-use PIN code to this CSV (for the mailing)")
    p.add_argument("--property", help="home property for rows without one")
    p.add_argument("--batch", type=int, default=BATCH, help="rows per transaction (default 10,000)")
    p.add_argument("--encoding", default="utf-8-sig", help="the file's text encoding (default UTF-8)")
    p.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    add_quiet_option(p)
    p.set_defaults(fn=cmd_members)
    p = group.add_parser("codes", help="new first-use PIN codes for imported members with no PIN")
    add_store_option(p)
    _locations(p)
    p.add_argument("--out", required=True, help="the CSV to write (member, name, contact, code, expires)")
    p.add_argument(
        "members",
        nargs="*",
        help="these members (default: every imported member with no PIN and no code that still works)",
    )
    p.set_defaults(fn=cmd_codes)


def _locations(p: Any) -> None:
    p.add_argument(
        "--side",
        help="head office's side tables (sqlite:///path/side.db; default on "
        "PostgreSQL: the ledger's database)",
    )
    p.add_argument(
        "--profiles",
        help="members' personal data: a SQLite file, sqlite:///path or postgresql://... "
        "(default with a PostgreSQL ledger: its own database)",
    )


def _fail(message: str) -> SystemExit:
    return SystemExit(f"staypoint: {message}")


def _open(args: Any, *, dry_run: bool) -> tuple[Ledger, Profiles | None, SideStore | None]:
    from staypoint.central.console.cli import store_locations
    from staypoint.central.store import StoreConfigError, open_ledger_store, store_url

    try:
        args.store = store_url(args)
    except StoreConfigError as exc:
        raise _fail(str(exc)) from None
    store, side_url, profiles_file = store_locations(args)
    try:
        ledger = Ledger(open_ledger_store(store, must_exist=dry_run))
    except StoreConfigError as exc:
        raise _fail(str(exc)) from None
    profiles: Profiles | None = None
    side: SideStore | None = None
    try:
        if not dry_run or profiles_file.startswith("postgresql") or Path(profiles_file).exists():
            profiles = open_profiles(profiles_file)
        if not dry_run:
            side = SideStore(side_url)
    except Exception as exc:  # a file that is not a database, a server that is not there
        ledger.store.close()
        raise _fail(
            f"cannot open head office's tables: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    return ledger, profiles, side


def _close(ledger: Ledger, profiles: Profiles | None, side: SideStore | None) -> None:
    if side is not None:
        side.close()
    if profiles is not None:
        profiles.close()
    ledger.store.close()


def _codes_file(path: str) -> tuple[Any, Any]:
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the codes are secrets
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror}") from None
    handle = os.fdopen(fd, "w", newline="", encoding="utf-8")
    writer = csv.writer(handle)
    writer.writerow(CODES_HEADER)
    return handle, writer


def cmd_members(args: Any) -> None:
    import sys
    from datetime import UTC

    from staypoint.progress import progress

    path = Path(args.file)
    if not path.is_file():
        raise _fail(f"no file {path}")
    if not 1 <= args.batch <= 100_000:
        raise _fail("--batch is 1 to 100,000 rows")
    try:
        mapping = load_mapping(Path(args.mapping)) if args.mapping else {}
        mapping |= parse_map(args.map)
    except ImportError_ as exc:
        raise _fail(str(exc)) from None
    if args.property and not PROPERTY.fullmatch(args.property):
        raise _fail(f"--property {args.property!r} is not a property code")
    csv.field_size_limit(MAX_CELL * 4)
    try:
        handle = path.open(encoding=args.encoding, newline="")
    except LookupError:
        raise _fail(f"unknown encoding {args.encoding!r}") from None
    ledger, profiles, side = _open(args, dry_run=args.dry_run)
    codes_handle = None
    report: Report | None = None
    try:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise _fail(f"{path} is empty: the first row names the columns")
            cols = resolve_columns(header, mapping)
            importer = Importer(
                ledger,
                profiles,
                side,
                datetime.now(UTC),
                on_duplicate=args.on_duplicate,
                dry_run=args.dry_run,
                default_property=args.property,
                batch_size=args.batch,
            )
            if args.codes and not args.dry_run:
                codes_handle, importer.codes_out = _codes_file(args.codes)
            with progress("importing members", total=count_rows(path), quiet=args.quiet) as bar:
                report = importer.run(reader, cols, len(header), advance=bar.advance)
        except ImportError_ as exc:
            raise _fail(str(exc)) from None
        except UnicodeDecodeError:
            raise _fail(
                f"{path}: row {reader.line_num + 1} is not {args.encoding} text (try --encoding cp1252)"
            ) from None
        except csv.Error as exc:
            raise _fail(f"{path}: row {reader.line_num}: {exc}") from None
    finally:
        handle.close()
        if codes_handle is not None:
            codes_handle.close()
        _close(ledger, profiles, side)
    for line in report.errors:
        print(line, file=sys.stderr)
    if report.error_count > len(report.errors):
        print(f"... and {report.error_count - len(report.errors):,} more errors", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(summary(report))
    if report.error_count:
        raise SystemExit(1)


def summary(report: Report) -> str:
    """The report in a few lines: each batch, then the totals."""
    lines = []
    landed = [b for b in report.batches if b.status in ("landed", "checked")]
    refused = [b for b in report.batches if b.status == "refused"]
    if len(report.batches) > 1 or refused:
        for b in report.batches:
            what = {
                "landed": f"imported {b.imported:,}",
                "checked": f"would import {b.imported:,}",
                "nothing new": "nothing new",
                "refused": f"NOT imported ({b.errors:,} errors: nothing written)",
            }
            lines.append(f"batch {b.index} (rows {b.first_row:,}-{b.last_row:,}): {what[b.status]}")
    if report.imported == 0 and not refused:
        lines.append(
            f"nothing new to import: {report.rows:,} rows, {report.already:,} imported before"
            + (f", {report.merged:,} merged" if report.merged else "")
        )
    else:
        verb = "would import" if report.dry_run else "imported"
        lines.append(
            f"{verb} {report.imported:,} members ({report.opening_points:,} opening points), "
            f"{report.already:,} imported before, {report.merged:,} merged; "
            f"{len(landed)} of {len(report.batches)} batches {'pass' if report.dry_run else 'landed'}"
            + (f"; {report.error_count:,} errors" if report.error_count else "")
            + (f"; {report.codes:,} first-use codes written" if report.codes else "")
            + ("; dry run: nothing written" if report.dry_run else "")
        )
    return "\n".join(lines)


def cmd_codes(args: Any) -> None:
    from datetime import UTC

    ledger, profiles, side = _open(args, dry_run=False)
    assert profiles is not None and side is not None
    handle = None
    try:
        now = datetime.now(UTC)
        wanted: list[str] = []
        if args.members:
            for raw in args.members:
                try:
                    number = member_numbers.normalise(raw)
                except member_numbers.MemberNumberError as exc:
                    raise _fail(str(exc)) from None
                m = ledger.member(number)
                if m is None:
                    raise _fail(f"no member {number}")
                if m.get("pin_hash"):
                    raise _fail(f"member {number} has a PIN already: no code needed")
                wanted.append(number)
        else:
            position, node = 0, first_pin_stream()
            imported: list[str] = []
            while batch := ledger.store.events_after(position, ["member.enrolled"], limit=5000):
                position = batch[-1][0]
                for _, body in batch:
                    ev = json.loads(body)
                    if ev.get("node") == node:
                        imported.append(str(ev["member"]))
            live = first_pin.live(side, imported, now)
            for number in imported:
                m = ledger.member(number)
                if number not in live and m is not None and not m.get("pin_hash"):
                    wanted.append(number)
        importer = Importer(ledger, profiles, side, now)
        handle, importer.codes_out = _codes_file(args.out)
        written = importer.write_codes(wanted)
    except ImportError_ as exc:
        raise _fail(str(exc)) from None
    finally:
        if handle is not None:
            handle.close()
        _close(ledger, profiles, side)
    print(f"{written:,} first-use codes written to {args.out}")


def first_pin_stream() -> str:
    return f"{STREAM}-{STREAM_SUFFIX}"
