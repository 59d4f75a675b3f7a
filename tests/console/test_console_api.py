"""The console's server side over real HTTP and a real Valkey: the page and its assets,
who a token is, tickets, and one Redis read per tick however many consoles are open."""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stampede import Engine, Settings
from stampede.api import console_ticket
from stampede.api.auth import parse_admin_tokens
from stampede.api.console import ASSET_PREFIX
from stampede.api.console_feed import CONSOLE
from stampede.domain.models import CampaignPatch
from tests.api.conftest import OPERATOR, VIEWER, Api, serve_api
from tests.api.test_live import events
from tests.conftest import campaign_spec

TICK_S = 0.1


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, console_tick_ms=int(TICK_S * 1000),
                    console_max_listeners=60)


@pytest.fixture
async def sale(engine: Engine) -> AsyncIterator[Api]:
    await engine.define_campaign("rush", campaign_spec(stock=30, per_user=None))
    await engine.define_campaign("calm", campaign_spec(stock=5))
    async with serve_api(engine) as api:
        yield api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ticket(api: Api, token: str = OPERATOR) -> str:
    resp = await api.admin.post("/admin/v1/live/ticket", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["ticket"])


async def test_page_names_only_assets_it_serves(sale: Api) -> None:
    resp = await sale.admin.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    names = {part.split('"')[0] for part in page.split(ASSET_PREFIX)[1:]}
    assert {"console.js", "console.css", "uplot.min.css", "uplot.LICENSE.txt"} <= names
    # ... and what its modules import, by relative path under the same prefix.
    for name in names | {"campaigns.js", "lookup.js", "chart.js", "uplot.esm.js"}:
        asset = await sale.admin.get(ASSET_PREFIX + name)
        assert asset.status == 200, name
        assert "immutable" in asset.headers["Cache-Control"]
    # Not on the public listener: the console is for admins.
    assert (await sale.public.get("/")).status == 404


@pytest.mark.parametrize("path", ["/console/000000000000/console.js",
                                  ASSET_PREFIX + "nothing.js", "/console/x/console.js"])
async def test_unknown_assets_are_4xx_in_the_error_shape(sale: Api, path: str) -> None:
    resp = await sale.admin.get(path)
    assert resp.status in (400, 404)
    body = await resp.json()
    assert set(body["error"]) >= {"code", "message"}


async def test_me_says_name_and_role(sale: Api) -> None:
    for token, role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
        resp = await sale.admin.get("/admin/v1/me", headers=bearer(token))
        assert resp.status == 200
        body = await resp.json()
        assert body["role"] == role and body["name"].startswith(role)
    resp = await sale.admin.get("/admin/v1/me", headers=bearer("nope"))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_feed_refuses_without_a_valid_ticket(sale: Api) -> None:
    assert (await sale.admin.get("/admin/v1/live")).status == 400
    good = await ticket(sale)
    name, expires, mac = good.split(".")
    for bad in (f"{name}.{expires}.{'0' * len(mac)}", f"viewer-1.{expires}.{mac}",
                f"{name}.{int(expires) + 1}.{mac}", "garbage", OPERATOR):
        resp = await sale.admin.get("/admin/v1/live", params={"ticket": bad})
        assert resp.status == 401, bad
        error = (await resp.json())["error"]
        assert error["code"] == "unauthorized" and "ticket" in error["message"]
    # No admin token, no ticket.
    assert (await sale.admin.post("/admin/v1/live/ticket")).status == 401


def test_tickets_lapse_and_are_bound_to_their_token() -> None:
    tokens = tuple(parse_admin_tokens("operator:a-secret,viewer:b-secret"))
    issued = console_ticket.issue(tokens[0], now_s=1000)
    assert console_ticket.check(issued.value, tokens, now_s=1000) is tokens[0]
    assert console_ticket.check(issued.value, tokens, now_s=1000 + 61) == "expired"
    rotated = tuple(parse_admin_tokens("operator:new-secret,viewer:b-secret"))
    assert console_ticket.check(issued.value, rotated, now_s=1000) == "not one this service issued"


