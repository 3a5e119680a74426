"""The Marketing tab's *Send*: a one-off campaign run for real, as the daily job runs it.

The campaign is the one the tab's form describes (``MarketingView.campaign``: a code, the
latest version of a saved segment, the shipped or a typed template). *Send* first counts
who it reaches with the engine's own dry run (by e-mail, by SMS; already done by an earlier
send, hold-out, no consent) and asks; on *Send* in that confirm it runs
:meth:`CampaignJob.run_daily` — the pass ``staypoint central jobs --campaigns FILE`` runs —
over this one campaign, in a thread worker, with a progress bar of the hand-over, and shows
what came of it: sent, skipped (already done, hold-out, no consent, frequency cap), failed
(bounced, refused, uncertain) and later (quiet hours, a retry), each as the send log
``cmp_sends`` records it.

Sending twice never mails twice: every ``(member, campaign)`` is claimed once in the send
log, so a second *Send* (or the daily job, or another console) finds the claims taken and
reports them as already done (sent, or skipped for want of consent, by the earlier send);
a second press also hands over this campaign's retries and quiet-hours delays come due.

The mail server, the SMS gateway and the settings (quiet hours, cap, the unsubscribe
secret and link) are the campaigns file's, ``staypoint console --campaigns FILE`` (the file
``central jobs --campaigns`` reads, read again at each *Send*); without it *Send* says so.
A one-off may not reuse a code of that file's campaigns. Styles: in ``marketing.tcss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, ProgressBar, Static

from staypoint.central.campaigns.config import Campaign, ConfigError, JobConfig, load_config
from staypoint.central.campaigns.engine import CampaignJob, JobStores
from staypoint.central.campaigns.segments import SegmentError
from staypoint.central.console.confirm import Confirm

NO_FILE = (
    "Sending needs the campaigns file (mail server, unsubscribe secret): start the console "
    "with --campaigns FILE, the file `staypoint central jobs --campaigns` reads."
)


def _parts(pairs: list[tuple[str, int]]) -> str:
    return ", ".join(f"{what} {n:,}" for what, n in pairs if n)


def reach_question(code: str, counts: dict[str, int]) -> str:
    """The confirm's question, from the engine's dry-run counts."""
    reach = counts.get("email", 0) + counts.get("sms", 0)
    q = f"Send {code} now to {reach:,} member{'' if reach == 1 else 's'}"
    q += f" ({counts.get('email', 0):,} by e-mail, {counts.get('sms', 0):,} by SMS)?"
    skipped = _parts(
        [
            ("already done by an earlier send", counts.get("already_logged", 0)),
            ("in the hold-out group", counts.get("holdout", 0)),
            ("without consent", counts.get("no_consent", 0)),
        ]
    )
    if skipped:
        q += f"\nNot sent to: {skipped}."
    if counts.get("quiet_hours"):
        q += f"\n{counts['quiet_hours']:,} in their quiet hours get it when those end."
    return q


@dataclass(frozen=True)
class SendOutcome:
    """What a send did, by the send log's outcomes."""

    code: str
    sent: int
    skipped: dict[str, int]
    failed: dict[str, int]
    later: dict[str, int]

    @classmethod
    def of(cls, code: str, counts: dict[str, int], report: dict[str, Any]) -> SendOutcome:
        """From the dry-run ``counts`` just before the run and the run's ``report``: occasions
        the run did not claim were claimed before, by any job: already done."""
        d: dict[str, int] = report.get("delivered", {})
        claimed = int(report.get("claimed", {}).get(code, 0))
        return cls(
            code,
            d.get("sent", 0),
            {
                "already done": max(0, counts.get("occasions", 0) - claimed),
                "hold-out": counts.get("holdout", 0),
                "no consent": d.get("no_consent", 0),
                "frequency cap": d.get("capped", 0),
                "taken by another job": d.get("lost", 0),
            },
            {
                "bounced": d.get("bounced", 0),
                "refused": d.get("failed", 0),
                "uncertain": d.get("uncertain", 0),
            },
            {"quiet hours": d.get("delayed", 0), "retry": d.get("retry", 0)},
        )

    def line(self) -> str:
        head = (
            f"{self.code}: sent {self.sent:,} · skipped {sum(self.skipped.values()):,} · "
            f"failed {sum(self.failed.values()):,}"
        )
        if sum(self.later.values()):
            head += f" · later {sum(self.later.values()):,}"
        rest = [
            f"{name}: {_parts(list(group.items()))}"
            for name, group in (("skipped", self.skipped), ("failed", self.failed), ("later", self.later))
            if sum(group.values())
        ]
        return "\n".join([head, *rest])


