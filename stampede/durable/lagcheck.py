"""`stampede check`: how far the store is behind Redis, campaign by campaign.

Redis is where claims are decided; the store follows through the persister.
This compares the two now: each campaign's event count in Redis against the
events folded into the store, the age of the oldest event not yet persisted,
and the dead letters. The store is "behind" when an event has waited longer
than the bound; a campaign missing from either side, or any dead letter, is
reported too. `ok` is false on any of them.
"""

from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import func, select

from stampede.durable.persister import lag
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys


async def compare(redis: "Redis", store: Store, max_lag_s: float) -> dict[str, Any]:
    async with store.read() as conn:
        stored = {r.campaign_id: r for r in await conn.execute(select(
            t.campaigns.c.campaign_id, t.campaigns.c.applied_seq, t.campaigns.c.max_seq,
            t.campaigns.c.epoch))}
        dead: dict[str, int] = {r[0]: int(r[1]) for r in await conn.execute(
            select(t.dead_letters.c.campaign_id, func.count())
            .group_by(t.dead_letters.c.campaign_id))}
    live = set(cast(set[str], await redis.smembers(keys.CAMPAIGN_INDEX)))
    campaigns: dict[str, dict[str, Any]] = {}
    for cid in sorted(live | set(stored)):
        row = stored.get(cid)
        evseq = await redis.hget(keys.campaign_keys(cid).meta, "evseq")
        c: dict[str, Any] = {"redis_events": None if evseq is None else int(evseq),
                             "store_events": row.applied_seq if row else 0,
                             "dead_letters": int(dead.get(cid, 0)), "problems": []}
        if evseq is None:
            if row is not None and row.max_seq:
                c["problems"].append("missing_from_redis")  # heal rebuilds it
        else:
            info = await lag(redis, cid)
            c["behind_events"] = max(0, int(evseq) - c["store_events"])
            c["unpersisted"] = info.pending
            c["oldest_unpersisted_s"] = round(info.oldest_age_s, 3)
            if info.oldest_age_s > max_lag_s:
                c["problems"].append("store_behind")
        if c["dead_letters"]:
            c["problems"].append("dead_letters")
        campaigns[cid] = c
    problems = sum(len(c["problems"]) for c in campaigns.values())
    worst = max((c.get("oldest_unpersisted_s", 0.0) for c in campaigns.values()), default=0.0)
    return {"ok": problems == 0, "max_lag_s": max_lag_s, "oldest_unpersisted_s": worst,
            "problems": problems, "campaigns": campaigns}
