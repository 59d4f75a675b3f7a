"""Grants: a drop's coupons given to users by ops (a segment) or by a ticket's check-in.

Every grant is keyed: its claim id in the drop is derived from the grant's
key and the user (`grant_claim_id`), and grant.lua answers a claim id it has
seen again without issuing anything. So a grant retried, or replayed after a
crash, issues its pack once.

A check-in and its grant live in different slots (the sale's, the drop's),
so they cannot be one script. checkin.lua writes the pending grant to the
sale's outbox in the same atomic run as the admission; the engine then
grants it (keyed by the ticket) and removes it from the outbox. A crash
between the two leaves the entry in the outbox, and the sweeper grants it
later; a crash after the grant but before the removal grants it again, which
the key makes a no-op. Outbox plus keyed grant: exactly one pack per check-in.
A sale's `on_confirm` works the same way: confirm.lua writes the entry
"confirm:<claim_id>" in the run that confirms, and the grant is keyed by it.
"""

import hashlib
import logging
from typing import Annotated, Any, cast

from msgspec import Meta, Struct
from redis.asyncio import Redis

from stampede.domain.models import SkuId
from stampede.domain.shards import shard_of_user
from stampede.errors import ValidationError
from stampede.outcomes import OUTCOMES, Outcome
from stampede.state import keys
from stampede.state.scripts import ScriptRegistry

log = logging.getLogger("stampede.grants")
BATCH = 500
"""Grants per script call: long enough to amortise the round trip, short enough
not to hold the drop's slot for long."""
UserId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")]


class GrantRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    sku: SkuId
    """The drop's SKU (template or pack): one unit of it to each user."""
    users: Annotated[list[UserId], Meta(min_length=1, max_length=10_000)]


class GrantResult(Struct, kw_only=True):
    user: str
    outcome: str
    """granted, already (granted under this key before), sold_out (stock or budget),
    or not_found (no such drop or SKU)"""
    claim_id: str | None = None
    coupons: int = 0


class GrantResults(Struct, kw_only=True):
    granted: int
    results: list[GrantResult]


def grant_claim_id(drop: str, key: str, user: str) -> str:
    return f"{drop}.{hashlib.sha1(f'grant|{key}|{user}'.encode()).hexdigest()[:20]}"


def _seed(key: str, user: str) -> str:
    return hashlib.sha1(f"seed|{key}|{user}".encode()).hexdigest()


class Grants:
    def __init__(self, redis: "Redis", scripts: ScriptRegistry) -> None:
        self.redis = redis
        self.scripts = scripts

    async def grant(self, drop: str, sku: str, users: list[str], key: str,
                    source: str) -> list[GrantResult]:
        """One unit of `sku` to each user, keyed by (`key`, user)."""
        if not keys.valid_campaign_id(drop) or not keys.valid_sku(sku):
            raise ValidationError("drop must be a campaign id and sku a SKU id")
        raw = await self.redis.hget(keys.campaign_keys(drop).meta, "shards")
        n = int(raw or 1)
        if n <= 1:
            return await self._grant(drop, sku, users, key, source)
        # A sharded drop: each user's unit from the shard that serves them, where their
        # wallet and limits are (no borrow: a dry shard answers sold_out).
        by_shard: dict[int, list[int]] = {}
        for i, user in enumerate(users):
            by_shard.setdefault(shard_of_user(user, n), []).append(i)
        results: list[GrantResult | None] = [None] * len(users)
        for k, at in sorted(by_shard.items()):
            done = await self._grant(keys.shard_id(drop, k, n), sku, [users[i] for i in at],
                                     key, source)
            for i, r in zip(at, done, strict=True):
                results[i] = r
        return [r for r in results if r is not None]

    async def _grant(self, drop: str, sku: str, users: list[str], key: str,
                     source: str) -> list[GrantResult]:
        results: list[GrantResult] = []
        for start in range(0, len(users), BATCH):
            part = users[start:start + BATCH]
            ks: list[str] = [*keys.coupon_keys(drop)]
            args: list[Any] = [sku, source]
            for user in part:
                ks.append(keys.wallet_key(drop, user))
                args += [grant_claim_id(drop, key, user), user, _seed(key, user), len(ks)]
            reply = await self.scripts.run("grant", ks, args)
            for i, user in enumerate(part):
                code, reason, claim_id, n = reply[4 * i:4 * i + 4]
                outcome = OUTCOMES[int(code)]
                name = ("already" if reason == "again" else "granted") \
                    if outcome is Outcome.OK else outcome.reason
                results.append(GrantResult(user=user, outcome=name,
                                           claim_id=str(claim_id) or None, coupons=int(n)))
        return results

    async def drain_outbox(self, cid: str, only: list[str] | None = None) -> int:
        """Grant the sale's pending on_checkin and on_confirm packs (all, or the entries
        `only`); returns how many left the outbox."""
        box = keys.outbox_key(cid)
        if only is None:
            pending = cast(dict[str, str], await self.redis.hgetall(box))
        else:
            values = cast(list[str | None], await self.redis.hmget(box, only)) if only else []
            pending = {t: v for t, v in zip(only, values, strict=True) if v is not None}
        done = 0
        for name, entry in pending.items():
            user, drop, sku = entry.split("|")
            key, source = outbox_grant(cid, name)
            result, = await self.grant(drop, sku, [user], key, source)
            if result.outcome in ("granted", "already", "sold_out"):
                if result.outcome == "sold_out":
                    log.warning("no pack for %s: drop %s is out of stock or budget",
                                name, drop)
                await self.redis.hdel(box, name)
                done += 1
        return done


def outbox_grant(cid: str, name: str) -> tuple[str, str]:
    """The grant key and source of an outbox entry: "confirm:<claim_id>" (on_confirm)
    or a ticket id (on_checkin)."""
    if name.startswith(CONFIRM_PREFIX):
        return name, f"confirm:{cid}"
    return f"checkin:{name}", f"checkin:{cid}"


CONFIRM_PREFIX = "confirm:"
"""An on_confirm entry of the outbox (and its grant key): "confirm:<claim_id>"."""
