"""Refusals over HTTP: each names what refused, with the headers that help a client."""

from datetime import datetime
from typing import Any

from stampede.api.auth import mint_user_token
from stampede.state import keys
from tests.api.conftest import JWT_SECRET, Api
from tests.conftest import iso


def _spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "Launch", "opens_at": iso(-60), "closes_at": iso(3600), "hold_ttl_s": 600,
        "limits": {"per_user": 5, "max_per_claim": 3},
        "skus": [{"sku": "tee", "price": 1999, "per_user": 2,
                  "waves": [{"at": iso(-30), "qty": 50}]},
                 {"sku": "cap", "price": 999, "waves": [{"at": iso(-30), "qty": 50}]}]}
    return spec | over


async def _create(api: Api, cid: str = "launch", **over: Any) -> None:
    resp = await api.admin.put(f"/admin/v1/campaigns/{cid}", json=_spec(**over),
                               headers=api.op())
    assert resp.status == 201, await resp.text()


async def _claim(api: Api, user: str, sku: str, qty: int = 1, cid: str = "launch"
                 ) -> tuple[int, dict[str, Any], Any]:
    resp = await api.public.post(f"/v1/campaigns/{cid}/claims", json={"sku": sku, "qty": qty},
                                 headers={"X-User-Id": user})
    return resp.status, (await resp.json()).get("error", {}), resp.headers


