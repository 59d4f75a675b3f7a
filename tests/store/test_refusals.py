"""Guard refusals reach the store as events, beside a throttle PATCH, and change no projection."""

import json

import msgspec

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch
from stampede.domain.throttle import ClientSignals
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from tests.conftest import campaign_spec
from tests.coupons.helpers import drop_spec
from tests.store.helpers import assert_store_matches_redis, store_rows


async def test_refusals_are_persisted_for_analysis(sale: Engine, persister: Persister,
                                                   store: Store) -> None:
    await sale.define_campaign("r", campaign_spec(throttle={
        "device": {"per_s": 0.001, "burst": 1}, "block": {"users": ["mallory"]}}))
    dev = ClientSignals(device="d1", network="203.0.113.0/24")
    assert (await sale.claim("r", "alice", "tee", client=dev)).outcome is Outcome.OK
    assert (await sale.claim("r", "bob", "tee", client=dev)).outcome is Outcome.THROTTLED
    assert (await sale.claim("r", "mallory", "tee")).outcome is Outcome.BLOCKED
    patch = msgspec.convert({"throttle": {"enabled": False}}, CampaignPatch)
    assert await sale.patch_campaign("r", patch, "ops") is Outcome.OK
    assert (await sale.claim("r", "bob", "tee", client=dev)).outcome is Outcome.OK
    await persister.drain()
    await assert_store_matches_redis(sale, store, "r")
    events = await store_rows(store, t.events, "r")
    refused = [json.loads(e.data)["refusals"] for e in events if e.type == "requests_refused"]
    assert [r.split(",")[:3] for r in refused] == [["bob", "15", "device"],
                                                   ["mallory", "16", "user_blocked"]]
    assert refused[0].endswith(",d1,203.0.113.0/24")
    assert (await audit(store))["ok"]


async def test_coupon_claim_refusals_are_persisted_and_change_nothing(
        sale: Engine, persister: Persister, store: Store) -> None:
    spec = drop_spec(stock=5, budget=1000, per_day=3, campaign={"throttle": {
        "device": {"per_s": 0.001, "burst": 1}, "block": {"users": ["mallory"]}}})
    await sale.define_campaign("d", spec)
    dev = ClientSignals(device="d1", network="203.0.113.0/24")
    assert (await sale.coupons.claim("d", "alice", "five", client=dev)).outcome is Outcome.OK
    assert (await sale.coupons.claim("d", "bob", "five", client=dev)).outcome \
        is Outcome.THROTTLED
    assert (await sale.coupons.claim("d", "mallory", "five")).outcome is Outcome.BLOCKED
    await persister.drain()
    await assert_store_matches_redis(sale, store, "d")
    events = await store_rows(store, t.events, "d")
    refused = [json.loads(e.data)["refusals"] for e in events if e.type == "requests_refused"]
    assert [r.split(",")[:3] for r in refused] == [["bob", "15", "device"],
                                                   ["mallory", "16", "user_blocked"]]
    assert sum(e.type == "coupon_issued" for e in events) == 1
    assert (await audit(store))["ok"]
