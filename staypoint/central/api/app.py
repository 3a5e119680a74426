"""The HTTP API for the booking engine, the website and the property systems (FastAPI).

``make_api(ledger, profiles, side, ...)`` builds the app; ``staypoint central api`` serves
it with uvicorn. The OpenAPI document is served at ``/openapi.json`` and committed as
``docs/openapi.json`` (a test fails when they differ).

Every client sends ``X-API-Key`` (scopes and a property set per key); member endpoints
also take ``Authorization: Bearer <token>`` from ``POST /v1/members/login``. Every error
is ``{"error": "<one clear line>", "code": "<stable code>"}``.
"""

# No ``from __future__ import annotations`` here, on purpose: FastAPI reads the endpoint
# closures' annotations at run time, and string annotations naming the local dependency
# aliases (``Key``, ``Member``) could not be resolved from the module's globals.
import asyncio
import contextlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, Header, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from staypoint.central.application.services import ApiKey, Services
from staypoint.central.application.sources import OutOfBounds
from staypoint.central.application.state import SideStore
from staypoint.central.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    Invalid,
    Locked,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from staypoint.central.ledger import Ledger
from staypoint.central.profiles import Profiles

MAX_BODY = 64 * 1024
ROUTE_THREADS = 16  # the hot routes' threads (offload): as many as the PostgreSQL store has connections
#: Arrivals in one request to POST /v1/properties/{p}/arrivals.
MAX_ARRIVALS = 1000
T = TypeVar("T")

Folio = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Money = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}(\.[0-9]{1,2})?$")]
MemberNumber = Annotated[str, StringConstraints(pattern=r"^[0-9 -]{1,20}$")]


class Strict(BaseModel):
    # Requests are JSON: a whole number is a number and a yes/no is true/false. Lax parsing
    # would take true as 1, "5" as 5 and 0.0 as false (schemathesis found each of these).
    model_config = ConfigDict(extra="forbid", strict=True)


def _iso_date(value: Any) -> Any:
    # Pydantic's lax mode reads "0" or 1700000000 as a Unix time; a booking date is written
    # YYYY-MM-DD and nothing else, so anything else is the client's mistake (422).
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return date.fromisoformat(value)  # a bad day such as 2026-02-30 is a ValueError: 422
    if isinstance(value, date):
        return value
    raise ValueError("a date is written YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def _line(text: str) -> str:
    # Errors quote what the client sent (a field name, a value): a newline or control
    # character in it must not break the promised one line.
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class ErrorBody(BaseModel):
    error: str
    code: str
    detail: list[dict[str, Any]] | None = None


class Login(Strict):
    login: str = Field(min_length=1, max_length=254, description="member number or e-mail")
    pin: str = Field(min_length=1, max_length=12)


class TokenOut(BaseModel):
    token: str
    expires: datetime
    member: str


class Activity(BaseModel):
    at: str
    type: str
    points: int
    description: str


class RewardOut(BaseModel):
    code: str
    name: str
    points: int
    available: bool
    reason: str | None


class VoucherOut(BaseModel):
    code: str
    reward: str
    status: str
    expires: str


class Dashboard(BaseModel):
    member: str
    name: str
    tier: str
    tier_name: str
    points: int
    points_on_hold: int
    stored_value: str
    currency: str
    qualifying_nights: int
    qualifying_points: int
    next_tier: str | None
    next_tier_message: str
    progress: float
    nights_needed: int
    expiring_points: int
    expiring_on: str | None
    blocked: bool
    benefits: list[str]
    recent: list[Activity]
    rewards: list[RewardOut]
    offers: list[str]
    vouchers: list[VoucherOut]
    referral_code: str


class QuoteIn(Strict):
    property: Code
    room_type: Code
    arrival: IsoDate
    nights: int = Field(ge=1, le=60)
    public_rate: Money


class AppliedOut(BaseModel):
    """One rate plan of a quote: what it took off one night, in the quote's currency."""

    code: str
    name: str
    group: str
    discount: str
    amount: str


class QuoteOut(BaseModel):
    property: str
    room_type: str
    arrival: str
    nights: int
    tier: str
    public_rate: str
    member_rate: str
    total: str
    saving: str
    plan: str | None
    plan_name: str | None
    currency: str
    applied: list[AppliedOut]
    floored: bool


class OfferOut(BaseModel):
    code: str
    name: str
    public_from: str
    ends: str
    early_access: bool


class LastMinuteOut(BaseModel):
    code: str
    name: str
    property: str
    room_type: str
    date: str
    rooms: int
    price: str


class Revenue(Strict):
    room: Money = "0"
    fnb: Money = "0"
    spa: Money = "0"
    other: Money = "0"


class StayIn(Strict):
    folio: Folio
    member: str | None = Field(
        default=None, max_length=20, description="member number, if the guest gave one"
    )
    arrival: IsoDate
    departure: IsoDate
    revenue: Revenue = Revenue()
    channel: Annotated[str, StringConstraints(pattern=r"^[a-z_-]{1,20}$")] = "direct"


class ArrivalIn(Strict):
    member: MemberNumber = Field(description="member number")
    arrival: IsoDate


class ArrivalsIn(Strict):
    # 1,000 of the longest arrivals (61 bytes each) fit MAX_BODY: a schema-valid request is
    # never refused as too large (tests/api/test_core.py checks the sum).
    arrivals: list[ArrivalIn] = Field(min_length=1, max_length=MAX_ARRIVALS)


class ArrivalsOut(BaseModel):
    mode: str = Field(description="the programme's [replicas] mode: arrivals are kept only when partial")
    held: int = Field(description="members now held at the property's nodes")
    unknown: list[str] = Field(description="numbers head office has no member for")


class StayOut(BaseModel):
    folio: str
    property: str
    result: str
    points: int


class EnrolIn(Strict):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f]+$")
    pin: str = Field(min_length=4, max_length=12, pattern=r"^[0-9]+$")
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=20)
    birth_date: IsoDate | None = None
    language: Literal["en", "zh"] | None = None
    home_property: Code | None = None
    marketing_email: bool | None = None
    referred_by: str | None = Field(
        default=None, min_length=8, max_length=12, description="a friend's referral code, ABCD-EFGH"
    )


