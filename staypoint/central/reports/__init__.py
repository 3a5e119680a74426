"""Head office's reports over a projection of the ledger's events."""

from __future__ import annotations
