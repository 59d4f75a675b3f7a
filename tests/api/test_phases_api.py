"""Presale access phases over HTTP: tiers from the token (or X-User-Tiers in dev auth),
not_open with the claimant's own opening and Retry-After, 403 not_eligible, bad specs 400."""

from typing import Any

import pytest

from stampede.api.auth import mint_user_token
from tests.api.conftest import JWT_SECRET, Api
from tests.conftest import iso


def _spec(public: bool = True) -> dict[str, Any]:
    phases: list[dict[str, Any]] = [
        {"name": "vip", "opens_at": iso(-30), "tiers": ["vip"]},
        {"name": "fans", "opens_at": iso(300), "tiers": ["fan"]}]
    if public:
        phases.append({"name": "public", "opens_at": iso(600)})
    return {"name": "Concert", "opens_at": iso(-60), "closes_at": iso(3600),
            "skus": [{"sku": "ticket", "price": 5000, "waves": [{"at": iso(-60), "qty": 10}]}],
            "phases": phases}


async def _create(api: Api, cid: str, spec: dict[str, Any]) -> None:
    resp = await api.admin.put(f"/admin/v1/campaigns/{cid}", json=spec, headers=api.op())
    assert resp.status == 201, await resp.text()


async def _claim(api: Api, cid: str, headers: dict[str, str]) -> Any:
    return await api.public.post(f"/v1/campaigns/{cid}/claims", json={"sku": "ticket"},
                                 headers=headers)


async def test_the_phase_opening_is_answered_with_retry_after(api: Api) -> None:
    await _create(api, "gig", _spec())
    resp = await _claim(api, "gig", {"X-User-Id": "ann", "X-User-Tiers": "vip"})
    assert resp.status == 201, await resp.text()
    resp = await _claim(api, "gig", {"X-User-Id": "bob", "X-User-Tiers": "fan, other"})
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "not_open"
    assert "opens to you at" in body["error"]["message"]
    assert 295 <= int(resp.headers["Retry-After"]) <= 300
    assert body["error"]["opens_at"] in body["error"]["message"]
    resp = await _claim(api, "gig", {"X-User-Id": "cat"})
    assert resp.status == 409 and 595 <= int(resp.headers["Retry-After"]) <= 600
    status = await (await api.public.get("/v1/campaigns/gig")).json()
    assert [p["name"] for p in status["phases"]] == ["vip", "fans", "public"]


async def test_the_token_claim_tiers_admits(api: Api) -> None:
    await _create(api, "gig", _spec(public=False))
    token = mint_user_token(JWT_SECRET, "dora", tiers=["vip"])
    resp = await _claim(api, "gig", {"Authorization": f"Bearer {token}"})
    assert resp.status == 201, await resp.text()
    plain = mint_user_token(JWT_SECRET, "eve")
    resp = await _claim(api, "gig", {"Authorization": f"Bearer {plain}"})
    body = await resp.json()
    assert resp.status == 403 and body["error"]["code"] == "not_eligible"
    assert "Retry-After" not in resp.headers


@pytest.mark.parametrize("tiers", ["v|p", "vip,,fan", ",".join(f"t{i}" for i in range(33))])
async def test_malformed_dev_tiers_are_400(api: Api, tiers: str) -> None:
    await _create(api, "gig", _spec())
    resp = await _claim(api, "gig", {"X-User-Id": "ann", "X-User-Tiers": tiers})
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "invalid_request"
    assert "X-User-Tiers" in body["error"]["message"]
    stats = await api.engine.stats("gig")
    assert stats and stats.skus[0].held == 0


@pytest.mark.parametrize("tiers", ["vip", ["v p"], [1]])
async def test_a_malformed_tiers_claim_voids_the_token(api: Api, tiers: Any) -> None:
    await _create(api, "gig", _spec())
    token = mint_user_token(JWT_SECRET, "ann", tiers=tiers)
    resp = await _claim(api, "gig", {"Authorization": f"Bearer {token}"})
    body = await resp.json()
    assert resp.status == 401 and body["error"]["code"] == "unauthorized"
    assert "tiers" in body["error"]["message"]


@pytest.mark.parametrize(("change", "field"), [
    (lambda p: p.insert(0, p.pop(1)), "phases[1].opens_at"),
    (lambda p: p[1]["tiers"].append("vip"), "phases[1].tiers"),
    (lambda p: p.insert(0, {"name": "all", "opens_at": iso(-40)}), "phases[0].tiers"),
    (lambda p: p[0].update(tiers=[]), "phases[0].tiers"),
    (lambda p: p[0].update(opens_at=iso(7200)), "phases[0].opens_at"),
    (lambda p: p[0].update(colour="red"), "colour"),
])
async def test_bad_phases_are_400_naming_the_field(api: Api, change: Any, field: str) -> None:
    spec = _spec()
    change(spec["phases"])
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=spec, headers=api.op())
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "invalid_request", body
    assert field in body["error"]["message"]
    assert await api.engine.stats("gig") is None


async def test_phases_are_patched_over_http(api: Api) -> None:
    await _create(api, "gig", _spec())
    resp = await api.admin.patch("/admin/v1/campaigns/gig", json={"phases": []},
                                 headers=api.op())
    assert resp.status == 200, await resp.text()
    resp = await _claim(api, "gig", {"X-User-Id": "cat"})
    assert resp.status == 201
    resp = await api.admin.patch("/admin/v1/campaigns/gig", json={"closes_at": iso(100),
                                 "phases": _spec()["phases"]}, headers=api.op())
    body = await resp.json()
    assert resp.status == 400 and "phases" in body["error"]["message"]
