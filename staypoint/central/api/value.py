"""Stored value spent online: ``POST /v1/members/{number}/value/spend``.

The booking engine or a property system takes a payment from a member's wallet with the
member's proof: their sign-in token (``Authorization: Bearer``, for this member) or their PIN
in the body (checked as ``POST /v1/members/login`` checks it: a wrong one is a ``pin.failed``
that counts towards the fleet-wide lock-out). The API key needs the ``member`` scope.

The payment takes the path a node's online payment takes (``NodeService.spend`` through the
agent link): a value hold at head office (``Ledger.authorise_value``: the balance less open
holds, so two payments at once never both get more than the wallet holds), then a
``value.spent`` event carrying the hold, on the API's ``web`` stream. A retry after a timeout
is safe with an ``Idempotency-Key`` header (api/idempotency.py covers every POST).

Registered by ``app.build_app`` with one call (:func:`add_value_routes`).
"""

# No ``from __future__ import annotations``: FastAPI reads these endpoints' annotations.
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from staypoint.central.api.service import ApiKey, Services
from staypoint.central.api.sources import Draft
from staypoint.central.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from staypoint.loyalty import bounds, member_numbers
from staypoint.loyalty.money import MoneyError, parse_amount


class SpendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(max_length=24, description="decimal string, at most two places: '12.50'")
    pin: str | None = Field(default=None, min_length=4, max_length=12, pattern=r"^[0-9]+$")
    reference: str | None = Field(default=None, max_length=40, description="the caller's own reference")


class SpendOut(BaseModel):
    member: str
    amount: str
    currency: str
    balance: str
    hold: str
    reference: str | None


def spend_value(
    services: Services, number: str, amount: str, now: datetime, reference: str | None = None
) -> dict[str, Any]:
    """Take ``amount`` from ``number``'s stored value: a hold first, then ``value.spent``."""
    program = services.program()
    try:
        value = parse_amount(amount, allow_zero=False)
        bounds.money(str(value), "amount", program.bounds.money_per_event)
    except (MoneyError, bounds.BoundError) as exc:
        raise Invalid(f"amount: {exc}", "bad_amount") from None
    m = services.ledger.member(number)
    if m is None:
        raise NotFound(f"no member {number}", "unknown_member")
    node = services.sources.stream("web")
    decision = services.ledger.authorise_value(node, number, f"{value:.2f}", now)
    if not decision.ok or decision.hold is None:
        raise Conflict(decision.reason or "refused", "refused")
    data: dict[str, Any] = {
        "amount": f"{value:.2f}",
        "currency": program.currency,
        "hold": decision.hold,
        "limits": None,
    }
    services.sources.emit("web", [Draft("value.spent", number, data, auth="online")], now)
    after = services.ledger.member(number) or m
    return {
        "member": number,
        "amount": f"{value:.2f}",
        "currency": program.currency,
        "balance": str(after.get("stored_value", "0.00")),
        "hold": decision.hold,
        "reference": reference,
    }


def add_value_routes(
    app: FastAPI,
    services: Services,
    key: Callable[..., ApiKey],
    clock: Callable[[], datetime],
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    """Add the stored-value endpoint; ``key`` is the app's API-key dependency, ``run`` its lock."""
    Key = Annotated[ApiKey, Depends(key)]
    bearer_scheme = HTTPBearer(scheme_name="MemberToken", auto_error=False)

    @app.post("/v1/members/{number}/value/spend", response_model=SpendOut, tags=["members"])
    def spend(
        number: str,
        body: SpendIn,
        api_key: Key,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
    ) -> dict[str, Any]:
        """Pay from the member's stored value with their token or their PIN (a hold at head
        office, then the payment). Send an ``Idempotency-Key`` so a retry never pays twice."""
        api_key.require("member")
        try:
            wanted = member_numbers.normalise(number)
        except member_numbers.MemberNumberError as exc:
            raise Invalid(str(exc), "bad_number") from None
        now = clock()
        if bearer is not None:
            if services.member_from_token(bearer.credentials, now) != wanted:
                raise Forbidden("this sign-in token is for another member", "other_member")
        elif body.pin is not None:
            run(lambda: services.login(wanted, body.pin or "", now))  # counts a wrong PIN, locks
        else:
            raise Unauthenticated("give the member's PIN or their sign-in token", "no_proof")
        out: dict[str, Any] = run(lambda: spend_value(services, wanted, body.amount, now, body.reference))
        return out