class FirstPinIn(Strict):
    code: str = Field(min_length=1, max_length=40, description="the one-time code head office sent")
    pin: str = Field(min_length=4, max_length=12, pattern=r"^[0-9]+$")


class FirstPinOut(BaseModel):
    member: str
    pin: str


class EnrolOut(BaseModel):
    member: str
    name: str
    tier: str


class ReferralIn(Strict):
    code: str = Field(min_length=8, max_length=12, description="the friend's referral code, ABCD-EFGH")


class ReferralOut(BaseModel):
    member: str
    referred_by: str
    result: Literal["referred", "unchanged"]


class ProfileIn(Strict):
    full_name: str | None = Field(default=None, min_length=1, max_length=120)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=20)
    birth_date: IsoDate | None = None
    language: Literal["en", "zh"] | None = None
    marketing_email: bool | None = None
    marketing_sms: bool | None = None


class ProfileOut(BaseModel):
    member: str
    full_name: str
    email: str | None
    phone: str | None
    birth_date: str | None
    language: str
    marketing_email: bool
    marketing_sms: bool


class RedeemIn(Strict):
    reward: Code


class RedeemOut(BaseModel):
    reward: str
    points: int
    voucher: str
    token: str
    expires: str
    balance: int


class TransferIn(Strict):
    partner: Code
    points: int = Field(ge=1, le=10_000_000)


class TransferOut(BaseModel):
    partner: str
    points: int
    units: int
    transfer: str
    balance: int


class PartnerLinkIn(Strict):
    account: str = Field(
        min_length=1,
        max_length=80,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the member's number at the partner; spaces are dropped and letters upper-cased, "
        "then it must match the partner's account_pattern whole (at most 64 characters)",
    )


class PartnerAccountOut(BaseModel):
    member: str
    partner: str
    name: str
    account: str
    linked_at: str


class ClaimIn(Strict):
    folio: Folio
    property: Code
    arrival: IsoDate
    departure: IsoDate
    note: str = Field(default="", max_length=500)


class ClaimOut(BaseModel):
    claim: str
    status: str


class FeedbackIn(Strict):
    stars: int = Field(ge=1, le=5)
    tags: list[Annotated[str, StringConstraints(max_length=40)]] = Field(default_factory=list, max_length=10)
    comment: str = Field(default="", max_length=1000)


class FeedbackOut(BaseModel):
    feedback: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "bad request"),
        (401, "no or bad API key or member token"),
        (403, "the key lacks the scope or the property"),
        (404, "not found"),
        (409, "refused by the programme's rules"),
        (413, "body too large"),
        (422, "malformed or wrongly typed input"),
        (423, "too many wrong PINs: locked for now"),
        (503, "no programme published yet"),
    )
}


