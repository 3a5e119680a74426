"""The member page a booking engine embeds: ``GET /member/`` (docs/api.md, "The member page").

One static HTML page with its script, calling the API itself: sign in with the member number
(or e-mail) and PIN (``POST /v1/members/login``), then points, tier and progress (``/v1/me``),
vouchers with their QR code, offers (``/v1/me/offers``) and Redeem buttons
(``POST /v1/me/redemptions`` with a fresh ``Idempotency-Key`` per click, so a retried click never
redeems twice). The page is given the API key to use in its address (``/member/?key=sp_...``,
or ``data-key`` on the embedding ``<iframe>``'s page): a key with the ``member`` scope only.

A voucher's QR is ``GET /v1/me/vouchers/{code}/qr.svg`` (segno, SVG): the voucher's signed
token, the one a kiosk verifies offline (as its own voucher screen shows it).

Registered by ``app.build_app`` with one call (:func:`add_member_page`).
"""

# No ``from __future__ import annotations``: FastAPI reads these endpoints' annotations.
import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, Response

from staypoint.central.application.services import Services

PAGE = (Path(__file__).with_name("member_page.html")).read_text(encoding="utf-8")


def voucher_qr_svg(token: str) -> str:
    """The QR of a voucher's signed token, as SVG (dark modules on white, a quiet zone)."""
    import segno  # only the member page draws QR codes: the rest of head office never loads it

    out = io.BytesIO()
    segno.make_qr(token, error="l", boost_error=True).save(
        out, kind="svg", scale=4, border=4, dark="#000", light="#fff", xmldecl=False
    )
    return out.getvalue().decode()


def add_member_page(
    app: FastAPI, services: Services, member: Callable[..., str], clock: Callable[[], datetime]
) -> None:
    """``GET /member/`` (not in the OpenAPI document: a page) and the voucher QR endpoint."""
    Member = Annotated[str, Depends(member)]

    @app.get("/member/", include_in_schema=False)
    def member_page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})

    @app.get(
        "/v1/me/vouchers/{code}/qr.svg",
        tags=["members"],
        response_class=Response,
        responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}, "description": "SVG"}},
    )
    def voucher_qr(code: str, number: Member) -> Response:
        """A voucher's QR code (its signed token, as a kiosk verifies it offline), SVG."""
        return Response(voucher_qr_svg(services.voucher_token(number, code)), media_type="image/svg+xml")
