"""Promo and referral codes over HTTP: contract, error shapes, BOLA."""

import msgspec

from tests.api.conftest import Api
from tests.coupons.test_codes import coded_drop

SPEC = msgspec.json.encode(coded_drop(wrong_codes={"per_hour": 2}))
CLAIM = "/v1/campaigns/d1/code-claims"
PLAIN = "/v1/campaigns/d1/coupons"
REF = "/v1/campaigns/d1/referral-code"


def user(name: str, idh: str | None = None) -> dict[str, str]:
    return {"X-User-Id": name, "X-Identity-Hash": idh or f"person-{name}"}


async def error(r: object) -> tuple[int, str, str]:
    body = await r.json()  # type: ignore[attr-defined]
    return r.status, body["error"]["code"], body["error"]["message"]  # type: ignore[attr-defined]


async def test_promo_code_claim_over_http(api: Api) -> None:
    assert (await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())).status \
        == 201
    r = await api.public.post(CLAIM, json={"code": "summer 25"}, headers=user("alice"))
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["sku"] == "promo" and body["coupons"][0]["template"] == "promo"
    for payload in ({}, {"sku": "five", "code": "SUMMER25"}, {"code": None}):
        status, code, _ = await error(await api.public.post(CLAIM, json=payload,
                                                            headers=user("alice")))
        assert (status, code) == (400, "invalid_request")
    status, code, _ = await error(await api.public.post(PLAIN, json={"code": "SUMMER25"},
                                                        headers=user("alice")))
    assert (status, code) == (400, "invalid_request")  # the SKU route's contract is as it was
    status, code, _ = await error(await api.public.post(CLAIM, json={"code": "x" * 65},
                                                        headers=user("alice")))
    assert (status, code) == (400, "invalid_request")
    status, code, message = await error(await api.public.post(PLAIN, json={"sku": "promo"},
                                                              headers=user("alice")))
    assert (status, code) == (403, "forbidden") and "only with a code" in message
    await api.public.post(CLAIM, json={"code": "SUMMER25"}, headers=user("alice"))
    status, code, message = await error(await api.public.post(
        CLAIM, json={"code": "SUMMER25"}, headers=user("alice")))
    assert (status, code) == (409, "limit_exceeded") and "2 times" in message


async def test_wrong_codes_get_404_then_429_with_retry_after(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())
    for guess in ("SUMMER24", "SUMMER26"):
        status, code, message = await error(await api.public.post(
            CLAIM, json={"code": guess}, headers=user("mallory")))
        assert (status, code) == (404, "not_found") and "no such code" in message
    r = await api.public.post(CLAIM, json={"code": "SUMMER25"}, headers=user("mallory"))
    assert r.status == 429 and (await r.json())["error"]["code"] == "throttled"
    assert 1 <= int(r.headers["Retry-After"]) <= 1800


async def test_referral_code_route_and_its_bola(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())
    assert (await api.public.post(REF)).status == 401
    r = await api.public.post(REF, headers=user("ann"))
    assert r.status == 200, await r.text()
    ann = await r.json()
    assert ann["created"] and ann["campaign_id"] == "d1"
    again = await (await api.public.post(REF, headers=user("ann"))).json()
    assert again == {**ann, "created": False}
    bob = await (await api.public.post(REF, headers=user("bob"))).json()
    assert bob["code"] != ann["code"]  # each caller only ever gets their own code
    status, code, _ = await error(await api.public.post(REF, headers={"X-User-Id": "x"}))
    assert (status, code) == (403, "forbidden")  # no identity: no referral code
    status, code, _ = await error(await api.public.post("/v1/campaigns/nope/referral-code",
                                                       headers=user("ann")))
    assert (status, code) == (404, "not_found")
    r = await api.public.post(CLAIM, json={"code": ann["code"]}, headers=user("carol"))
    assert r.status == 201 and (await r.json())["sku"] == "friend"
    status, code, _ = await error(await api.public.post(
        CLAIM, json={"code": ann["code"]}, headers=user("carol-2", "person-carol")))
    assert (status, code) == (409, "limit_exceeded")
    status, code, _ = await error(await api.public.post(
        CLAIM, json={"code": ann["code"]}, headers=user("ann-2", "person-ann")))
    assert (status, code) == (409, "conflict")
    wallet = await (await api.public.get("/v1/me/coupons", headers=user("ann"))).json()
    assert [c["template"] for c in wallet["coupons"]] == ["bonus"]
