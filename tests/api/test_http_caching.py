"""Cache headers of a campaign's status, and CORS for allowed browser origins."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stampede import Engine, Settings
from tests.api.conftest import Api, serve_api
from tests.conftest import campaign_spec

SHOP = "https://shop.example"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, cors_origins=f"{SHOP}, https://other.example/")


@pytest.fixture
async def sale(engine: Engine) -> AsyncIterator[Api]:
    await engine.define_campaign("sale", campaign_spec(stock=3))
    async with serve_api(engine) as api:
        yield api


async def test_status_has_an_etag_and_a_matching_if_none_match_answers_304(sale: Api) -> None:
    first = await sale.public.get("/v1/campaigns/sale")
    assert first.status == 200
    etag = first.headers["ETag"]
    assert etag.startswith('"') and first.headers["Cache-Control"] == "public, max-age=1"
    again = await sale.public.get("/v1/campaigns/sale", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == etag
    weak = await sale.public.get("/v1/campaigns/sale",
                                 headers={"If-None-Match": f'"nope", W/{etag}'})
    assert weak.status == 304
    other = await sale.public.get("/v1/campaigns/sale", headers={"If-None-Match": '"stale"'})
    assert other.status == 200 and (await other.json())["id"] == "sale"


async def test_the_etag_changes_with_the_status(sale: Api) -> None:
    etag = (await sale.public.get("/v1/campaigns/sale")).headers["ETag"]
    claim = await sale.public.post("/v1/campaigns/sale/claims", json={"sku": "tee", "qty": 1},
                                   headers={"X-User-Id": "ann"})
    assert claim.status == 201
    after = await sale.public.get("/v1/campaigns/sale", headers={"If-None-Match": etag})
    assert after.status == 200 and after.headers["ETag"] != etag
    assert (await after.json())["skus"][0]["available"] == 2


async def test_a_preflight_from_an_allowed_origin_names_methods_and_headers(sale: Api) -> None:
    resp = await sale.public.options("/v1/campaigns/sale/claims", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, idempotency-key"})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == SHOP
    methods = {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "DELETE"} <= methods
    allowed = {h.strip() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"Authorization", "Content-Type", "Idempotency-Key", "X-Device-Id",
            "X-Admission-Token", "X-Challenge-Token", "X-Challenge-Solution"} <= allowed
    # The second listed origin, written with a trailing slash, is allowed too.
    other = await sale.public.options("/v1/campaigns/sale", headers={
        "Origin": "https://other.example", "Access-Control-Request-Method": "GET"})
    assert other.status == 204


async def test_a_preflight_from_another_origin_is_refused_without_cors_headers(
        sale: Api) -> None:
    resp = await sale.public.options("/v1/campaigns/sale/claims", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "cors_origin"
    assert not any(h.lower().startswith("access-control-") for h in resp.headers)


async def test_answers_to_an_allowed_origin_carry_its_name_and_others_none(sale: Api) -> None:
    ok = await sale.public.get("/v1/campaigns/sale", headers={"Origin": SHOP})
    assert ok.headers["Access-Control-Allow-Origin"] == SHOP
    assert "ETag" in ok.headers["Access-Control-Expose-Headers"]
    assert "Origin" in ok.headers.getall("Vary")
    refused = await sale.public.get("/v1/campaigns/nope", headers={"Origin": SHOP})
    assert refused.status == 404 and refused.headers["Access-Control-Allow-Origin"] == SHOP
    foreign = await sale.public.get("/v1/campaigns/sale", headers={"Origin": "https://x.example"})
    assert foreign.status == 200 and "Access-Control-Allow-Origin" not in foreign.headers


async def test_no_origin_is_allowed_by_default(tmp_path: Path, clean_redis: str) -> None:
    engine = Engine.from_url(clean_redis, Settings(data_dir=tmp_path))
    await engine.start()
    try:
        async with serve_api(engine) as api:
            resp = await api.public.options("/v1/campaigns/sale", headers={
                "Origin": SHOP, "Access-Control-Request-Method": "GET"})
            assert "Access-Control-Allow-Origin" not in resp.headers
            assert resp.status == 403
    finally:
        await engine.close()
