"""The daily campaign job: find occasions, claim them once, give bonuses, hand messages over.

One pass (``CampaignJob.run_daily``):

1. refresh the reporting projection (stays, member summary) it selects from;
2. recover: rows left ``handing`` by a dead process become ``uncertain`` (listed, never
   resent); rows a dead process had claimed but not yet handed over are taken over;
3. for every campaign, find the occasions of the day (birthday in the member's own time
   zone, anniversary, upgrade, Nth stay, points expiring, win-back, one-off segment) and
   claim each ``(member, occasion)`` with ``INSERT OR IGNORE`` under SQLite's write lock:
   the insert that wins owns the send, any other job (a re-run, a second process) finds
   the key taken. The bonus event is queued in the same transaction, so it is given
   exactly when the claim is made;
4. ingest the queued bonus events into the ledger (stream ``campaigns``);
5. deliver: every claimed row, plus retries and quiet-hours delays now due, is checked
   again (consent, bounce, frequency cap, quiet hours), marked ``handing`` in a committed
   write, handed to the gateway, and marked with the gateway's answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time as _time
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from staypoint.central.campaigns import store as st
from staypoint.central.campaigns.channels import AppriseSmsGateway, Gateway, Message, SmtpGateway
from staypoint.central.campaigns.config import Campaign, JobConfig, Settings
from staypoint.central.campaigns.segments import Segments, build_sql
from staypoint.central.campaigns.templates import pick, render
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import Profile, Profiles, ProfileStore, open_profiles
from staypoint.central.store_sqlite import SqliteLedgerStore
from staypoint.loyalty.events import iso
from staypoint.loyalty.expiry import add_months
from staypoint.loyalty.program import Program, default_program
from staypoint.loyalty.vouchers import make_code
from staypoint.progress import progress

CLAIM_BATCH = 5000
# Rows reserved (one durable commit) and read with their profiles per step of delivery:
# also the most sends a machine crash (not a process crash) can leave uncertain.
DELIVER_CHUNK = 500
# Outcomes that hand nothing over (no consent, capped, quiet hours) wait at most this many
# rows for the next hand-over mark to ride along with.
MAX_DEFERRED = 1000


@dataclass
class Occasion:
    """One reason to write to one member today."""

    member: str
    occasion: str  # "<campaign code>:<what>", the send log's key with the member
    fields: dict[str, Any] = field(default_factory=dict)


def unsubscribe_token(secret: str, member: str, channel: str) -> str:
    """The token in a member's unsubscribe link (HMAC: a link cannot be forged for another member)."""
    mac = hmac.new(secret.encode(), f"{member}:{channel}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def unsubscribe(profiles: ProfileStore, secret: str, member: str, channel: str, token: str, at: str) -> bool:
    """Handle a click on an unsubscribe link (or a List-Unsubscribe one-click POST)."""
    if not hmac.compare_digest(token, unsubscribe_token(secret, member, channel)):
        return False
    profiles.set_consent(member, channel, False, source="unsubscribe-link", at=at)
    return True


def in_holdout(member: str, campaign: str, percent: int) -> bool:
    """Stable hold-out draw: the same member is always in or out of a campaign's control group."""
    return percent > 0 and zlib.crc32(f"{campaign}:{member}".encode()) % 100 < percent


def quiet_until(settings: Settings, tz_name: str, now: datetime) -> datetime | None:
    """When quiet hours end for a member in ``tz_name``, or None when it is not quiet now."""
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz)
    t, qs, qe = local.time().replace(tzinfo=None), settings.quiet_start, settings.quiet_end
    quiet = (qs <= t or t < qe) if qs > qe else (qs <= t < qe)
    if not quiet:
        return None
    end_day = local.date() if t < qe else local.date() + timedelta(days=1)
    end = datetime.combine(end_day, qe, tzinfo=tz)
    return end.astimezone(UTC)


def _first_name(p: Profile | None, language: str) -> str:
    if p is None:
        return ""
    # Chinese names are written family name first and addressed in full.
    return p.full_name if language == "zh" else p.full_name.split()[0]


@dataclass
class JobStores:
    """What a campaign job works on: its send log and outbox, the segments with their reading
    connection (the ledger's tables, the profiles file attached), the profiles, the ledger."""

    db: st.CampaignDb
    segments: Segments
    profiles: Profiles
    ledger: Ledger

    def close(self) -> None:
        self.segments.close()  # on PostgreSQL it closes ``db`` too (the same object)
        self.profiles.close()
        self.ledger.store.close()
        if self.db is not self.segments.db:
            self.db.close()


