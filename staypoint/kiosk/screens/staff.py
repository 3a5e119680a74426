"""Staff mode: staff card + PIN, then the desk's tasks, each offered by role.

Forms use Input fields: a desk keyboard, or a keyboard-wedge scanner typing a voucher's
QR token, fills them; a card tapped while a card field is on screen fills that field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.widgets import Button, Input, Static

from staypoint.edge.service import NotAllowed, StaffProof
from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.session import PrintOutcome, sentence
from staypoint.kiosk.widgets.keypad import Keypad
from staypoint.loyalty import roles
from staypoint.loyalty.program import Outlet
from staypoint.loyalty.roles import Task
from staypoint.loyalty.vouchers import format_code

if TYPE_CHECKING:
    from staypoint.kiosk.hardware.reader.base import CardRead

#: The menu, in screen order: button id, the role-table task it needs, label. Who sees which
#: button is staypoint.loyalty.roles' call, the same table the node service enforces.
MENU: tuple[tuple[str, Task, str], ...] = (
    ("stay", Task.POST_STAY, "Post a stay"),
    ("enrol", Task.ENROL, "Enrol a member"),
    ("bind", Task.BIND_CARD, "Bind a card"),
    ("topup", Task.TOP_UP, "Top up stored value"),
    ("spend", Task.TOP_UP, "Pay from stored value"),  # the member's PIN authorises it
    ("voucher", Task.USE_VOUCHER, "Vouchers: verify / use / void"),
    ("reprint", Task.REPRINT, "Reprint last voucher"),
    ("unlock", Task.UNLOCK, "Unlock a member"),
    ("status", Task.NODE_STATUS, "Node status"),
    ("exit", Task.CLOSE_KIOSK, "Close the kiosk"),
)
TASK_LABELS = {button: label for button, _, label in MENU}


class StaffLoginScreen(KioskScreen):
    """A staff card was tapped: its PIN on the on-screen keypad."""

    def __init__(self, card_uid: str) -> None:
        super().__init__(id="staff-login")
        self.card_uid = card_uid

    def compose_body(self) -> ComposeResult:
        yield Static("Staff sign-in", classes="title")
        yield Static("Enter your staff PIN", id="staff-prompt", classes="help")
        yield Keypad(max_length=8, mask=True, id="staff-pad")
        with Horizontal(classes="actions"):
            yield Button("Cancel", id="cancel", classes="secondary")

    def on_keypad_submitted(self, event: Keypad.Submitted) -> None:
        """Check the PIN against the card."""
        service, uid, now, pin = self.service, self.card_uid, self.kiosk.now(), event.value
        self.call(lambda: service.staff_login(pin, now, card_uid=uid), self.signed_in)

    def signed_in(self, proof: StaffProof) -> None:
        """Straight to the menu; the login screen goes (its keypad held a PIN)."""
        self.app.switch_screen(StaffMenuScreen(proof))

    def show_error(self, error: Exception) -> None:
        """Wrong PIN / locked, where the clerk is looking."""
        self.query_one(Keypad).clear()
        prompt = self.query_one("#staff-prompt", Static)
        prompt.update(sentence(str(error)))
        prompt.add_class("error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Cancel."""
        if event.button.id == "cancel":
            self.app.pop_screen()


