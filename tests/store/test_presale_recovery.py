"""Presales survive an emptied Redis: phases as defined then patched, presale codes with
their uses and bindings, segments as added and removed; audit checks the codes' uses."""

import msgspec
from redis.asyncio import Redis
from sqlalchemy import func

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch, PresaleCodeBatch, PriceStep
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys
from stampede.state.keys import campaign_keys
from tests.conftest import campaign_spec, iso
from tests.store.helpers import assert_store_matches_redis
from tests.store.test_recovery_keys import _dump

TTL = 86_400_000


class PriceSteps(msgspec.Struct):
    price_steps: list[PriceStep]


async def test_recovery_restores_the_phases_as_patched(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    phases = [{"name": "vip", "opens_at": iso(-30), "tiers": ["vip"]},
              {"name": "public", "opens_at": iso(600)}]
    await sale.define_campaign("c1", campaign_spec(stock=5, per_user=None, phases=phases))
    assert (await sale.claim("c1", "ann", "tee", tiers=["vip"])).outcome is Outcome.OK
    patch = msgspec.convert({"phases": [{**phases[0], "tiers": ["vip", "member"]},
                                        phases[1]]}, CampaignPatch)
    assert await sale.patch_campaign("c1", patch, "ops") is Outcome.OK
    meta = campaign_keys("c1").meta
    before = await raw_redis.hget(meta, "ph")
    assert before and "member" in before
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c1", TTL)
    assert await raw_redis.hget(meta, "ph") == before
    assert (await sale.claim("c1", "bob", "tee", tiers=["member"])).outcome is Outcome.OK
    assert (await sale.claim("c1", "cat", "tee")).outcome is Outcome.NOT_OPEN
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    summary = await audit(store)
    assert summary["ok"], summary


async def test_recovery_restores_presale_codes_and_their_uses(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    phases = [{"name": "fans", "opens_at": iso(-30), "tiers": ["fan"]}]
    await sale.define_campaign("c2", campaign_spec(stock=9, per_user=None, phases=phases))
    _, _, once = await sale.presale_codes.issue(
        "c2", PresaleCodeBatch(count=2, tier="fan"), "ops")
    _, _, bound = await sale.presale_codes.issue(
        "c2", PresaleCodeBatch(count=1, tier="fan", uses=3, bind_to_user=True), "ops")
    assert once and bound
    single = [line.split(",")[0] for line in sale.presale_codes.csv_lines("c2", once)][1:]
    mine = list(sale.presale_codes.csv_lines("c2", bound))[1].split(",")[0]
    assert (await sale.claim("c2", "ann", "tee", code=single[0])).outcome is Outcome.OK
    assert (await sale.claim("c2", "bob", "tee", code=mine)).outcome is Outcome.OK
    before = await sale.stats("c2")
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c2", TTL)
    after = await sale.stats("c2")
    assert before and after and after.presale_codes == before.presale_codes
    assert (await sale.claim("c2", "cat", "tee", code=single[0])).outcome is \
        Outcome.PRESALE_CODE_USED
    assert (await sale.claim("c2", "cat", "tee", code=mine)).outcome is \
        Outcome.PRESALE_CODE_INVALID
    assert (await sale.claim("c2", "bob", "tee", code=mine)).outcome is Outcome.OK
    _, _, third = await sale.presale_codes.issue("c2", PresaleCodeBatch(count=1, tier="fan"),
                                                 "ops")
    assert third and third.batch == 3  # numbering continues
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary


async def test_audit_finds_a_code_spent_past_its_uses(
        sale: Engine, persister: Persister, store: Store) -> None:
    phases = [{"name": "fans", "opens_at": iso(-30), "tiers": ["fan"]}]
    await sale.define_campaign("c3", campaign_spec(stock=9, per_user=None, phases=phases))
    _, _, batch = await sale.presale_codes.issue("c3", PresaleCodeBatch(count=1, tier="fan"),
                                                 "ops")
    assert batch
    code = list(sale.presale_codes.csv_lines("c3", batch))[1].split(",")[0]
    assert (await sale.claim("c3", "ann", "tee", code=code)).outcome is Outcome.OK
    await persister.drain()
    # The store says the batch allowed no use at all: the hold overspent it.
    async with store.begin() as conn:
        await conn.execute(t.events.update().where(
            t.events.c.campaign_id == "c3", t.events.c.type == "presale_codes_issued")
            .values(data=func.replace(t.events.c.data, '"uses":"1"', '"uses":"0"')))
    summary = await audit(store)
    assert not summary["ok"]
    kinds = {v["kind"] for v in summary["campaigns"]["c3"]["violation_samples"]}
    assert kinds == {"presale_code_overused"}, summary


async def test_recovery_rebuilds_every_presale_key_the_scripts_read(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    phases = [{"name": "fans", "opens_at": iso(-30), "tiers": ["fan"], "segments": ["vips"]},
              {"name": "public", "opens_at": iso(600)}]
    spec = campaign_spec(stock=20, per_user=None, phases=phases)
    priced = msgspec.convert({"price_steps": [{"price": 900, "first_units": 2},
                                              {"price": 950, "tiers": ["fan"]}]}, PriceSteps)
    spec.skus[0].price_steps = priced.price_steps
    await sale.define_campaign("c4", spec)
    await sale.segments.edit("c4", "vips", True, [f"v{i}" for i in range(2500)], "ops")
    await sale.segments.edit("c4", "vips", False, ["v7", "v2400"], "ops")
    await sale.segments.edit("c4", "gone", True, ["x"], "ops")
    await sale.segments.edit("c4", "gone", False, ["x"], "ops")
    assert (await sale.claim("c4", "v8", "tee")).outcome is Outcome.OK
    codes = {}
    for bind, uses in ((False, 1), (True, 2)):
        _, _, batch = await sale.presale_codes.issue(
            "c4", PresaleCodeBatch(count=4, tier="fan", uses=uses, bind_to_user=bind), "ops")
        assert batch
        codes[bind] = [line.split(",")[0]
                       for line in sale.presale_codes.csv_lines("c4", batch)][1:]
    for i, code in enumerate(codes[False][:3] + codes[True][:2] + codes[True][:1]):
        user = "ann" if code == codes[True][0] else f"u{i}"
        assert (await sale.claim("c4", user, "tee", code=code)).outcome is Outcome.OK
    vip = await sale.claim("c4", "vip", "tee", tiers=["fan"])
    assert vip.claim and vip.claim.price == 950
    assert (await sale.confirm(vip.claim.claim_id, "vip")).outcome is Outcome.OK
    await persister.drain()
    before = await _dump(raw_redis, "c4")
    assert keys.presale_keys("c4").pcodes in before
    assert len(before[keys.presale_keys("c4").segments]) == 2498
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c4", TTL)
    after = await _dump(raw_redis, "c4")
    # The per-user code-attempt limiters are throttling state: they start fresh,
    # as the guard's limiters do.
    limiters = {k for k in before if ":rl:code:" in k}
    assert limiters and set(before) - set(after) == limiters
    for key, value in before.items():
        if key not in limiters:
            assert after[key] == value, f"{key} differs"
    assert (await sale.claim("c4", "v7", "tee")).outcome is Outcome.NOT_OPEN
    v9 = await sale.claim("c4", "v9", "tee")
    assert v9.claim and v9.claim.price == 1999  # the steps came back: 950 is for tier fan
    stats = await sale.stats("c4")
    assert stats and stats.skus[0].revenue == 950


async def test_recovery_keeps_the_code_uses_given_back(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    phases = [{"name": "fans", "opens_at": iso(-30), "tiers": ["fan"]}]
    await sale.define_campaign("c5", campaign_spec(stock=9, per_user=None, phases=phases))
    _, _, batch = await sale.presale_codes.issue(
        "c5", PresaleCodeBatch(count=2, tier="fan", uses=1), "ops")
    assert batch
    codes = [line.split(",")[0] for line in sale.presale_codes.csv_lines("c5", batch)][1:]
    first = await sale.claim("c5", "ann", "tee", code=codes[0])
    assert first.claim is not None
    await sale.cancel(first.claim.claim_id, "ann")  # the use of codes[0] comes back
    held = await sale.claim("c5", "bob", "tee", code=codes[1])  # still held at the rebuild
    assert held.claim is not None
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c5", TTL)
    assert (await sale.claim("c5", "cat", "tee", code=codes[0])).outcome is Outcome.OK
    assert (await sale.claim("c5", "dan", "tee", code=codes[1])).outcome is \
        Outcome.PRESALE_CODE_USED
    await sale.cancel(held.claim.claim_id, "bob")  # its mark survived the rebuild
    assert (await sale.claim("c5", "dan", "tee", code=codes[1])).outcome is Outcome.OK
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c5")
    summary = await audit(store)
    assert summary["ok"], summary


async def test_recovery_restores_the_price_steps_as_patched(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    spec = campaign_spec(stock=20, per_user=None, skus=("tee", "cap"))
    priced = msgspec.convert({"price_steps": [{"price": 900, "first_units": 2}]}, PriceSteps)
    spec.skus[0].price_steps = spec.skus[1].price_steps = priced.price_steps
    await sale.define_campaign("c6", spec)
    patch = msgspec.convert({"price_steps": {"tee": [{"price": 1500, "tiers": ["fan"]}],
                                             "cap": []}}, CampaignPatch)
    assert await sale.patch_campaign("c6", patch, "ops") is Outcome.OK
    stock = campaign_keys("c6").stock
    before = await raw_redis.hmget(stock, "tee.ps", "cap.ps")
    assert before[0] == "1500@@@fan"
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c6", TTL)
    assert await raw_redis.hmget(stock, "tee.ps", "cap.ps") == ["1500@@@fan", None]
    fan = await sale.claim("c6", "ann", "tee", tiers=["fan"])
    assert fan.claim and fan.claim.price == 1500
    cap = await sale.claim("c6", "bob", "cap")
    assert cap.claim and cap.claim.price == 1999  # the steps removed: the base price
    await persister.drain()
    assert (await audit(store))["ok"]