def open_stores_at(store: str, profiles: str | None = None, *, cache: Path | None = None) -> JobStores:
    """A campaign job's stores over the ledger ``store`` names (``sqlite:``/``postgresql://``) and
    the profiles ``profiles`` names (on PostgreSQL, by default the ledger's own database).
    On PostgreSQL the send log, outbox and segments live beside the ledger (``PgCampaignDb``),
    and occasions and segments are read from its report cache (``cache``, see ``projection``)."""
    from staypoint.central.profiles import profiles_location
    from staypoint.central.store import open_ledger_store, parse_store_url

    parsed = parse_store_url(store)
    where = profiles_location(profiles, store)
    if not parsed.is_pg:
        if parse_store_url(where).is_pg:
            from staypoint.central.store import StoreConfigError

            raise StoreConfigError("campaigns on a SQLite ledger need the profiles as a SQLite file")
        return open_stores(Path(parsed.path or ""), Path(where))
    segments = Segments.on_postgresql(parsed.url, where, cache=cache)
    return JobStores(
        db=segments.db,
        segments=segments,
        profiles=open_profiles(where),
        ledger=Ledger(open_ledger_store(parsed.url, must_exist=True)),
    )


def open_stores(ledger_path: Path, profiles_path: Path) -> JobStores:
    """Open a campaign job's stores over one ledger file and one profiles file."""
    ledger_path, profiles_path = Path(ledger_path), Path(profiles_path)
    return JobStores(
        db=st.CampaignDb(ledger_path),
        segments=Segments(ledger_path, profiles_path),
        profiles=ProfileStore(profiles_path),
        ledger=Ledger(SqliteLedgerStore(ledger_path)),
    )