class StaffMenuScreen(KioskScreen):
    """The tasks this clerk's role allows."""

    def __init__(self, proof: StaffProof) -> None:
        super().__init__(id="staff-menu")
        self.proof = proof

    @property
    def tasks(self) -> tuple[str, ...]:
        """Menu buttons for the signed-in role."""
        return tuple(button for button, task, _ in MENU if roles.allows(self.proof.role, task))

    def compose_body(self) -> ComposeResult:
        yield Static(f"Staff · {self.proof.name} ({self.proof.role})", classes="title")
        with Grid(id="staff-tasks"):
            for task in self.tasks:
                yield Button(TASK_LABELS[task], id=f"task-{task}", classes="task")
        yield Static("", id="staff-message")
        with Horizontal(classes="actions"):
            yield Button("Sign out", id="sign-out", classes="big secondary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Open a task (the role is checked again: a button is not a permission)."""
        from staypoint.kiosk.screens.spend import SpendForm
        from staypoint.kiosk.screens.staff_status import StaffStatusScreen

        bid = event.button.id or ""
        if bid == "sign-out":
            self.kiosk.end_session()
            return
        task = bid.removeprefix("task-")
        if task not in self.tasks:
            return
        screens: dict[str, Callable[[], KioskScreen]] = {
            "stay": lambda: PostStayForm(self.proof),
            "enrol": lambda: EnrolForm(self.proof),
            "bind": lambda: BindCardForm(self.proof),
            "topup": lambda: TopUpForm(self.proof),
            "spend": lambda: SpendForm(self.proof),
            "voucher": lambda: VoucherForm(self.proof),
            "unlock": lambda: UnlockForm(self.proof),
            "status": lambda: StaffStatusScreen(self.proof),
        }
        if task in screens:
            self.app.push_screen(screens[task]())
        elif task == "reprint":
            self.reprint()
        elif task == "exit":
            self.app.exit()

    def reprint(self) -> None:
        """The node's most recent voucher, printed again."""
        kiosk = self.kiosk
        self.query_one("#staff-message", Static).update("Printing…")
        self.call(kiosk.reprint_last_voucher, self.reprinted)

    def reprinted(self, outcome: PrintOutcome | None) -> None:
        """Say what happened."""
        msg = self.query_one("#staff-message", Static)
        if outcome is None:
            msg.update("No voucher has been issued on this node yet.")
        elif outcome.printed:
            msg.update(f"Reprinted voucher {outcome.slip.code} ({outcome.slip.reward_name}).")
        else:
            msg.update(f"Voucher {outcome.slip.code} not printed: {outcome.problem}.")

    def show_error(self, error: Exception) -> None:
        """Errors on the menu's message line."""
        self.query_one("#staff-message", Static).update(sentence(str(error)))


@dataclass(frozen=True)
class Field:
    """One input of a staff form."""

    name: str
    label: str
    placeholder: str = ""
    password: bool = False
    card: bool = False  # a tapped card fills it


class StaffForm(KioskScreen):
    """A titled list of inputs, one or more action buttons and a result line.

    Subclasses name their FIELDS and ACTIONS and implement :meth:`perform`, which runs in
    a worker thread and returns the line to show.
    """

    TITLE_TEXT: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[Field, ...]] = ()
    ACTIONS: ClassVar[tuple[tuple[str, str], ...]] = (("go", "Save"),)
    SHOW_DEMO_CARDS = True

    def __init__(self, proof: StaffProof) -> None:
        super().__init__(classes="staff-form")
        self.proof = proof

    def actions_for(self) -> tuple[tuple[str, str], ...]:
        """The action buttons this clerk gets."""
        return self.ACTIONS

    def compose_body(self) -> ComposeResult:
        yield Static(self.TITLE_TEXT, classes="title")
        with VerticalScroll(id="form"):
            for f in self.FIELDS:
                with Horizontal(classes="field"):
                    yield Static(f.label, classes="field-label")
                    yield Input(placeholder=f.placeholder, password=f.password, id=f"f-{f.name}")
        yield Static("", id="result")
        with Horizontal(classes="actions"):
            for action, label in self.actions_for():
                yield Button(label, id=f"do-{action}", classes="big primary")
            yield Button("Back", id="back", classes="big secondary")

    def values(self) -> dict[str, str]:
        """What is typed, trimmed."""
        return {f.name: self.query_one(f"#f-{f.name}", Input).value.strip() for f in self.FIELDS}

    def card_read(self, read: CardRead) -> bool:
        """Fill the card field from a tap."""
        for f in self.FIELDS:
            if f.card and read.uid is not None:
                self.query_one(f"#f-{f.name}", Input).value = read.uid
                return True
        return False

    def perform(self, action: str, values: dict[str, str]) -> str:
        """Do the task (blocking, in a worker thread); the return value is shown."""
        raise NotImplementedError

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Back, or run an action."""
        bid = event.button.id or ""
        if bid == "back":
            self.app.pop_screen()
        elif bid.startswith("do-"):
            action, values = bid.removeprefix("do-"), self.values()
            self.query_one("#result", Static).update("Working…")
            self.call(lambda: self.perform(action, values), self.done)

    def done(self, text: str) -> None:
        """Success: the result line, in the normal colour."""
        result = self.query_one("#result", Static)
        result.remove_class("error")
        result.update(text)

    def show_error(self, error: Exception) -> None:
        """Refusals on the result line, in the warning colour."""
        result = self.query_one("#result", Static)
        result.add_class("error")
        result.update(sentence(str(error)))


class PostStayForm(StaffForm):
    """Post a stay for a member: points by the programme's earn rules."""

    TITLE_TEXT = "Post a stay"
    FIELDS = (
        Field("member", "Member number", "10 digits"),
        Field("folio", "Folio", "from the bill"),
        Field("nights", "Nights", "e.g. 3"),
        Field("room", "Room revenue", "0.00"),
        Field("fnb", "Food & drink", "0.00"),
        Field("spa", "Spa", "0.00"),
    )
    ACTIONS = (("go", "Post stay"),)

    def perform(self, action: str, values: dict[str, str]) -> str:
        """Post it."""
        if not values["nights"].isdigit():
            raise NotAllowed("nights must be a whole number")
        revenue = {
            Outlet.ROOM: values["room"] or "0",
            Outlet.FNB: values["fnb"] or "0",
            Outlet.SPA: values["spa"] or "0",
        }
        r = self.service.post_stay(
            values["member"],
            values["folio"],
            self.kiosk.now(),
            nights=int(values["nights"]),
            revenue=revenue,
            staff=self.proof,
        )
        upgrade = f"; now {r.tier_after}" if r.tier_after != r.tier_before else ""
        return f"Posted {r.folio}: +{r.points:,} points, balance {r.balance:,}{upgrade}."


