"""Every report over HTTP, JSON and CSV, behind the 'reports' scope (the same figures as the CLI)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from staypoint.central.reports import figures as fig
from staypoint.central.reports.cli import report_figures
from tests.api.conftest import NOW, Api

pytest_plugins = ["tests.pg_fixtures"]


def test_every_report_as_json_and_csv_with_the_cli_figures(api: Api, tmp_path: Path) -> None:
    ada = api.enrol("Ada Lovelace", email="ada@example.com")
    api.stay(ada, "F-1", room="300")
    api.stay(ada, "F-2", room="120", prop="SHA")
    api.keys["office"] = api.services.create_key("head office BI", ["reports"], ["*"], NOW)
    listed = api.client.get("/v1/reports", headers=api.h("office"))
    assert listed.status_code == 200
    assert [r["name"] for r in listed.json()["reports"]] == list(fig.REPORTS)
    for name in fig.REPORTS:
        r = api.client.get(f"/v1/reports/{name}", headers=api.h("office"))
        assert r.status_code == 200, (name, r.text)
        body = r.json()
        assert body["name"] == name and isinstance(body["columns"], list) and isinstance(body["rows"], list)
        c = api.client.get(f"/v1/reports/{name}", params={"format": "csv"}, headers=api.h("office"))
        assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(c.text)))
        assert rows[0] == ["report", *body["columns"]]  # machine names, as the CLI's CSV
        assert len(rows) == 1 + len(body["rows"])
    growth = api.client.get(
        "/v1/reports/growth", params={"from": "2026-01-01", "to": "2027-01-01"}, headers=api.h("office")
    ).json()
    assert growth["headline"]["new_members"] == 1
    store = api.ledger.store
    url = getattr(store, "url", None) or f"sqlite:///{store.path}"  # type: ignore[attr-defined]
    cli = report_figures(url, ["growth"], cache=tmp_path / "cache.db")["growth"]
    assert (
        growth["columns"] == cli.columns and growth["headline"]["new_members"] == cli.headline["new_members"]
    )


def test_reports_need_the_scope_and_a_known_name(api: Api) -> None:
    r = api.client.get("/v1/reports/growth", headers=api.h("web"))
    assert r.status_code == 403 and r.json()["code"] == "scope"
    assert api.client.get("/v1/reports/growth").status_code == 401
    api.keys["office"] = api.services.create_key("office", ["reports"], ["*"], NOW)
    r = api.client.get("/v1/reports/nope", headers=api.h("office"))
    assert r.status_code == 404 and "growth" in r.json()["error"]
    r = api.client.get(
        "/v1/reports/growth", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=api.h("office")
    )
    assert r.status_code == 422
    r = api.client.get("/v1/reports/growth", params={"from": "yesterday"}, headers=api.h("office"))
    assert r.status_code == 422
    # A key for one property sees that property's figures only.
    api.keys["sha"] = api.services.create_key("SHA GM", ["reports"], ["SHA"], NOW)
    assert api.client.get("/v1/reports/growth", headers=api.h("sha")).status_code == 403
    assert (
        api.client.get("/v1/reports/growth", params={"property": "BJS"}, headers=api.h("sha")).status_code
        == 403
    )
    assert (
        api.client.get("/v1/reports/growth", params={"property": "SHA"}, headers=api.h("sha")).status_code
        == 200
    )
