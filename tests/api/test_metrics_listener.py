"""/metrics is the admin listener's: the public one answers 404 unless
STAMPEDE_PUBLIC_METRICS puts it back there too."""

import dataclasses

from stampede import Engine, Settings
from tests.api.conftest import serve_api


async def test_metrics_are_on_the_admin_listener_only(engine: Engine) -> None:
    async with serve_api(engine) as api:
        await api.public.get("/v1/campaigns/none")  # a request to count
        public = await api.public.get("/metrics")
        assert public.status == 404
        assert (await public.json())["error"]["code"] == "not_found"
        admin = await api.admin.get("/metrics")
        assert admin.status == 200
        text = await admin.text()
        assert "stampede_http_requests_total" in text and "/v1/campaigns/{cid}" in text


async def test_public_metrics_setting_serves_them_on_both(clean_redis: str,
                                                          settings: Settings) -> None:
    engine = Engine.from_url(clean_redis, dataclasses.replace(settings, public_metrics=True))
    await engine.start()
    try:
        async with serve_api(engine) as api:
            for client in (api.public, api.admin):
                resp = await client.get("/metrics")
                assert resp.status == 200
                assert "stampede_http_requests_total" in await resp.text()
    finally:
        await engine.close()


def test_the_setting_is_read_from_the_environment() -> None:
    assert not Settings.from_env({}).public_metrics
    assert Settings.from_env({"STAMPEDE_PUBLIC_METRICS": "1"}).public_metrics
