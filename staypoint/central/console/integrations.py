"""The console's Integrations tab (administrators): the API's client keys and their webhooks.

What ``staypoint central api keys create|list|revoke`` and ``staypoint central webhooks
list|add|remove|dead|retry`` do, from the desk, through the same functions (``application/keys.py``,
``webhooks.Webhooks``): their checks are the only ones, and a refusal (an unknown scope, a URL
that is not http(s), a key revoked already) is their one line, shown in the tab.

- **API keys**: name, scopes and properties (comma lists, as the CLI takes them) → *Create
  key*; the raw key ``sp_<id>_<secret>`` is shown once, in a field with *Copy* (the side tables
  keep only its hash). Select a key and *Revoke* (after a confirm): 401 from then on.
- **Webhooks**: the client's key id (selecting a key fills it in), URL and events (empty: all)
  → *Add webhook*; the signing secret is shown once the same way. Each subscription's state
  (active, retrying, paused because its key is revoked), last delivery and failures (retrying
  and dead deliveries, the newest error). Select one and *Remove* (after a confirm): its
  pending deliveries die.
- **Dead letters**: the deliveries that failed every try (``Webhooks.dead``), newest first, the
  latest ``DEAD_LIMIT`` (the line above the table says when there are more). Select one and
  *Retry*, or *Retry all* (each after a confirm): ``Webhooks.retry``, what ``central webhooks
  retry <id>|all`` does; the delivery worker sends them again, tries from zero.

Every read and write runs in a thread worker; results come back as messages. Styles:
``integrations.tcss``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, Static

from staypoint.central.application import keys
from staypoint.central.application.state import SideStore
from staypoint.central.console.confirm import Confirm
from staypoint.central.webhooks import EVENTS, SubscriptionState, WebhookError, Webhooks

KEY_COLUMNS = ("Id", "Name", "Scopes", "Properties", "Created", "Revoked")
HOOK_COLUMNS = ("Id", "Key", "URL", "Events", "State", "Last delivery", "Failures")
DEAD_COLUMNS = ("Delivery", "Webhook", "Event", "Created", "Tries", "Last error")
DEAD_LIMIT = 100  # dead letters listed; the CLI's 'central webhooks dead --limit N' reads more


def failures(s: SubscriptionState) -> str:
    """A subscription's failures in a cell: "2 retrying, 1 dead: HTTP 500" (empty: none)."""
    parts = [f"{n} {what}" for n, what in ((s.retrying, "retrying"), (s.dead, "dead")) if n]
    if not parts:
        return ""
    return ", ".join(parts) + (f": {s.last_error[:60]}" if s.last_error else "")


