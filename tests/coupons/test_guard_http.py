"""The scalper guard on `POST /v1/campaigns/{cid}/coupons`, over real sockets and a real
Valkey: the answers, signals, metrics and spec of a sale claim's guard."""

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import msgspec

from stampede.domain import pow
from stampede.state import keys
from tests.api.conftest import Api
from tests.api.test_guard_api import _apps
from tests.coupons.helpers import drop_spec

CLAIM = "/v1/campaigns/d1/coupons"
BODY = {"sku": "five"}
EASY = {"base_bits": 4, "step_bits": 1, "max_bits": 8}


async def _drop(api: Api, throttle: dict[str, Any] | None, **kw: Any) -> None:
    campaign = {"throttle": throttle} if throttle is not None else {}
    spec = msgspec.json.encode(drop_spec(campaign=campaign, **kw))
    resp = await api.admin.put("/admin/v1/campaigns/d1", data=spec, headers=api.op())
    assert resp.status == 201, await resp.text()


def _h(user: str, **extra: str) -> dict[str, str]:
    return {"X-User-Id": user, **extra}


async def _error(resp: Any) -> dict[str, Any]:
    return (await resp.json())["error"]  # type: ignore[no-any-return]


async def test_the_user_rate_is_429_with_an_exact_retry_after(api: Api) -> None:
    await _drop(api, {"user": {"per_s": 0.05, "burst": 3}}, per_user=10)  # 20 s a claim
    started = time.monotonic()
    for _ in range(3):
        assert (await api.public.post(CLAIM, json=BODY, headers=_h("u"))).status == 201
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u"))
    elapsed_ms = math.ceil((time.monotonic() - started) * 1000)
    err = await _error(resp)
    assert (resp.status, err["code"], err["reason"]) == (429, "throttled", "user")
    ms = err["retry_after_ms"]  # the GCRA's exact wait: 20 s less the time the claims took
    assert 20_000 - elapsed_ms - 2 <= ms <= 20_000
    assert resp.headers["Retry-After"] == str(math.ceil(ms / 1000))
    assert (await api.public.post(CLAIM, json=BODY, headers=_h("v"))).status == 201
    wallet = await (await api.public.get("/v1/me/coupons", headers=_h("u"))).json()
    assert len(wallet["coupons"]) == 3


async def test_blocked_users_and_devices_are_403(api: Api) -> None:
    await _drop(api, {"block": {"users": ["mallory"], "devices": ["dev-123"]}})
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("mallory"))
    err = await _error(resp)
    assert (resp.status, err["code"], err["reason"]) == (403, "blocked", "user_blocked")
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("bob", **{"X-Device-Id":
                                                                        "dev-123"}))
    err = await _error(resp)
    assert (resp.status, err["code"], err["reason"]) == (403, "blocked", "device_blocked")
    assert (await api.public.post(CLAIM, json=BODY, headers=_h("bob"))).status == 201
    metrics = await (await api.admin.get("/metrics")).text()
    assert 'stampede_refusals_total{reason="blocked",scope="device_blocked"}' in metrics
    assert 'stampede_coupon_operations_total{answer="blocked",op="claim"}' in metrics


async def test_the_account_past_the_device_limit_solves_a_challenge_once(api: Api) -> None:
    await _drop(api, {"accounts_per_device": {"challenge_above": 2, "reject_above": 9},
                      "challenge": EASY}, per_user=5)
    dev = {"X-Device-Id": "phone-1"}
    for u in ("u1", "u2"):
        assert (await api.public.post(CLAIM, json=BODY, headers=_h(u, **dev))).status == 201
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u3", **dev))
    err = await _error(resp)
    assert (resp.status, err["code"], err["reason"]) == (403, "challenge_required",
                                                         "accounts_per_device")
    ch = err["challenge"]
    solved = {**dev, "X-Challenge-Token": ch["token"],
              "X-Challenge-Solution": pow.solve(ch["token"], ch["difficulty"])}
    both = await asyncio.gather(*(api.public.post(CLAIM, json=BODY, headers=_h("u3", **solved))
                                  for _ in range(2)))
    assert sorted(r.status for r in both) == [201, 403]  # exactly one goes through
    resp = await api.public.post(CLAIM, json=BODY, headers=_h("u3", **solved))  # reused
    assert (resp.status, (await _error(resp))["code"]) == (403, "challenge_required")
    wallet = await (await api.public.get("/v1/me/coupons", headers=_h("u3"))).json()
    assert len(wallet["coupons"]) == 1
    stats = await (await api.admin.get("/admin/v1/campaigns/d1/coupons/stats",
                                       headers=api.viewer())).json()
    assert stats["totals"]["issued"] == 3
    metrics = await (await api.admin.get("/metrics")).text()
    assert 'stampede_refusals_total{reason="challenge_required",scope="accounts_per_device"}' \
        in metrics


async def test_an_unthrottled_drop_is_unaffected(api: Api) -> None:
    await _drop(api, None, stock=20)
    dev = {"X-Device-Id": "shared"}
    statuses = [(await api.public.post(CLAIM, json=BODY, headers=_h(f"u{i}", **dev))).status
                for i in range(12)]
    assert statuses == [201] * 12
    events = await api.engine.redis.xrange(keys.events_key("d1"))
    assert not [f for _, f in events if f["type"] == "requests_refused"]


async def test_coupon_claims_pass_the_guard_not_the_gateway_limiter(clean_redis: str,
                                                                    tmp_path: Path) -> None:
    """Like sale claims, coupon claims are limited in their own script (fail closed)."""
    async with _apps(clean_redis, tmp_path, gateway_rate_per_s=1, gateway_burst=1) as api:
        await _drop(api, None)
        statuses = [(await api.public.post(CLAIM, json=BODY, headers=_h(f"u{i}"))).status
                    for i in range(3)]
        assert statuses == [201] * 3
        assert (await api.public.get("/v1/me/coupons", headers=_h("u0"))).status == 200
        assert (await api.public.get("/v1/me/coupons", headers=_h("u0"))).status == 429


async def test_the_spec_documents_the_guard_on_coupon_claims(api: Api) -> None:
    public = await (await api.public.get("/openapi.json")).json()
    claim = public["paths"]["/v1/campaigns/{cid}/coupons"]["post"]
    assert {"403", "429"} <= set(claim["responses"])
    assert "throttled" in claim["responses"]["429"]["description"]
    assert {"X-Device-Id", "X-Challenge-Token", "X-Challenge-Solution"} \
        <= {p["name"] for p in claim["parameters"]}
