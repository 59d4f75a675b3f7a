"""Paid vouchers over HTTP: contract, error shapes, Idempotency-Key, BOLA."""

import msgspec

from stampede.state import keys
from tests.api.conftest import Api
from tests.coupons.test_paid import PRICE, paid_spec

SPEC = msgspec.json.encode(paid_spec(stock=10, hold_ttl_s=60))
CLAIM = "/v1/campaigns/cafe/coupons"


def user(name: str, key: str | None = None) -> dict[str, str]:
    return {"X-User-Id": name, **({"Idempotency-Key": key} if key else {})}


async def error(r: object) -> tuple[int, str, str]:
    body = await r.json()  # type: ignore[attr-defined]
    return r.status, body["error"]["code"], body["error"]["message"]  # type: ignore[attr-defined]


async def _held(api: Api, who: str = "alice") -> str:
    assert (await api.admin.put("/admin/v1/campaigns/cafe", data=SPEC,
                                headers=api.op())).status in (200, 201)
    r = await api.public.post(CLAIM, json={"sku": "coffee10"}, headers=user(who))
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["status"] == "held" and body["coupons"] == [] and body["hold_deadline"]
    return str(body["claim_id"])


async def test_hold_pay_refund_over_http(api: Api) -> None:
    claim = await _held(api)
    r = await api.public.get(f"/v1/paid-holds/{claim}", headers=user("alice"))
    assert r.status == 200
    assert (await r.json())["status"] == "held" and (await r.json())["amount"] == PRICE

    r = await api.public.post(f"/v1/paid-holds/{claim}/confirm", json={"payment": "pay_1"},
                              headers=user("alice", "k1"))
    assert r.status == 200, await r.text()
    paid = await r.json()
    assert paid["status"] == "confirmed" and len(paid["coupons"]) == 1
    again = await api.public.post(f"/v1/paid-holds/{claim}/confirm",
                                  json={"payment": "pay_1"}, headers=user("alice", "k1"))
    assert again.status == 200 and (await again.json()) == paid
    status, code, message = await error(await api.public.post(
        f"/v1/paid-holds/{claim}/confirm", json={"payment": "pay_2"},
        headers=user("alice", "k1")))
    assert (status, code) == (422, "idempotency_mismatch")  # one key, another payment
    status, code, message = await error(await api.public.post(
        f"/v1/paid-holds/{claim}/confirm", json={"payment": "pay_2"}, headers=user("alice")))
    assert (status, code) == (409, "conflict") and claim in message

    r = await api.public.post(f"/v1/paid-holds/{claim}/refund", headers=user("alice", "r1"))
    assert r.status == 200, await r.text()
    body = await r.json()
    assert (body["status"], body["refunded_amount"]) == ("refunded", PRICE)
    r = await api.public.post(f"/v1/paid-holds/{claim}/refund", headers=user("alice", "r2"))
    assert r.status == 200 and (await r.json())["status"] == "refunded"
    wallet = await (await api.public.get("/v1/me/coupons", headers=user("alice"))).json()
    assert [c["status"] for c in wallet["coupons"]] == ["refunded"]


async def test_bad_input_is_a_4xx_with_a_stable_code(api: Api) -> None:
    claim = await _held(api)
    for payload in ({}, {"payment": ""}, {"payment": "x" * 129}, {"payment": "a b"},
                    {"payment": "p", "extra": 1}):
        status, code, _ = await error(await api.public.post(
            f"/v1/paid-holds/{claim}/confirm", json=payload, headers=user("alice")))
        assert (status, code) == (400, "invalid_request"), payload
    status, code, message = await error(await api.public.get("/v1/paid-holds/nope",
                                                             headers=user("alice")))
    assert (status, code) == (400, "invalid_request") and "claim_id" in message
    status, code, _ = await error(await api.public.post(f"/v1/paid-holds/{claim}/refund",
                                                        headers=user("alice")))
    assert (status, code) == (409, "conflict")  # not paid yet: nothing to refund
    status, code, _ = await error(await api.public.get(f"/v1/paid-holds/{claim}"))
    assert (status, code) == (401, "unauthorized")
    free = await api.public.post(CLAIM, json={"sku": "five"}, headers=user("alice"))
    status, code, _ = await error(await api.public.post(
        f"/v1/paid-holds/{(await free.json())['claim_id']}/refund", headers=user("alice")))
    assert (status, code) == (409, "not_a_voucher")


async def test_a_lapsed_hold_cannot_be_paid(api: Api) -> None:
    claim = await _held(api)
    await api.engine.redis.hset(keys.campaign_keys("cafe").meta, "time_offset_ms", 61_000)
    status, code, message = await error(await api.public.post(
        f"/v1/paid-holds/{claim}/confirm", json={"payment": "pay_1"}, headers=user("alice")))
    assert (status, code) == (409, "hold_expired") and claim in message
    r = await api.public.get(f"/v1/paid-holds/{claim}", headers=user("alice"))
    assert (await r.json())["status"] == "expired"


async def test_nobody_reads_pays_or_refunds_anothers_hold(api: Api) -> None:
    claim = await _held(api)
    for method, path, body in (("GET", "", None), ("POST", "/confirm", {"payment": "p"}),
                               ("POST", "/refund", None)):
        r = await api.public.request(method, f"/v1/paid-holds/{claim}{path}", json=body,
                                     headers=user("mallory"))
        status, code, message = await error(r)
        assert (status, code) == (404, "not_found") and "of yours" in message
    # Mallory's tries changed nothing; the buyer pays, and mallory still cannot refund.
    r = await api.public.post(f"/v1/paid-holds/{claim}/confirm", json={"payment": "p1"},
                              headers=user("alice"))
    assert r.status == 200
    r = await api.public.post(f"/v1/paid-holds/{claim}/refund", headers=user("mallory"))
    assert r.status == 404
    r = await api.public.get(f"/v1/paid-holds/{claim}", headers=user("alice"))
    assert (await r.json())["status"] == "confirmed"
