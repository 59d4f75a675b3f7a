"""`recover` rebuilds every key a script reads, checked key by key against the live state.

A sale with a bit of everything runs on a live Redis; its keys are dumped,
the persister drains, Redis is emptied and the campaign rebuilt from the
store; then every key is dumped again and compared. The only differences
allowed are the ones listed here, each with its reason.
"""

from typing import Any

from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.api.errors import json_response
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.state import keys, records
from stampede.state.idempotency import ResponseMemory, fingerprint
from tests.conftest import campaign_spec
from tests.store.test_persister import _sale

TTL = 86_400_000

NOT_REBUILT = {
    "events": "a fresh stream whose group starts at its end: its entries are in the store",
}
"""Keys whose content differs by design after a rebuild."""
META_CHANGES = {"epoch", "fenced", "xtail"}
"""A rebuild takes a new epoch and reopens the campaign (fenced=0); it puts the held
claims in the deadlines zset, so the expiry list's tail (xtail) is not rebuilt."""
EXPIRY_INDEX = {"expiry", "deadlines"}
"""The hold expiry index: a live sale keeps its holds in the expiry list (ids stay
there until swept, whatever became of their claim), a rebuild puts them in the
deadlines zset; both are compared as the held claims they index ("holds expiring")."""
REFUSALS = {"sold_out", "limit_exceeded"}
"""Refusal counters leave no event: an emptied Redis starts them again (a live one
keeps them, tested below)."""


async def _dump(redis: "Redis[str]", cid: str, live: bool = False) -> dict[str, Any]:
    """Every key of the campaign's slot by its type, with zeros dropped from counters
    (a missing hash field reads as 0 in every script)."""
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(match=f"{keys.tag(cid).replace('{', '[{]')}*"):
        kind = await redis.type(key)
        name = key.split(":", 2)[-1] if key.count(":") >= 2 else key
        if name in NOT_REBUILT or name in EXPIRY_INDEX:
            continue
        if kind == "hash":
            value: Any = {f: v for f, v in (await redis.hgetall(key)).items() if v != "0"}
            if key == keys.campaign_keys(cid).meta:
                value = {f: v for f, v in value.items() if f not in META_CHANGES}
            if key == keys.campaign_keys(cid).counts and not live:
                value = {f: v for f, v in value.items() if f not in REFUSALS}
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            value = await redis.get(key)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        else:
            value = kind
        out[key] = value
    ks = keys.campaign_keys(cid)
    if await redis.exists(ks.meta):
        out["holds expiring"] = await _holds_expiring(redis, ks)
    return out


async def _holds_expiring(redis: "Redis[str]", ks: keys.CampaignKeys) -> list[tuple[str, int]]:
    """The held claims the expiry index holds, with their deadlines; each held claim once."""
    ids = await redis.lrange(ks.expiry, 0, -1) + await redis.zrange(ks.deadlines, 0, -1)
    held = {}
    for claim_id in ids:
        raw = await redis.hget(ks.claims, claim_id)
        c = records.CLAIM.decode(raw) if raw else None
        if c and c.status == "held":
            assert claim_id not in held, f"{claim_id} twice in the expiry index"
            held[claim_id] = c.deadline
    stored = await redis.hgetall(ks.claims)
    assert {i for i, raw in stored.items() if records.CLAIM.decode(raw).status == "held"} \
        == set(held), "a held claim missing from the expiry index"
    return sorted(held.items())