async def first_state(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    async for _, state in events(resp):
        return state
    raise AssertionError("the stream ended without a state")


async def test_feed_carries_campaigns_and_system(sale: Api) -> None:
    url = sale.admin.make_url("/admin/v1/live")
    async with aiohttp.ClientSession() as http, \
            http.get(url, params={"ticket": await ticket(sale, VIEWER)}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        state = await asyncio.wait_for(first_state(resp), 5)
    by_id = {c["id"]: c for c in state["campaigns"]}
    assert set(by_id) == {"rush", "calm"}
    rush = by_id["rush"]
    assert rush["state"] == "open" and rush["name"] == "test sale"
    assert rush["skus"][0] | {"released": 30, "available": 30, "held": 0, "sold": 0} \
        == rush["skus"][0]
    assert set(rush["rates"]) >= {"held", "sold_out", "limit_exceeded", "throttled", "blocked",
                                  "challenge_required"}
    system = state["system"]
    assert system["redis_used_memory"] > 0
    assert {"persister_lag_s", "requests_per_s", "errors_5xx_per_s"} <= set(system)
    me = next(w for w in system["workers"] if w["pid"] == os.getpid())
    assert me["console_listeners"] >= 1


async def test_many_consoles_share_one_read_per_tick_and_see_claims_move(sale: Api) -> None:
    hub = sale.admin.app[CONSOLE]  # type: ignore[index]
    url = sale.admin.make_url("/admin/v1/live")
    consoles = 50
    seen: list[list[dict[str, Any]]] = [[] for _ in range(consoles)]

    async def watch(i: int, http: aiohttp.ClientSession, ticket_value: str) -> None:
        async with http.get(url, params={"ticket": ticket_value}) as resp:
            assert resp.status == 200
            async for _, state in events(resp):
                rush = next(c for c in state["campaigns"] if c["id"] == "rush")
                seen[i].append(rush)
                if rush["skus"][0]["available"] == 0:
                    return

    value = await ticket(sale)
    async with aiohttp.ClientSession() as http:
        watchers = [asyncio.create_task(watch(i, http, value)) for i in range(consoles)]
        while hub.listeners < consoles:
            await asyncio.sleep(0.01)
        reads_before = hub.reads
        claims = [sale.public.post("/v1/campaigns/rush/claims", json={"sku": "tee"},
                                   headers={"X-User-Id": f"u{i}"}) for i in range(40)]
        statuses = [r.status for r in await asyncio.gather(*claims)]
        assert statuses.count(201) == 30
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(asyncio.gather(*watchers), 10)
        elapsed = asyncio.get_running_loop().time() - started
    ticks = hub.reads - reads_before
    # One pipelined read per tick, whatever the number of consoles (not 50 per tick).
    assert ticks <= (elapsed + 1) / TICK_S + 2
    for states in seen:
        last = states[-1]
        assert last["skus"][0]["held"] == 30 and last["counts"]["held"] == 30
        assert last["counts"]["sold_out"] == 10
    assert any(s["rates"]["held"] > 0 for s in seen[0])
    await asyncio.sleep(TICK_S * 3)
    assert hub.task is None and not hub.listeners  # the poller stops with the last console


async def test_viewer_cannot_act_and_operator_changes_show_in_the_feed(sale: Api) -> None:
    patch = {"state": "paused"}
    resp = await sale.admin.patch("/admin/v1/campaigns/rush", json=patch, headers=bearer(VIEWER))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    outcome = await sale.engine.patch_campaign("rush", CampaignPatch(state="paused"), "test")
    assert outcome.name == "OK"
    url = sale.admin.make_url("/admin/v1/live")
    async with aiohttp.ClientSession() as http, \
            http.get(url, params={"ticket": await ticket(sale)}) as resp:
        state = await asyncio.wait_for(first_state(resp), 5)
    assert next(c for c in state["campaigns"] if c["id"] == "rush")["state"] == "paused"


async def test_console_feeds_past_the_bound_are_refused(sale: Api, settings: Settings) -> None:
    hub = sale.admin.app[CONSOLE]  # type: ignore[index]
    hub.max_listeners = 1
    url = sale.admin.make_url("/admin/v1/live")
    value = await ticket(sale)
    async with aiohttp.ClientSession() as http, http.get(url, params={"ticket": value}) as first:
        assert first.status == 200
        async with http.get(url, params={"ticket": value}) as second:
            assert second.status == 503
            assert (await second.json())["error"]["code"] == "unavailable"


async def console_campaign(api: Api, cid: str) -> dict[str, Any]:
    url = api.admin.make_url("/admin/v1/live")
    async with aiohttp.ClientSession() as http, \
            http.get(url, params={"ticket": await ticket(api)}) as resp:
        state = await asyncio.wait_for(first_state(resp), 5)
    return next(c for c in state["campaigns"] if c["id"] == cid)


async def test_waitlist_offers_outstanding_follow_the_offer(sale: Api) -> None:
    await sale.engine.define_campaign("wl", campaign_spec(stock=1, per_user=None,
                                                          waitlist={"max_length": 10}))
    user = {"X-User-Id": "first"}
    resp = await sale.public.post("/v1/campaigns/wl/claims", json={"sku": "tee"}, headers=user)
    assert resp.status == 201
    claim_id = (await resp.json())["claim_id"]
    resp = await sale.public.post("/v1/campaigns/wl/waitlist", json={"sku": "tee"},
                                  headers={"X-User-Id": "second"})
    assert resp.status in (200, 201), await resp.text()
    wl = await console_campaign(sale, "wl")
    assert (wl["waitlist"], wl["offers_outstanding"]) == (1, 0)
    # The hold comes back: it is offered to the waitlist's head.
    assert (await sale.public.post(f"/v1/claims/{claim_id}/cancel", headers=user)).status == 200
    await asyncio.sleep(TICK_S * 2)  # (the poller of the last stream has stopped)
    assert (await console_campaign(sale, "wl"))["offers_outstanding"] == 1
    offer = (await (await sale.public.get("/v1/campaigns/wl/waitlist",
                                          headers={"X-User-Id": "second"})).json())
    offered = offer["entries"][0]["offer"]["claim_id"]
    resp = await sale.public.post(f"/v1/claims/{offered}/confirm",
                                  headers={"X-User-Id": "second"})
    assert resp.status == 200, await resp.text()
    wl = await console_campaign(sale, "wl")
    assert wl["offers_outstanding"] == 0 and wl["counts"]["offer_accepted"] == 1