class CampaignSend(Vertical):
    """The *Send* button, the hand-over's progress and the outcome."""

    class Counted(Message):
        def __init__(self, campaign: Campaign, config: JobConfig, counts: dict[str, int]) -> None:
            super().__init__()
            self.campaign, self.config, self.counts = campaign, config, counts

    class Progressed(Message):
        def __init__(self, done: int, total: int) -> None:
            super().__init__()
            self.done, self.total = done, total

    class Finished(Message):
        def __init__(self, outcome: SendOutcome) -> None:
            super().__init__()
            self.outcome = outcome

    class Failed(Message):
        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    def __init__(
        self,
        build: Callable[[], Campaign],
        open_stores: Callable[[], JobStores],
        clock: Callable[[], datetime],
        config_path: Path | None,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.build = build
        self.open_stores = open_stores
        self.clock = clock
        self.config_path = config_path

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Button("Send…", id="cmp-send", variant="error")
            yield Static("", id="send-msg")
        yield ProgressBar(id="send-progress", show_eta=False)
        yield Static("", id="send-result")

    def on_mount(self) -> None:
        self.query_one("#send-progress").display = False

    def _say(self, line: str) -> None:
        self.query_one("#send-msg", Static).update(line)

    def _busy(self, busy: bool) -> None:
        self.query_one("#cmp-send", Button).disabled = busy

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cmp-send":
            event.stop()
            self.begin()

    # -- 1. what it would be, and whom it reaches ---------------------------------------------------
    def _config(self, c: Campaign) -> JobConfig:
        """The campaigns file's gateways and settings, with ``c`` as the one campaign."""
        assert self.config_path is not None
        try:
            base = load_config(self.config_path)
        except OSError as exc:
            raise ConfigError(f"{self.config_path}: {exc.strerror or exc}") from None
        except (TypeError, ValueError) as exc:  # [smtp] with a key SmtpSettings does not know
            raise ConfigError(f"{self.config_path}: {exc}") from None
        same = next((x for x in base.campaigns if x.code == c.code), None)
        if same is not None:
            raise ConfigError(
                f"{c.code} is a campaign of {self.config_path.name} already (trigger {same.trigger}), "
                "sent by the daily job: give the one-off a code of its own"
            )
        if base.smtp is None and not base.sms_url:
            raise ConfigError(f"{self.config_path.name} has no [smtp] and no [sms]: nothing could be sent")
        return JobConfig(base.settings, base.smtp, base.sms_url, (c,))

    def _job(self, config: JobConfig) -> CampaignJob:
        job = CampaignJob(Path(), Path(), config, stores=self.open_stores(), own_stores=True)
        job.quiet = True
        return job

    def begin(self) -> None:
        if self.config_path is None:
            return self._say(NO_FILE)
        try:
            c = self.build()
            config = self._config(c)
        except (ConfigError, SegmentError) as exc:
            return self._say(f"not sent: {exc}")
        self._busy(True)
        self.query_one("#send-result", Static).update("")
        self._say(f"counting whom {c.code} reaches…")
        now = self.clock()

        def count() -> None:
            try:
                job = self._job(config)
                try:
                    counts = job.run_daily(now, dry_run=True)["campaigns"][c.code]["counts"]
                finally:
                    job.close()
            except Exception as exc:  # a template error is the marketer's to fix: said, not raised
                self.post_message(self.Failed(f"not sent: {type(exc).__name__}: {exc}"))
                return
            self.post_message(self.Counted(c, config, counts))

        self.run_worker(count, thread=True, group="cmp-send", exclusive=True, exit_on_error=False)

    def on_campaign_send_counted(self, event: Counted) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._send(event.campaign, event.config)
            else:
                self._busy(False)
                self._say(f"not sent: {event.campaign.code}")

        self._say(f"{event.campaign.code}: confirm to send")
        self.app.push_screen(Confirm(reach_question(event.campaign.code, event.counts), "Send"), answered)

    # -- 2. the run ---------------------------------------------------------------------------------
    def _send(self, c: Campaign, config: JobConfig) -> None:
        bar = self.query_one("#send-progress", ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True
        self.call_after_refresh(bar.scroll_visible)
        self._say(f"sending {c.code}: claiming the members…")
        now = self.clock()

        def run() -> None:
            try:
                job = self._job(config)

                def told(done: int, total: int) -> None:
                    self.post_message(self.Progressed(done, total))

                job.on_progress = told
                try:
                    counts = job.run_daily(now, dry_run=True)["campaigns"][c.code]["counts"]
                    report = job.run_daily(now)
                finally:
                    job.close()
            except Exception as exc:  # what was decided is in the send log: a re-send sends no more
                self.post_message(self.Failed(f"send stopped: {type(exc).__name__}: {exc}"))
                return
            self.post_message(self.Finished(SendOutcome.of(c.code, counts, report)))

        self.run_worker(run, thread=True, group="cmp-send", exclusive=True, exit_on_error=False)

    def on_campaign_send_progressed(self, event: Progressed) -> None:
        self.query_one("#send-progress", ProgressBar).update(total=max(event.total, 1), progress=event.done)
        self._say(f"sending: {event.done:,} of {event.total:,} done")

    def on_campaign_send_finished(self, event: Finished) -> None:
        bar = self.query_one("#send-progress", ProgressBar)
        bar.update(total=max(bar.total or 1, 1), progress=max(bar.total or 1, 1))
        self._busy(False)
        self._say(f"done: {event.outcome.code}")
        result = self.query_one("#send-result", Static)
        result.update(event.outcome.line())
        self.call_after_refresh(result.scroll_visible)

    def on_campaign_send_failed(self, event: Failed) -> None:
        self.query_one("#send-progress").display = False
        self._busy(False)
        self._say(event.line)
