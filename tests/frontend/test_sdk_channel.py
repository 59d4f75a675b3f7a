"""The SDK's `channelKey` in a real Chromium against a real service: a partner's page
claims through its channel (X-Channel-Key on the sale claim, and only there), so it
takes the units its allocation reserves; without the key the same claim finds none."""

from typing import Any

from tests.frontend.conftest import PARTNER_KEY
from tests.frontend.network import offline
from tests.frontend.shop import admin, at, put_campaign
from tests.system.service import Service

RUN = """async ([cid, key]) => {
  const { Stampede } = await import('/sdk/v1/stampede.js');
  const plain = new Stampede({ headers: { 'X-User-Id': 'walk-in' } });
  let refused = null;
  try { await plain.claim(cid, { sku: 'tee' }); } catch (e) { refused = e.code; }
  const partner = new Stampede({ headers: { 'X-User-Id': 'pia' }, channelKey: key });
  const hold = await partner.claim(cid, { sku: 'tee', qty: 2 });
  await partner.confirm(hold.claim_id);
  let forged = null;
  const wrong = new Stampede({ headers: { 'X-User-Id': 'pia' }, channelKey: 'not-a-key-0123456789',
                               retry: { attempts: 1 } });
  try { await wrong.claim(cid, { sku: 'tee' }); } catch (e) { forged = e.code; }
  return { refused, held: hold.qty, forged };
}"""


async def test_a_channel_key_claims_from_its_allocation(page: Any, service: Service) -> None:
    put_campaign(service, "partnered", qty=3, skus=[
        {"sku": "tee", "price": 2500, "waves": [{"at": at(-60), "qty": 3}],
         "allocations": [{"name": "partner", "qty": 3, "channels": ["partner"]}]}])
    await offline(page)
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.url.rsplit("/", 1)[-1],
                                               r.headers.get("x-channel-key"))))
    await page.goto(f"{service.url}/docs")
    out = await page.evaluate(RUN, ["partnered", PARTNER_KEY])
    assert out == {"refused": "sold_out", "held": 2, "forged": "invalid_channel_key"}
    assert [k for url, k in sent if url == "claims"] == \
        [None, PARTNER_KEY, "not-a-key-0123456789"]
    assert [k for url, k in sent if url == "confirm"] == [None]  # the key goes with claims only
    status, stats = admin(service, "GET", "/admin/v1/campaigns/partnered/stats")
    assert status == 200, stats
    (alloc,) = stats["skus"][0]["allocations"]
    assert (alloc["name"], alloc["reserved"]) == ("partner", 1)