class CampaignJob:
    """Campaigns over one ledger file and one profiles file.

    ``stores`` (from :func:`open_stores` or :func:`open_stores_at`) are the caller's to close,
    unless ``own_stores``; without them the job opens its own over the two paths and closes
    them in :meth:`close`.
    """

    def __init__(
        self,
        ledger_path: Path,
        profiles_path: Path,
        config: JobConfig,
        *,
        gateways: dict[str, Gateway] | None = None,
        program: Program | None = None,
        stores: JobStores | None = None,
        own_stores: bool = False,
    ) -> None:
        self.config = config
        self.settings = config.settings
        self._own_stores = stores is None or own_stores
        self.stores = open_stores(ledger_path, profiles_path) if stores is None else stores
        self.db = self.stores.db
        self.segments = self.stores.segments
        # One reading connection with the profiles file attached: occasions join both.
        self.conn = self.segments.conn
        self.prof = self.segments.prof
        self.profiles = self.stores.profiles
        self.ledger = self.stores.ledger
        self.program = program or self.ledger.program() or default_program()
        self.owner = st.owner_id()
        if gateways is None:
            gateways = {}
            if config.smtp is not None:
                gateways["email"] = SmtpGateway(config.smtp)
            if config.sms_url:
                gateways["sms"] = AppriseSmsGateway(config.sms_url)
        self.gateways = gateways
        # No progress bar when True (a bar is drawn on a terminal only, see staypoint.progress).
        self.quiet = False
        # Told ``(done, total)`` as messages are handed over: a screen's own progress bar (the
        # console's Send), where no terminal bar can be drawn.
        self.on_progress: Callable[[int, int], None] | None = None

    def close(self) -> None:
        for g in self.gateways.values():
            g.close()
        if self._own_stores:
            self.stores.close()

    # -- for the jobs that ride along (referrals.award_due) ---------------------------------

    def query(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows from the job's reading connection: the ledger's tables, the profiles attached."""
        return self.conn.execute(sql, args).fetchall()

    def queue_once(
        self,
        claim_sql: str,
        claim_args: tuple[Any, ...],
        bonuses: list[tuple[str, dict[str, Any]]],
        now: datetime,
    ) -> bool:
        """In one transaction of the job's outbox: ``claim_sql`` (an ``INSERT OR IGNORE`` that
        marks a reward given) and, only if it inserted the row, each ``(member, data)`` bonus as
        a ``points.adjusted`` event (``data["reason"]`` its reason). False: another job got there
        first, nothing queued."""
        with self.db.tx() as conn:
            if conn.execute(claim_sql, claim_args).rowcount != 1:
                return False
            for member, data in bonuses:
                self.db.queue_bonus_event(
                    member, "points.adjusted", data, now, self.program.version, data["reason"]
                )
        return True

    # -- occasions -------------------------------------------------------------------------

    def _member_rows(self, sql: str, args: list[Any]) -> Iterator[tuple[Any, ...]]:
        yield from self.conn.execute(sql, args)

    def occasions(self, c: Campaign, now: datetime) -> Iterator[Occasion]:
        """Today's occasions for campaign ``c`` (not yet checked against the send log)."""
        today = now.date()
        if (c.starts and today < c.starts) or (c.ends and today > c.ends):
            return
        p = self.prof
        if c.trigger in ("birthday", "anniversary"):
            col = "birth_date" if c.trigger == "birthday" else "joined"
            # Candidates by UTC date ±1 day; the member's own time zone decides below.
            days = {(today + timedelta(days=d)).strftime("%m-%d") for d in (-1, 0, 1)}
            if {"02-28", "03-01"} & days:
                days.add("02-29")
            marks = ", ".join("?" * len(days))
            sql = (
                f"SELECT pr.member, pr.{col}, pr.time_zone FROM {p}.profiles pr "
                f"JOIN rpt_members m ON m.member = pr.member "
                f"WHERE substr(pr.{col}, 6, 5) IN ({marks})"
            )
            for member, day_s, tz in self._member_rows(sql, sorted(days)):
                try:
                    local = now.astimezone(ZoneInfo(tz or "UTC")).date()
                except (ZoneInfoNotFoundError, ValueError):
                    local = today
                d = date.fromisoformat(day_s)
                mmdd = (d.month, d.day)
                leap_fallback = (
                    mmdd == (2, 29) and (local.month, local.day) == (2, 28) and not _leap(local.year)
                )
                if (local.month, local.day) != mmdd and not leap_fallback:
                    continue
                years = local.year - d.year
                if c.trigger == "anniversary" and years < 1:
                    continue
                yield Occasion(member, f"{c.code}:{local.year}", {"years": years})
        elif c.trigger == "tier_upgrade":
            since = iso(now - timedelta(days=7))
            ranks = {t.code: t.rank for t in self.program.tiers}
            for member, before, after, at in self._member_rows(
                "SELECT member, tier, tier_after, at FROM rpt_stays WHERE at >= ? AND tier_after IS NOT NULL "
                "AND tier_after <> tier AND voided = 0",
                [since],
            ):
                if ranks.get(after, -1) > ranks.get(before, -1):
                    yield Occasion(member, f"{c.code}:{after}:{at[:4]}", {"new_tier": after})
        elif c.trigger == "nth_stay":
            since = (today - timedelta(days=14)).isoformat()
            for (member,) in self._member_rows(
                "SELECT member FROM rpt_members WHERE stays >= ? AND stays < ? AND last_stay >= ?",
                [c.nth, c.nth + 3, since],
            ):
                yield Occasion(member, f"{c.code}:{c.nth}", {"nth": c.nth})
        elif c.trigger == "points_expiring":
            months = self.program.expiry.months_without_activity
            lo = add_months(today, -months)
            hi = add_months(today + timedelta(days=self.settings.expiring_days), -months)
            for member, last, _points in self._member_rows(
                "SELECT member, last_activity, points FROM rpt_members "
                "WHERE points > 0 AND last_activity > ? AND last_activity <= ?",
                [(lo - timedelta(days=1)).isoformat(), hi.isoformat()],
            ):
                when = add_months(date.fromisoformat(last), months)
                if today < when <= today + timedelta(days=self.settings.expiring_days):
                    yield Occasion(member, f"{c.code}:{when.isoformat()}", {"expiry_date": when.isoformat()})
        elif c.trigger == "win_back":
            edge = today - timedelta(days=self.settings.winback_days)
            # A lapse is noticed within the catch-up window (a job that missed days still
            # sees it); members lapsed long before the campaign started are a one-off's job.
            start = edge - timedelta(days=self.settings.winback_catchup_days)
            for member, last in self._member_rows(
                "SELECT member, last_stay FROM rpt_members WHERE last_stay < ? AND last_stay >= ?",
                [edge.isoformat(), start.isoformat()],
            ):
                yield Occasion(member, f"{c.code}:{last}", {"last_stay": last})
        elif c.trigger == "one_off":
            assert c.segment is not None
            seg = self.segments.get(c.segment, c.segment_version)
            sql, args = build_sql(seg, p)
            for (member,) in self._member_rows(sql, args):
                yield Occasion(member, c.code, {})

    # -- claiming ------------------------------------------------------------------------------

    def _claim(self, c: Campaign, batch: list[Occasion], now: datetime) -> int:
        """Insert the send-log rows (one transaction); queue the bonus for each row won."""
        won = 0
        at = iso(now)
        with self.db.tx() as conn:
            for oc in batch:
                holdout = in_holdout(oc.member, c.code, c.holdout_percent)
                status = st.HOLDOUT if holdout else st.PENDING
                cur = conn.execute(
                    "INSERT OR IGNORE INTO cmp_sends (member, occasion, campaign, status, owner, claimed_at, "
                    "holdout, bonus_points, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        oc.member,
                        oc.occasion,
                        c.code,
                        status,
                        None if holdout else self.owner,
                        at,
                        int(holdout),
                        0 if holdout else c.bonus_points,
                        "hold-out group" if holdout else None,
                    ),
                )
                if cur.rowcount != 1:
                    continue  # claimed before: by an earlier run or by the other job
                won += 1
                if holdout:
                    continue
                self._queue_bonus(c, oc, now)
        return won

    def _queue_bonus(self, c: Campaign, oc: Occasion, now: datetime) -> None:
        reason = f"campaign {c.code} ({oc.occasion})"
        if c.bonus_points:
            self.db.queue_bonus_event(
                oc.member,
                "points.adjusted",
                {"points": c.bonus_points, "reason": reason, "campaign": c.code, "occasion": oc.occasion},
                now,
                self.program.version,
                reason,
            )
        reward = self.program.reward(c.bonus_voucher) if c.bonus_voucher else None
        if reward is not None:
            # A gift voucher is the reward's points given and redeemed at once: the ledger
            # books a voucher every node accepts, and the member's balance does not move.
            self.db.queue_bonus_event(
                oc.member,
                "points.adjusted",
                {"points": reward.points, "reason": reason, "campaign": c.code, "gift": reward.code},
                now,
                self.program.version,
                reason,
            )
            self.db.queue_bonus_event(
                oc.member,
                "points.redeemed",
                {
                    "reward": reward.code,
                    "points": reward.points,
                    "voucher": make_code(hashlib.sha256(f"{oc.member}:{oc.occasion}".encode()).digest()[:8]),
                    "serial": 0,
                    "expires": (now.date() + timedelta(days=reward.voucher_days)).isoformat(),
                    "token": "",
                    "campaign": c.code,
                },
                now,
                self.program.version,
                reason,
            )

    def flush_bonuses(self, now: datetime) -> int:
        """Ingest queued bonus events into the ledger, from its high-water on, in order."""
        applied = 0
        while True:
            hw = self.ledger.store.high_water(st.CAMPAIGN_NODE, st.CAMPAIGN_EPOCH)
            batch = self.db.outbox_after(hw)
            if not batch:
                return applied
            result = self.ledger.ingest(st.CAMPAIGN_NODE, batch, now)
            applied += result.applied
            if result.applied == 0 and result.skipped == 0:
                return applied  # nothing moved (a gap or rejects): alarmed by the ledger

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, codes: Collection[str] | None = None) -> dict[str, int]:
        """Rows of dead owners: ``handing`` -> uncertain; ``pending`` -> taken over by us;
        ``reserved`` -> taken over when the owner died in this machine's current boot (its
        hand-over marks cannot have been lost), else uncertain (see ``deliver``).

        With ``codes`` only those campaigns' rows are taken over (a run of some campaigns, as
        the console's Send, must not hold rows it will not deliver); any row is marked uncertain."""
        wall = _time.time()
        counts = {"uncertain": 0, "taken_over": 0}
        rows = self.db.conn.execute(
            "SELECT member, occasion, status, owner, handed_wall, campaign FROM cmp_sends "
            "WHERE status IN (?, ?, ?) AND owner IS NOT NULL AND owner <> ?",
            (st.HANDING, st.PENDING, st.RESERVED, self.owner),
        ).fetchall()
        for member, occasion, status, owner, handed_wall, campaign in rows:
            if st.owner_alive(
                owner, lease_seconds=self.settings.lease_seconds, handed_wall=handed_wall, wall_now=wall
            ):
                continue
            with self.db.tx() as conn:
                if status == st.HANDING or (status == st.RESERVED and not st.same_boot(owner)):
                    why = (
                        f"cut off mid-hand-over (owner {owner} gone); check the gateway's log"
                        if status == st.HANDING
                        else f"reserved for hand-over when its owner {owner} went down with the "
                        "machine; check the gateway's log"
                    )
                    cur = conn.execute(
                        "UPDATE cmp_sends SET status = ?, outcome = ? WHERE member = ? AND occasion = ? "
                        "AND status = ? AND owner = ?",
                        (st.UNCERTAIN, why, member, occasion, status, owner),
                    )
                    counts["uncertain"] += cur.rowcount
                elif codes is None or campaign in codes:
                    cur = conn.execute(
                        "UPDATE cmp_sends SET owner = ?, status = ? WHERE member = ? AND occasion = ? "
                        "AND status = ? AND owner = ?",
                        (self.owner, st.PENDING, member, occasion, status, owner),
                    )
                    counts["taken_over"] += cur.rowcount
        return counts

    # -- delivery --------------------------------------------------------------------------------

    def _fields(
        self, member: str, p: Profile | None, c: Campaign, channel: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        lang = p.language if p else "en"
        row = self.conn.execute(
            "SELECT tier, points, last_stay FROM rpt_members WHERE member = ?", (member,)
        ).fetchone()
        tier, points, last_stay = row if row else (self.program.base_tier.code, 0, None)
        tier = extra.get("new_tier", tier)
        try:
            tier_name = self.program.tier(tier).name
        except KeyError:
            tier_name = tier
        fields: dict[str, Any] = {
            "member": member,
            "name": p.full_name if p else member,
            "first_name": _first_name(p, lang),
            "language": lang,
            "tier": tier,
            "tier_name": tier_name,
            "points": int(points or 0),
            "programme": self.program.name,
            "bonus_points": c.bonus_points,
            "last_stay": last_stay or "",
            "expiry_date": "",
            "years": 0,
            "nth": c.nth,
            "offer": suggest_offer(self.conn, self.program, member, tier, lang) if c.suggest_offer else "",
            "referral_code": (p.referral_code or "") if p else "",
            "unsubscribe_url": self.settings.unsubscribe_url.format(
                member=member, channel=channel, token=unsubscribe_token(self.settings.secret, member, channel)
            ),
        }
        fields.update(extra)
        return fields

    def message_for(
        self,
        c: Campaign,
        member: str,
        occasion: str,
        channel: str,
        extra: dict[str, Any],
        profile: Profile | None = None,
    ) -> Message:
        """The message ``member`` gets for ``occasion`` on ``channel`` (also the per-member preview)."""
        p = profile if profile is not None else self.profiles.get(member)
        fields = self._fields(member, p, c, channel, extra)
        r = render(pick(c.templates, fields["language"]), fields)
        digest = hashlib.sha256(f"{member}|{occasion}".encode()).hexdigest()[:24]
        if channel == "email":
            return Message(
                "email",
                p.email if p and p.email else "",
                r.subject,
                r.text,
                r.html,
                fields["unsubscribe_url"],
                # Deterministic: whoever checks an uncertain send can search the gateway's
                # log for exactly this id.
                message_id=f"<{digest}@staypoint.campaigns>",
                headers={"X-Staypoint-Occasion": occasion},
            )
        return Message("sms", p.phone if p and p.phone else "", r.subject, r.sms, None, None, digest)

    def _extra_for(self, c: Campaign, member: str, occasion: str, p: Profile | None = None) -> dict[str, Any]:
        """Re-derive an occasion's fields from its key (a delayed send has no Occasion object)."""
        what = occasion.split(":", 1)[1] if ":" in occasion else ""
        if c.trigger in ("birthday", "anniversary"):
            p = p if p is not None else self.profiles.get(member)
            base = (p.birth_date if c.trigger == "birthday" else p.joined) if p else None
            return {"years": int(what) - base.year if base and what.isdigit() else 0}
        if c.trigger == "points_expiring":
            return {"expiry_date": what}
        if c.trigger == "win_back":
            return {"last_stay": what}
        if c.trigger == "tier_upgrade":
            return {"new_tier": what.split(":")[0]}
        return {}

    def _take_due(self, now: datetime, codes: Collection[str]) -> int:
        """Retries and quiet-hours delays of campaigns ``codes`` whose time has come: taken by
        one job only (another campaign's rows are left for a job that runs it)."""
        if not codes:
            return 0
        marks = ", ".join("?" * len(codes))
        with self.db.tx() as conn:
            cur = conn.execute(
                "UPDATE cmp_sends SET status = ?, owner = ? WHERE status IN (?, ?) AND next_at <= ? "
                f"AND campaign IN ({marks})",
                (st.PENDING, self.owner, st.RETRY, st.DELAYED, iso(now), *codes),
            )
        return int(cur.rowcount)

    def _profiles_of(self, members: list[str]) -> dict[str, Profile]:
        """Profiles of a chunk's members in one query (not one query per message)."""
        return self.profiles.many(members)

    def _sent_counts(self, members: list[str], now: datetime) -> dict[str, int]:
        """Messages sent to each of a chunk's members within the frequency-cap window."""
        marks = ", ".join("?" * len(members))
        since = iso(now - timedelta(days=self.settings.cap_days))
        return dict(
            self.db.conn.execute(
                f"SELECT member, count(*) FROM cmp_sends WHERE member IN ({marks}) AND status = ? "
                "AND done_at >= ? GROUP BY member",
                [*members, st.SENT, since],
            ).fetchall()
        )

    def deliver(self, now: datetime, campaigns: dict[str, Campaign]) -> dict[str, int]:
        """Hand over every pending row this job owns; returns counts by outcome.

        Writes per message: ONE commit, and it does not wait for the disk.

        - Each chunk of ``DELIVER_CHUNK`` rows is first *reserved* in one durable commit
          (fsync): ``pending`` -> ``reserved``.
        - Then, per message, one commit holds the outcome of message k (and any outcomes
          that handed nothing over: no consent, capped, quiet hours) together with the
          ``handing`` mark of message k+1. So at any moment at most one row of this job is
          ``handing``, as with a separate commit for each mark.
        - That per-message commit is written to the operating system, not synced
          (``tx(durable=False)``): a killed process loses none of it, so after a process
          death exactly one send at most is uncertain; ``reserved`` rows of a dead owner of
          the same boot were certainly not handed over and are taken over and sent.
        - A machine crash (power, kernel) may lose unsynced commits: a row may fall back
          from ``handing`` (or even ``sent``) to ``reserved``. Recovery cannot tell those
          from rows never handed over, so after a restart of the machine (another boot id)
          every ``reserved`` row of the dead owner becomes uncertain: up to one chunk is
          listed for a person - never resent. Batching widens the uncertain window only for
          a machine crash, and only to one chunk; it never allows a second send.
        """
        self._take_due(now, list(campaigns))
        counts: dict[str, int] = {}
        rows = self.db.conn.execute(
            "SELECT member, occasion, campaign, attempts FROM cmp_sends WHERE owner = ? AND status = ? "
            "ORDER BY member, occasion",
            (self.owner, st.PENDING),
        ).fetchall()
        deferred: list[tuple[str, tuple[Any, ...]]] = []
        rows = [r for r in rows if r[2] in campaigns]  # withdrawn campaigns: left pending, a person decides
        bar = progress("campaign messages", len(rows), quiet=self.quiet or not rows).start()
        told = self.on_progress or (lambda done, total: None)
        told(0, len(rows))
        try:
            for part in st.chunks(rows, DELIVER_CHUNK):
                part = self._reserve(part, deferred)
                members = sorted({r[0] for r in part})
                if not members:
                    continue
                profiles = self._profiles_of(members)
                sent = self._sent_counts(members, now)
                for member, occasion, code, attempts in part:
                    c = campaigns[code]
                    outcome = self._deliver_one(
                        c, member, occasion, int(attempts), now, profiles.get(member), sent, deferred
                    )
                    counts[outcome] = counts.get(outcome, 0) + 1
                    bar.advance(1)
                    told(bar.done, len(rows))
                    if len(deferred) >= MAX_DEFERRED:
                        self._commit(deferred, durable=False)
        finally:
            # Whatever happened (a gateway raising included), what was decided is written.
            self._commit(deferred, durable=True)
            bar.close()
        return counts

    def _reserve(
        self, part: list[tuple[Any, ...]], deferred: list[tuple[str, tuple[Any, ...]]]
    ) -> list[tuple[Any, ...]]:
        """Reserve a chunk for hand-over in one durable commit; the rows still ours."""
        kept = []
        wall = _time.time()
        with self.db.tx(durable=True) as conn:
            for sql, args in deferred:
                conn.execute(sql, args)
            for row in part:
                cur = conn.execute(
                    "UPDATE cmp_sends SET status = ?, handed_wall = ? WHERE member = ? AND occasion = ? "
                    "AND owner = ? AND status = ?",
                    (st.RESERVED, wall, row[0], row[1], self.owner, st.PENDING),
                )
                if cur.rowcount == 1:
                    kept.append(row)
        deferred.clear()
        return kept

    def _commit(
        self,
        deferred: list[tuple[str, tuple[Any, ...]]],
        *extra: tuple[str, tuple[Any, ...]],
        durable: bool = False,
    ) -> int:
        """Write the deferred outcomes (and ``extra``) in one transaction; rowcount of the last."""
        if not deferred and not extra:
            return 0
        rowcount = 0
        with self.db.tx(durable=durable) as conn:
            for sql, args in (*deferred, *extra):
                rowcount = conn.execute(sql, args).rowcount
        deferred.clear()
        return rowcount

    def _finish_sql(
        self, member: str, occasion: str, status: str, now: datetime, outcome: str
    ) -> tuple[str, tuple[Any, ...]]:
        return (
            "UPDATE cmp_sends SET status = ?, outcome = ?, done_at = ? "
            "WHERE member = ? AND occasion = ? AND owner = ?",
            (status, outcome, iso(now), member, occasion, self.owner),
        )

    def _deliver_one(
        self,
        c: Campaign,
        member: str,
        occasion: str,
        attempts: int,
        now: datetime,
        p: Profile | None,
        sent: dict[str, int],
        deferred: list[tuple[str, tuple[Any, ...]]],
    ) -> str:
        channel = next(
            (ch for ch in c.channels if p is not None and p.may_contact(ch) and ch in self.gateways), None
        )
        if channel is None:
            why = "bounced address" if p and p.email_bounced and "email" in c.channels else "no consent"
            deferred.append(self._finish_sql(member, occasion, st.NO_CONSENT, now, why))
            return st.NO_CONSENT
        assert p is not None
        resume = quiet_until(self.settings, p.time_zone, now)
        if resume is not None:
            # Delay, never drop: the row goes back to the queue, due at the end of quiet hours.
            deferred.append(
                (
                    "UPDATE cmp_sends SET status = ?, next_at = ?, owner = NULL, outcome = ? "
                    "WHERE member = ? AND occasion = ? AND owner = ? AND status = ?",
                    (st.DELAYED, iso(resume), "quiet hours", member, occasion, self.owner, st.RESERVED),
                )
            )
            return st.DELAYED
        if sent.get(member, 0) >= self.settings.cap_messages:
            cap = f"frequency cap {self.settings.cap_messages}/{self.settings.cap_days}d"
            deferred.append(self._finish_sql(member, occasion, st.CAPPED, now, cap))
            return st.CAPPED
        msg = self.message_for(c, member, occasion, channel, self._extra_for(c, member, occasion, p), p)
        # The hand-over mark, committed (durably) together with the outcomes decided so far.
        won = self._commit(
            deferred,
            (
                "UPDATE cmp_sends SET status = ?, channel = ?, address = ?, handed_at = ?, handed_wall = ?, "
                "attempts = attempts + 1, message_id = ? WHERE member = ? AND occasion = ? AND owner = ? "
                "AND status = ?",
                (
                    st.HANDING,
                    channel,
                    msg.to,
                    iso(now),
                    _time.time(),
                    msg.message_id,
                    member,
                    occasion,
                    self.owner,
                    st.RESERVED,
                ),
            ),
        )
        if won != 1:
            return "lost"  # another job took it over (it thought we were dead): theirs now
        result = self.gateways[channel].send(msg)
        if result.verdict == "sent":
            sent[member] = sent.get(member, 0) + 1
            deferred.append(self._finish_sql(member, occasion, st.SENT, now, result.detail))
        elif result.verdict == "bounced":
            self.profiles.mark_bounced(msg.to, iso(now))
            # Later rows of this chunk see the bounce too (their profile was read before it).
            object.__setattr__(p, "email_bounced", True)
            deferred.append(self._finish_sql(member, occasion, st.BOUNCED, now, result.detail))
        elif result.verdict == "uncertain":
            deferred.append(self._finish_sql(member, occasion, st.UNCERTAIN, now, result.detail))
        elif result.verdict == "retry" and attempts + 1 < self.settings.max_attempts:
            wait = timedelta(minutes=self.settings.backoff_minutes * 2**attempts)
            deferred.append(
                (
                    "UPDATE cmp_sends SET status = ?, next_at = ?, owner = NULL, outcome = ? "
                    "WHERE member = ? AND occasion = ? AND owner = ?",
                    (st.RETRY, iso(now + wait), result.detail, member, occasion, self.owner),
                )
            )
            return st.RETRY
        else:
            deferred.append(self._finish_sql(member, occasion, st.FAILED, now, result.detail))
            return st.FAILED
        return {"sent": st.SENT, "bounced": st.BOUNCED, "uncertain": st.UNCERTAIN}[result.verdict]

    # -- the job ----------------------------------------------------------------------------------

    def run_daily(self, now: datetime, *, dry_run: bool = False, samples: int = 3) -> dict[str, Any]:
        """Evaluate every campaign as of ``now`` and send; ``dry_run`` counts and renders only."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware UTC")
        t0 = _time.perf_counter()
        self.segments.refresh()
        campaigns = {c.code: c for c in self.config.campaigns}
        if dry_run:
            return self._dry_run(now, samples)
        t1 = _time.perf_counter()
        report: dict[str, Any] = {"recovered": self.recover(campaigns), "claimed": {}}
        t2 = _time.perf_counter()
        for c in campaigns.values():
            won = 0
            batch: list[Occasion] = []
            for oc in self.occasions(c, now):
                batch.append(oc)
                if len(batch) >= CLAIM_BATCH:
                    won += self._claim(c, batch, now)
                    batch = []
            if batch:
                won += self._claim(c, batch, now)
            report["claimed"][c.code] = won
        t3 = _time.perf_counter()
        report["bonus_events"] = self.flush_bonuses(now)
        t4 = _time.perf_counter()
        report["delivered"] = self.deliver(now, campaigns)
        t5 = _time.perf_counter()
        report["uncertain_open"] = len(self.db.uncertain())
        report["timings"] = {
            k: round(b - a, 3)
            for k, a, b in (
                ("refresh", t0, t1),
                ("recover", t1, t2),
                ("occasions_and_claims", t2, t3),
                ("bonus_ingest", t3, t4),
                ("deliver", t4, t5),
            )
        }
        return report

    def send_due(self, now: datetime) -> dict[str, Any]:
        """Only the queue: retries and delays due by ``now`` (run it hourly between daily runs)."""
        self.segments.refresh()
        campaigns = {c.code: c for c in self.config.campaigns}
        return {"recovered": self.recover(campaigns), "delivered": self.deliver(now, campaigns)}

    def _dry_run(self, now: datetime, samples: int) -> dict[str, Any]:
        out: dict[str, Any] = {"dry_run": True, "campaigns": {}}
        for c in self.config.campaigns:
            counts = {
                "occasions": 0,
                "already_logged": 0,
                "holdout": 0,
                "email": 0,
                "sms": 0,
                "no_consent": 0,
                "quiet_hours": 0,
            }
            shown: list[dict[str, str]] = []
            for oc in self.occasions(c, now):
                counts["occasions"] += 1
                if self.db.conn.execute(
                    "SELECT 1 FROM cmp_sends WHERE member = ? AND occasion = ?", (oc.member, oc.occasion)
                ).fetchone():
                    counts["already_logged"] += 1
                    continue
                if in_holdout(oc.member, c.code, c.holdout_percent):
                    counts["holdout"] += 1
                    continue
                p = self.profiles.get(oc.member)
                channel = next((ch for ch in c.channels if p is not None and p.may_contact(ch)), None)
                if channel is None or p is None:
                    counts["no_consent"] += 1
                    continue
                counts[channel] += 1
                if quiet_until(self.settings, p.time_zone, now) is not None:
                    counts["quiet_hours"] += 1
                if len(shown) < samples:
                    m = self.message_for(c, oc.member, oc.occasion, channel, oc.fields)
                    shown.append(
                        {
                            "member": oc.member,
                            "channel": channel,
                            "to": m.to,
                            "subject": m.subject,
                            "text": m.text,
                        }
                    )
            out["campaigns"][c.code] = {"counts": counts, "samples": shown}
        return out

    def preview(self, code: str, member: str, now: datetime) -> Message:
        """What ``member`` would get from campaign ``code`` (nothing is logged or sent)."""
        self.segments.refresh()
        c = {x.code: x for x in self.config.campaigns}[code]
        p = self.profiles.get(member)
        channel = next((ch for ch in c.channels if p is not None and p.may_contact(ch)), c.channels[0])
        return self.message_for(c, member, f"{c.code}:preview", channel, {})


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_OFFER_WORDS = {
    "en": {
        "weekend": "a weekend stay",
        "weekday": "a midweek stay",
        "spa": "a spa treatment",
        "fnb": "dinner at our restaurant",
        "with": " with ",
        "and": " and ",
        "room": " in a {} room",
    },
    "zh": {
        "weekend": "周末入住",
        "weekday": "周中入住",
        "spa": "水疗护理",
        "fnb": "餐厅晚餐",
        "with": "，并享受",
        "and": "和",
        "room": "（{}客房）",
    },
}


def suggest_offer(conn: Any, program: Program, member: str, tier: str, language: str) -> str:
    """An offer drawn from the member's past stays: weekend or weekday, outlets used, room type."""
    row = conn.execute(
        "SELECT count(*), sum(weekend), sum(spa_c > 0), sum(fnb_c > 0) FROM rpt_stays "
        "WHERE member = ? AND voided = 0",
        (member,),
    ).fetchone()
    n = int(row[0] or 0)
    if n == 0:
        return ""
    words = _OFFER_WORDS.get(language, _OFFER_WORDS["en"])
    text = words["weekend" if int(row[1] or 0) * 2 >= n else "weekday"]
    extras = [words[o] for o, used in (("spa", row[2]), ("fnb", row[3])) if int(used or 0) * 2 >= n]
    if extras:
        text += words["with"] + words["and"].join(extras)
    room = conn.execute(
        "SELECT room_type FROM rpt_stays WHERE member = ? AND room_type IS NOT NULL "
        "GROUP BY room_type ORDER BY count(*) DESC LIMIT 1",
        (member,),
    ).fetchone()
    if room:
        text += words["room"].format(room[0])
    offer = next((o for o in reversed(program.offers) if tier in o.tiers), None)
    if offer is not None and language == "en":
        text += f" ({offer.name})"
    return text


def run_daily(
    now: datetime,
    *,
    ledger_db: Path | None = None,
    profiles_db: Path | None = None,
    store: str | None = None,
    profiles: str | None = None,
    config_path: Path | None = None,
    dry_run: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Entry point for ``staypoint central jobs --now ISO``: the whole daily campaign pass.

    Also awards referral bonuses earned since the last run (a first stay completed).
    """
    from staypoint.central import referrals
    from staypoint.central.campaigns.config import load_config

    config = load_config(config_path) if config_path else JobConfig()
    # ``store``/``profiles``: URLs (either store); ``ledger_db``/``profiles_db``: SQLite files.
    if store:
        stores = open_stores_at(store, profiles)
    else:
        stores = open_stores(Path(ledger_db or ""), Path(profiles_db or ""))
    job = CampaignJob(Path(ledger_db or ""), Path(profiles_db or ""), config, stores=stores)
    job.quiet = quiet
    try:
        report = job.run_daily(now, dry_run=dry_run)
        if not dry_run:
            report["referrals"] = referrals.award_due(job, now)
            report["bonus_events"] = report.get("bonus_events", 0) + job.flush_bonuses(now)
        return report
    finally:
        job.close()
        stores.close()
