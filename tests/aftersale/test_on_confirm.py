"""A sale's on_confirm: a confirmed claim grants its buyer a drop's pack exactly once
(outbox in the sale's slot, keyed grant in the drop's), against a real Valkey."""

import pytest

from stampede import Engine
from stampede.domain.grants import grant_claim_id
from stampede.domain.models import BundleLine
from stampede.errors import ValidationError
from stampede.state import keys
from tests.aftersale.helpers import sale_spec
from tests.aftersale.test_grants import pack_drop
from tests.coupons.helpers import drop_spec


async def _wallet(engine: Engine, user: str) -> set[str]:
    return set(await engine.redis.smembers(keys.wallet_key("fans", user)))


async def _sale(engine: Engine, **extra: object) -> None:
    await engine.define_campaign("fans", pack_drop())
    await engine.define_campaign("gig", sale_spec(  # type: ignore[arg-type]
        on_confirm={"drop": "fans", "sku": "welcome"}, **extra))


async def test_a_confirm_grants_one_pack_even_when_retried(engine: Engine) -> None:
    await _sale(engine)
    held = await engine.claim("gig", "ann", "tee", 2)
    assert held.claim is not None
    assert await _wallet(engine, "ann") == set()  # a hold grants nothing
    claim_id = held.claim.claim_id
    for _ in range(3):  # the first confirm and two retries
        done = await engine.confirm(claim_id, "ann")
        assert done.claim is not None and done.claim.status == "confirmed"
        assert len(await _wallet(engine, "ann")) == 2  # one pack (two coupons) per claim
    assert await engine.redis.hlen(keys.outbox_key("gig")) == 0
    drop_claim = grant_claim_id("fans", f"confirm:{claim_id}", "ann")
    assert await engine.redis.hexists(keys.campaign_keys("fans").claims, drop_claim)
    events = [e for _, e in await engine.redis.xrange(keys.events_key("fans"))
              if e.get("type") == "claim_held"]
    assert [e["grant"] for e in events] == ["confirm:gig"]
    # A cancelled hold grants nothing.
    other = await engine.claim("gig", "bob", "tee", 1)
    assert other.claim is not None
    await engine.cancel(other.claim.claim_id, "bob")
    assert await _wallet(engine, "bob") == set()


async def test_a_grant_lost_after_the_confirm_is_made_once(engine: Engine) -> None:
    """The drop cannot grant (fenced) when the claim is confirmed: the entry waits in
    the outbox; a retried confirm and the sweeper then grant it, once between them."""
    await _sale(engine)
    fans = keys.campaign_keys("fans").meta
    await engine.redis.hset(fans, "fenced", "1")
    held = await engine.claim("gig", "ann", "tee", 1)
    assert held.claim is not None
    claim_id = held.claim.claim_id
    assert (await engine.confirm(claim_id, "ann")).claim is not None
    assert await engine.redis.hget(keys.outbox_key("gig"), f"confirm:{claim_id}") == \
        "ann|fans|welcome"
    assert await _wallet(engine, "ann") == set()
    await engine.redis.hset(fans, "fenced", "0")
    await engine.confirm(claim_id, "ann")  # a retry grants what was pending
    await engine.sweep("gig")
    assert len(await _wallet(engine, "ann")) == 2
    # the grant made but its entry not removed (a crash right after the grant)
    await engine.redis.hset(keys.outbox_key("gig"), f"confirm:{claim_id}", "ann|fans|welcome")
    await engine.sweep("gig")
    assert len(await _wallet(engine, "ann")) == 2
    assert await engine.redis.hlen(keys.outbox_key("gig")) == 0


async def test_on_confirm_is_checked_when_defined(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="on_confirm.drop"):
        await engine.define_campaign("gig", sale_spec(  # type: ignore[arg-type]
            on_confirm={"drop": "gig", "sku": "welcome"}))
    with pytest.raises(ValidationError, match="on_confirm"):
        await engine.define_campaign("fans", drop_spec(  # a drop grants no pack on confirm
            campaign={"on_confirm": {"drop": "other", "sku": "welcome"}}))


async def test_a_redefinition_without_on_confirm_grants_nothing(engine: Engine) -> None:
    await _sale(engine)
    await engine.define_campaign("gig", sale_spec())  # replaced before any claim
    assert await engine.redis.hget(keys.campaign_keys("gig").meta, "ocf_drop") is None
    held = await engine.claim("gig", "ann", "tee", 1)
    assert held.claim is not None
    await engine.confirm(held.claim.claim_id, "ann")
    assert await _wallet(engine, "ann") == set()
    assert await engine.redis.hlen(keys.outbox_key("gig")) == 0


async def test_a_bundle_confirmed_grants_a_pack_per_line(engine: Engine) -> None:
    """Bundles: each line is a claim of its own, confirmed together; each grants its
    pack, once, as recovery counts them (one per claim_confirmed)."""
    await _sale(engine, skus=("tee", "cap"))
    held = await engine.claim_bundle("gig", "ann", lines=[BundleLine(sku="tee", qty=1),
                                                          BundleLine(sku="cap", qty=1)])
    assert held.claim is not None and held.claim.lines
    for _ in range(2):  # the first confirm and a retry
        done = await engine.confirm(held.claim.claim_id, "ann")
        assert done.claim is not None and done.claim.status == "confirmed"
        assert len(await _wallet(engine, "ann")) == 4  # two packs of two coupons
    assert await engine.redis.hlen(keys.outbox_key("gig")) == 0
    for line in held.claim.lines:
        assert await engine.redis.hexists(keys.campaign_keys("fans").claims, grant_claim_id(
            "fans", f"confirm:{line.claim_id}", "ann"))
