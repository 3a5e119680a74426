"""Downstream: head office's changes fanned out to the replica, resync sessions, the digest.

Changes are applied in version order; a gap (or a new node) asks for a resync; a resync
answer (delta or snapshot) is checked part by part and only its last part moves the applied
version. At head office's digest version, with every row acknowledged, the replica's member
count and points sum must equal the digest's; a replica that differs resyncs by snapshot
itself.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from staypoint.edge import sync_store
from staypoint.edge.sync.context import MAX_VERSION, AgentContext, dumps, int_field
from staypoint.edge.sync.upstream import Upstream
from staypoint.loyalty import replicas
from staypoint.loyalty.events import iso
from staypoint.loyalty.program import ProgramError, parse_program

log = logging.getLogger("staypoint.sync")

# Fan-out changes kept while a resync runs (a fleet makes a few parts a second; a 1M-member
# snapshot takes ~12 s). Counted in changes, not parts, so a Pi's memory stays bounded
# (~10 MB) whatever the part size; past it the agent resyncs again once this one is done.
HELD_CHANGES_MAX = 20_000
# A replica that still differs after resyncing by itself (say a row head office never had,
# which a snapshot does not remove) must not pull a snapshot on every digest: each further
# self-resync waits this long, doubling up to the cap, until a digest matches again.
SELF_RESYNC_BACKOFF = 300.0
SELF_RESYNC_BACKOFF_MAX = 6 * 3600.0


@dataclass
class ResyncSession:
    """One resync asked of head office, and what has arrived of its answer."""

    session: str
    deadline: float
    parts: set[int] = field(default_factory=set)
    last: int | None = None
    # Fan-out that arrived while this session ran. Head office answers a resync from one
    # thread and fans out new changes from another, so a change committed after the answer
    # was read can arrive before the answer's last part: applying it then could go back in
    # time, dropping it would leave the node behind until the next change. A session that
    # is abandoned (reconnect, timeout) drops these: the next answer is read later.
    held: list[dict[str, Any]] = field(default_factory=list)
    held_changes: int = 0
    held_overflow: bool = False
    applied: int = 0  # changes of this answer applied so far (the progress callback's count)
    # A partial replica's snapshot: the members it carried are noted as it goes, and those it
    # did not carry are forgotten at its end (a member head office no longer holds here).
    noted: bool = False


#: ``progress(applied, done)``: after each part of a resync answer (a snapshot on bootstrap),
#: the changes applied so far in it, rising, and whether it is complete. The CLI draws a bar
#: from it; edge draws nothing.
ResyncProgress = Callable[[int, bool], None]


class Downstream:
    """Head office's state coming down to the replica.

    ``upstream`` is asked to write its waiting ack first wherever the replica must show every
    acknowledged row as done (before a fan-out is applied, before the digest is compared).
    """

    def __init__(
        self,
        ctx: AgentContext,
        upstream: Upstream,
        *,
        held_max: int = HELD_CHANGES_MAX,
        progress: ResyncProgress | None = None,
    ) -> None:
        self.ctx = ctx
        self.upstream = upstream
        self.held_max = held_max
        self.progress = progress
        self.resync: ResyncSession | None = None
        # The replica's programme as the fan-out needs it: (version, tier ranks, partial replica).
        self._tier_ranks: tuple[int, dict[str, int], bool] = (-1, {}, False)
        self._unfolded = sync_store.UnfoldedCache()
        self._digest: tuple[int, int, int] | None = None  # head office's (version, members, points)
        self.digest_ok: bool | None = None  # None: never at a digest's version with nothing pending
        self.last_self_resync: str | None = None
        self._self_resync_after = 0.0
        self._self_resync_backoff = 0.0
        # The programme turned this replica partial: a snapshot of what it holds is due, and
        # the members it held only as a full replica are forgotten at its end.
        self._snapshot_due = False

    # -- resync sessions ------------------------------------------------------------------------

    def request_resync(self, from_version: int | None = None) -> None:
        """Ask for what was missed since the applied version (or from ``from_version``: 0 is a
        snapshot, head office's whole state)."""
        ctx = self.ctx
        if self.resync is not None:
            return
        start = sync_store.applied_version(ctx.replica.conn) if from_version is None else from_version
        session = uuid.uuid4().hex
        self.resync = ResyncSession(session, time.monotonic() + ctx.config.resync_timeout)
        ctx.client.publish(ctx.topic("resync"), dumps({"from": start, "session": session}), qos=1)
        ctx.stats["resyncs"] += 1

    def check_currency(self) -> None:
        """A quiet replica is confirmed current by asking head office (an empty answer)."""
        if self.resync is None and self._due_for_currency_check():
            self.ctx.stats["currency_checks"] += 1
            self.request_resync()

    def check_resync_timeout(self, now: float) -> None:
        """A resync whose answer stopped coming is asked again."""
        if self.resync is not None and now > self.resync.deadline:
            self.ctx.stats["resync_timeouts"] += 1
            self.resync = None
            self.request_resync()

    def _due_for_currency_check(self) -> bool:
        """True when nothing has confirmed the replica for ``current_interval`` (injected clock)."""
        known = self.ctx.known_current_at
        if known is None:
            return False  # the resync sent on connect confirms it first
        age = (self.ctx.clock() - known).total_seconds()
        return age >= self.ctx.config.current_interval

    def on_resync_part(self, body: dict[str, Any]) -> None:
        """One part of a resync answer: checked, applied once, the last one moves the version."""
        ctx = self.ctx
        rs = self.resync
        if rs is None or body.get("session") != rs.session:
            ctx.drop("stale_resync")
            return
        part, to, data, digest = (
            int_field(body, "part"),
            int_field(body, "to"),
            body.get("data"),
            body.get("sha256"),
        )
        if part is None or to is None or not isinstance(data, str) or not isinstance(digest, str):
            ctx.drop("wrong_type")
            return
        if hashlib.sha256(data.encode()).hexdigest() != digest:
            ctx.drop("checksum")
            return
        try:
            changes = orjson.loads(data)
        except ValueError:
            ctx.drop("malformed")
            return
        if not isinstance(changes, list):
            ctx.drop("wrong_type")
            return
        versions = [c.get("version") if isinstance(c, dict) else None for c in changes]
        if not all(type(v) is int and 0 <= v <= to for v in versions) or to > MAX_VERSION:
            ctx.drop("bad_range")  # a part that claims to end before its own changes
            return
        rs.deadline = time.monotonic() + ctx.config.resync_timeout
        with ctx.replica.write():
            if part not in rs.parts:
                self._apply(changes)
                ctx.stats["resync_changes"] += len(changes)
                rs.applied += len(changes)
                if body.get("mode") == "snapshot" and self.partial():
                    self._note_snapshot(rs, changes)
                    self._snapshot_due = False  # this snapshot is the one the new mode needs
            rs.parts.add(part)
            if body.get("last") is True:
                rs.last = part
            done = rs.last is not None and rs.parts >= set(range(rs.last + 1))
            if done:
                if rs.noted:
                    ctx.stats["members_released"] += self._sweep_snapshot()
                sync_store.set_applied_version(ctx.replica.conn, to)
                self.resync = None
                ctx.stats["resyncs_done"] += 1
                if body.get("mode") == "snapshot":
                    ctx.stats["snapshots"] += 1
        if body.get("mode") == "snapshot" and (done or part % 50 == 0):
            log.info("snapshot: %d changes applied%s", rs.applied, " (complete)" if done else "")
        if self.progress is not None:
            try:
                self.progress(rs.applied, done)
            except Exception:  # a display's fault must never stop the replica
                log.exception("resync progress callback failed")
        if done:
            # Head office answered at its version: the replica is current as of now, whatever
            # the rate limit on contact says (a currency check must always land).
            ctx.contact(force=True)
            self._release_held(rs)
            if self._snapshot_due:
                self._snapshot_due = False
                self.request_resync(from_version=0)
            self.check_digest()  # a retained digest met during the resync, or the self-resync's own

    def _note_snapshot(self, rs: ResyncSession, changes: list[Any]) -> None:
        """Under the write: the members this part of a partial snapshot carried."""
        conn = self.ctx.replica.conn
        if not rs.noted:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS snapshot_members (number TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM temp.snapshot_members")
            rs.noted = True
        conn.executemany(
            "INSERT OR IGNORE INTO temp.snapshot_members (number) VALUES (?)",
            [(c["key"],) for c in changes if isinstance(c, dict) and c.get("kind") == "member"],
        )

    def _sweep_snapshot(self) -> int:
        """Under the write, at a partial snapshot's end: forget the members it did not carry."""
        conn = self.ctx.replica.conn
        stale = [
            str(n)
            for (n,) in conn.execute(
                "SELECT number FROM members WHERE number NOT IN (SELECT number FROM temp.snapshot_members)"
            )
        ]
        conn.execute("DELETE FROM temp.snapshot_members")
        return sum(
            sync_store.release_members(conn, stale[i : i + 10_000]) for i in range(0, len(stale), 10_000)
        )

    def _release_held(self, rs: ResyncSession) -> None:
        """Apply the fan-out held during a finished resync: what the answer covered is
        skipped by version, a gap asks for another resync (which holds the rest again)."""
        for body in sorted(rs.held, key=lambda b: (b["from"], b["to"])):  # validated on arrival
            self.on_fleet_changes(body, own=body.get("held") is True)
            self.ctx.stats["held_parts_released"] += 1
        if rs.held_overflow:
            self.request_resync()  # some fan-out was forgotten: ask for what it carried

    # -- fan-out ----------------------------------------------------------------------------------

    def _tier_ranks_now(self) -> dict[str, int]:
        return self._program_now()[1]

    def partial(self) -> bool:
        """Whether this replica holds a subset of the members (``[replicas] mode = "partial"``):
        its fan-out then comes on its own topic, and the fleet's digest is not its to match."""
        return self._program_now()[2]

    def _program_now(self) -> tuple[int, dict[str, int], bool]:
        conn = self.ctx.replica.conn
        row = conn.execute("SELECT value FROM node_meta WHERE key = 'program_version'").fetchone()
        version = int(row[0]) if row else 0
        if version != self._tier_ranks[0]:
            doc = conn.execute("SELECT document FROM programs WHERE version = ?", (version,)).fetchone()
            ranks: dict[str, int] = {}
            partial = False
            if doc is not None:
                try:
                    program = parse_program(str(doc[0]))
                    ranks = {t.code: t.rank for t in program.tiers}
                    partial = replicas.is_partial(program)
                except ProgramError:
                    ranks = {}
            self._tier_ranks = (version, ranks, partial)
        return self._tier_ranks

    def _apply(self, changes: list[Any]) -> None:
        """Apply changes (caller's transaction); a malformed one is skipped and counted. A
        programme among them that turns this replica partial makes a snapshot due."""
        was_partial = self.partial()
        self._apply_each(changes)
        if not was_partial and self.partial():
            log.info("the programme now holds a subset of the members here: a snapshot is due")
            self._snapshot_due = True

    def _apply_each(self, changes: list[Any]) -> None:
        conn = self.ctx.replica.conn
        ranks = self._tier_ranks_now()
        try:
            conn.execute("SAVEPOINT changes")
            sync_store.apply_changes(conn, changes, ranks, self._unfolded)
            conn.execute("RELEASE changes")
            return
        except (sync_store.ChangeError, KeyError, ValueError, TypeError):
            conn.execute("ROLLBACK TO changes")
            conn.execute("RELEASE changes")
        for change in changes:  # the slow path: one by one, so one bad change costs only itself
            try:
                conn.execute("SAVEPOINT one")
                sync_store.apply_changes(conn, [change], ranks, self._unfolded)
                conn.execute("RELEASE one")
            except (sync_store.ChangeError, KeyError, ValueError, TypeError):
                conn.execute("ROLLBACK TO one")
                conn.execute("RELEASE one")
                self.ctx.drop("bad_change")

    def on_node_changes(self, body: dict[str, Any]) -> None:
        """Our own changes topic: a resync part, or (partial replicas) our share of the fan-out,
        or the members whose holds here ended."""
        if "session" in body:
            self.on_resync_part(body)
        elif "release" in body:
            self.on_release(body)
        else:
            self.on_fleet_changes(body, own=True)

    def on_release(self, body: dict[str, Any]) -> None:
        """Members head office no longer holds here: forgotten (unless we have unacknowledged
        events of theirs), so the replica does not show a balance nobody keeps current."""
        members = body.get("release")
        if (
            not isinstance(members, list)
            or len(members) > 2000
            or not all(isinstance(m, str) and 0 < len(m) <= 32 for m in members)
        ):
            self.ctx.drop("wrong_type")
            return
        with self.ctx.replica.write():
            self.ctx.stats["members_released"] += sync_store.release_members(self.ctx.replica.conn, members)

    def store_fetched(self, doc: dict[str, Any]) -> bool:
        """A member fetched online (partial replicas): stored unless the fan-out brought a
        record first (that one is newer). False when the record is malformed (counted)."""
        number = doc.get("number")
        if not isinstance(number, str):
            self.ctx.drop("bad_change")
            return False
        with self.ctx.replica.write():
            conn = self.ctx.replica.conn
            if conn.execute("SELECT 1 FROM members WHERE number = ?", (number,)).fetchone() is not None:
                return True
            try:
                conn.execute("SAVEPOINT fetched")
                sync_store.apply_members(conn, self.ctx.node, [doc], self._tier_ranks_now(), self._unfolded)
                conn.execute("RELEASE fetched")
            except (sync_store.ChangeError, KeyError, ValueError, TypeError):
                conn.execute("ROLLBACK TO fetched")
                conn.execute("RELEASE fetched")
                self.ctx.drop("bad_change")
                return False
        self.ctx.stats["members_fetched"] += 1
        return True

    def on_fleet_changes(self, body: dict[str, Any], *, own: bool = False) -> None:
        """A fan-out part: applied past the applied version, held during a resync, a gap resyncs.

        ``own``: it came on our own topic. A part there marked ``held`` (partial replicas) is
        our share of (from, to]: it may carry no change, and need not end at ``to``."""
        ctx = self.ctx
        start, to, changes = int_field(body, "from"), int_field(body, "to"), body.get("changes")
        if start is None or to is None or not isinstance(changes, list) or start > to:
            ctx.drop("wrong_type")
            return
        held = own and body.get("held") is True
        if not held and self.partial():
            ctx.stats["fleet_fan_out_ignored"] += 1  # we hold a subset: ours comes on our own topic
            return
        # A part carries changes in rising version order inside (from, to], the last one at
        # ``to`` (a contiguous run, or a collapsed delta: the latest change per key). One
        # that does not add up would move the applied version past changes never seen (the
        # node would then ignore every real change): dropped, counted.
        versions: list[int] = [
            c["version"] for c in changes if isinstance(c, dict) and type(c.get("version")) is int
        ]
        if (
            (not versions and not held)
            or len(versions) != len(changes)
            or (versions and versions[-1] != to and not held)
            or any(not start < v <= to for v in versions)
            or any(a >= b for a, b in itertools.pairwise(versions))
            or to > MAX_VERSION
        ):
            ctx.drop("bad_range")
            return
        rs = self.resync
        if rs is not None:
            if rs.held_changes + len(changes) <= self.held_max:
                rs.held.append(body)
                rs.held_changes += len(changes)
            else:
                rs.held_overflow = True
            return
        with ctx.replica.write():
            self.upstream.flush_ack()
            applied = sync_store.applied_version(ctx.replica.conn)
            if to <= applied:
                return
            if start > applied:
                gap = True
            else:
                gap = False
                fresh = [c for c in changes if isinstance(c, dict) and int_field(c, "version") is not None]
                fresh = [c for c in fresh if c["version"] > applied]
                fresh.sort(key=lambda c: int(c["version"]))
                self._apply(fresh)
                sync_store.set_applied_version(ctx.replica.conn, to)
                ctx.stats["changes_applied"] += len(fresh)
        if self._snapshot_due and self.resync is None:
            self._snapshot_due = False
            self.request_resync(from_version=0)
        if not gap:
            ctx.contact()  # head office just fanned out, and the replica is at its version
        if gap:
            ctx.stats["gaps"] += 1
            self.request_resync()

    # -- the digest ---------------------------------------------------------------------------------

    def on_digest(self, body: dict[str, Any], retained: bool = True) -> None:
        """Head office's digest (version, members, points sum): kept, and compared when it can be."""
        version, members, points = (int_field(body, k) for k in ("version", "members", "points"))
        # Points may sum below zero (overdrafts are recorded, not refused); the rest may not.
        if (
            version is None
            or members is None
            or points is None
            or not 0 <= version <= MAX_VERSION
            or not 0 <= members <= MAX_VERSION
            or not -MAX_VERSION <= points <= MAX_VERSION
        ):
            self.ctx.drop("wrong_type")
            return
        self._digest = (version, members, points)
        if not retained and version == sync_store.applied_version(self.ctx.replica.conn):
            self.ctx.contact()  # a fresh digest at our version: head office is up and we are current
        self.check_digest()

    def check_digest(self) -> None:
        """Hold the replica against head office's last digest, when the two must be equal."""
        ctx = self.ctx
        if self._digest is None or self.resync is not None or self.partial():
            return  # (a partial replica holds a subset: the fleet's sums are not its own)
        version, members, points = self._digest
        if self.upstream.ack_due is not None:
            with ctx.replica.write():
                self.upstream.flush_ack()
        with ctx.replica.read():
            conn = ctx.replica.conn
            # Only at the digest's version with every row acknowledged is a member row exactly
            # head office's record (head office publishes the digest of V before the ack of any
            # event committed after V); anywhere else own unfolded events or changes not yet
            # applied make the sums differ honestly.
            if sync_store.applied_version(conn) != version or sync_store.outbox_depth(conn):
                return
            mine = sync_store.replica_digest(conn)
        ctx.stats["digest_checks"] += 1
        if mine == (members, points):
            self.digest_ok = True
            self._self_resync_after = self._self_resync_backoff = 0.0
            return
        self.digest_ok = False
        ctx.stats["digest_mismatches"] += 1
        now = time.monotonic()
        resync = now >= self._self_resync_after
        then = (
            "resyncing from a snapshot"
            if resync
            else f"next self-resync in {self._self_resync_after - now:.0f}s"
        )
        log.warning(
            "replica differs from head office at version %d: %d members / %d points here, %d / %d there: %s",
            *(version, *mine, members, points, then),
        )
        if resync:
            self._self_resync_backoff = min(
                max(2 * self._self_resync_backoff, SELF_RESYNC_BACKOFF), SELF_RESYNC_BACKOFF_MAX
            )
            self._self_resync_after = now + self._self_resync_backoff
            self.last_self_resync = iso(ctx.clock())
            ctx.stats["self_resyncs"] += 1
            self.request_resync(from_version=0)