async def test_not_open_gives_the_opening_and_retry_after(api: Api) -> None:
    opens = iso(125)
    await _create(api, opens_at=opens)
    status, err, headers = await _claim(api, "alice", "tee")
    assert status == 409 and err["code"] == "not_open"
    assert datetime.fromisoformat(err["opens_at"]) == datetime.fromisoformat(opens).replace(
        microsecond=datetime.fromisoformat(opens).microsecond // 1000 * 1000)
    assert err["opens_at"] in err["message"] and "'launch'" in err["message"]
    assert 120 <= int(headers["Retry-After"]) <= 126


async def test_unknown_campaign_and_unknown_sku_read_differently(api: Api) -> None:
    await _create(api)
    status, err, _ = await _claim(api, "alice", "tee", cid="nope")
    assert (status, err["code"], err["message"]) == (404, "not_found", "no campaign 'nope'")
    status, err, _ = await _claim(api, "alice", "hat")
    assert (status, err["code"], err["message"]) == (
        404, "not_found", "campaign 'launch' has no SKU 'hat'")
    resp = await api.admin.post("/admin/v1/campaigns/launch/skus/hat/stock",
                                json={"delta": 1}, headers=api.op())
    assert (await resp.json())["error"]["message"] == "campaign 'launch' has no SKU 'hat'"
    resp = await api.admin.post("/admin/v1/campaigns/nope/skus/hat/stock",
                                json={"delta": 1}, headers=api.op())
    assert (await resp.json())["error"]["message"] == "no campaign 'nope'"
    resp = await api.public.get("/v1/campaigns/nope")
    assert (await resp.json())["error"]["message"] == "no campaign 'nope'"


async def test_the_limit_that_refused_is_the_one_named(api: Api) -> None:
    await _create(api)
    assert (await _claim(api, "alice", "tee", 2))[0] == 201
    status, err, _ = await _claim(api, "alice", "tee")  # the SKU's limit (2), not the 5
    assert (status, err["code"]) == (409, "limit_exceeded")
    assert err["message"] == ("user 'alice' may hold at most 2 of SKU 'tee' (per-SKU limit); "
                              "they hold 2")
    assert (await _claim(api, "alice", "cap", 3))[0] == 201
    status, err, _ = await _claim(api, "alice", "cap")  # now the campaign's 5
    assert err["message"] == ("user 'alice' may hold at most 5 units in campaign 'launch' "
                              "(per-user limit); they hold 5")


async def test_a_limit_refusal_replays_with_its_message(api: Api) -> None:
    await _create(api)
    headers = {"X-User-Id": "bob", "Idempotency-Key": "k1"}
    assert (await _claim(api, "bob", "tee", 2))[0] == 201
    for _ in range(2):
        resp = await api.public.post("/v1/campaigns/launch/claims",
                                     json={"sku": "tee", "qty": 1}, headers=headers)
        assert resp.status == 409
        assert "per-SKU limit" in (await resp.json())["error"]["message"]


async def test_over_max_per_claim_says_so(api: Api) -> None:
    await _create(api)
    status, err, _ = await _claim(api, "alice", "cap", 4)
    assert (status, err["code"]) == (400, "invalid_request")
    assert err["message"] == ("a claim in campaign 'launch' may take at most 3 units "
                              "(max_per_claim); this one asks for 4")


async def test_paused_has_no_retry_after_and_closed_says_which(api: Api) -> None:
    await _create(api)
    await api.admin.patch("/admin/v1/campaigns/launch", json={"state": "paused"},
                          headers=api.op())
    status, err, headers = await _claim(api, "alice", "tee")
    assert (status, err["code"]) == (409, "paused") and "Retry-After" not in headers
    assert "'launch' is paused" in err["message"]


async def test_wrong_and_missing_admin_tokens_differ(api: Api) -> None:
    resp = await api.admin.get("/admin/v1/campaigns")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    missing = (await resp.json())["error"]
    resp = await api.admin.get("/admin/v1/campaigns", headers={"Authorization": "Bearer x"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    wrong = (await resp.json())["error"]
    assert missing["code"] == wrong["code"] == "unauthorized"
    assert missing["message"] == "an admin bearer token is required"
    assert wrong["message"] == "the bearer token is not an admin token"
    resp = await api.admin.put("/admin/v1/campaigns/x", json=_spec(), headers=api.viewer())
    assert resp.status == 403 and "viewer token may only read" in await resp.text()


async def test_every_401_carries_a_bearer_challenge(api: Api) -> None:
    await _create(api)
    url = "/v1/campaigns/launch/claims"
    resp = await api.public.post(url, json={"sku": "tee"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    bad = mint_user_token(JWT_SECRET + "-other", "alice")
    resp = await api.public.post(url, json={"sku": "tee"},
                                 headers={"Authorization": f"Bearer {bad}"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert (await resp.json())["error"]["message"].startswith("the bearer token is not valid")
    resp = await api.public.get("/v1/redemptions/d1.0123456789abcdef0123")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    resp = await api.public.get("/v1/redemptions/d1.0123456789abcdef0123",
                                headers={"Authorization": "Bearer not-a-merchant"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_405_has_its_own_code_and_allow(api: Api) -> None:
    resp = await api.public.delete("/v1/campaigns/launch/claims")
    assert resp.status == 405
    err = (await resp.json())["error"]
    assert err["code"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"] and "DELETE is not allowed" in err["message"]


async def test_stats_count_waves_and_name_request_counts(api: Api) -> None:
    waves = [{"at": iso(-30), "qty": 5}, {"at": iso(600), "qty": 7},
             {"at": iso(900), "qty": 3}]
    await _create(api, skus=[{"sku": "tee", "price": 1999, "waves": waves}])
    assert (await _claim(api, "alice", "tee", 3))[0] == 201
    resp = await api.admin.get("/admin/v1/campaigns/launch/stats", headers=api.viewer())
    stats = await resp.json()
    sku = stats["skus"][0]
    assert (sku["pending_waves"], sku["pending_units"], sku["held"]) == (2, 10, 3)
    assert "claims" not in stats
    assert stats["claims_by_outcome"] == {"held": 1}  # one claim, of three units


async def test_waitlist_and_queue_refusals_name_what_is_missing(api: Api) -> None:
    await _create(api)
    resp = await api.public.get("/v1/campaigns/launch/queue/me", headers={"X-User-Id": "a"})
    assert (await resp.json())["error"]["message"] == "campaign 'launch' has no waiting room"
    resp = await api.public.post("/v1/campaigns/launch/waitlist", json={"sku": "tee"},
                                 headers={"X-User-Id": "a"})
    assert (await resp.json())["error"]["message"] == "campaign 'launch' has no waitlist"
    resp = await api.public.post("/v1/campaigns/nope/waitlist", json={"sku": "tee"},
                                 headers={"X-User-Id": "a"})
    assert (await resp.json())["error"]["message"] == "no campaign 'nope'"


async def test_a_fenced_campaign_asks_to_retry_shortly(api: Api) -> None:
    await _create(api)
    await api.engine.redis.hset(keys.campaign_keys("launch").meta, "fenced", "1")
    status, err, headers = await _claim(api, "alice", "tee")
    assert (status, err["code"], headers["Retry-After"]) == (503, "unavailable", "1")
    assert "'launch' is being rebuilt" in err["message"]
