"""The OpenAPI document is complete enough for client generators: every request
and response has an example the schema accepts, timestamps say `date-time`,
Retry-After and X-Request-Id are declared, and the document names its server."""

from typing import Any

import jsonschema_rs
import pytest

from stampede.api import admin, app, coupons, guard, live, public, queues, route_errors, webhooks
from stampede.api.openapi import build_spec, enforced_errors
from stampede.outcomes import REFUSALS

PUBLIC = build_spec("public", [op for r in (app.health, public.api, live.api, queues.api,
                                            guard.api, coupons.api) for op in r.operations],
                    dev_auth=True)
ADMIN = build_spec("admin", [op for r in (app.health, admin.api, coupons.admin_api,
                                          webhooks.api) for op in r.operations], dev_auth=True)
SPECS = {"public": PUBLIC, "admin": ADMIN}


def _media(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            if "requestBody" in op:
                found += [(f"{where} request", m)
                          for m in op["requestBody"]["content"].values()]
            for status, answer in op["responses"].items():
                found += [(f"{where} {status}", m) for m in answer.get("content", {}).values()]
    return found


@pytest.mark.parametrize("name", SPECS)
def test_every_request_and_response_has_an_example_its_schema_accepts(name: str) -> None:
    spec = SPECS[name]
    media = _media(spec)
    assert len(media) > 20
    for where, m in media:
        assert "example" in m, where
        if isinstance(m["example"], str):  # the live feed's event stream
            assert m["example"].startswith("event: state\ndata: {"), where
            continue
        schema = {**m["schema"], "components": spec["components"]}
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
        errors = [e.message for e in validator.iter_errors(m["example"])]
        assert not errors, f"{where}: {errors}"


@pytest.mark.parametrize("name", SPECS)
def test_timestamps_are_date_times(name: str) -> None:
    stamps = 0
    for schema_name, schema in SPECS[name]["components"]["schemas"].items():
        for prop, sub in schema.get("properties", {}).items():
            if prop.endswith(("_at", "_until")) and schema_name != "Error":
                branches = sub.get("anyOf", [sub])
                assert any(b.get("format") == "date-time" for b in branches), \
                    f"{schema_name}.{prop}"
                stamps += 1
    assert stamps >= 5


def test_retry_after_and_request_id_are_declared_and_a_server_named() -> None:
    claims = PUBLIC["paths"]["/v1/campaigns/{cid}/claims"]["post"]["responses"]
    assert "Retry-After" in claims["429"]["headers"]
    assert "Retry-After" in claims["503"]["headers"]
    assert "Retry-After" not in claims["404"]["headers"]
    for spec in SPECS.values():
        assert spec["servers"] == [{"url": "/", "description": spec["servers"][0]["description"]}]
        for ops in spec["paths"].values():
            for op in ops.values():
                for answer in op["responses"].values():
                    assert "X-Request-Id" in answer["headers"]
        assert spec["components"]["headers"]["Retry-After"]["schema"]["type"] == "integer"


def test_each_route_names_its_own_error_codes() -> None:
    by_status = {}
    for r in REFUSALS.values():
        by_status.setdefault(r.status, set()).add(r.code)
    for name, table in route_errors.NARROWED.items():
        for status, codes in table.items():
            assert set(codes) <= by_status[status], (name, status)
    ops = {op.handler.__name__: op for r in (app.health, *app.PUBLIC_ROUTES, admin.api,
                                             coupons.admin_api, webhooks.api)
           for op in r.operations}
    assert set(route_errors.NARROWED) <= set(ops)
    for name, op in ops.items():
        statuses = set(op.errors) | enforced_errors(op)
        for status in statuses & {403, 409}:
            assert status in route_errors.NARROWED.get(name, {}) or (
                status == 403 and op.auth == "operator"), f"{name} {status}: not narrowed"
    claims = PUBLIC["paths"]["/v1/campaigns/{cid}/claims"]["post"]["responses"]
    assert claims["409"]["description"].startswith(
        "not_open, paused, closed, sold_out, limit_exceeded, conflict;")
    assert "webhook_url_refused" not in claims["400"]["description"]
    assert claims["403"]["content"]["application/json"]["example"]["error"]["code"] == \
        "admission_required"
    hooks = ADMIN["paths"]["/admin/v1/webhooks"]["post"]["responses"]
    assert "webhook_url_refused" in hooks["400"]["description"]
    assert hooks["403"]["description"].startswith("forbidden;")
