"""A 404 decided while a campaign was lost stays "retry" even if the heal finishes first.

The race the chaos drill's campaign_flush step hit: a buyer's claim is answered
201, the campaign's keys are flushed, the buyer's confirm runs its script
against the flushed campaign (no such claim: 404), and the heal rebuilds the
campaign before the healing middleware looks at it. A look at Redis then sees
the campaign back and open, and let the 404 through as final - for a claim
the store had and the rebuild had just restored.

Here the heal runs exactly in that gap, every time: a middleware inside the
healing middleware rebuilds the campaign from the store (`recover_campaign`,
what `serve`'s heal job runs) after the handler has answered 404 and before
the healing middleware sees the answer. Real Valkey, real SQLite and
PostgreSQL; nothing mocked.
"""

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.api.errors import Handler
from stampede.durable.persister import Persister
from stampede.durable.recovery import fence, heal, recover_campaign
from stampede.durable.store import Store
from stampede.state import keys
from tests.conftest import campaign_spec, serving
from tests.store.helpers import healing_public_app

TTL_MS = 86_400_000
Client = TestClient[web.Request, web.Application]


class HealInTheGap:
    """Rebuild the campaign between a handler's 404 and the healing middleware's look."""

    def __init__(self, redis: "Redis[str]", store: Store) -> None:
        self.redis, self.store = redis, store
        self.armed = False
        self.heals = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if response.status == 404 and self.armed:
            self.armed = False
            await recover_campaign(self.redis, self.store, "c1", TTL_MS)
            self.heals += 1
        return response

    async def flush(self) -> None:
        """What the drill does: every key of the campaign but its event stream."""
        await self.redis.delete(*[k for k in keys.campaign_keys("c1")
                                  if k != keys.events_key("c1")])
        self.armed = True


@pytest.fixture
async def client(sale: Engine, raw_redis: "Redis[str]", store: Store
                 ) -> AsyncIterator[tuple["Client", HealInTheGap]]:
    gap = HealInTheGap(raw_redis, store)
    async with serving(healing_public_app(sale, store, gap.middleware)) as http:
        yield http, gap


async def test_a_claim_answered_201_is_never_404_while_its_campaign_heals(
        sale: Engine, persister: Persister,
        client: tuple["Client", HealInTheGap]) -> None:
    http, gap = client
    await sale.define_campaign("c1", campaign_spec(stock=10, per_user=2))
    ann = await http.post("/v1/campaigns/c1/claims", json={"sku": "tee"},
                          headers={"X-User-Id": "ann", "Idempotency-Key": "ann-1"})
    assert ann.status == 201
    await persister.drain()  # ann's hold is in the store...
    bob = await http.post("/v1/campaigns/c1/claims", json={"sku": "tee"},
                          headers={"X-User-Id": "bob", "Idempotency-Key": "bob-1"})
    assert bob.status == 201  # ...bob's only in the stream: the heal drains it
    ann_id, bob_id = (await ann.json())["claim_id"], (await bob.json())["claim_id"]

    asks = [("POST", f"/v1/claims/{ann_id}/confirm", "ann", "ann-pay", 200),
            ("GET", f"/v1/claims/{bob_id}", "bob", None, 200),
            ("POST", f"/v1/claims/{bob_id}/cancel", "bob", "bob-cancel", 200),
            ("POST", "/v1/campaigns/c1/claims", "cat", "cat-1", 201)]
    for method, path, user, key, done in asks:
        await gap.flush()
        headers = {"X-User-Id": user, **({"Idempotency-Key": key} if key else {})}
        body = {"sku": "tee"} if path.endswith("/claims") else None
        first = await http.request(method, path, json=body, headers=headers)
        assert gap.heals and not gap.armed, "the heal ran in the gap"
        assert first.status == 503, (path, first.status, await first.text())
        assert (await first.json())["error"]["code"] == "unavailable"
        again = await http.request(method, path, json=body, headers=headers)
        assert again.status == done, (path, await again.text())
    assert gap.heals == len(asks)
    assert (await sale.get_claim(ann_id, "ann")).status == "confirmed"  # type: ignore[union-attr]
    assert (await sale.get_claim(bob_id, "bob")).status == "cancelled"  # type: ignore[union-attr]


