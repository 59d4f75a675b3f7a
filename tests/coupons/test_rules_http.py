"""Coupon rules over HTTP: cart redemption, qualification, time windows and the
live drop PATCH; every bad value a 400 naming the field and its limit; nobody
qualifies or redeems another's coupons."""

import time
from typing import Any

import msgspec

from stampede.domain.coupons import rules
from stampede.domain.coupons.spec import TemplateSpec
from stampede.domain.models import from_ms
from tests.api.conftest import Api
from tests.coupons.helpers import drop_spec

TEMPLATES = {
    "drinks": {"kind": "threshold_off", "face_value": 500, "threshold": 3000, "valid_days": 30,
               "categories": ["drinks"]},
    "night": {"kind": "fixed_off", "face_value": 100, "valid_days": 30,
              "hours": [{"start": "03:00", "end": "03:01"}], "days": ["mon"]},
}
SPEC = msgspec.json.encode(drop_spec(templates=TEMPLATES, per_user=10,
                                     time_zone="Pacific/Kiritimati"))
CART = [{"item": "latte", "category": "drinks", "qty": 2, "amount": 1800},
        {"item": "mocha", "category": "drinks", "qty": 1, "amount": 1400},
        {"item": "cake", "category": "food", "qty": 1, "amount": 2500}]


def user(name: str) -> dict[str, str]:
    return {"X-User-Id": name, "X-Identity-Hash": f"p-{name}"}


async def _setup(api: Api) -> tuple[dict[str, str], dict[str, Any]]:
    r = await api.admin.put("/admin/v1/campaigns/r1", data=SPEC, headers=api.op())
    assert r.status == 201, await r.text()
    r = await api.admin.put("/admin/v1/merchants/m1", json={"name": "Cafe"}, headers=api.op())
    merchant = {"Authorization": f"Bearer {(await r.json())['token']}"}
    coupons = {}
    for tid in TEMPLATES:
        r = await api.public.post("/v1/campaigns/r1/coupons", json={"sku": tid},
                                  headers=user("alice"))
        assert r.status == 201, await r.text()
        coupons[tid] = (await r.json())["coupons"][0]
    return merchant, coupons


async def test_cart_redemption_and_qualification(api: Api) -> None:
    merchant, coupons = await _setup(api)
    r = await api.public.post("/v1/me/coupons/qualify", json={"lines": CART},
                              headers=user("alice"))
    assert r.status == 200, await r.text()
    view = await r.json()
    by = {q["template"]: q for q in view["coupons"]}
    assert view["cart_amount"] == 5700
    assert by["drinks"]["fits"] and by["drinks"]["discount"] == 500
    assert [x["discount"] for x in by["drinks"]["lines"]] == [282, 218, 0]
    assert by["night"]["reason"] == "outside_hours" or by["night"]["fits"]
    # BOLA: bob's qualification never lists alice's coupons
    r = await api.public.post("/v1/me/coupons/qualify", json={"lines": CART},
                              headers=user("bob"))
    assert (await r.json())["coupons"] == []
    assert (await api.public.post("/v1/me/coupons/qualify", json={"lines": CART})).status \
        == 401
    # a user token cannot redeem (merchants only), a merchant redeems with lines
    order = {"code": coupons["drinks"]["code"], "order_id": "o1", "lines": CART}
    assert (await api.public.post("/v1/redemptions", json=order,
                                  headers=user("alice"))).status == 401
    r = await api.public.post("/v1/redemptions", json=order, headers=merchant)
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["discount"] == 500 and body["order_amount"] == 5700
    assert [x["discount"] for x in body["lines"]] == [282, 218, 0]
    r = await api.public.post("/v1/me/coupons/qualify", json={"lines": CART},
                              headers=user("alice"))
    assert "drinks" not in {q["template"] for q in (await r.json())["coupons"]}  # used


