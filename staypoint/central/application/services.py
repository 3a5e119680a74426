"""Head office's use cases, without HTTP: the API's adapter (``central/api/app.py``), the
console and the desks call these; every change they make is an event through
``EventSources`` (``sources.py``), and head office's own bookkeeping is in the side tables
(``state.py``).

``Services`` is a facade, as ``NodeService`` is on a node: it composes the parts of this
package (``access``: keys, sign-in, tokens, the first PIN; ``members``; ``rates``; ``stays``;
``redemptions``; ``partners``: linked accounts, transfers; ``value``: stored value) over one
shared ``OfficeCore``. Each use case is bound from the part that does it, so its signature
and docstring are written once, there.

Refusals are head office's domain errors (``central/errors.py``), each with one clear line a
booking engine can show or log and a stable code; only the API's adapter turns them into HTTP.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from staypoint.central.application.access import TOKEN_TTL, Access, ApiKey
from staypoint.central.application.core import OfficeCore
from staypoint.central.application.members import Members
from staypoint.central.application.partners import Partners
from staypoint.central.application.rates import Rates
from staypoint.central.application.redemptions import Redemptions
from staypoint.central.application.state import SideStore
from staypoint.central.application.stays import Stays
from staypoint.central.application.value import StoredValue
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import Profiles

__all__ = ["TOKEN_TTL", "ApiKey", "Services"]


class Services:
    """Head office's use cases over one ledger, one profile store and head office's side tables."""

    def __init__(
        self,
        ledger: Ledger,
        profiles: Profiles,
        side: SideStore,
        token_key: bytes,
        voucher_key: Ed25519PrivateKey | None = None,
        suffix: str = "",
        token_ttl: timedelta = TOKEN_TTL,
    ) -> None:
        self._core = core = OfficeCore(ledger, profiles, side, suffix=suffix)
        self.ledger = ledger
        self.profiles = profiles
        self.side = side
        self.suffix = suffix
        self.sources = core.sources
        self.program = core.program
        self.online_rules = core.online_rules

        self._access = access = Access(core, token_key, token_ttl)
        self.token_key = token_key
        self.create_key = access.create_key
        self.revoke_key = access.revoke_key
        self.check_key = access.check_key
        self.login = access.login
        self.member_from_token = access.member_from_token
        self.member_in_path = access.member_in_path
        self.prove_member = access.prove_member
        self.set_first_pin = access.set_first_pin

        members = Members(core)
        self.dashboard = members.dashboard
        self.enrol = members.enrol
        self.referral_data = members.referral_data
        self.refer = members.refer
        self.profile = members.profile
        self.update_profile = members.update_profile
        self.feedback = members.feedback
        self.adjust = members.adjust

        rates = Rates(core)
        self.quote = rates.quote
        self.offers = rates.offers
        self.last_minute = rates.last_minute

        stays = Stays(core)
        self.post_stay = stays.post_stay
        self.hold_arrivals = stays.hold_arrivals
        self.claim = stays.claim

        redemptions = Redemptions(core, voucher_key or Ed25519PrivateKey.generate())
        self.voucher_key = redemptions.voucher_key
        self.register_voucher_key = redemptions.register_voucher_key
        self.redeem = redemptions.redeem
        self.voucher_token = redemptions.voucher_token

        partners = Partners(core)
        self.link_partner = partners.link_partner
        self.partner_accounts = partners.partner_accounts
        self.transfer = partners.transfer

        self.spend_value = StoredValue(core).spend_value

    @property
    def token_ttl(self) -> timedelta:
        """How long a member's sign-in token lasts (15 minutes unless set)."""
        return self._access.token_ttl

    @token_ttl.setter
    def token_ttl(self, ttl: timedelta) -> None:
        self._access.token_ttl = ttl