class EnrolForm(StaffForm):
    """Enrol a new member (and bind the card tapped now)."""

    TITLE_TEXT = "Enrol a member"
    FIELDS = (
        Field("name", "Full name", "as on the passport"),
        Field("pin", "PIN", "4 digits, typed by the guest", password=True),
        Field("card", "Card", "tap the new card", card=True),
        Field("referred_by", "Friend's code", "referral code, if a member invited them"),
    )
    ACTIONS = (("go", "Enrol"),)

    def perform(self, action: str, values: dict[str, str]) -> str:
        """Enrol."""
        row = self.service.enrol(
            values["name"],
            values["pin"],
            self.kiosk.now(),
            card_uid=values["card"] or None,
            staff=self.proof,
            referred_by=values["referred_by"] or None,
        )
        card = " with the card bound" if values["card"] else ""
        friend = f", referred by code {values['referred_by'].upper()}" if values["referred_by"] else ""
        return f"Enrolled {row.name}: member number {row.number}{card}{friend}."


class BindCardForm(StaffForm):
    """Bind a new or replacement card to an existing member."""

    TITLE_TEXT = "Bind a card"
    FIELDS = (
        Field("member", "Member number", "10 digits"),
        Field("card", "Card", "tap the card", card=True),
    )
    ACTIONS = (("go", "Bind card"),)

    def perform(self, action: str, values: dict[str, str]) -> str:
        """Bind."""
        if not values["card"]:
            raise NotAllowed("tap the card first")
        self.service.bind_card(values["member"], values["card"], self.kiosk.now(), self.proof)
        return f"Card bound to member {values['member']}."


class TopUpForm(StaffForm):
    """Add money to a member's stored value."""

    TITLE_TEXT = "Top up stored value"
    FIELDS = (Field("member", "Member number", "10 digits"), Field("amount", "Amount", "e.g. 50.00"))
    ACTIONS = (("go", "Top up"),)

    def perform(self, action: str, values: dict[str, str]) -> str:
        """Top up."""
        balance: Decimal = self.service.top_up(
            values["member"], values["amount"], self.kiosk.now(), self.proof
        )
        return f"Topped up: stored value is now {balance} {self.service.program.currency}."


class UnlockForm(StaffForm):
    """Lift a member's PIN lock-out."""

    TITLE_TEXT = "Unlock a member"
    FIELDS = (Field("member", "Member number", "10 digits"),)
    ACTIONS = (("go", "Unlock"),)

    def perform(self, action: str, values: dict[str, str]) -> str:
        """Unlock."""
        self.service.unlock(values["member"], self.kiosk.now(), self.proof)
        return f"Member {values['member']} unlocked: they can use their PIN again."


class VoucherForm(StaffForm):
    """Verify, use or void a voucher by its typed code or its scanned QR token."""

    TITLE_TEXT = "Vouchers"
    FIELDS = (
        Field("code", "Code or scan", "XXXX-XXXX-XXXX, or scan the QR"),
        Field("reason", "Void reason", "only for a void"),
    )
    ACTIONS = (("verify", "Verify"), ("use", "Use"), ("void", "Void"))
    SHOW_DEMO_CARDS = False

    def actions_for(self) -> tuple[tuple[str, str], ...]:
        """Void only for a role that may void (it gives points back)."""
        if roles.allows(self.proof.role, Task.VOID_VOUCHER):
            return self.ACTIONS
        return self.ACTIONS[:2]

    def perform(self, action: str, values: dict[str, str]) -> str:
        """Verify / use / void."""
        code, now = values["code"], self.kiosk.now()
        if action == "verify":
            info = self.service.verify_voucher(code, now)
        elif action == "use":
            info = self.service.use_voucher(code, now, self.proof)
        else:
            info = self.service.void_voucher(code, now, self.proof, values["reason"])
        return (
            f"{format_code(info.code.replace('-', ''))} · {info.reward_name} · member {info.member} · "
            f"expires {info.expires:%d %b %Y} · {info.status}: {info.message}"
        )
