"""/docs is Swagger UI served by the service itself: it renders every operation
of /openapi.json with the network to anywhere else cut off."""

from tests.browser import screenshot
from tests.frontend.network import offline
from tests.system.service import Service, http


async def test_swagger_ui_renders_the_spec_offline(page, service: Service) -> None:  # type: ignore[no-untyped-def]
    tried = await offline(page)
    _, spec = http(f"{service.url}/openapi.json")
    operations = sum(len(ops) for ops in spec["paths"].values())  # type: ignore[union-attr]
    await page.goto(f"{service.url}/docs")
    await page.wait_for_selector(".opblock", timeout=15_000)
    assert await page.locator(".opblock").count() == operations
    assert await page.locator(".info .title").first.inner_text() != ""
    await screenshot(page, "api-docs")
    # An operation opens with its example response.
    await page.locator(".opblock-summary-path", has_text="/v1/campaigns/{cid}/claims").first.click()
    await page.wait_for_selector(".responses-table")
    assert "claim_id" in await page.locator(".opblock.is-open").first.inner_text()
    assert tried == []


async def test_an_unknown_asset_is_a_json_404(service: Service) -> None:
    status, body = http(f"{service.url}/docs/assets/..%2Fpublic.py")
    assert status == 404 and "error" in body
    status, _ = http(f"{service.url}/docs/assets/nothing.js")
    assert status == 404
