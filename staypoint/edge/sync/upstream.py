"""Upstream: the outbox pumped to head office in ordered batches, its acks, and resends.

An outbox row is marked done only by head office's cumulative ack ``{"epoch", "hw"}``,
which head office publishes after its commit; a PUBACK means nothing here. Batches are
ordered, QoS 1, within a bounded window of unacknowledged batches; a reconnect, a resend
request or an ack timeout rewinds to the first unacknowledged row. Head office skips what
it already has, so a resend is harmless.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt

from staypoint.edge import sync_store
from staypoint.edge.sync.context import AgentContext, int_field
from staypoint.loyalty.events import iso

ACK_FLUSH_SECONDS = 0.1  # an ack is written to the outbox within this, or with the next write


class Upstream:
    """The outbox's way to head office, and the acks that come back."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.sent: tuple[int, int] | None = None
        self.inflight: list[tuple[int, int]] = []
        self.sent_at: dict[tuple[int, int], float] = {}  # in-flight batch -> when it was published
        # Publish -> covering ack, per batch (seconds), the most recent ones: bench and health.
        self.latencies: deque[float] = deque(maxlen=20_000)
        self.progress_at = time.monotonic()
        # Head office's newest cumulative ack not yet written to the outbox. Marking rows done
        # can wait a moment (the ack is retained and idempotent; a crash before the write only
        # costs a resend head office skips), so it rides along with the next write.
        self.ack_due: tuple[int, int] | None = None
        self.ack_flushed_at = time.monotonic()

    def rewind(self) -> None:
        """Forget what is in flight: the next pump sends again from the first unacknowledged row."""
        self.sent = None
        self.inflight.clear()
        self.sent_at.clear()
        self.progress_at = time.monotonic()

    def flush_ack(self) -> None:
        """Mark rows done up to the last ack received (inside the caller's write transaction)."""
        due, self.ack_due = self.ack_due, None
        self.ack_flushed_at = time.monotonic()
        if due is not None:
            marked = sync_store.mark_acked(self.ctx.replica.conn, due[0], due[1], iso(self.ctx.clock()))
            self.ctx.stats["events_acked"] += marked

    def flush_ack_if_due(self) -> None:
        """Write a waiting ack once nothing is in flight, or once it has waited long enough."""
        if self.ack_due is not None and (
            not self.inflight or time.monotonic() - self.ack_flushed_at > ACK_FLUSH_SECONDS
        ):
            with self.ctx.replica.write():
                self.flush_ack()

    def pump(self) -> None:
        """Send outbox batches until the window is full or the outbox is drained."""
        ctx = self.ctx
        conn = ctx.replica.conn
        if self.sent is None and self.ack_due is not None:
            with ctx.replica.write():  # a rewind reads from the first row not marked done
                self.flush_ack()
        while len(self.inflight) < ctx.config.window_batches:
            epoch = sync_store.oldest_pending_epoch(conn)
            if epoch is None:
                return
            after = self.sent[1] if self.sent is not None and self.sent[0] == epoch else 0
            batch = sync_store.pending_batch(
                conn, epoch, after, limit=ctx.config.batch_events, max_bytes=ctx.config.batch_bytes
            )
            if not batch:
                return
            # The outbox bodies are canonical JSON already: splice, do not re-encode.
            payload = (
                '{"v":1,"node":' + json.dumps(ctx.node) + ',"events":[' + ",".join(e.body for e in batch)
            )
            info = ctx.client.publish(ctx.topic("events"), (payload + "]}").encode(), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            if not self.inflight:
                self.progress_at = time.monotonic()
            self.sent = (epoch, batch[-1].seq)
            self.inflight.append(self.sent)
            self.sent_at[self.sent] = time.monotonic()
            ctx.stats["batches_sent"] += 1
            ctx.stats["events_sent"] += len(batch)

    def check_ack_timeout(self, now: float) -> None:
        """No ack progress for ``ack_timeout``: send again from the ack."""
        if self.inflight and now - self.progress_at > self.ctx.config.ack_timeout:
            self.ctx.stats["ack_timeouts"] += 1
            self.rewind()

    def on_ack(self, body: dict[str, Any], retained: bool) -> None:
        """Head office's cumulative ack: the batches it covers are done (written soon after)."""
        epoch, hw = int_field(body, "epoch"), int_field(body, "hw")
        if epoch is None or hw is None or epoch < 1 or hw < 0:
            self.ctx.drop("wrong_type")
            return
        if not retained:
            self.ctx.contact()
        if self.ack_due is None or (epoch, hw) > self.ack_due:
            if self.ack_due is not None and epoch != self.ack_due[0]:
                with self.ctx.replica.write():  # never drop an older epoch's ack on the floor
                    self.flush_ack()
            self.ack_due = (epoch, hw)
        before = len(self.inflight)
        now = time.monotonic()
        keep: list[tuple[int, int]] = []
        for key in self.inflight:
            if key[0] == epoch and key[1] <= hw:
                sent_at = self.sent_at.pop(key, None)
                if sent_at is not None:
                    self.latencies.append(now - sent_at)
            else:
                keep.append(key)
        self.inflight = keep
        if len(self.inflight) < before or not self.inflight:
            self.progress_at = now

    def on_resend(self, body: dict[str, Any]) -> None:
        """Head office saw a gap: send again from the row it names."""
        epoch, start = int_field(body, "epoch"), int_field(body, "from")
        if epoch is None or start is None or start < 1:
            self.ctx.drop("wrong_type")
            return
        self.ctx.contact()
        self.ctx.stats["resend_requests"] += 1
        self.inflight.clear()
        self.sent_at.clear()
        self.sent = (epoch, start - 1)
        self.progress_at = time.monotonic()
