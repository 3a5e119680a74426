"""The set of revoked nodes, as a file head office's ledger can consult cheaply.

``staypoint provision revoke`` revokes the node's certificate (the broker refuses new
connections after its CRL reload) and adds the node here. A connection already open, or
a batch already queued in the broker for head office, can still carry events from the
node after that: the ingest path checks ``node in RevokedNodes(path)`` and rejects them.

The file is small JSON (``{"nodes": {"<id>": "<revoked at ISO>"}}``) written atomically;
:class:`RevokedNodes` re-reads it only when its mtime changes, so a membership test on
every message costs one ``stat``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from staypoint.fsutil import atomic_write

__all__ = ["RevokedNodes"]


class RevokedNodes:
    """``node in revoked`` against ``revoked-nodes.json``; ``add`` to revoke one more."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._nodes: dict[str, str] = {}

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._nodes = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp:
            raw = json.loads(self.path.read_text("utf-8"))
            self._nodes = {str(k): str(v) for k, v in raw.get("nodes", {}).items()}
            self._stamp = stamp

    def __contains__(self, node: object) -> bool:
        self._refresh()
        return node in self._nodes

    def nodes(self) -> dict[str, str]:
        """Revoked node ids with the time each was revoked."""
        self._refresh()
        return dict(self._nodes)

    def add(self, node: str, at: str) -> None:
        """Record ``node`` as revoked at ``at`` (idempotent: the first time is kept)."""
        self._refresh()
        nodes = dict(self._nodes)
        nodes.setdefault(node, at)
        data = (json.dumps({"nodes": nodes}, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(self.path, data, 0o644)
        self._stamp = None