class IntegrationsView(Vertical):
    """API keys and webhook subscriptions over head office's side tables."""

    class Loaded(Message):
        """The keys, subscriptions and dead letters (newest first; ``more``: past the limit), as
        read by a worker."""

        def __init__(
            self,
            key_rows: list[keys.KeyRow],
            hooks: list[SubscriptionState],
            dead: list[dict[str, Any]],
            more: bool,
        ) -> None:
            super().__init__()
            self.key_rows = key_rows
            self.hooks = hooks
            self.dead = dead
            self.more = more

    class Done(Message):
        """An action's outcome: one line for ``area`` ("key", "wh" or "dl"), a secret to show once and
        the row it made (the cursor goes there)."""

        def __init__(self, area: str, line: str, secret: str | None = None, made: str | None = None) -> None:
            super().__init__()
            self.area = area
            self.line = line
            self.secret = secret
            self.made = made

    def __init__(self, side: SideStore, clock: Callable[[], datetime], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.side = side
        self.clock = clock
        self.key_rows: dict[str, keys.KeyRow] = {}
        self.hook_rows: dict[str, SubscriptionState] = {}
        self.dead_rows: dict[str, dict[str, Any]] = {}
        self.shown: dict[str, str] = {}  # area -> the secret on show (the field is kept equal to it)
        self.made: dict[str, str] = {}  # table id -> a row just made, for the cursor after the reload

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="int-scroll"):
            with Horizontal(classes="row"):
                yield Label("API keys", classes="int-head")
                yield Button("Refresh", id="int-refresh")
            with Horizontal(classes="row"):
                yield Input(placeholder="name, e.g. SHA PMS", id="key-name")
                yield Input(placeholder=f"scopes: {','.join(keys.SCOPES)}", id="key-scopes")
                yield Input(placeholder="properties: SHA,BJS or * (all)", id="key-props")
                yield Button("Create key", id="key-create", variant="primary")
            yield Static("", id="key-msg", classes="int-msg")
            with Horizontal(id="key-secret-row", classes="row int-secret"):
                yield Input("", id="key-secret", select_on_focus=True)
                yield Button("Copy", id="key-copy")
                yield Button("Hide", id="key-hide")
            yield DataTable(id="keys-table", cursor_type="row", classes="int-table")
            with Horizontal(classes="row"):
                yield Static("Select a key to revoke it, or to add a webhook for it", classes="hint int-hint")
                yield Button("Revoke key", id="key-revoke", variant="error")
            yield Label("Webhooks", classes="int-head")
            with Horizontal(classes="row"):
                yield Input(placeholder="client's API key id", id="wh-client")
                yield Input(placeholder="https://booking.example/hooks", id="wh-url")
                yield Input(placeholder=f"events, e.g. {EVENTS[1]} (empty: all)", id="wh-events")
                yield Button("Add webhook", id="wh-add", variant="primary")
            yield Static("", id="wh-msg", classes="int-msg")
            with Horizontal(id="wh-secret-row", classes="row int-secret"):
                yield Input("", id="wh-secret", select_on_focus=True)
                yield Button("Copy", id="wh-copy")
                yield Button("Hide", id="wh-hide")
            yield DataTable(id="wh-table", cursor_type="row", classes="int-table")
            with Horizontal(classes="row"):
                yield Static(
                    f"Events: {', '.join(EVENTS)}. Select a webhook to remove it", classes="hint int-hint"
                )
                yield Button("Remove webhook", id="wh-remove", variant="error")
            yield Label("Dead letters", classes="int-head")
            yield Static("", id="dl-count", classes="int-msg")
            yield Static("", id="dl-msg", classes="int-msg")
            yield DataTable(id="dl-table", cursor_type="row", classes="int-table")
            with Horizontal(classes="row"):
                yield Static(
                    "Deliveries that failed every try. Select one to send it again", classes="hint int-hint"
                )
                yield Button("Retry", id="dl-retry", variant="warning")
                yield Button("Retry all", id="dl-retry-all", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#keys-table", DataTable).add_columns(*KEY_COLUMNS)
        self.query_one("#wh-table", DataTable).add_columns(*HOOK_COLUMNS)
        self.query_one("#dl-table", DataTable).add_columns(*DEAD_COLUMNS)
        for area in ("key", "wh"):
            self.query_one(f"#{area}-secret-row").display = False
        self.reload()

    # -- reading --------------------------------------------------------------------------------
    def reload(self) -> None:
        self.run_worker(self._load, thread=True, group="int-load", exclusive=True, exit_on_error=False)

    def _load(self) -> None:
        try:
            book = Webhooks(self.side)
            rows, hooks, dead = keys.list_keys(self.side), book.states(), book.dead(DEAD_LIMIT + 1)
        except Exception as exc:  # the side tables unreachable: said in the tab, the desk stays up
            self.post_message(self.Done("key", f"could not read the keys: {type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Loaded(rows, hooks, dead[:DEAD_LIMIT], len(dead) > DEAD_LIMIT))

    def on_integrations_view_loaded(self, event: Loaded) -> None:
        self.key_rows = {r.id: r for r in event.key_rows}
        self.hook_rows = {h.subscription.id: h for h in event.hooks}
        self.dead_rows = {str(d["id"]): d for d in event.dead}
        was_key = self.made.pop("keys-table", None) or self._selected("keys-table")
        was_hook = self.made.pop("wh-table", None) or self._selected("wh-table")
        was_dead = self._selected("dl-table")
        table = self.query_one("#keys-table", DataTable)
        table.clear()
        for r in event.key_rows:
            table.add_row(
                r.id,
                r.name,
                ",".join(r.scopes),
                ",".join(r.properties),
                r.created[:19],
                (r.revoked or "")[:19] or "active",
                key=r.id,
            )
        hooks = self.query_one("#wh-table", DataTable)
        hooks.clear()
        for h in event.hooks:
            s = h.subscription
            hooks.add_row(
                s.id,
                s.client,
                s.url,
                ",".join(s.kinds),
                h.state,
                (h.last_delivered or "")[:19] or "never",
                failures(h),
                key=s.id,
            )
        dead = self.query_one("#dl-table", DataTable)
        dead.clear()
        for d in event.dead:
            sub = self.hook_rows.get(str(d["subscription"]))
            dead.add_row(
                d["id"],
                sub.subscription.url if sub else f"{d['subscription']} (removed)",
                d["kind"],
                str(d["created"])[:19],
                str(d["attempts"]),
                str(d["last_error"] or "")[:80],
                key=str(d["id"]),
            )
        n = len(event.dead)
        self.query_one("#dl-count", Static).update(
            f"the latest {n} dead deliveries, newest first; there are more "
            "(staypoint central webhooks dead --limit N lists them)"
            if event.more
            else f"{n} dead {'delivery' if n == 1 else 'deliveries'}, newest first"
            if n
            else "no dead deliveries"
        )
        # The cursor stays on the row it was on: what is highlighted is what Revoke, Remove or Retry takes.
        for t, was, rows in (
            (table, was_key, self.key_rows),
            (hooks, was_hook, self.hook_rows),
            (dead, was_dead, self.dead_rows),
        ):
            if was is not None and was in rows:
                t.move_cursor(row=t.get_row_index(was), animate=False)

    # -- selecting --------------------------------------------------------------------------------
    def _selected(self, table_id: str) -> str | None:
        """The id of the row under ``table_id``'s cursor (None: the table is empty)."""
        table = self.query_one(f"#{table_id}", DataTable)
        if table.row_count == 0:
            return None
        value = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if value is None else str(value)

    @on(DataTable.RowSelected, "#keys-table")
    def _key_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.query_one("#wh-client", Input).value = str(event.row_key.value)

    # -- acting -------------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        handlers: dict[str, Callable[[], None]] = {
            "int-refresh": self.reload,
            "key-create": self.create_key,
            "key-revoke": self.revoke_key,
            "wh-add": self.add_webhook,
            "wh-remove": self.remove_webhook,
            "dl-retry": self.retry_dead,
            "dl-retry-all": self.retry_all,
            "key-copy": lambda: self._copy("key"),
            "wh-copy": lambda: self._copy("wh"),
            "key-hide": lambda: self._show_secret("key", None),
            "wh-hide": lambda: self._show_secret("wh", None),
        }
        handler = handlers.get(event.button.id or "")
        if handler is not None:
            event.stop()
            handler()

    def _value(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value.strip()

    def _msg(self, area: str, line: str) -> None:
        self.query_one(f"#{area}-msg", Static).update(line)

    def _work(
        self, area: str, job: Callable[[], tuple[str, str | None, str | None]], refusal: type[Exception]
    ) -> None:
        """Run ``job`` in a thread: its (line, secret, row made), or the refusal's line, comes
        back as Done."""

        def run() -> None:
            try:
                line, secret, made = job()
            except refusal as exc:
                self.post_message(self.Done(area, f"refused: {exc}"))
                return
            except Exception as exc:  # not the input: the store; one line, the desk stays up
                self.post_message(self.Done(area, f"failed: {type(exc).__name__}: {exc}"))
                return
            self.post_message(self.Done(area, line, secret, made))

        self.run_worker(run, thread=True, group="int-act", exit_on_error=False)

    def _confirmed_work(
        self,
        area: str,
        question: Confirm,
        job: Callable[[], tuple[str, str | None, str | None]],
        refusal: type[Exception],
        declined: str,
    ) -> None:
        """``_work`` once ``question`` is answered yes; a cancel only says ``declined``."""

        def answered(yes: bool | None) -> None:
            if yes:
                self._work(area, job, refusal)
            else:
                self._msg(area, declined)

        self.app.push_screen(question, answered)

    def on_integrations_view_done(self, event: Done) -> None:
        self._msg(event.area, event.line)
        if event.secret is not None:
            self._show_secret(event.area, event.secret)
        if event.made is not None:
            self.made["keys-table" if event.area == "key" else "wh-table"] = event.made
        self.reload()

    def create_key(self) -> None:
        name = self._value("key-name")
        scopes, props = self._value("key-scopes").split(","), self._value("key-props").split(",")

        def job() -> tuple[str, str | None, str | None]:
            raw = keys.create_key(self.side, name, scopes, props, self.clock())
            key_id = raw.split("_", 2)[1]
            return f"created key {key_id} ({name}): copy it now, it is not shown again", raw, key_id

        self._work("key", job, keys.KeyRefused)

    def revoke_key(self) -> None:
        key_id = self._selected("keys-table")
        if key_id is None:
            return self._msg("key", "select a key first")

        def job() -> tuple[str, str | None, str | None]:
            row = keys.revoke_key(self.side, key_id, self.clock())
            return f"revoked {row.id} ({row.name}) at {row.revoked}", None, None

        row = self.key_rows.get(key_id)
        if row is not None and row.revoked:
            return self._work("key", job, keys.KeyRefused)  # revoke_key says why not: no question
        name = f" ({row.name})" if row else ""
        question = Confirm(f"Revoke API key {key_id}{name}? Its client gets 401 from now on.", "Revoke")
        self._confirmed_work("key", question, job, keys.KeyRefused, f"not revoked: {key_id}")

    def add_webhook(self) -> None:
        client, url, events = self._value("wh-client"), self._value("wh-url"), self._value("wh-events")

        def job() -> tuple[str, str | None, str | None]:
            sub_id, secret = Webhooks(self.side).add(client, url, events.split(","), self.clock())
            return f"added {sub_id}: copy its signing secret now, it is not shown again", secret, sub_id

        self._work("wh", job, WebhookError)

    def remove_webhook(self) -> None:
        sub_id = self._selected("wh-table")
        if sub_id is None:
            return self._msg("wh", "select a webhook first")
        state = self.hook_rows.get(sub_id)
        url = f" ({state.subscription.url})" if state else ""

        def job() -> tuple[str, str | None, str | None]:
            Webhooks(self.side).remove(sub_id)
            return f"removed {sub_id}: its pending deliveries will not be sent", None, None

        question = Confirm(f"Remove webhook {sub_id}{url}? Its pending deliveries die.", "Remove")
        self._confirmed_work("wh", question, job, WebhookError, f"not removed: {sub_id}")

    def retry_dead(self) -> None:
        did = self._selected("dl-table")
        if did is None:
            return self._msg("dl", "no dead delivery selected")
        row = self.dead_rows.get(did, {})
        sub = self.hook_rows.get(str(row.get("subscription")))
        where = f" ({row.get('kind')} to {sub.subscription.url})" if sub else ""

        def job() -> tuple[str, str | None, str | None]:
            Webhooks(self.side).retry(did, self.clock())
            return f"queued {did} again: the delivery worker sends it, tries from zero", None, None

        question = Confirm(f"Send delivery {did}{where} again? Its tries start from zero.", "Retry")
        self._confirmed_work("dl", question, job, WebhookError, f"not retried: {did}")

    def retry_all(self) -> None:
        # What Webhooks.retry(None) takes: the dead letters of the webhooks still there.
        n = sum(h.dead for h in self.hook_rows.values())
        if n == 0:
            return self._msg("dl", "no dead deliveries to retry")

        def job() -> tuple[str, str | None, str | None]:
            return f"{Webhooks(self.side).retry(None, self.clock())} deliveries queued again", None, None

        question = Confirm(f"Send all {n} dead deliveries again? Their tries start from zero.", "Retry all")
        self._confirmed_work("dl", question, job, WebhookError, "none retried")

    # -- secrets shown once ---------------------------------------------------------------------------
    def _show_secret(self, area: str, secret: str | None) -> None:
        field = self.query_one(f"#{area}-secret", Input)
        if secret is None:
            self.shown.pop(area, None)
            field.value = ""
        else:
            self.shown[area] = secret
            field.value = secret
        self.query_one(f"#{area}-secret-row").display = secret is not None

    @on(Input.Changed, ".int-secret Input")
    def _keep_secret(self, event: Input.Changed) -> None:
        """The field only shows the secret: typing in it puts it back."""
        area = (event.input.id or "").removesuffix("-secret")
        if area in self.shown and event.value != self.shown[area]:
            event.input.value = self.shown[area]

    def _copy(self, area: str) -> None:
        if area in self.shown:
            self.app.copy_to_clipboard(self.shown[area])
            self._msg(area, "copied to the clipboard")
