"""The replica's schema, as an ordered list of migrations.

The schema version lives in ``PRAGMA user_version``. Each migration runs in its own
transaction, so a node upgraded while the power fails is left at one version or the
next, never between. Migrations are tested from every earlier version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "node identity, programme, members, cards, outbox and the member ledger",
        (
            "CREATE TABLE node_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
            """CREATE TABLE programs (
                version INTEGER PRIMARY KEY,
                document TEXT NOT NULL,
                received_at TEXT NOT NULL)""",
            """CREATE TABLE members (
                number TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                tier TEXT NOT NULL,
                points INTEGER NOT NULL DEFAULT 0,
                stored_value TEXT NOT NULL DEFAULT '0.00',
                window_start TEXT NOT NULL,
                qual_nights INTEGER NOT NULL DEFAULT 0,
                qual_points INTEGER NOT NULL DEFAULT 0,
                last_activity TEXT,
                pin_hash TEXT NOT NULL,
                pin_failures INTEGER NOT NULL DEFAULT 0,
                locked_until TEXT,
                blocked INTEGER NOT NULL DEFAULT 0,
                enrolled_at TEXT NOT NULL,
                home_property TEXT NOT NULL) WITHOUT ROWID""",
            """CREATE TABLE cards (
                uid_hash TEXT PRIMARY KEY,
                member TEXT NOT NULL,
                bound_at TEXT NOT NULL) WITHOUT ROWID""",
            """CREATE TABLE outbox (
                epoch INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                member TEXT,
                at TEXT NOT NULL,
                body TEXT NOT NULL,
                acked_at TEXT,
                PRIMARY KEY (epoch, seq))""",
            """CREATE TABLE ledger (
                id INTEGER PRIMARY KEY,
                event_id TEXT NOT NULL,
                member TEXT NOT NULL,
                at TEXT NOT NULL,
                type TEXT NOT NULL,
                points INTEGER NOT NULL,
                amount TEXT,
                description TEXT NOT NULL)""",
            "CREATE INDEX ledger_member ON ledger (member, id)",
        ),
    ),
    Migration(
        2,
        "stays, vouchers, reward stock, claims and the fleet's voucher keys",
        (
            """CREATE TABLE stays (
                event_id TEXT PRIMARY KEY,
                member TEXT NOT NULL,
                property TEXT NOT NULL,
                folio TEXT NOT NULL,
                arrival TEXT NOT NULL,
                departure TEXT NOT NULL,
                nights INTEGER NOT NULL,
                revenue TEXT NOT NULL,
                points INTEGER NOT NULL,
                posted_at TEXT NOT NULL,
                voided_at TEXT)""",
            # A voided folio may be posted again (corrected), so uniqueness covers live stays.
            """CREATE UNIQUE INDEX stays_live_folio ON stays (property, folio)
                WHERE voided_at IS NULL""",
            "CREATE INDEX stays_member ON stays (member)",
            """CREATE TABLE vouchers (
                code TEXT PRIMARY KEY,
                token TEXT NOT NULL,
                reward TEXT NOT NULL,
                member TEXT NOT NULL,
                node TEXT NOT NULL,
                serial INTEGER NOT NULL,
                points INTEGER NOT NULL,
                issued_at TEXT NOT NULL,
                expires TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'issued',
                changed_at TEXT) WITHOUT ROWID""",
            "CREATE INDEX vouchers_member ON vouchers (member)",
            """CREATE TABLE reward_stock (
                reward TEXT PRIMARY KEY,
                remaining INTEGER NOT NULL) WITHOUT ROWID""",
            """CREATE TABLE claims (
                event_id TEXT PRIMARY KEY,
                member TEXT NOT NULL,
                property TEXT NOT NULL,
                folio TEXT NOT NULL,
                arrival TEXT NOT NULL,
                departure TEXT NOT NULL,
                note TEXT NOT NULL,
                recorded_at TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'open')""",
            """CREATE TABLE node_keys (
                node TEXT PRIMARY KEY,
                public_key TEXT NOT NULL) WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        "offline counters, feedback, staff and the pending-outbox index",
        (
            """CREATE TABLE member_offline (
                member TEXT PRIMARY KEY,
                points_since_contact INTEGER NOT NULL DEFAULT 0,
                consecutive INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID""",
            """CREATE TABLE feedback (
                event_id TEXT PRIMARY KEY,
                member TEXT NOT NULL,
                at TEXT NOT NULL,
                stars INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
                tags TEXT NOT NULL,
                context TEXT NOT NULL)""",
            """CREATE TABLE staff (
                staff_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                role TEXT NOT NULL CHECK (role IN ('staff', 'supervisor', 'technician')),
                card_hash TEXT UNIQUE,
                pin_hash TEXT NOT NULL,
                pin_failures INTEGER NOT NULL DEFAULT 0,
                locked_until TEXT) WITHOUT ROWID""",
            "CREATE INDEX outbox_pending ON outbox (epoch, seq) WHERE acked_at IS NULL",
            "CREATE INDEX cards_member ON cards (member)",
        ),
    ),
    Migration(
        4,
        "sync: per-member folded marks of this node's events and the outbox-by-member index",
        (
            # The last seq of this node's events (per epoch) that head office has folded into
            # the member record we hold: a shown balance is the central balance plus our own
            # events past these marks (docs/architecture.md, The event contract).
            """CREATE TABLE sync_folded (
                member TEXT NOT NULL,
                epoch INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                PRIMARY KEY (member, epoch)) WITHOUT ROWID""",
            "CREATE INDEX outbox_member ON outbox (member, epoch, seq)",
        ),
    ),
    Migration(
        5,
        "quarantine: head office's reason for an event of ours it would not book",
        (
            # Set when a ``quarantine`` change names one of our events: shown on the staff
            # status screen; the row stays (it is still the record of what happened here).
            "ALTER TABLE outbox ADD COLUMN rejected TEXT",
        ),
    ),
    Migration(
        6,
        "revoked nodes: when head office revoked each, so their later vouchers are refused",
        (
            # Kept apart from node_keys: a revocation may arrive for a node whose key this
            # replica never had, and the key stays (vouchers issued before still verify).
            """CREATE TABLE node_revocations (
                node TEXT PRIMARY KEY,
                revoked_at TEXT NOT NULL) WITHOUT ROWID""",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version
