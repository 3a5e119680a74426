"""What the sync agent's parts share: the MQTT client, the agent's replica connection, the
counters, the topics, and head office's last contact.

``SyncAgent`` owns one ``AgentContext`` and hands it to its upstream, downstream and
authorisation parts; all of them run on the agent's one thread, so nothing here is locked.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from staypoint.edge.replica import Replica
from staypoint.edge.service import NodeService

if TYPE_CHECKING:
    from staypoint.edge.sync.agent import SyncConfig

MAX_PAYLOAD = 256 * 1024  # the broker's message size limit: anything bigger is dropped
MAX_VERSION = 2**53 - 1  # change-log versions: what every store and JSON reader holds


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as every message the agent publishes is written."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def int_field(body: Mapping[str, Any], key: str) -> int | None:
    """``body[key]`` when it is a whole number (a JSON ``true`` is not), else None."""
    value = body.get(key)
    return None if isinstance(value, bool) or not isinstance(value, int) else value


class AgentContext:
    """The agent's connection and bookkeeping, as its parts see them."""

    def __init__(
        self,
        service: NodeService,
        config: SyncConfig,
        replica: Replica,
        clock: Callable[[], datetime],
    ) -> None:
        self.service = service
        self.config = config
        self.clock = clock
        self.node = config.node_id
        self.replica = replica
        self.dropped: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.online = threading.Event()  # CONNACK received, subscriptions sent
        # Set by the agent once it has made it; replaced by tests that run the handlers alone.
        self.client: mqtt.Client
        self.session = 0
        self.last_contact = 0.0
        #: When the replica was last known to be head office's (the injected clock's time).
        self.known_current_at: datetime | None = None

    def topic(self, leaf: str) -> str:
        """This node's topic ``sp/v1/node/<id>/<leaf>``."""
        return f"sp/v1/node/{self.node}/{leaf}"

    def drop(self, reason: str) -> None:
        """Count a message dropped (the health document reports the counts)."""
        self.dropped[reason] += 1

    def contact(self, *, force: bool = False) -> None:
        """Head office answered and the replica is known current: the staleness clock and the
        offline counters start again (rate-limited, as it writes the replica)."""
        now = time.monotonic()
        if not force and now - self.last_contact < self.config.contact_interval:
            return
        self.last_contact = now
        at = self.clock()
        self.service.record_contact(at)
        self.known_current_at = at
