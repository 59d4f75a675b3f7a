"""The demo's coupon wallet in a real Chromium: a coupon claimed through the SDK,
its rotating till code drawn as a QR code, decoded from the page's pixels (jsQR,
tests/frontend/vendor) and redeemed by a merchant with what was decoded."""

from pathlib import Path
from typing import Any

from tests.browser import screenshot
from tests.frontend.network import offline
from tests.frontend.shop import admin, at
from tests.system.service import Service, http

JSQR = Path(__file__).parent / "vendor" / "jsQR.js"
DECODE = """() => {
  const img = document.querySelector('#qr img');
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const found = jsQR(pixels.data, canvas.width, canvas.height);
  return found && found.data;
}"""


async def test_a_coupon_is_claimed_and_its_till_qr_code_decodes(page: Any,
                                                                service: Service) -> None:
    opens = at(-60)
    status, body = admin(service, "PUT", "/admin/v1/campaigns/five-off", {
        "name": "Five off", "opens_at": opens, "closes_at": at(3600),
        "limits": {"per_user": 1},
        "skus": [{"sku": "five", "price": 0, "waves": [{"at": opens, "qty": 100}]}],
        "coupons": {"templates": {"five": {"kind": "fixed_off", "face_value": 500,
                                           "valid_days": 30}}, "per_person": 1}})
    assert status == 201, body
    await offline(page)
    await page.goto(f"{service.url}/demo?campaign=five-off&sku=five&drop=five-off"
                    "&coupon=five&user=cleo")
    await page.locator("#claim-coupon").click()
    await page.locator(".show-till").first.click()
    await page.wait_for_selector("#qr img")
    await page.wait_for_function("document.querySelector('#qr img').complete")
    await page.add_script_tag(path=str(JSQR))
    decoded = await page.evaluate(DECODE)
    shown = await page.locator("#till-code").inner_text()
    assert decoded == shown == await page.evaluate("window.demoTillCode")
    assert len(decoded) >= 8
    await screenshot(page, "demo-wallet")

    status, merchant = admin(service, "PUT", "/admin/v1/merchants/cafe", {"name": "Cafe"})
    assert status == 201, merchant
    status, redemption = http(f"{service.url}/v1/redemptions", {
        "Authorization": f"Bearer {merchant['token']}", "Content-Type": "application/json",
        "Idempotency-Key": "till-1"},
        f'{{"code": "{decoded}", "order_id": "o-1", "order_amount": 1200}}'.encode(), "POST")
    assert status == 201, redemption
    assert redemption["discount"] == 500
