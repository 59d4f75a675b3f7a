"""Bad input of every kind is a 4xx in the JSON error shape, and no value is misread:
undecodable header bytes, deep JSON, numbers the scripts cannot hold, timestamps
without a time zone, waves that could never be released."""

import asyncio
import json
from typing import Any

import pytest

from stampede.api.jsondepth import MAX_DEPTH, check_depth
from stampede.errors import ValidationError
from tests.api.conftest import OPERATOR, Api
from tests.api.test_api import SPEC

CLAIM = "/v1/campaigns/launch/claims"
BODY = {"sku": "tee-black-m", "qty": 1}


async def _raw(port: int, request: bytes) -> tuple[int, str, dict[str, Any]]:
    """Send `request` as is (any bytes); the status, content type and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers["Content-Type"], json.loads(body)


def _request(method: str, path: str, headers: bytes = b"", body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n").encode() \
        + headers + b"\r\n" + body


async def _create(api: Api, spec: dict[str, Any] | None = None, cid: str = "launch") -> Any:
    return await api.admin.put(f"/admin/v1/campaigns/{cid}", json=spec or SPEC,
                               headers=api.op())


# -- headers ----------------------------------------------------------------------------

@pytest.mark.parametrize(("app", "method", "path"), [
    ("admin", "GET", "/admin/v1/campaigns"),
    ("admin", "PUT", "/admin/v1/campaigns/launch"),
    ("public", "GET", "/v1/me/coupons"),
    ("public", "POST", "/v1/redemptions"),
    ("public", "POST", CLAIM),
])
async def test_undecodable_authorization_is_401_naming_the_header(
        api: Api, app: str, method: str, path: str) -> None:
    client = api.admin if app == "admin" else api.public
    assert client.port is not None
    status, ctype, body = await _raw(client.port, _request(
        method, path, b"Authorization: Bearer \xff\xfe\r\n", b"{}"))
    assert status == 401 and ctype == "application/json"
    assert body["error"]["code"] == "unauthorized" and "Authorization" in body["error"]["message"]


@pytest.mark.parametrize("name", [b"X-Device-Id", b"X-Admission-Token", b"X-Challenge-Token",
                                  b"X-Challenge-Solution", b"Idempotency-Key",
                                  b"X-Forwarded-For", b"X-User-Id"])
async def test_undecodable_claim_header_is_400_naming_it(api: Api, name: bytes) -> None:
    assert (await _create(api)).status == 201
    user = b"" if name == b"X-User-Id" else b"X-User-Id: alice\r\n"
    assert api.public.port is not None
    status, _, body = await _raw(api.public.port, _request(
        "POST", CLAIM, user + name + b": \xff\r\n", json.dumps(BODY).encode()))
    assert status == 400 and body["error"]["code"] == "invalid_request"
    assert name.decode() in body["error"]["message"]


async def test_undecodable_idempotency_key_on_stock_is_400(api: Api) -> None:
    assert (await _create(api)).status == 201
    assert api.admin.port is not None
    status, _, body = await _raw(api.admin.port, _request(
        "POST", "/admin/v1/campaigns/launch/skus/tee-black-m/stock",
        f"Authorization: Bearer {OPERATOR}\r\n".encode() + b"Idempotency-Key: k\xff\r\n",
        b'{"delta": 1}'))
    assert status == 400 and "Idempotency-Key" in body["error"]["message"]


async def test_utf8_device_id_is_still_taken(api: Api) -> None:
    assert (await _create(api)).status == 201
    assert api.public.port is not None
    status, _, body = await _raw(api.public.port, _request(
        "POST", CLAIM, b"X-User-Id: alice\r\nX-Device-Id: t\xc3\xa9l\xc3\xa9phone\r\n",
        json.dumps(BODY).encode()))
    assert status == 201, body


async def test_non_ascii_digits_in_account_created_are_ignored(api: Api) -> None:
    assert (await _create(api)).status == 201
    resp = await api.public.post(CLAIM, json=BODY, headers={"X-User-Id": "alice",
                                                             "X-Account-Created": "²"})
    assert resp.status == 201


# -- JSON depth ---------------------------------------------------------------------------

def test_depth_check_counts_levels_not_brackets_in_strings() -> None:
    check_depth(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    check_depth(b'{"a": "' + b"[" * 1000 + b'"}')
    check_depth(b'{"a": "\\"' + b"[" * 1000 + b'"}')  # an escaped quote stays in the string
    check_depth(b"[" + b"[], " * 1000 + b"[]]")  # many brackets, shallow
    with pytest.raises(ValidationError, match=f"deeper than {MAX_DEPTH}"):
        check_depth(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    with pytest.raises(ValidationError):
        check_depth(b'{"a": "x", "b": ' + b"{\"c\": " * 40 + b"1" + b"}" * 41)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 400, 5000])
async def test_deep_json_is_400_naming_the_limit_on_every_body_route(api: Api,
                                                                      depth: int) -> None:
    assert (await _create(api)).status == 201
    deep = "[" * depth + "]" * depth
    routes = [(api.public, "POST", CLAIM, {"X-User-Id": "alice"}),
              (api.public, "POST", "/v1/campaigns/launch/waitlist", {"X-User-Id": "alice"}),
              (api.public, "POST", "/v1/campaigns/launch/coupons", {"X-User-Id": "alice"}),
              (api.public, "POST", "/v1/gifts/accept", {"X-User-Id": "alice"}),
              (api.admin, "PUT", "/admin/v1/campaigns/other", api.op()),
              (api.admin, "PATCH", "/admin/v1/campaigns/launch", api.op()),
              (api.admin, "POST", "/admin/v1/campaigns/launch/skus/tee-black-m/stock", api.op()),
              (api.admin, "PUT", "/admin/v1/merchants/m1", api.op())]
    for client, method, path, headers in routes:
        for body in (deep, '{"name": ' + deep + "}"):
            resp = await client.request(method, path, data=body,
                                        headers={**headers, "Content-Type": "application/json"})
            err = (await resp.json())["error"]
            assert resp.status == 400, (path, err)
            assert err["code"] == "invalid_request" and str(MAX_DEPTH) in err["message"]


# -- numeric ranges ----------------------------------------------------------------------

@pytest.mark.parametrize("per_s", [1e-20, 1e-300, 0.0, 0.000009])
async def test_a_throttle_rate_the_script_cannot_hold_is_refused(api: Api,
                                                                 per_s: float) -> None:
    throttle = {"user": {"per_s": per_s}}
    resp = await _create(api, SPEC | {"throttle": throttle})
    err = (await resp.json())["error"]
    assert resp.status == 400 and "$.throttle.user.per_s" in err["message"]
    assert "1e-05" in err["message"]
    assert (await _create(api)).status == 201
    resp = await api.admin.patch("/admin/v1/campaigns/launch", json={"throttle": throttle},
                                 headers=api.op())
    assert resp.status == 400 and "per_s" in (await resp.json())["error"]["message"]
    claim = await api.public.post(CLAIM, json=BODY, headers={"X-User-Id": "alice"})
    assert claim.status == 201  # the refused PATCH changed nothing


async def test_the_slowest_and_widest_throttle_runs_in_the_script(api: Api) -> None:
    resp = await _create(api, SPEC | {"throttle": {
        "user": {"per_s": 0.00001, "burst": 1},
        "campaign": {"per_s": 0.00001, "burst": 100_000}}})
    assert resp.status == 201, await resp.text()
    assert (await api.public.post(CLAIM, json=BODY, headers={"X-User-Id": "a"})).status == 201
    resp = await api.public.post(CLAIM, json=BODY, headers={"X-User-Id": "a"})
    err = (await resp.json())["error"]
    assert resp.status == 429 and 99_000_000 <= err["retry_after_ms"] <= 100_000_000


@pytest.mark.parametrize(("patch", "field"), [
    ({"throttle": {"risk": [{"signal": "lapses", "action": "reject", "above": 1e13}]}},
     "above"),
    ({"throttle": {"risk": [{"signal": "lapses", "action": "reject", "below": -1e13}]}},
     "below"),
    ({"waiting_room": {"rate_per_s": 1e-300}}, "rate_per_s"),
])
async def test_other_unholdable_numbers_are_refused(api: Api, patch: dict[str, Any],
                                                    field: str) -> None:
    resp = await _create(api, SPEC | patch)
    err = (await resp.json())["error"]
    assert resp.status == 400 and field in err["message"]


async def test_the_openapi_document_carries_the_bounds(api: Api) -> None:
    spec = await (await api.admin.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert schemas["Rate"]["properties"]["per_s"]["minimum"] == 0.00001
    assert schemas["WaitingRoomSpec"]["properties"]["rate_per_s"]["minimum"] == 0.001
    assert schemas["TemplateSpec"]["properties"]["face_value"]["maximum"] == 10**9
    drop = schemas["CouponDropSpec"]
    assert "00:00 UTC" in drop["description"]
    for daily in ("per_user_per_day", "per_day", "merchant_daily_cap"):
        assert "per UTC day" in drop["properties"][daily]["anyOf"][0]["description"]


# -- timestamps --------------------------------------------------------------------------

def _with_wave_at(at: str) -> dict[str, Any]:
    return SPEC | {"skus": [SPEC["skus"][0] | {"waves": [{"at": at, "qty": 5}]}]}


@pytest.mark.parametrize(("spec", "field"), [
    (SPEC | {"opens_at": "2026-12-01T23:30:00"}, "$.opens_at"),
    (SPEC | {"closes_at": "2099-01-01T00:00:00"}, "$.closes_at"),
    (_with_wave_at("2026-01-01T00:00:00"), "$.skus[0].waves[0].at"),
])
async def test_a_timestamp_without_a_time_zone_is_refused(api: Api, spec: dict[str, Any],
                                                           field: str) -> None:
    resp = await _create(api, spec)
    err = (await resp.json())["error"]
    assert resp.status == 400 and field in err["message"] and "timezone" in err["message"]


async def test_a_naive_patch_or_coupon_timestamp_is_refused(api: Api) -> None:
    assert (await _create(api)).status == 201
    resp = await api.admin.patch("/admin/v1/campaigns/launch",
                                 json={"closes_at": "2099-06-01T00:00:00"}, headers=api.op())
    assert resp.status == 400 and "$.closes_at" in (await resp.json())["error"]["message"]
    drop = SPEC | {"coupons": {"templates": {"tee-black-m": {
        "kind": "fixed_off", "face_value": 100, "valid_from": "2026-01-01T00:00:00",
        "valid_to": "2027-01-01T00:00:00Z"}}}}
    resp = await _create(api, drop, cid="drop")
    assert resp.status == 400 and "valid_from" in (await resp.json())["error"]["message"]


async def test_an_offset_is_taken_as_given(api: Api) -> None:
    resp = await _create(api, SPEC | {"opens_at": "2098-12-31T20:30:00-02:00"})
    assert resp.status == 201
    status = await (await api.public.get("/v1/campaigns/launch")).json()
    assert status["opens_at"].startswith("2098-12-31T22:30:00")


async def test_a_close_patched_to_before_a_pending_wave_is_refused(api: Api) -> None:
    assert (await _create(api, _with_wave_at("2098-06-01T00:00:00Z"))).status == 201
    for closes in ("2098-01-01T00:00:00Z", "2098-06-01T00:00:00Z"):
        resp = await api.admin.patch("/admin/v1/campaigns/launch", json={"closes_at": closes},
                                     headers=api.op())
        err = (await resp.json())["error"]
        assert resp.status == 400 and "pending wave" in err["message"]
    resp = await api.admin.patch("/admin/v1/campaigns/launch",
                                 json={"closes_at": "2098-06-01T00:00:01Z"}, headers=api.op())
    assert resp.status == 200


async def test_a_wave_at_or_after_closes_at_is_refused(api: Api) -> None:
    for at in ("2099-01-01T00:00:00Z", "2099-01-01T00:00:01Z"):
        resp = await _create(api, _with_wave_at(at))
        err = (await resp.json())["error"]
        assert resp.status == 400 and "closes_at" in err["message"] and "wave" in err["message"]
