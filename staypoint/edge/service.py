"""The node's operations: the programme's rules applied to the replica, one transaction each.

This is the service API the kiosk and the staff commands use; neither ever writes SQL.
Every operation that changes something appends its outbox event in the same transaction
as its effect. Time is always passed in (``now``, timezone-aware UTC).

``NodeService`` is a facade: it opens the node and composes the parts in
``staypoint.edge.operations`` (members, stays, redemptions, vouchers, stored value, staff,
the node's status) over one shared ``NodeCore``. Each operation is bound from the part that
does it, so its signature and docstring are written once, there. The errors and the views
are re-exported here: callers import them from ``staypoint.edge.service``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from staypoint.edge.keys import NodeKeys, create_keys, load_keys
from staypoint.edge.operations.core import Authoriser, NodeCore, OfflineOnly, require_utc
from staypoint.edge.operations.errors import (
    AuthorisationDenied,
    BadInput,
    NodeError,
    NotAllowed,
    OfflineLimitReached,
    PinLocked,
    RedemptionRefused,
    UnknownCard,
    UnknownMember,
    VoucherRejected,
    WrongPin,
)
from staypoint.edge.operations.first_pin import (
    FirstPinAnswer,
    FirstPinChannel,
    FirstPinOffline,
    FirstPinRefused,
    FirstPins,
    FirstPinSet,
)
from staypoint.edge.operations.members import FEEDBACK_TAGS, Members
from staypoint.edge.operations.redemptions import Redemptions
from staypoint.edge.operations.staff import Staff
from staypoint.edge.operations.status import NodeStatus
from staypoint.edge.operations.stays import Stays
from staypoint.edge.operations.value import StoredValue
from staypoint.edge.operations.views import (
    Activity,
    Hold,
    MemberSummary,
    PinProof,
    Redemption,
    RewardView,
    StaffProof,
    StayResult,
    VoucherInfo,
)
from staypoint.edge.operations.vouchers import Vouchers
from staypoint.edge.replica import Replica
from staypoint.loyalty.events import iso
from staypoint.loyalty.program import Program, parse_program
from staypoint.loyalty.roles import STAFF_ROLES

__all__ = [
    "FEEDBACK_TAGS",
    "STAFF_ROLES",
    "Activity",
    "AuthorisationDenied",
    "Authoriser",
    "BadInput",
    "FirstPinAnswer",
    "FirstPinChannel",
    "FirstPinOffline",
    "FirstPinRefused",
    "FirstPinSet",
    "Hold",
    "MemberSummary",
    "NodeError",
    "NodeService",
    "NotAllowed",
    "OfflineLimitReached",
    "OfflineOnly",
    "PinLocked",
    "PinProof",
    "Redemption",
    "RedemptionRefused",
    "RewardView",
    "StaffProof",
    "StayResult",
    "UnknownCard",
    "UnknownMember",
    "VoucherInfo",
    "VoucherRejected",
    "WrongPin",
]


class NodeService:
    """The node's operations over one replica file."""

    def __init__(
        self,
        replica: Replica,
        keys: NodeKeys,
        authoriser: Authoriser | None = None,
    ) -> None:
        self._core = core = NodeCore(replica, keys, authoriser)
        self.replica = replica
        self.keys = keys
        self.node_id = core.node_id
        self.property = core.property

        members = Members(core)
        self.resolve_member = core.resolve_member
        self.member_by_card = members.member_by_card
        self.enrol = members.enrol
        self.bind_card = members.bind_card
        self.verify_pin = members.verify_pin
        self.unlock = members.unlock
        self.report_member = members.report_member
        self.summary = members.summary
        self.adjust = members.adjust
        self.record_feedback = members.record_feedback

        first_pins = FirstPins(core)
        self.set_first_pin = first_pins.set_first_pin
        self.can_ask_first_pin = first_pins.can_ask_first_pin

        stays = Stays(core)
        self.post_stay = stays.post_stay
        self.void_stay = stays.void_stay
        self.record_claim = stays.record_claim

        redemptions = Redemptions(core)
        self.offline_state = core.offline_state
        self.offline_headroom = redemptions.offline_headroom
        self.redeem = redemptions.redeem
        self.check_redeemable = redemptions.check_redeemable
        self.can_redeem = redemptions.can_redeem

        vouchers = Vouchers(core)
        self.verify_voucher = vouchers.verify_voucher
        self.use_voucher = vouchers.use_voucher
        self.void_voucher = vouchers.void_voucher
        self.last_voucher = vouchers.last_voucher

        value = StoredValue(core)
        self.top_up = value.top_up
        self.spend = value.spend

        staff = Staff(core)
        self.add_staff = staff.add_staff
        self.staff_login = staff.staff_login
        self.is_staff_card = staff.is_staff_card

        status = NodeStatus(core)
        self.record_contact = status.record_contact
        self.maintenance = status.maintenance
        self.outbox = status.outbox
        self.status = status.status

    @property
    def authoriser(self) -> Authoriser:
        """Who is asked before a redemption or payment (the link to the agent, or no one)."""
        return self._core.authoriser

    @authoriser.setter
    def authoriser(self, authoriser: Authoriser) -> None:
        # The kiosk and the tests connect the agent after the node is open.
        self._core.authoriser = authoriser

    @property
    def program(self) -> Program:
        """The programme in force on this replica (re-read when head office sends a new one)."""
        return self._core.program

    # -- opening ------------------------------------------------------------------------

    @staticmethod
    def keys_dir_for(db: Path) -> Path:
        """The keys folder beside a replica when node.toml names none."""
        return db.with_name(db.name + ".keys")

    @classmethod
    def init_node(
        cls,
        db: Path,
        node_id: str,
        property_: str,
        program_text: str,
        now: datetime,
        *,
        member_blocks: Sequence[int] = (),
        keys_dir: Path | None = None,
        card_key: bytes | None = None,
    ) -> NodeService:
        """Create (or finish creating) a node replica; refuses to re-initialise another node."""
        require_utc(now)
        if not node_id or not all(c.isalnum() or c in "-_" for c in node_id):
            raise BadInput(f"node id {node_id!r}: letters, digits, '-' and '_' only")
        if not property_.strip():
            raise BadInput("property must not be empty")
        program = parse_program(program_text, "programme")
        kdir = keys_dir or cls.keys_dir_for(db)
        replica = Replica(db)
        have = replica.meta("node_id")
        if have is not None and have != node_id:
            replica.close()
            raise BadInput(f"{db} already belongs to node {have!r}")
        keys = load_keys(kdir) if (kdir / "voucher_ed25519.pem").exists() else create_keys(kdir, card_key)
        blocks = list(member_blocks) or [_default_block(node_id)]
        with replica.write():
            if have is None:
                replica.set_meta("node_id", node_id)
                replica.set_meta("property", property_)
                replica.set_meta("epoch", 1)
                replica.set_meta("last_seq", 0)
                replica.set_meta("voucher_serial", 0)
                replica.set_meta("members_allocated", 0)
                replica.set_meta("member_blocks", json.dumps(blocks))
                replica.set_meta("offline_exposure", 0)
                # A replica created now is as fresh as its programme: the staleness clock
                # starts here until the sync agent reports real contact.
                replica.set_meta("last_contact", iso(now))
                replica.store_program(program.version, program_text, iso(now))
                replica.set_meta("program_version", program.version)
                for reward in program.rewards:
                    if reward.stock is not None:
                        replica.set_stock(reward.code, reward.stock)
            replica.set_node_key(node_id, keys.public_hex())
        return cls(replica, keys)

    @classmethod
    def open(
        cls, db: Path, *, keys_dir: Path | None = None, authoriser: Authoriser | None = None
    ) -> NodeService:
        """Open an initialised node replica and its keys."""
        if not db.exists():
            raise BadInput(f"{db}: no such replica (run `staypoint node init`)")
        replica = Replica(db)
        try:
            keys = load_keys(keys_dir or cls.keys_dir_for(db))
            return cls(replica, keys, authoriser)
        except BaseException:
            replica.close()
            raise

    def close(self) -> None:
        """Close the replica (the service is unusable after)."""
        self.replica.close()


def _default_block(node_id: str) -> int:
    """A development block from the node id, for nodes initialised without head office.

    Provisioned nodes get their blocks from head office; this keeps two dev nodes with
    different ids apart (1000-8999) without pretending to be a real allocation.
    """
    return 1000 + int(hashlib.sha256(node_id.encode()).hexdigest(), 16) % 8000
