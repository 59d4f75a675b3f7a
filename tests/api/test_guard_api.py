"""The scalper guard over HTTP: refusal shapes, challenges, live PATCH, client networks,
and the gateway limiter that fails open."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from stampede import Engine, Settings
from stampede.api.auth import mint_user_token
from stampede.domain import pow
from tests.api.conftest import JWT_SECRET, Api, serve_api
from tests.api.test_api import SPEC

EASY = {"base_bits": 4, "step_bits": 1, "max_bits": 8}
CLAIM = "/v1/campaigns/launch/claims"
BODY = {"sku": "tee-black-m", "qty": 1}


async def _create(api: Api, throttle: dict[str, Any]) -> None:
    spec = SPEC | {"throttle": throttle,
                   "skus": [SPEC["skus"][0] | {"waves": [SPEC["skus"][0]["waves"][0] |
                                                          {"qty": 500}]}]}
    resp = await api.admin.put("/admin/v1/campaigns/launch", json=spec, headers=api.op())
    assert resp.status == 201, await resp.text()


def _h(user: str, **extra: str) -> dict[str, str]:
    return {"X-User-Id": user, **extra}


async def test_throttled_is_429_with_an_exact_retry_after(api: Api) -> None:
    await _create(api, {"device": {"per_s": 0.05, "burst": 1}})
    assert (await api.public.post(CLAIM, json=BODY, headers=_h("a", **{"X-Device-Id": "d"}))
            ).status == 201
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("b", **{"X-Device-Id": "d"}))
    err = (await resp.json())["error"]
    assert resp.status == 429 and err["code"] == "throttled" and err["reason"] == "device"
    assert 19_000 <= err["retry_after_ms"] <= 20_000 and resp.headers["Retry-After"] == "20"


async def test_challenge_round_trip_and_blocked(api: Api) -> None:
    await _create(api, {"accounts_per_device": {"challenge_above": 1, "reject_above": 2},
                        "challenge": EASY})
    dev = {"X-Device-Id": "phone-1"}
    assert (await api.public.post(CLAIM, json=BODY, headers=_h("u1", **dev))).status == 201
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u2", **dev))
    err = (await resp.json())["error"]
    assert resp.status == 403 and err["code"] == "challenge_required"
    ch = err["challenge"]
    solution = pow.solve(ch["token"], ch["difficulty"])
    solved = {**dev, "X-Challenge-Token": ch["token"], "X-Challenge-Solution": solution}
    assert (await api.public.post(CLAIM, json=BODY, headers=_h("u2", **solved))).status == 201
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u2", **solved))  # reused
    assert (await resp.json())["error"]["code"] == "challenge_required"  # the device is over
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u3", **solved))
    assert (await resp.json())["error"]["code"] == "blocked"  # third account: over the cap
    # Any fingerprint is taken (odd ones by digest): still the same device.
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u4", **{"X-Device-Id": "a|b"}))
    assert resp.status == 201
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u5", **{"X-Device-Id": "a|b"}))
    assert (await resp.json())["error"]["code"] == "challenge_required"
    metrics = await (await api.admin.get("/metrics")).text()
    assert 'stampede_refusals_total{reason="challenge_required",scope="accounts_per_device"}' \
        in metrics


async def test_account_age_from_the_token(api: Api) -> None:
    await _create(api, {"risk": [{"signal": "account_age_s", "below": 3600,
                                  "action": "reject"}]})
    young = mint_user_token(JWT_SECRET, "young", created_at=int(time.time()) - 60)
    old = mint_user_token(JWT_SECRET, "old", created_at=int(time.time()) - 86_400)
    resp = await api.public.post(CLAIM, json=BODY, headers={"Authorization": f"Bearer {young}"})
    assert (resp.status, (await resp.json())["error"]["reason"]) == (403, "risk_age")
    resp = await api.public.post(CLAIM, json=BODY, headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 201


async def test_patch_applies_to_the_next_request_and_bad_input_is_400(api: Api) -> None:
    await _create(api, {"user": {"per_s": 100, "burst": 10}})
    assert (await api.public.post(CLAIM, json=BODY, headers=_h("u"))).status == 201
    for bad in ({"throttle": {"user": {"per_s": 0}}}, {"throttle": {"nope": 1}},
                {"throttle": {"block": {"networks": ["1.0.0.0/8"]}}},
                {"throttle": {"accounts_per_network": {"challenge_above": 9,
                                                       "reject_above": 1}}}):
        resp = await api.admin.patch("/admin/v1/campaigns/launch", json=bad, headers=api.op())
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["code"] == "invalid_request"
    assert (await api.public.post(CLAIM, json=BODY, headers=_h("u"))).status == 201  # unchanged
    resp = await api.admin.patch("/admin/v1/campaigns/launch", headers=api.op(),
                                 json={"throttle": {"block": {"users": ["u"]}}})
    assert resp.status == 200
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u"))
    assert (resp.status, (await resp.json())["error"]["code"]) == (403, "blocked")


async def test_the_spec_documents_the_throttle(api: Api) -> None:
    spec = await (await api.admin.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert "throttle" in schemas["CampaignSpec"]["properties"]
    assert "throttle" in schemas["CampaignPatch"]["properties"]
    public = await (await api.public.get("/openapi.json")).json()
    claim = public["paths"]["/v1/campaigns/{cid}/claims"]["post"]
    assert "429" in claim["responses"]
    assert {"X-Device-Id", "X-Challenge-Token"} <= {p["name"] for p in claim["parameters"]}


@asynccontextmanager
async def _apps(redis_url: str, tmp: Path, start: bool = True,
                **settings: Any) -> AsyncIterator[Api]:
    engine = Engine.from_url(redis_url, Settings(data_dir=tmp, **settings))
    if start:
        await engine.start()
    try:
        async with serve_api(engine) as api:
            yield api
    finally:
        await engine.close()


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(clean_redis: str,
                                                                tmp_path: Path) -> None:
    xff = {"X-Forwarded-For": "203.0.113.9"}
    async with _apps(clean_redis, tmp_path) as api:  # no trusted proxy: the socket's address
        await _create(api, {"block": {"networks": ["203.0.113.0/24"]}})
        assert (await api.public.post(CLAIM, json=BODY, headers=_h("a", **xff))).status == 201
    async with _apps(clean_redis, tmp_path, trusted_proxies="127.0.0.0/8,::1/128") as api:
        resp = await api.public.post(CLAIM, json=BODY, headers=_h("a", **xff))
        assert (await resp.json())["error"]["reason"] == "network_blocked"


async def test_gateway_limiter_limits_and_fails_open(clean_redis: str, tmp_path: Path) -> None:
    async with _apps(clean_redis, tmp_path, gateway_rate_per_s=1, gateway_burst=2) as api:
        codes = [(await api.public.get("/v1/pow-solver.js")).status for _ in range(3)]
        assert codes == [200, 200, 429]
    dead = "redis://127.0.0.1:1/0"  # nothing listens there
    async with _apps(dead, tmp_path, start=False, gateway_rate_per_s=1,
                     gateway_burst=1) as api:
        for _ in range(3):  # the limiter cannot reach Redis: requests go on
            resp = await api.public.get("/v1/pow-solver.js")
            assert resp.status == 200 and b"solveChallenge" in await resp.read()
        resp = await asyncio.wait_for(api.public.post(CLAIM, json=BODY, headers=_h("a")), 30)
        assert resp.status == 503  # a claim fails closed
        metrics = await (await api.admin.get("/metrics")).text()
        assert "stampede_limiter_fail_open_total" in metrics
