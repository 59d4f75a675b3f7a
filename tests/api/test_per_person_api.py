"""Real-name one per person over HTTP: the identity from the token's `idh` (or
X-Identity-Hash in dev auth); 409 per_person naming the limit, 403 person_required,
400 for a spec that combines the limit with a waitlist."""

from typing import Any

from stampede.api.auth import mint_user_token
from tests.api.conftest import JWT_SECRET, Api
from tests.conftest import iso


def _spec(**limits: Any) -> dict[str, Any]:
    return {"name": "Concert", "opens_at": iso(-60), "closes_at": iso(3600),
            "limits": {"per_person": 2, **limits},
            "skus": [{"sku": "ticket", "price": 5000, "waves": [{"at": iso(-60), "qty": 10}]}]}


async def _claim(api: Api, headers: dict[str, str], qty: int = 1) -> Any:
    return await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ticket", "qty": qty},
                                 headers=headers)


async def test_one_person_many_accounts(api: Api) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    assert resp.status == 201, await resp.text()
    resp = await _claim(api, {"X-User-Id": "ann", "X-Identity-Hash": "h-ann"})
    assert resp.status == 201, await resp.text()
    token = mint_user_token(JWT_SECRET, "ann-alt", idh="h-ann")
    resp = await _claim(api, {"Authorization": f"Bearer {token}"}, qty=2)
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "limit_exceeded", body
    assert "allows 2 units per person" in body["error"]["message"]
    assert "has bought 1" in body["error"]["message"]
    resp = await _claim(api, {"Authorization": f"Bearer {token}"})
    assert resp.status == 201, await resp.text()
    resp = await _claim(api, {"X-User-Id": "bob"})
    body = await resp.json()
    assert resp.status == 403 and body["error"]["code"] == "forbidden", body
    assert "identity (idh)" in body["error"]["message"]
    resp = await _claim(api, {"X-User-Id": "cat", "X-Identity-Hash": "no|pipes"})
    body = await resp.json()
    assert resp.status == 400 and "identity (idh)" in body["error"]["message"], body


async def test_a_bad_spec_is_refused_naming_the_field(api: Api) -> None:
    spec = {**_spec(), "waitlist": {}}
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=spec, headers=api.op())
    body = await resp.json()
    assert resp.status == 400 and "limits.per_person" in body["error"]["message"], body
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(per_person=0),
                               headers=api.op())
    body = await resp.json()
    assert resp.status == 400 and "limits.per_person" in body["error"]["message"], body
    assert (await api.public.get("/v1/campaigns/gig")).status == 404
