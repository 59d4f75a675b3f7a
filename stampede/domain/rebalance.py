"""Proactive rebalancing of a sharded campaign: units move to a shard before it runs dry.

Without it, units move only when a claim finds its shard dry (Engine._claim_sharded):
that claim is answered SHARD_DRY, waits for a borrow (a read of every shard, then a
lend and a borrow) and is sent again, the slow path. With skewed demand (a hot shard)
most of a sale can go that way.

The sweeper calls `Rebalancer.tick` for each sharded campaign every sweep interval
(STAMPEDE_HOLD_SWEEP_INTERVAL_MS). For each SKU it reads every shard's available
units and units taken (held + sold), and keeps each shard's recent sale rate (units
taken per second, smoothed over sweeps). Each shard's target is a share of all the
available units proportional to its rate, with a floor (a quarter of the mean rate)
so that a quiet shard keeps some units for its users. A shard below LOW_WATER of its
target is topped up to the target from the shards above theirs, richest first. While
nothing sells (a pause, a quiet spell) nothing moves.

A top-up is an ordinary move (Shards.move): atomic on each side and exactly once
across crashes, delivered again by the sweeper from the donor's outbox. Rebalancing
only moves units that are available; it never changes what a claim is answered, so
the false sold-out bound is the dry path's (docs/shards.md). It is a heuristic for
speed: the dry path stays, for a rush's first sweep (no rate is known yet) and for
the last units, where whole shares are smaller than one sweep's sales.
"""

import math
import time
from collections.abc import Sequence
from typing import cast

from stampede.domain.shards import Shards
from stampede.state import keys

LOW_WATER = 0.5
"""A shard is topped up when its available units fall below this share of its target
(hysteresis: it is then filled to the whole target, so moves are few and large)."""
FLOOR = 0.25
"""A shard's rate counts as at least this share of the mean rate: a quiet shard keeps
some units (its users may still come) and a shard's rate is never zero."""
SMOOTHING = 0.5
"""Weight of the latest sweep's rate in the smoothed rate."""


def targets(total: int, rates: Sequence[float]) -> list[float]:
    """Each shard's share of `total` available units, in proportion to its rate (even
    while no rate is known)."""
    n = len(rates)
    mean = sum(rates) / n
    if mean <= 0:
        return [total / n] * n
    weights = [max(r, 0.0) + FLOOR * mean for r in rates]
    return [total * w / sum(weights) for w in weights]


def plan(available: Sequence[int], rates: Sequence[float]) -> list[tuple[int, int, int]]:
    """(donor, receiver, units) moves that fill every shard below LOW_WATER of its
    target up to it, from the shards above theirs (whole units, the largest surplus
    first). Empty when nothing sold lately, no shard is low, or none has a whole
    unit to spare."""
    total = sum(available)
    if total <= 0 or sum(rates) <= 0:  # nothing sold lately: no shard is in a hurry
        return []
    goal = targets(total, rates)
    low = sorted((k for k, a in enumerate(available) if a < LOW_WATER * goal[k]),
                 key=lambda k: available[k] - goal[k])
    spare = {j: math.floor(a - goal[j]) for j, a in enumerate(available) if a > goal[j]}
    moves = []
    for k in low:
        need = math.ceil(goal[k] - available[k])
        for j in sorted(spare, key=lambda d: -spare[d]):
            give = min(need, spare[j])
            if give < 1:
                break
            moves.append((j, k, give))
            spare[j] -= give
            need -= give
            if need <= 0:
                break
    return moves


class Rebalancer:
    """One process's rebalancing: the shards' recent sale rates, and the top-ups."""

    def __init__(self, shards: Shards) -> None:
        self.shards = shards
        self._seen: dict[tuple[str, str], tuple[float, list[int]]] = {}
        self._rates: dict[tuple[str, str], list[float]] = {}
        self.moves = 0
        self.units = 0
        """Top-ups made and units they moved, by this process (benches and tests)."""

    async def tick(self, cid: str, n: int) -> int:
        """Read every shard once (one command per slot) and top up the low ones;
        returns the units moved."""
        async with self.shards.redis.pipeline(transaction=False) as pipe:
            for k in range(n):
                pipe.hgetall(keys.campaign_keys(keys.shard_id(cid, k, n)).stock)
            stocks = cast(list[dict[str, str]], await pipe.execute())
        now = time.monotonic()
        moved = 0
        for sku in sorted(f[:-2] for f in stocks[0] if f.endswith(".a")):
            available = [int(s.get(f"{sku}.a", 0)) for s in stocks]
            taken = [int(s.get(f"{sku}.h", 0)) + int(s.get(f"{sku}.s", 0)) for s in stocks]
            rates = self._rate(cid, sku, now, taken)
            if rates is None:
                continue
            for donor, receiver, qty in plan(available, rates):
                got = await self.shards.move(cid, n, donor, receiver, sku, qty)
                if got:
                    self.moves += 1
                    self.units += got
                    moved += got
        return moved

    def _rate(self, cid: str, sku: str, now: float, taken: list[int]) -> list[float] | None:
        """Each shard's smoothed units taken per second; None on the first look."""
        key = (cid, sku)
        seen, self._seen[key] = self._seen.get(key), (now, taken)
        if seen is None or now <= seen[0]:
            return self._rates.get(key)
        # Units handed back (expired, cancelled) make `taken` fall: no negative rates.
        latest = [max(0, t - p) / (now - seen[0]) for t, p in zip(taken, seen[1], strict=True)]
        before = self._rates.get(key)
        rates = latest if before is None else [
            SMOOTHING * x + (1 - SMOOTHING) * b for x, b in zip(latest, before, strict=True)]
        self._rates[key] = rates
        return rates
