"""The front-end kit's routes: the SDK's files at /sdk/v1/, the demo storefront
only in dev auth, Swagger UI's assets under /docs/assets/; the rest a JSON 404
that names the path and what is there."""

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from stampede import Engine
from stampede.api.app import make_public_app
from stampede.api.auth import Authenticator
from stampede.api.sdk import FILES
from tests.api.conftest import JWT_SECRET, Api
from tests.conftest import serving


@pytest.fixture
async def production(engine: Engine) -> AsyncIterator[TestClient]:
    app = make_public_app(engine, Authenticator(JWT_SECRET, False, ()), {"draining": False})
    async with serving(app) as client:
        yield client


async def test_the_sdk_files_are_served_as_modules(api: Api) -> None:
    for name in FILES:
        resp = await api.public.get(f"/sdk/v1/{name}")
        assert resp.status == 200, name
        assert resp.content_type in ("text/javascript", "application/typescript")
        assert len(await resp.read()) > 100
    module = await (await api.public.get("/sdk/v1/stampede.js")).text()
    assert "export class Stampede" in module and 'from "./codes.js"' in module


async def test_an_unknown_sdk_file_is_a_404_naming_it_and_the_files(api: Api) -> None:
    resp = await api.public.get("/sdk/v1/nothing.js")
    assert resp.status == 404
    err = (await resp.json())["error"]
    assert err["code"] == "not_found"
    assert "/sdk/v1/nothing.js" in err["message"] and "stampede.js" in err["message"]
    resp = await api.public.get("/sdk/v1/..%2Fdemo.py")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_request"


async def test_the_demo_is_served_in_dev_auth_only(api: Api, production: TestClient) -> None:
    page = await api.public.get("/demo")
    assert page.status == 200 and "demo/app.js" in await page.text()
    for asset in ("app.js", "style.css", "qrcode.mjs"):
        assert (await api.public.get(f"/demo/{asset}")).status == 200
    assert (await api.public.get("/demo/secret.js")).status == 404
    for path in ("/demo", "/demo/app.js"):
        resp = await production.get(path)
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    assert (await production.get("/sdk/v1/stampede.js")).status == 200
    spec = await (await production.get("/openapi.json")).json()
    assert "/demo" not in spec["paths"] and "/sdk/v1/{file}" in spec["paths"]


async def test_swagger_ui_assets_are_served_and_nothing_else(api: Api) -> None:
    page = await (await api.public.get("/docs")).text()
    assert "docs/assets/swagger-ui-bundle.js" in page and "http" not in page.split("<body>")[1]
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
        assert (await api.public.get(f"/docs/assets/{name}")).status == 200
    init = await (await api.public.get("/docs/assets/init.js")).text()
    assert "validatorUrl: null" in init
    for name in ("LICENSE", "nothing.js"):
        resp = await api.public.get(f"/docs/assets/{name}")
        assert resp.status == 404 and "error" in await resp.json()
