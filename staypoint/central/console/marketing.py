"""The console's Marketing tab: segments (saved filters) and one-off campaigns, without Python.

A segment is built from a few fields (tiers, home properties, properties stayed at,
languages, consent, a points floor, a last stay after a day), previewed (how many members
and the first ten) and saved as a new version (``Segments.save``: a campaign names the
version it was approved with). A one-off campaign over a saved segment takes the shipped
``one_off`` template or a subject and text of its own; "Preview message" renders the first
member's message exactly as the campaign job would (``CampaignJob.message_for``), "Dry run"
counts today's recipients with the engine's own dry run (nothing is logged or sent), and
"Send…" (``campaign_send.CampaignSend``) runs it for real after a confirm.

On either ledger store, as the campaign job runs (``open_stores_at``). Styles: ``marketing.tcss``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Label, Static, TextArea

from staypoint.central.campaigns.config import Campaign, ConfigError, JobConfig, with_default_templates
from staypoint.central.campaigns.engine import CampaignJob, open_stores_at
from staypoint.central.campaigns.segments import Segment, SegmentError, Segments
from staypoint.central.campaigns.templates import DEFAULTS, Template
from staypoint.central.console.campaign_send import CampaignSend
from staypoint.central.console.desk import Desk, Staff
from staypoint.loyalty.events import iso

_FIELDS = (
    ("seg-tiers", "tiers (comma list, e.g. GOLD,PLATINUM)", "tiers"),
    ("seg-home", "home properties (SHA,BJS)", "home_properties"),
    ("seg-stayed", "stayed at (SHA,HKG)", "properties"),
    ("seg-langs", "languages (en,zh)", "languages"),
    ("seg-consent", "consent: email, sms or any", "consent"),
    ("seg-points", "points at least", "points_min"),
    ("seg-after", "last stay after (YYYY-MM-DD)", "last_stay_after"),
)


def _location(desk: Desk) -> tuple[str, str] | None:
    """Where the desk's ledger and profiles are, as ``open_stores_at`` takes them (a SQLite
    ledger's path or a PostgreSQL URL; the profiles' file or URL); None when not known."""
    store, profiles = desk.ledger.store, desk.services.profiles
    ledger = getattr(store, "url", None) or getattr(store, "path", None)
    where = getattr(profiles, "url", None) or getattr(profiles, "path", None)
    return (str(ledger), str(where)) if ledger is not None and where is not None else None


def segment_from_fields(values: dict[str, str]) -> Segment:
    """The segment the form describes (raises ``SegmentError`` with the field named)."""
    raw: dict[str, Any] = {}
    for _id, _hint, key in _FIELDS:
        text = values.get(key, "").strip()
        if not text:
            continue
        if key in ("tiers", "home_properties", "properties", "languages"):
            raw[key] = [p.strip().upper() if key != "languages" else p.strip() for p in text.split(",") if p]
        elif key == "points_min":
            if not text.isdigit():
                raise SegmentError("points at least: a whole number")
            raw[key] = int(text)
        elif key == "last_stay_after":
            try:
                date.fromisoformat(text)
            except ValueError:
                raise SegmentError("last stay after: a day, YYYY-MM-DD") from None
            raw[key] = text
        else:
            raw[key] = text
    return Segment.from_dict(raw)


class MarketingView(Vertical):
    """Segments and one-off campaigns (the Marketing tab's body)."""

    def __init__(
        self,
        desk: Desk,
        staff: Staff,
        clock: Callable[[], datetime],
        campaigns: Path | None = None,
        **kw: Any,
    ) -> None:
        """``campaigns``: the campaigns file (gateways, settings) *Send* runs with."""
        super().__init__(**kw)
        self.desk = desk
        self.staff = staff
        self.clock = clock
        self.campaigns = campaigns

    def compose(self) -> ComposeResult:
        if _location(self.desk) is None:
            yield Static("Segments and campaigns need the ledger's and the profiles' locations.")
            return
        with VerticalScroll(id="mkt-scroll"):
            yield Label("Segment", classes="mkt-head")
            with Horizontal(classes="row"):
                yield Input(placeholder="segment code, e.g. spa-lovers", id="seg-code")
                yield Button("Preview", id="seg-preview")
                yield Button("Save version", id="seg-save", variant="primary")
            with Horizontal(classes="mkt-fields"):
                for fid, hint, _key in _FIELDS:
                    yield Input(placeholder=hint, id=fid, classes="mkt-field")
            yield Static("", id="seg-msg")
            yield DataTable(id="seg-sample", cursor_type="row")
            yield Label("One-off campaign", classes="mkt-head")
            with Horizontal(classes="row"):
                yield Input(placeholder="campaign code, e.g. SPA-WEEKEND", id="cmp-code")
                yield Input(placeholder="subject (empty: the shipped one-off template)", id="cmp-subject")
                yield Button("Preview message", id="cmp-preview")
                yield Button("Dry run", id="cmp-dry", variant="warning")
            yield TextArea("", id="cmp-text")
            yield Static("", id="cmp-out")
            where = _location(self.desk)
            assert where is not None
            yield CampaignSend(
                self.campaign, lambda: open_stores_at(*where), self.clock, self.campaigns, id="cmp-send-box"
            )

    def on_mount(self) -> None:
        for table in self.query("#seg-sample").results(DataTable):
            table.add_columns("Member", "Name", "Tier", "Points", "Last stay", "Stays", "Language")

    # -- helpers ------------------------------------------------------------------------------------
    def _value(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value.strip()

    def _segment(self) -> Segment:
        return segment_from_fields({key: self._value(fid) for fid, _h, key in _FIELDS})

    def _segments(self) -> Segments:
        where = _location(self.desk)
        assert where is not None
        ledger, profiles = where
        if ledger.startswith(("postgresql://", "postgres://")):
            return Segments.on_postgresql(ledger, profiles)
        return Segments(Path(ledger), Path(profiles))

    def _msg(self, wid: str, text: str) -> None:
        self.query_one(f"#{wid}", Static).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        handlers = {
            "seg-preview": self.preview_segment,
            "seg-save": self.save_segment,
            "cmp-preview": self.preview_message,
            "cmp-dry": self.dry_run,
        }
        handler = handlers.get(event.button.id or "")
        if handler is not None:
            event.stop()
            handler()

    # -- segments -----------------------------------------------------------------------------------
    def preview_segment(self) -> None:
        try:
            seg = self._segment()
        except SegmentError as exc:
            return self._msg("seg-msg", f"not a segment: {exc}")
        segs = self._segments()
        try:
            n, sample = segs.count(seg), segs.preview(seg, 10)
        finally:
            segs.close()
        table = self.query_one("#seg-sample", DataTable)
        table.clear()
        for r in sample:
            table.add_row(
                str(r["member"]),
                str(r["full_name"] or ""),
                str(r["tier"]),
                f"{int(r['points'] or 0):,}",
                str(r["last_stay"] or ""),
                str(r["stays"] or 0),
                str(r["language"] or ""),
            )
        self._msg("seg-msg", f"{n:,} members in this segment (first {len(sample)} below)")

    def save_segment(self) -> None:
        code = self._value("seg-code")
        if not code:
            return self._msg("seg-msg", "give the segment a code first")
        try:
            seg = self._segment()
        except SegmentError as exc:
            return self._msg("seg-msg", f"not saved: {exc}")
        segs = self._segments()
        try:
            version = segs.save(code, seg, iso(self.clock()), self.staff.id)
            n = segs.count(seg)
        finally:
            segs.close()
        self._msg("seg-msg", f"saved {code} version {version}: {n:,} members today")

    # -- campaigns ----------------------------------------------------------------------------------
    def campaign(self) -> Campaign:
        """The one-off campaign the form describes, over the latest version of the segment."""
        code = self._value("cmp-code")
        segment = self._value("seg-code")
        if not code or not segment:
            raise ConfigError("a campaign code and a saved segment's code, both")
        segs = self._segments()
        try:
            versions = segs.versions(segment)
        finally:
            segs.close()
        if not versions:
            raise ConfigError(f"save segment {segment!r} first")
        today = self.clock().date()
        subject = self._value("cmp-subject")
        text = self.query_one("#cmp-text", TextArea).text
        templates: dict[str, Template] = {}
        if subject or text.strip():
            base = DEFAULTS["one_off"]["en"]
            templates["en"] = Template(subject or base.subject, text if text.strip() else base.text, base.sms)
        return with_default_templates(
            Campaign(
                code=code,
                trigger="one_off",
                channels=("email", "sms"),
                segment=segment,
                segment_version=versions[-1][0],
                starts=today,
                ends=today,
                templates=templates,
            )
        )

    def _job(self, c: Campaign) -> CampaignJob:
        where = _location(self.desk)
        assert where is not None
        stores = open_stores_at(*where)
        job = CampaignJob(
            Path(), Path(), JobConfig(campaigns=(c,)), gateways={}, stores=stores, own_stores=True
        )
        job.quiet = True
        return job

    def preview_message(self) -> None:
        try:
            c = self.campaign()
        except (ConfigError, SegmentError) as exc:
            return self._msg("cmp-out", f"no preview: {exc}")
        job = self._job(c)
        try:
            member = next(
                iter(job.segments.members(job.segments.get(c.segment or "", c.segment_version))), None
            )
            if member is None:
                return self._msg("cmp-out", "the segment has no members today")
            m = job.message_for(c, member, f"{c.code}:preview", "email", {})
        except Exception as exc:  # a template error is the marketer's to fix: shown, not raised
            return self._msg("cmp-out", f"template error: {exc}")
        finally:
            job.close()
        self._msg("cmp-out", f"to {member} <{m.to or 'no e-mail'}>\nSubject: {m.subject}\n\n{m.text}")

    def dry_run(self) -> None:
        try:
            c = self.campaign()
        except (ConfigError, SegmentError) as exc:
            return self._msg("cmp-out", f"no dry run: {exc}")
        job = self._job(c)
        try:
            out = job.run_daily(self.clock(), dry_run=True)["campaigns"][c.code]["counts"]
        finally:
            job.close()
        self._msg(
            "cmp-out",
            "dry run, nothing sent: "
            + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in out.items())
            + "\nTo send it: Send… below.",
        )
