"""Who at a property may do what: the staff roles, their tasks and their ceilings.

One table, read by the node service (which refuses what a role may not do), by the kiosk
(which offers only what the signed-in role may do) and by the command line; docs/staff.md
carries :func:`markdown` and a test keeps the two equal. No I/O.

The policy, and why:

- **staff** work the desk: stays, enrolments, cards, top-ups, using vouchers. Their mistakes
  are corrected by someone else, so nothing that takes points back or hands them out.
- **supervisors** do what staff do, plus what undoes or forgives: voids (points go back or
  come off), unlocking a PIN lock-out, and goodwill adjustments up to a ceiling (``TABLE``).
  A larger gift is a head-office decision (the console), where it is reviewed.
- **technicians** keep the machine running (status, printer test page, reprints, closing the
  kiosk, registering staff) and touch no member's account: a technician is often a contractor.
- **local root** is not an account but the node's own shell (``--local-root`` on the command
  line): whoever has it could edit the replica anyway, so it may do every task, openly, each
  use recorded as staff ``local-root``. The one exception is adjustments, which hand out
  points from nothing and so need a named supervisor who answers for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Task(StrEnum):
    """One thing a staff member does; the value is the node service's method name."""

    POST_STAY = "post_stay"
    VOID_STAY = "void_stay"
    ENROL = "enrol"
    BIND_CARD = "bind_card"
    TOP_UP = "top_up"
    USE_VOUCHER = "use_voucher"
    VOID_VOUCHER = "void_voucher"
    REPRINT = "reprint"
    UNLOCK = "unlock"
    ADJUST = "adjust"
    NODE_STATUS = "node_status"
    PRINTER_TEST = "printer_test"
    CLOSE_KIOSK = "close_kiosk"
    ADD_STAFF = "add_staff"
    REPORT_MEMBER = "report_member"


#: What each task is, as the rest of a sentence ("a staff member may not ...").
TASK_PHRASES: Mapping[Task, str] = MappingProxyType(
    {
        Task.POST_STAY: "post a stay",
        Task.VOID_STAY: "void a posted stay",
        Task.ENROL: "enrol a member",
        Task.BIND_CARD: "bind a card to a member",
        Task.TOP_UP: "top up stored value",
        Task.USE_VOUCHER: "mark a voucher used",
        Task.VOID_VOUCHER: "void a voucher",
        Task.REPRINT: "reprint the last voucher",
        Task.UNLOCK: "unlock a member locked out by wrong PINs",
        Task.ADJUST: "adjust a member's points",
        Task.NODE_STATUS: "see the node status",
        Task.PRINTER_TEST: "print a printer test page",
        Task.CLOSE_KIOSK: "close the kiosk",
        Task.ADD_STAFF: "register a staff member",
        Task.REPORT_MEMBER: "report a member to head office for suspected abuse",
    }
)

STAFF = "staff"
SUPERVISOR = "supervisor"
TECHNICIAN = "technician"
LOCAL_ROOT = "local-root"
#: The roles a staff account can have (``staff add --role``).
STAFF_ROLES: tuple[str, ...] = (STAFF, SUPERVISOR, TECHNICIAN)
#: Every role the table knows, the node shell's included.
ROLES: tuple[str, ...] = (*STAFF_ROLES, LOCAL_ROOT)


@dataclass(frozen=True)
class Role:
    """A role's tasks and, for tasks with an amount, the largest one it may do at once."""

    name: str
    who: str  # as a sentence names it: "a supervisor"
    tasks: frozenset[Task]
    ceilings: Mapping[Task, int] = field(default_factory=dict)

    def ceiling(self, task: Task) -> int:
        """The largest amount of a measured ``task`` this role may do at once (0: none at all)."""
        return self.ceilings.get(task, 0) if task in self.tasks else 0


#: Tasks that come with an amount, so each role has a ceiling for them; with their doc label.
MEASURED: Mapping[Task, str] = MappingProxyType({Task.ADJUST: "Largest single adjustment (points)"})