async def test_scope_and_time_refusals(api: Api) -> None:
    merchant, coupons = await _setup(api)
    order = {"code": coupons["drinks"]["code"], "order_id": "o2", "order_amount": 9000}
    r = await api.public.post("/v1/redemptions", json=order, headers=merchant)
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_request"
    assert "send the order's lines" in await r.text()
    r = await api.public.post("/v1/redemptions", json={**order, "order_amount": None,
                                                       "lines": CART[2:]}, headers=merchant)
    assert r.status == 409 and "no line of the order" in await r.text()
    # one minute a week (Mondays 03:00 in Kiritimati): the clock set 90 s before it
    now = int(time.time() * 1000)
    t = msgspec.convert(TEMPLATES["night"], TemplateSpec)
    start = next(a for a, _ in rules.windows(t, "Pacific/Kiritimati", now) if a > now + 100_000)
    await api.engine.set_clock_offset("r1", start - 90_000 - now)
    night = {"code": coupons["night"]["code"], "order_id": "o3", "order_amount": 900}
    r = await api.public.post("/v1/redemptions", json=night, headers=merchant)
    assert r.status == 409
    err = (await r.json())["error"]
    assert err["code"] == "conflict"
    assert err["message"].endswith("next usable at " + from_ms(start).isoformat())
    assert 85 <= int(r.headers["Retry-After"]) <= 90
    await api.engine.set_clock_offset("r1", start + 10_000 - now)
    r = await api.public.post("/v1/redemptions", json=night, headers=merchant)
    assert r.status == 201, await r.text()
    # a zone that is no IANA zone is refused when the drop is defined
    bad = msgspec.json.encode(drop_spec(templates=TEMPLATES, time_zone="Mars/Olympus"))
    r = await api.admin.put("/admin/v1/campaigns/r2", data=bad, headers=api.op())
    assert r.status == 400 and "Mars/Olympus" in (await r.json())["error"]["message"]


async def test_bad_carts_are_400s_naming_the_field_and_limit(api: Api) -> None:
    merchant, coupons = await _setup(api)
    code = coupons["drinks"]["code"]
    line = CART[0]
    cases: list[tuple[Any, str]] = [
        ({"lines": [line] * 101}, "length <= 100"),
        ({"lines": []}, "length >= 1"),
        ({"lines": [{**line, "qty": 0}]}, "lines[0].qty"),
        ({"lines": [{**line, "amount": -1}]}, "lines[0].amount"),
        ({"lines": [{**line, "item": "a b"}]}, "lines[0].item"),
        ({"lines": [{**line, "category": "x" * 65}]}, "lines[0].category"),
        ({"lines": [{"item": "a", "qty": 1, "amount": 1}]}, "category"),
        ({"lines": [line], "order_amount": 1}, "not the sum of the lines"),
        ({}, "order_amount is required"),
    ]
    for extra, needle in cases:
        r = await api.public.post("/v1/redemptions", json={"code": code, "order_id": "b",
                                                           **extra}, headers=merchant)
        assert r.status == 400, (extra, await r.text())
        err = (await r.json())["error"]
        assert err["code"] == "invalid_request" and needle in err["message"], (needle, err)
    for bad in ({"lines": [line] * 101}, {"lines": "x"}, {}):
        r = await api.public.post("/v1/me/coupons/qualify", json=bad, headers=user("alice"))
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_request"


async def test_live_patch_over_http(api: Api) -> None:
    _merchant, coupons = await _setup(api)
    url = "/admin/v1/campaigns/r1/coupons"
    patch = {"templates": {"drinks": {"valid_days": 40, "categories": ["tea"]}},
             "merchant_daily_cap": 20}
    assert (await api.admin.patch(url, json=patch, headers=api.viewer())).status == 403
    assert (await api.admin.patch(url, json=patch)).status == 401
    r = await api.admin.patch(url, json=patch, headers=api.op())
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["coupons_extended"] == 1 and "cp_mcap" in body["changed"]
    cid = coupons["drinks"]["coupon_id"]
    r = await api.public.get(f"/v1/coupons/{cid}", headers=user("alice"))
    assert (await r.json())["valid_to"] > coupons["drinks"]["valid_to"]
    bad = [({"templates": {"drinks": {"valid_days": 5}}}, 400, "valid_days may only grow"),
           ({"templates": {"nope": {"min_qty": 2}}}, 404, "has no template 'nope'"),
           ({"templates": {"drinks": {"hours": [{"start": "14:00", "end": "11:00"}]}}}, 400,
            "start must come before end"),
           ({"templates": {"drinks": {"min_qty": 0}}}, 400, "min_qty"),
           ({"templates": {"drinks": {"face_value": 1}}}, 400, "face_value"),
           ({"per_day": 0}, 400, "per_day")]
    for p, status, needle in bad:
        r = await api.admin.patch(url, json=p, headers=api.op())
        assert r.status == status and needle in (await r.json())["error"]["message"], \
            (p, await r.text())
    r = await api.admin.patch("/admin/v1/campaigns/zz/coupons", json={}, headers=api.op())
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
