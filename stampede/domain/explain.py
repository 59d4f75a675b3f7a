"""Which refusal an outcome was, for operations whose script answers only a code.

Claims (sale and coupon) learn their refusal's detail from their own script,
exactly and on the hot path. The rarer operations (waitlists, the waiting
room, admin changes) answer a bare outcome; on a refusal, and only then, one
read of the campaign tells which refusal of REFUSALS (stampede/outcomes.py)
it was and with what numbers. It reads the state after the fact, so under a
concurrent change it names what the state shows now: wording, never a
decision.
"""

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from stampede.outcomes import Outcome
from stampede.state import keys, records


@dataclass(frozen=True, slots=True)
class Explained:
    reason: str
    params: dict[str, Any] = field(default_factory=dict)


Kind = Literal["sale", "drop", "any"]
_META = ("state", "per_user", "max_qty", "coupons", "opens_ms", "wl_max", "wr_on")


async def explain(redis: "Redis", cid: str, outcome: Outcome, *, user: str | None = None,
                  sku: str | None = None, qty: int | None = None,
                  not_found: str | None = None, kind: Kind = "sale") -> Explained:
    """The refusal behind `outcome`; `not_found` names what is missing when the
    campaign (and the SKU, if given) exist; `kind` is what the operation expects
    the campaign to be (a sale, a coupon drop, or either)."""
    if not keys.valid_campaign_id(cid):
        return Explained("no_campaign")
    ks = keys.campaign_keys(cid)
    meta = dict(zip(_META, await redis.hmget(ks.meta, *_META), strict=True))
    if meta["state"] is None:
        return Explained("no_campaign")
    if outcome is Outcome.NOT_FOUND:
        return await _missing(redis, ks, meta, sku, not_found, kind)
    if outcome is Outcome.NOT_OPEN and meta["opens_ms"] is not None:
        opens = int(meta["opens_ms"])
        return Explained("not_open", {"opens_ms": opens,
                                      "wait_ms": max(0, opens - int(time.time() * 1000))})
    if outcome is Outcome.INVALID and qty is not None and meta["max_qty"] is not None:
        limit = int(meta["max_qty"])
        return Explained("max_per_claim" if qty > limit else "bad_qty", {"limit": limit})
    if outcome is Outcome.WAITLIST_FULL and meta["wl_max"] is not None:
        return Explained("waitlist_full", {"limit": int(meta["wl_max"])})
    if outcome is Outcome.LIMIT_EXCEEDED and user and sku and qty is not None:
        return await _limit(redis, ks, meta, user, sku, qty)
    return Explained(outcome.reason)


async def _missing(redis: "Redis", ks: keys.CampaignKeys, meta: dict[str, Any], sku: str | None,
                   not_found: str | None, kind: Kind) -> Explained:
    if kind != "any" and (meta["coupons"] == "1") == (kind == "sale"):
        return Explained("not_a_sale" if kind == "sale" else "not_a_drop")
    if sku is not None and not await redis.hexists(ks.stock, f"{sku}.a"):
        return Explained("no_sku")
    if not_found == "no_ticket" and meta["wr_on"] != "1":
        return Explained("no_waiting_room")
    return Explained(not_found or Outcome.NOT_FOUND.reason)


async def _limit(redis: "Redis", ks: keys.CampaignKeys, meta: dict[str, Any], user: str, sku: str,
                 qty: int) -> Explained:
    units = records.decode_units(await redis.hget(ks.users, user))
    held, held_sku = sum(units.values()), units.get(sku, 0)
    sku_limit = await redis.hget(ks.stock, f"{sku}.lim")
    per_user = int(meta["per_user"] or -1)
    if per_user >= 0 and held + qty > per_user:
        return Explained("per_user", {"limit": per_user, "held": held})
    if sku_limit is not None and 0 <= int(sku_limit) < held_sku + qty:
        return Explained("per_sku", {"limit": int(sku_limit), "held": held_sku})
    return Explained(Outcome.LIMIT_EXCEEDED.reason)