_DESK = frozenset(
    {
        Task.POST_STAY,
        Task.ENROL,
        Task.BIND_CARD,
        Task.TOP_UP,
        Task.USE_VOUCHER,
        Task.REPRINT,
        Task.NODE_STATUS,
        Task.REPORT_MEMBER,  # head office decides, so whoever saw it may say so
    }
)
_MACHINE = frozenset({Task.REPRINT, Task.NODE_STATUS, Task.PRINTER_TEST, Task.CLOSE_KIOSK, Task.ADD_STAFF})

TABLE: Mapping[str, Role] = MappingProxyType(
    {
        STAFF: Role(STAFF, "a staff member", _DESK),
        SUPERVISOR: Role(
            SUPERVISOR,
            "a supervisor",
            _DESK | {Task.VOID_STAY, Task.VOID_VOUCHER, Task.UNLOCK, Task.ADJUST},
            MappingProxyType({Task.ADJUST: 5_000}),
        ),
        TECHNICIAN: Role(TECHNICIAN, "a technician", _MACHINE),
        LOCAL_ROOT: Role(LOCAL_ROOT, "local root", frozenset(Task) - {Task.ADJUST}),
    }
)


class RoleRefusal(ValueError):
    """A role may not do a task, or not that much of it; the message is one line for the clerk."""

    def __init__(self, role: str, task: Task, message: str) -> None:
        super().__init__(message)
        self.role = role
        self.task = task


def _task(task: Task | str) -> Task:
    try:
        return Task(task)
    except ValueError:
        # A task name the table lacks is a programming error, not a refusal to show a clerk.
        raise ValueError(f"no task {task!r} in the role table") from None


def check(role: str, task: Task | str, amount: int | None = None) -> Role:
    """The role, when it may do ``task`` (``amount`` of it, either sign); else RoleRefusal."""
    t = _task(task)
    r = TABLE.get(role)
    if r is None:
        raise RoleRefusal(role, t, f"unknown staff role {role!r}: roles are {', '.join(ROLES)}")
    if t not in r.tasks:
        able = [TABLE[o].who for o in STAFF_ROLES if t in TABLE[o].tasks]
        need = f": that needs {' or '.join(able)}" if able else ""
        raise RoleRefusal(role, t, f"{r.who} may not {TASK_PHRASES[t]}{need}")
    if t in MEASURED and amount is not None and abs(amount) > r.ceiling(t):
        limit = r.ceiling(t)
        higher = [TABLE[o].who for o in STAFF_ROLES if TABLE[o].ceiling(t) > limit]
        more = f"{' or '.join(higher)} may do more" if higher else "more is for head office"
        raise RoleRefusal(role, t, f"{r.who} may {TASK_PHRASES[t]} by at most {limit:,} at once: {more}")
    return r


def allows(role: str, task: Task | str, amount: int | None = None) -> bool:
    """Whether :func:`check` would let ``role`` do ``task`` (for showing or hiding a button)."""
    try:
        check(role, task, amount)
    except RoleRefusal:
        return False
    return True


def tasks_for(role: str) -> frozenset[Task]:
    """Every task ``role`` may do (none for a role the table does not know)."""
    r = TABLE.get(role)
    return r.tasks if r is not None else frozenset()


def markdown() -> str:
    """The table as Markdown, as docs/staff.md shows it (a test keeps them equal)."""
    head = ["task", *(f"`{role}`" for role in ROLES)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in Task:
        marks = ["✓" if t in TABLE[role].tasks else "" for role in ROLES]
        phrase = TASK_PHRASES[t]
        lines.append(f"| {phrase[0].upper()}{phrase[1:]} (`{t.value}`) | " + " | ".join(marks) + " |")
    for t, label in MEASURED.items():
        limits = [f"{TABLE[role].ceiling(t):,}" for role in ROLES]
        lines.append(f"| {label} | " + " | ".join(limits) + " |")
    return "\n".join(lines) + "\n"
