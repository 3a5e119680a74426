"""Every head-office report over HTTP: ``GET /v1/reports`` and ``GET /v1/reports/{name}``.

JSON (the ``Report`` as data, machine column names) or CSV (``format=csv``, the same
columns as ``staypoint report NAME --format csv``), filtered like the CLI (``from``, ``to``,
``property``, ``tier``). The API key needs the ``reports`` scope; a key limited to some
properties gets only those (a filter for another property, or none, is a 403).

Registered by ``app.build_app`` with one call (``add_report_routes``); the figures come from
``reports.cli.report_figures`` over the ledger's own store URL, so the API, the CLI and the
console show the same numbers.
"""

# No ``from __future__ import annotations``: FastAPI reads these endpoints' annotations.
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse, Response

from staypoint.central.application.services import ApiKey, Services
from staypoint.central.errors import Forbidden, Invalid, NotFound, Unavailable
from staypoint.central.reports import figures as fig
from staypoint.central.reports.render import as_csv, as_json, label

SCOPE = "reports"


def ledger_url(services: Services) -> str:
    """The store URL of the ledger the API serves (what ``report_figures`` opens)."""
    store = services.ledger.store
    url = getattr(store, "url", None)
    if isinstance(url, str) and url.startswith("postgresql"):
        return url
    path = getattr(store, "path", None)
    if path is None:
        raise Unavailable("reports need a SQLite or PostgreSQL ledger", "no_reports")
    return f"sqlite:///{Path(path).resolve()}"


def add_report_routes(
    app: FastAPI,
    services: Services,
    key: Callable[..., ApiKey],
    *,
    cache: Path | None = None,
) -> None:
    """Add the report endpoints to ``app``; ``key`` is the app's API-key dependency."""
    from staypoint.central.reports.cli import report_figures

    Key = Annotated[ApiKey, Depends(key)]

    def allowed(api_key: ApiKey, prop: str | None) -> None:
        api_key.require(SCOPE)
        if "*" not in api_key.properties:
            if prop is None:
                raise Forbidden("this API key is for some properties only: give property=", "property")
            api_key.require(SCOPE, prop)

    @app.get("/v1/reports", tags=["reports"])
    def list_reports(api_key: Key) -> dict[str, Any]:
        """The report names, with their titles' labels (``GET /v1/reports/{name}`` for one)."""
        api_key.require(SCOPE)
        return {"reports": [{"name": n, "label": label(n)} for n in fig.REPORTS]}

    @app.get(
        "/v1/reports/{name}",
        tags=["reports"],
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
    )
    def get_report(
        name: str,
        api_key: Key,
        date_from: Annotated[date | None, Query(alias="from", description="first day, inclusive")] = None,
        date_to: Annotated[date | None, Query(alias="to", description="day after the last")] = None,
        property: Annotated[str | None, Query(max_length=32)] = None,
        tier: Annotated[str | None, Query(max_length=32)] = None,
        format: Literal["json", "csv"] = "json",
    ) -> Response:
        """One report as JSON (columns, rows, headline, chart, notes) or as CSV."""
        allowed(api_key, property)
        if name not in fig.REPORTS:
            raise NotFound(f"no report {name!r}: one of {', '.join(fig.REPORTS)}", "no_report")
        if date_from and date_to and date_to <= date_from:
            raise Invalid("to is the day after the last: it must be after from", "invalid")
        reports = report_figures(
            ledger_url(services),
            [name],
            start=date_from,
            end=date_to,
            property=property,
            tier=tier,
            cache=cache,
        )
        if format == "csv":
            return Response(
                as_csv(reports),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        return JSONResponse(json.loads(as_json(reports))[name])