async def test_a_claim_that_never_was_is_still_404_at_once(
        sale: Engine, client: tuple["Client", HealInTheGap]
        ) -> None:
    """The note of what the script saw makes a live campaign's 404 final, with no look."""
    http, gap = client
    await sale.define_campaign("c1", campaign_spec(stock=10))
    held = await sale.claim("c1", "ann", "tee")
    assert held.outcome is Outcome.OK and held.claim
    for path in (f"/v1/claims/{held.claim.claim_id}", f"/v1/claims/{held.claim.claim_id}/cancel",
                 "/v1/claims/c1.0123456789abcdef0123", "/v1/claims/nope.0123456789abcdef0123"):
        method = "GET" if path.count("/") == 3 else "POST"
        r = await http.request(method, path, headers={"X-User-Id": "bob"})
        assert r.status == 404, path  # another user's claim, an unknown one, an unknown campaign
        assert (await r.json())["error"]["code"] == "not_found"
    nope = await http.post("/v1/campaigns/nope/claims", json={"sku": "tee"},
                           headers={"X-User-Id": "bob"})
    assert nope.status == 404
    assert gap.heals == 0


async def test_a_heal_that_fenced_and_then_failed_still_drains_the_stream_when_retried(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    """The heal of a lost campaign fences it first (a meta from the store); if that
    attempt then fails (the store or Redis away), the next one must still know the
    campaign as lost and store its stream's unpersisted events before the rebuild
    replaces the stream."""
    await sale.define_campaign("c1", campaign_spec(stock=10, per_user=2))
    ann = await sale.claim("c1", "ann", "tee")
    await persister.drain()
    bob = await sale.claim("c1", "bob", "tee")  # in the stream only
    assert ann.claim and bob.claim
    await raw_redis.delete(*[k for k in keys.campaign_keys("c1") if k != keys.events_key("c1")])
    await fence(raw_redis, store, "c1")  # how far a failed first attempt got
    assert [r.campaign_id for r in await heal(raw_redis, store, TTL_MS)] == ["c1"]
    for claim, user in ((ann.claim, "ann"), (bob.claim, "bob")):
        view = await sale.get_claim(claim.claim_id, user)
        assert view is not None and view.status == "held", user


async def test_a_campaign_lost_before_the_store_heard_of_it_answers_503_until_healed(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        client: tuple[Client, HealInTheGap]) -> None:
    """Its keys flushed while the persister lagged: the store knows nothing of it yet,
    but its stream still holds the events of claims answered 201."""
    http, _gap = client
    await sale.define_campaign("c1", campaign_spec(stock=10, per_user=2))
    held = await sale.claim("c1", "ann", "tee")
    assert held.outcome is Outcome.OK and held.claim
    await raw_redis.delete(*[k for k in keys.campaign_keys("c1") if k != keys.events_key("c1")])
    ann = {"X-User-Id": "ann", "Idempotency-Key": "ann-pay"}
    confirm = await http.post(f"/v1/claims/{held.claim.claim_id}/confirm", headers=ann)
    look = await http.get(f"/v1/claims/{held.claim.claim_id}", headers=ann)
    claim = await http.post("/v1/campaigns/c1/claims", json={"sku": "tee"},
                            headers={"X-User-Id": "bob"})
    assert [r.status for r in (confirm, look, claim)] == [503, 503, 503]
    assert await heal(raw_redis, store, TTL_MS) == []  # the store has nothing to heal from
    await persister.drain()  # the persister catches up; the heal follows
    assert [r.campaign_id for r in await heal(raw_redis, store, TTL_MS)] == ["c1"]
    again = await http.post(f"/v1/claims/{held.claim.claim_id}/confirm", headers=ann)
    assert again.status == 200 and (await again.json())["status"] == "confirmed"