# The one place a head-office refusal becomes an HTTP status (central/errors.py holds the
# refusals; a subclass takes its nearest listed ancestor's status).
STATUS: dict[type[DomainError], int] = {
    DomainError: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    Invalid: 422,
    Locked: 423,
    Unavailable: 503,
}


def status_of(exc: DomainError) -> int:
    """The HTTP status of a refusal: its class's, or its nearest listed ancestor's."""
    return next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)


class BodyLimit:
    """Refuse (413) a request body over ``limit`` bytes, before the app sees any of it.

    Content-Length alone is not enough: a chunked body has none, and FastAPI would read all
    of it (150 MB, say) into memory and parse it before any check. So the body is read here,
    chunk by chunk, and the answer goes out as soon as it passes the limit, with
    ``Connection: close`` so the server stops reading the rest. A body within the limit is
    handed on whole; the limit is small, so holding it costs little.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()  # after the body: only the disconnect is left to wait for

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"error": f"request body over {self.limit // 1024} KiB", "code": "too_large"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def make_api(
    ledger: Ledger,
    profiles: Profiles,
    side: SideStore,
    *,
    token_key: bytes,
    voucher_key: Ed25519PrivateKey | None = None,
    suffix: str = "",
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    serialise: bool | None = None,
) -> FastAPI:
    """The API over a ledger, the profile store and head office's side tables.

    ``token_key`` signs member tokens (HMAC-SHA256; share it between API processes);
    ``voucher_key`` signs web vouchers (registered with the fleet like a node's key);
    ``suffix`` names this process's event streams (``web-<suffix>``) when several run.
    """
    services = Services(
        ledger, profiles, side, token_key, voucher_key or Ed25519PrivateKey.generate(), suffix=suffix
    )
    services.register_voucher_key()
    app = build_app(services, clock=clock, serialise=serialise)
    return app


def build_app(
    services: Services,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    serialise: bool | None = None,
) -> FastAPI:
    """The FastAPI app over ``services``. ``serialise`` (default: SQLite ledgers) runs one
    request at a time against the store, since a SQLite connection is one writer."""
    app = FastAPI(
        title="Staypoint head office API",
        version="1.0.0",
        description="Booking engine, website and property-system API of the Staypoint loyalty programme. "
        "See docs/api.md.",
        responses=ERRORS,
    )
    app.state.services = services
    if serialise is None:
        serialise = type(services.ledger.store).__name__ == "SqliteLedgerStore"
    lock: contextlib.AbstractContextManager[Any] = (
        threading.RLock() if serialise else contextlib.nullcontext()
    )

    def run(fn: Callable[[], T]) -> T:
        with lock:
            return fn()

    # The hot routes' work (a property system's stay posts, a member's dashboard) on threads of the
    # API's own, from async routes: FastAPI runs a sync route on an anyio worker and, when it has a
    # response model, validates its answer on a second one (each hop ~100-140 us of CPU here);
    # from an async route the work is one executor hop and the answer is validated on the event
    # loop, where it costs no hop at all (docs/scale.md).
    routes_pool = ThreadPoolExecutor(ROUTE_THREADS, thread_name_prefix="api-route")

    async def offload(fn: Callable[[], T]) -> T:
        """``run(fn)`` on a route thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(routes_pool, run, fn)

    @app.exception_handler(DomainError)
    async def refused(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"error": _line(exc.message), "code": exc.code}, status_code=status_of(exc))

    @app.exception_handler(OutOfBounds)
    async def out_of_bounds(request: Request, exc: OutOfBounds) -> JSONResponse:
        return JSONResponse({"error": str(exc), "code": "out_of_bounds"}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = (
            f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid input"))
        )
        detail = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in errors[:20]
        ]
        return JSONResponse({"error": _line(message), "code": "invalid", "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": _line(str(exc.detail)), "code": "http"}, status_code=exc.status_code)

    # Idempotency-Key on POSTs (api/idempotency.py), inside the body limit.
    from staypoint.central.api.idempotency import install as install_idempotency

    install_idempotency(app, services, clock)
    app.add_middleware(BodyLimit, limit=MAX_BODY)

    # The two credentials, declared as OpenAPI securitySchemes (ApiKey, MemberToken).
    api_key_header = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False)
    member_bearer = HTTPBearer(scheme_name="MemberToken", auto_error=False)

    def key(x_api_key: Annotated[str | None, Security(api_key_header)] = None) -> ApiKey:
        # Not under ``run``'s lock: the key is read on a connection of its own (SideStore.read_row),
        # so a request's key check never waits behind another request's commit.
        return services.check_key(x_api_key)

    def member(
        api_key: Annotated[ApiKey, Depends(key)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(member_bearer)] = None,
    ) -> str:
        api_key.require("member")
        return services.member_from_token(bearer.credentials if bearer else None, clock())

    def path_member(
        number: MemberNumber,
        api_key: Annotated[ApiKey, Depends(key)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(member_bearer)] = None,
    ) -> str:
        # /v1/members/{number}/...: the number in the path, with that member's own token.
        api_key.require("member")
        return services.member_in_path(number, bearer.credentials if bearer else None, clock())

    Key = Annotated[ApiKey, Depends(key)]
    Member = Annotated[str, Depends(member)]
    PathMember = Annotated[str, Depends(path_member)]

    @app.get("/health", tags=["service"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/ping", tags=["service"])
    def ping(api_key: Key) -> dict[str, str]:
        """Checks the API key and answers: a client's connectivity check (and the benchmark's
        floor: the same middleware, key check and thread hop as every route, no data)."""
        return {"status": "ok"}

    @app.post("/v1/members/login", response_model=TokenOut, tags=["members"])
    def login(body: Login, api_key: Key) -> TokenOut:
        """Member number or e-mail + PIN → a short-lived token. Wrong PINs lock like the kiosk."""
        api_key.require("member")
        token, exp = run(lambda: services.login(body.login, body.pin, clock()))
        return TokenOut(token=token, expires=exp, member=services.member_from_token(token, clock()))

    @app.post("/v1/members", response_model=EnrolOut, status_code=201, tags=["members"])
    def enrol(body: EnrolIn, api_key: Key) -> dict[str, Any]:
        """Online enrolment: a member number from head office's own blocks (0000-0099)."""
        api_key.require("enrol")
        return run(lambda: services.enrol(body.model_dump(), clock()))

    @app.post("/v1/members/{number}/referral", response_model=ReferralOut, tags=["members"])
    def referral(number: str, body: ReferralIn, api_key: Key) -> dict[str, Any]:
        """A friend's referral code for a member enrolled without one, before their first stay.
        Checked as head office's fold checks it (known, not one's own, no loop, once)."""
        api_key.require("enrol")
        return run(lambda: services.refer(number, body.code, clock()))

    @app.post("/v1/members/{number}/pin", response_model=FirstPinOut, tags=["members"])
    def first_pin(number: MemberNumber, body: FirstPinIn, api_key: Key) -> dict[str, Any]:
        """An imported member's first PIN, with the one-time code head office sent: single use,
        30 days, five wrong codes void it."""
        api_key.require("member")
        return run(lambda: services.set_first_pin(number, body.code, body.pin, clock()))

    @app.get("/v1/me", response_model=Dashboard, tags=["members"])
    async def dashboard(number: Member) -> dict[str, Any]:
        """The member's dashboard: the same figures the kiosk shows."""
        return await offload(lambda: services.dashboard(number, clock()))

    @app.get("/v1/me/profile", response_model=ProfileOut, tags=["members"])
    def get_profile(number: Member) -> dict[str, Any]:
        return run(lambda: services.profile(number))

    @app.patch("/v1/me/profile", response_model=ProfileOut, tags=["members"])
    def patch_profile(body: ProfileIn, number: Member) -> dict[str, Any]:
        """Change e-mail, phone, birth date, language or marketing consent (kept with its history)."""
        return run(lambda: services.update_profile(number, body.model_dump(exclude_none=True), clock()))

    @app.get("/v1/me/offers", response_model=list[OfferOut], tags=["rates"])
    def offers(number: Member) -> list[dict[str, Any]]:
        """VIP offers this member may see today (top tiers see some before the public date)."""
        return run(lambda: services.offers(number, clock()))

    @app.get("/v1/me/last-minute", response_model=list[LastMinuteOut], tags=["rates"])
    def last_minute(number: Member) -> list[dict[str, Any]]:
        """Rooms held back for VIPs, released close to the date."""
        return run(lambda: services.last_minute(number, clock()))

    @app.post("/v1/rates/quote", response_model=QuoteOut, tags=["rates"])
    def rate_quote(
        body: QuoteIn, api_key: Key, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        """The member's price for a stay request; never above the public rate. Without a member
        token, the base tier's member rate."""
        api_key.require("rates", body.property)
        number = None
        if authorization:
            number = services.member_from_token(authorization.removeprefix("Bearer ").strip(), clock())
        return run(
            lambda: services.quote(
                number,
                body.property,
                body.room_type,
                body.arrival,
                body.nights,
                Decimal(body.public_rate),
                clock(),
            )
        )

    @app.post("/v1/properties/{property}/stays", response_model=StayOut, tags=["property systems"])
    async def post_stay(property: Code, body: StayIn, api_key: Key) -> dict[str, Any]:
        """A folio after check-out. Idempotent by (property, folio): a re-post changes nothing; a
        changed folio is a correction (the difference is clawed back or added)."""
        api_key.require("stays", property)
        return await offload(lambda: services.post_stay(property, body.model_dump(), clock()))

    @app.post("/v1/properties/{property}/arrivals", response_model=ArrivalsOut, tags=["property systems"])
    def post_arrivals(property: Code, body: ArrivalsIn, api_key: Key) -> dict[str, Any]:
        """The property system's arrivals (at most 1,000 a request): under partial replicas each
        member is held by the property's nodes until ``arrival_days`` after the arrival, and
        their record is sent there now, before the guest reaches the lobby. Repeating a
        request changes nothing but the hold's end."""
        api_key.require("stays", property)
        rows = [(a.member, a.arrival) for a in body.arrivals]
        return run(lambda: services.hold_arrivals(property, rows, clock()))

    @app.post("/v1/me/redemptions", response_model=RedeemOut, status_code=201, tags=["members"])
    def redeem(body: RedeemIn, number: Member) -> dict[str, Any]:
        """Redeem online: a head-office hold, then the redemption event (as a kiosk does)."""
        return run(lambda: services.redeem(number, body.reward, clock()))

    @app.post("/v1/me/transfers", response_model=TransferOut, status_code=201, tags=["members"])
    def transfer(body: TransferIn, number: Member) -> dict[str, Any]:
        """Points to a partner at the programme's ratio, within its daily cap."""
        return run(lambda: services.transfer(number, body.partner, body.points, clock()))

    @app.get("/v1/members/{number}/partners", response_model=list[PartnerAccountOut], tags=["members"])
    def partner_accounts(number: PathMember) -> list[dict[str, Any]]:
        """The member's linked partner accounts: the number at each partner that a transfer to
        it is credited to (``POST /v1/me/transfers`` needs one)."""
        return run(lambda: services.partner_accounts(number))

    @app.put(
        "/v1/members/{number}/partners/{partner_code}", response_model=PartnerAccountOut, tags=["members"]
    )
    def link_partner(
        number: PathMember, partner_code: Code, body: PartnerLinkIn, api_key: Key
    ) -> dict[str, Any]:
        """Link the member's account at a partner, or replace the one linked: a number the partner
        issues (its ``account_pattern``, 422 otherwise), held by no other member (409)."""
        return run(
            lambda: services.link_partner(number, partner_code, body.account, clock(), by=f"web:{api_key.id}")
        )

    @app.post("/v1/me/claims", response_model=ClaimOut, status_code=202, tags=["members"])
    def claim(body: ClaimIn, number: Member) -> dict[str, Any]:
        """A missing-points claim: queued with the kiosks' claims at head office."""
        return run(lambda: services.claim(number, body.model_dump(), clock()))

    @app.post("/v1/me/feedback", response_model=FeedbackOut, status_code=201, tags=["members"])
    def feedback(body: FeedbackIn, number: Member) -> dict[str, Any]:
        return run(lambda: services.feedback(number, body.stars, body.tags, body.comment, clock()))

    # Head-office reports, JSON and CSV (their own module; the 'reports' scope).
    from staypoint.central.api.reports import add_report_routes

    add_report_routes(app, services, key)
    # The member page a booking engine embeds (/member/) and the voucher QR (api/member_page.py).
    from staypoint.central.api.member_page import add_member_page

    add_member_page(app, services, member, clock)
    # Stored value spent online (its own module; the 'member' scope with a token or the PIN).
    from staypoint.central.api.value import add_value_routes

    add_value_routes(app, services, key, clock, run)
    return app
