"""Presale allocations over HTTP: the channel from the token's `channel` claim (or
X-Channel in dev auth), ops returning an allocation live, 400 for a spec whose
allocations add up to more than the stock, naming the field."""

from typing import Any

from stampede.api.auth import mint_user_token
from tests.api.conftest import JWT_SECRET, Api
from tests.conftest import iso


def _spec(app: int = 4) -> dict[str, Any]:
    return {"name": "Concert", "opens_at": iso(-60), "closes_at": iso(3600),
            "skus": [{"sku": "ticket", "price": 5000,
                      "allocations": [{"name": "app", "qty": app, "channels": ["app"]}],
                      "waves": [{"at": iso(-60), "qty": 6}]}]}


async def _claim(api: Api, headers: dict[str, str], qty: int) -> Any:
    return await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ticket", "qty": qty},
                                 headers=headers)


async def test_channels_and_the_ops_return(api: Api) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    assert resp.status == 201, await resp.text()
    resp = await _claim(api, {"X-User-Id": "web1", "X-Channel": "web"}, 3)  # 2 shared
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "sold_out", body
    token = mint_user_token(JWT_SECRET, "app1", channel="app")
    resp = await _claim(api, {"Authorization": f"Bearer {token}"}, 5)
    assert resp.status == 201, await resp.text()
    path = "/admin/v1/campaigns/gig/skus/ticket/allocations/app/return"
    resp = await api.admin.post(path, headers=api.op())
    assert resp.status == 200 and await resp.json() == \
        {"sku": "ticket", "allocation": "app", "returned": 0}
    resp = await api.admin.post(path, headers=api.op())
    body = await resp.json()
    assert resp.status == 409 and "already returned" in body["error"]["message"], body
    resp = await api.admin.post(path.replace("/app/", "/box/"), headers=api.op())
    body = await resp.json()
    assert resp.status == 404 and "no allocation 'box'" in body["error"]["message"], body
    resp = await _claim(api, {"X-User-Id": "x", "X-Channel": "no good"}, 1)
    body = await resp.json()
    assert resp.status == 400 and "channel" in body["error"]["message"], body


async def test_allocations_over_the_stock_are_refused(api: Api) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(app=7), headers=api.op())
    body = await resp.json()
    assert resp.status == 400, body
    assert "skus[0].allocations" in body["error"]["message"] and "7" in body["error"]["message"]
    assert (await api.public.get("/v1/campaigns/gig")).status == 404
