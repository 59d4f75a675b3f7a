"""Every admin route that changes state leaves an audit-log row: actor, before, after.

The routes come from the route table itself (the admin app's operations): a
route that is not a GET must have a way to call it here (RECIPES) or the test
fails, and once called successfully `GET /admin/v1/audit-log` must show a
row for it by the caller. So a new admin route cannot be left out of the log.
Real Valkey, real SQLite and PostgreSQL.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from stampede import Engine, Settings
from stampede.api.app import make_admin_app
from stampede.api.auth import Authenticator, parse_admin_tokens
from stampede.api.context import DURABLE, WEBHOOKS
from stampede.durable.persister import Persister
from stampede.durable.store import Store
from stampede.durable.webhooks import Webhooks
from tests.aftersale.helpers import bought, sale_spec
from tests.conftest import iso, serving
from tests.coupons.helpers import drop_spec

OPS = {"Authorization": "Bearer op-token"}
Client = TestClient[web.Request, web.Application]


@pytest.fixture
def store_settings(tmp_path: Path, store_url: str) -> Settings:
    return Settings(data_dir=tmp_path, store_url=store_url, persist_batch=200,
                    webhook_allowed_networks="127.0.0.0/8")


@dataclass
class Call:
    path: str
    body: Any = None
    text: str | None = None
    """A text/plain body (segment members)."""


GIG: dict[str, Any] = {
    "name": "Gig", "opens_at": iso(-60), "closes_at": iso(3600),
    "skus": [{"sku": "ticket", "price": 5000, "waves": [{"at": iso(-60), "qty": 10}],
              "allocations": [{"name": "app", "qty": 4, "channels": ["app"]}]}],
    "phases": [{"name": "insiders", "opens_at": iso(-30), "segments": ["insiders"]},
               {"name": "fans", "opens_at": iso(-20), "tiers": ["fan"]}]}

# (method, path as declared) -> how to call it; "{wid}" and "{claim}" are filled in.
RECIPES: dict[tuple[str, str], Call] = {
    ("PUT", "/admin/v1/campaigns/{cid}"): Call("/admin/v1/campaigns/gig", GIG),
    ("PATCH", "/admin/v1/campaigns/{cid}"): Call("/admin/v1/campaigns/gig", {"state": "paused"}),
    ("POST", "/admin/v1/campaigns/{cid}/skus/{sku}/stock"):
        Call("/admin/v1/campaigns/gig/skus/ticket/stock", {"delta": 2}),
    ("PUT", "/admin/v1/merchants/{mid}"): Call("/admin/v1/merchants/cafe", {"name": "Cafe"}),
    ("DELETE", "/admin/v1/merchants/{mid}"): Call("/admin/v1/merchants/cafe"),
    ("PATCH", "/admin/v1/campaigns/{cid}/coupons"):
        Call("/admin/v1/campaigns/drop/coupons", {"per_day": None}),
    ("POST", "/admin/v1/webhooks"):
        Call("/admin/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]}),
    ("PATCH", "/admin/v1/webhooks/{wid}"): Call("/admin/v1/webhooks/{wid}", {"paused": True}),
    ("POST", "/admin/v1/webhooks/{wid}/test"): Call("/admin/v1/webhooks/{wid}/test"),
    ("POST", "/admin/v1/webhooks/{wid}/replay"):
        Call("/admin/v1/webhooks/{wid}/replay", {"since": iso(-600)}),
    ("DELETE", "/admin/v1/webhooks/{wid}"): Call("/admin/v1/webhooks/{wid}"),
    ("POST", "/admin/v1/claims/{claim_id}/refund"): Call("/admin/v1/claims/{claim}/refund", {}),
    ("PUT", "/admin/v1/scanners/{sid}"):
        Call("/admin/v1/scanners/north-1", {"venue": "arena", "gate": "north"}),
    ("DELETE", "/admin/v1/scanners/{sid}"): Call("/admin/v1/scanners/north-1"),
    ("POST", "/admin/v1/campaigns/{cid}/grants"):
        Call("/admin/v1/campaigns/drop/grants", {"sku": "five", "users": ["ann", "bob"]}),
    ("POST", "/admin/v1/campaigns/{cid}/presale-codes"):
        Call("/admin/v1/campaigns/gig/presale-codes", {"count": 3, "tier": "fan"}),
    ("POST", "/admin/v1/campaigns/{cid}/skus/{sku}/allocations/{name}/return"):
        Call("/admin/v1/campaigns/gig/skus/ticket/allocations/app/return"),
    ("POST", "/admin/v1/campaigns/{cid}/segments/{segment}/members"):
        Call("/admin/v1/campaigns/gig/segments/insiders/members", text="ann\nbob\n"),
}
BY_EVENT = {("PUT", "/admin/v1/campaigns/{cid}"): "campaign_defined",
            ("PATCH", "/admin/v1/campaigns/{cid}"): "campaign_patched",
            ("POST", "/admin/v1/campaigns/{cid}/skus/{sku}/stock"): "stock_adjusted"}
"""Admin routes whose own event is their audit-log row (declared audit="event")."""
UNCHANGING = {("POST", "/admin/v1/live/ticket")}
"""Admin routes that change no state (declared audit="none")."""


@pytest.fixture
async def admin(sale: Engine, store: Store) -> AsyncIterator[tuple[Client, web.Application]]:
    auth = Authenticator("test-secret-0123456789-0123456789", True,
                         tuple(parse_admin_tokens("operator:op-token,viewer:view-token")))
    app = make_admin_app(sale, auth, {"draining": False}, metrics=False)
    app[DURABLE] = store
    app[WEBHOOKS] = Webhooks(store)
    async with serving(app) as client:
        yield client, app


async def _log(client: Client, persister: Persister) -> list[dict[str, Any]]:
    await persister.drain()  # the campaign actions' rows are their events
    resp = await client.get("/admin/v1/audit-log", params={"limit": "1000"},
                            headers={"Authorization": "Bearer view-token"})
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["items"])


async def test_every_admin_route_that_changes_state_is_in_the_audit_log(
        sale: Engine, persister: Persister, admin: tuple[Client, web.Application]) -> None:
    client, app = admin
    declared = [(r.method, r.resource.canonical) for r in app.router.routes()
                if r.resource is not None and r.method not in ("GET", "HEAD")
                and r.resource.canonical.startswith("/admin/")]
    changing = sorted(set(declared) - UNCHANGING)
    missing = [route for route in changing if route not in RECIPES]
    assert not missing, f"add a recipe (and an audit row) for {missing}"
    await sale.define_campaign("drop", drop_spec())
    await sale.define_campaign("plain", sale_spec())
    claim = await bought(sale, "plain", "ann")
    wid = ""
    seen: dict[str, int] = {}
    for route in sorted(RECIPES, key=list(RECIPES).index):  # in the order above
        call = RECIPES[route]
        path = call.path.replace("{wid}", wid).replace("{claim}", claim)
        kwargs: dict[str, Any] = ({"data": call.text, "headers": {**OPS, "Content-Type":
                                                                 "text/plain"}}
                                  if call.text is not None else {"json": call.body,
                                                                 "headers": OPS})
        resp = await client.request(route[0], path, **kwargs)
        assert 200 <= resp.status < 300, (route, resp.status, await resp.text())
        if route == ("POST", "/admin/v1/webhooks"):
            wid = (await resp.json())["id"]
        kind = BY_EVENT.get(route, "admin_action")
        rows = [r for r in await _log(client, persister)
                if r["actor"] == "operator-0" and r["type"] == kind
                and (kind != "admin_action" or (r["fields"]["target"], r["fields"]["action"])
                     == (path, f"{route[0]} {route[1]}"))]
        slot = kind if kind != "admin_action" else f"{route[0]} {path}"
        assert len(rows) == seen.get(slot, 0) + 1, (route, "no new audit-log row", rows)
        seen[slot] = len(rows)
    log = await _log(client, persister)
    assert {r["fields"]["action"] for r in log if r["type"] == "admin_action"} == {
        f"{m} {p}" for m, p in RECIPES} - {"PUT /admin/v1/campaigns/{cid}",
                                           "PATCH /admin/v1/campaigns/{cid}",
                                           "POST /admin/v1/campaigns/{cid}/skus/{sku}/stock"}
    assert {r["type"] for r in log} >= {"campaign_defined", "campaign_patched",
                                        "stock_adjusted", "admin_action"}


async def test_before_and_after_and_no_credential_in_the_log(
        sale: Engine, persister: Persister, admin: tuple[Client, web.Application]) -> None:
    client, _app = admin
    first = await client.put("/admin/v1/merchants/cafe", json={"name": "Cafe"}, headers=OPS)
    token = (await first.json())["token"]
    await client.put("/admin/v1/merchants/cafe", json={"name": "Cafe two"}, headers=OPS)
    made = await client.post("/admin/v1/webhooks", headers=OPS,
                             json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    hook = await made.json()
    await client.patch(f"/admin/v1/webhooks/{hook['id']}", json={"paused": True}, headers=OPS)
    gone = await client.delete(f"/admin/v1/webhooks/{hook['id']}", headers=OPS)
    assert gone.status == 204
    refused = await client.delete("/admin/v1/merchants/nobody", headers=OPS)
    assert refused.status == 404  # a refusal changes nothing: no row
    log = [r for r in await _log(client, persister) if r["type"] == "admin_action"]
    assert [r["fields"]["action"] for r in log] == [
        "PUT /admin/v1/merchants/{mid}", "PUT /admin/v1/merchants/{mid}",
        "POST /admin/v1/webhooks", "PATCH /admin/v1/webhooks/{wid}",
        "DELETE /admin/v1/webhooks/{wid}"]
    assert all(r["actor"] == "operator-0" for r in log)
    new_merchant, renamed, created, patched, deleted = log
    assert new_merchant["before"] is None and new_merchant["after"]["name"] == "Cafe"
    assert renamed["before"]["name"] == "Cafe" and renamed["after"]["name"] == "Cafe two"
    assert created["before"] is None and created["after"]["id"] == hook["id"]
    assert (patched["before"]["status"], patched["after"]["status"]) == ("active", "paused")
    assert deleted["before"]["status"] == "paused" and deleted["after"] is None
    text = str(log)
    assert token not in text and hook["secret"] not in text
    assert "(masked)" in text




async def test_a_replayed_put_is_not_a_second_action(
        sale: Engine, persister: Persister, admin: tuple[Client, web.Application]) -> None:
    client, _app = admin
    puts = [("/admin/v1/merchants/cafe", {"name": "Cafe"}),
            ("/admin/v1/scanners/north-1", {"venue": "arena", "gate": "north"})]
    for path, body in puts:
        keyed = {**OPS, "Idempotency-Key": f"put-{path}"}
        first = await client.put(path, json=body, headers=keyed)
        replay = await client.put(path, json=body, headers=keyed)
        assert first.status == replay.status == 201
        assert await replay.json() == await first.json()  # the first answer, token and all
    log = [r for r in await _log(client, persister) if r["type"] == "admin_action"]
    assert [r["fields"]["target"] for r in log] == [path for path, _ in puts]
    # A new key is a new action (a new token): its row is there.
    again = await client.put("/admin/v1/merchants/cafe", json={"name": "Cafe"},
                             headers={**OPS, "Idempotency-Key": "put-again"})
    assert again.status == 201
    log = [r for r in await _log(client, persister) if r["type"] == "admin_action"]
    assert len(log) == 3


async def test_a_replayed_refund_or_grant_is_not_a_second_action(
        sale: Engine, persister: Persister, admin: tuple[Client, web.Application]) -> None:
    client, _app = admin
    await sale.define_campaign("plain", sale_spec())
    await sale.define_campaign("drop", drop_spec())
    claim = await bought(sale, "plain", "ann")
    calls = [(f"/admin/v1/claims/{claim}/refund", {}),
             ("/admin/v1/campaigns/drop/grants", {"sku": "five", "users": ["ann", "bob"]})]
    for path, body in calls:
        keyed = {**OPS, "Idempotency-Key": "once"}
        first = await client.post(path, json=body, headers=keyed)
        replay = await client.post(path, json=body, headers=keyed)
        assert first.status == replay.status == 200, await replay.text()
    log = [r for r in await _log(client, persister) if r["type"] == "admin_action"]
    assert [r["fields"]["target"] for r in log] == [path for path, _ in calls]
    # Another key grants again (to someone new): a new row.
    more = await client.post("/admin/v1/campaigns/drop/grants", headers={
        **OPS, "Idempotency-Key": "twice"}, json={"sku": "five", "users": ["cy"]})
    assert more.status == 200 and (await more.json())["granted"] == 1
    assert len([r for r in await _log(client, persister) if r["type"] == "admin_action"]) == 3