async def test_recovery_rebuilds_every_key_the_scripts_read(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await _sale(sale)
    # Refusals, a retried claim, a waitlist with an offer taken and one let go.
    await sale.define_campaign("w1", campaign_spec(stock=1, per_user=2,
                                                   waitlist={"max_length": 10}))
    first = await sale.claim("w1", "ann", "tee", idempotency_key="a1")
    assert first.claim
    assert (await sale.claim("w1", "ann", "tee", idempotency_key="a1")).outcome is Outcome.OK
    assert (await sale.claim("w1", "zed", "tee")).outcome is Outcome.SOLD_OUT
    for user in ("bob", "cat", "dan"):
        assert (await sale.join_waitlist("w1", user, "tee"))[0] is Outcome.OK
    await sale.cancel(first.claim.claim_id, "ann")  # bob is offered the unit
    offer = next(e.offer for e in (await sale.waitlist("w1", "bob"))[1] if e.offer)
    assert offer is not None
    await sale.cancel(offer.claim_id, "bob")  # declined: cat is offered it
    await sale.leave_waitlist("w1", "dan", "tee")
    assert (await sale.join_waitlist("w1", "eve", "tee"))[0] is Outcome.OK
    # Two units arrive: one goes to eve's offer first, so the answer shows one available.
    assert await sale.adjust_stock("w1", "tee", 2, "ops", op_key="more") == (Outcome.OK, 1)
    # Confirms and cancels with an Idempotency-Key, remembered as the API does.
    memory = ResponseMemory(raw_redis, TTL // 1000)
    for i, op in enumerate(("confirm", "cancel", "confirm")):
        r = await sale.claim("c1", f"k{i}", "tee")
        assert r.claim
        settle = sale.confirm if op == "confirm" else sale.cancel
        done = await settle(r.claim.claim_id, f"k{i}", f"key{i}")
        body = json_response(done.claim).body
        assert isinstance(body, bytes)
        await memory.remember("c1", f"k{i}", f"key{i}", fingerprint(op, r.claim.claim_id),
                              200, body)
    cat = next(e.offer for e in (await sale.waitlist("w1", "cat"))[1] if e.offer)
    assert cat is not None
    done = await sale.confirm(cat.claim_id, "cat", "pay")  # an offer confirmed, with a key
    await memory.remember("w1", "cat", "pay", fingerprint("confirm", cat.claim_id), 200,
                          json_response(done.claim).body)  # type: ignore[arg-type]
    await persister.drain()
    before = {cid: await _dump(raw_redis, cid) for cid in ("c1", "w1")}
    await raw_redis.flushall()
    for cid in ("c1", "w1"):
        await recover_campaign(raw_redis, store, cid, TTL)
    after = {cid: await _dump(raw_redis, cid) for cid in ("c1", "w1")}
    for cid in ("c1", "w1"):
        missing = sorted(set(before[cid]) - set(after[cid]))
        assert missing == [], f"{cid}: keys not rebuilt: {missing}"
        for key, value in before[cid].items():
            assert after[cid][key] == value, f"{cid}: {key} differs"
    answers = [k for k in before["c1"] if ":resp:" in k] + \
        [k for k in before["w1"] if ":resp:" in k or ":idem:" in k]
    # Three settled in c1; in w1 ann's claim, cat's confirm and the stock adjustment.
    assert len(answers) == 6


async def test_recovery_of_a_live_redis_keeps_its_refusal_counts(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=1, per_user=1))
    assert (await sale.claim("c1", "ann", "tee")).outcome is Outcome.OK
    assert (await sale.claim("c1", "bob", "tee")).outcome is Outcome.SOLD_OUT
    await persister.drain()
    before = await _dump(raw_redis, "c1", live=True)
    await recover_campaign(raw_redis, store, "c1", TTL)
    assert await _dump(raw_redis, "c1", live=True) == before


async def test_a_campaign_whose_state_keys_are_lost_keeps_its_unpersisted_events(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=10, per_user=3))
    await persister.drain()
    held = []
    for i in range(4):  # in the stream, not yet in the store
        r = await sale.claim("c1", f"u{i}", "tee")
        assert r.claim
        held.append(r.claim.claim_id)
    assert (await sale.confirm(held[0], "u0")).outcome is Outcome.OK
    state = [k for k in keys.campaign_keys("c1") if k != keys.events_key("c1")]
    await raw_redis.delete(*state)
    await recover_campaign(raw_redis, store, "c1", TTL)
    view = await sale.get_claim(held[0], "u0")
    assert view is not None and view.status == "confirmed"
    for i, claim in enumerate(held):
        assert await sale.get_claim(claim, f"u{i}") is not None
