"""Stored value spent online: ``POST /v1/members/{number}/value/spend``.

The booking engine or a property system takes a payment from a member's wallet with the
member's proof: their sign-in token (``Authorization: Bearer``, for this member) or their PIN
in the body (checked as ``POST /v1/members/login`` checks it: a wrong one is a ``pin.failed``
that counts towards the fleet-wide lock-out). The API key needs the ``member`` scope.

The payment takes the path a node's online payment takes (``application/value.py``): a value
hold at head office, then a ``value.spent`` event carrying the hold, on the API's ``web``
stream. A retry after a timeout is safe with an ``Idempotency-Key`` header
(api/idempotency.py covers every POST).

Registered by ``app.build_app`` with one call (:func:`add_value_routes`).
"""

# No ``from __future__ import annotations``: FastAPI reads these endpoints' annotations.
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from staypoint.central.application.services import ApiKey, Services


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
        now = clock()
        token = bearer.credentials if bearer is not None else None
        # A wrong PIN counts towards the fleet-wide lock-out, as at POST /v1/members/login.
        wanted: str = run(lambda: services.prove_member(number, token, body.pin, now))
        out: dict[str, Any] = run(lambda: services.spend_value(wanted, body.amount, now, body.reference))
        return out
