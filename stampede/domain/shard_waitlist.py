"""Waitlists of a sharded campaign: one list per shard, for the users it serves.

FIFO holds per shard: units returned on a shard, or borrowed into it, are offered
to that shard's earliest waiter first (include/common.lua offer_waitlist). Across
shards it is not kept: a later joiner on one shard can be offered a unit while an
earlier one waits on another. A shard lends no units of a SKU while it has a
waiter for it (shard_lend.lua), so its head keeps them, as in one campaign.
docs/shards.md states the rule.
"""

from typing import TYPE_CHECKING

from stampede.domain import shards
from stampede.state import keys

if TYPE_CHECKING:
    from redis.asyncio import Redis


def user_shard(cid: str, n: int | None, user: str) -> str:
    """The id of the shard (or the campaign itself) that holds `user`'s waitlist entries."""
    if n is None or n <= 1:
        return cid
    return keys.shard_id(cid, shards.shard_of_user(user, n), n)


async def units_elsewhere(redis: "Redis", cid: str, n: int, own: str, sku: str) -> int:
    """Available units of `sku` on the other shards that a claim may borrow: those of
    shards without a waiter for it (one command per slot, two per shard)."""
    others = [s for s in (keys.shard_id(cid, k, n) for k in range(n)) if s != own]
    async with redis.pipeline(transaction=False) as pipe:
        for scid in others:
            ck = keys.campaign_keys(scid)
            pipe.hget(ck.stock, f"{sku}.a")
            # wl_range of include/common.lua: the SKU's members, '}' the byte after '|'
            pipe.zrangebylex(ck.waitlist, f"[{sku}|", f"({sku}}}", 0, 1)
        raw = await pipe.execute()
    return sum(int(raw[i] or 0) for i in range(0, len(raw), 2) if not raw[i + 1])
