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

One gateway's rebalancer acts for a campaign at a time: each tick first takes or
keeps the campaign's lease (rebalance_lease.lua: SET NX PX in shard 0's slot, kept
and given up only by its holder's token). The others skip the campaign; when the
holder dies its lease lapses after LEASE_SWEEPS sweep intervals and the next
gateway to sweep takes it. A holder that stalls past its lease time finds it
taken at its next tick and stops; a top-up it had already planned may still run
beside the new holder's, which moves more units than needed, never loses or
doubles one (each move is exactly once).

Waiters are demand too. A shard whose waitlist waits for more units than it has
gets the difference first, from the shards without a waiter for the SKU (richest
first, down to their last unit), whether or not anything sells: a unit returned on
a shard without waiters would otherwise sit there while another shard's waiters
wait, until a claim on their shard borrowed it. The units a move brings are offered
to the receiving shard's waiters, head first (shard_borrow.lua), as a returned unit
is in one campaign.
"""

import math
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import cast

from stampede.domain.shards import Shards
from stampede.state import keys, records

LOW_WATER = 0.5
"""A shard is topped up when its available units fall below this share of its target
(hysteresis: it is then filled to the whole target, so moves are few and large)."""
FLOOR = 0.25
"""A shard's rate counts as at least this share of the mean rate: a quiet shard keeps
some units (its users may still come) and a shard's rate is never zero."""
SMOOTHING = 0.5
"""Weight of the latest sweep's rate in the smoothed rate."""
LEASE_SWEEPS = 4
"""A lease lasts this many sweep intervals (at least LEASE_MIN_MS) unless its holder
keeps it: a holder that dies is replaced within that time."""
LEASE_MIN_MS = 1000
WAITERS_READ = 64
"""Waiters read per shard and SKU, from the head, to count the units its waitlist
waits for: enough to serve the next offers; the sweeps after top up the rest."""


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
    return _fill([(k, math.ceil(goal[k] - available[k])) for k in low], spare)


def plan_for_waiters(available: Sequence[int],
                     waiting: Sequence[int]) -> list[tuple[int, int, int]]:
    """(donor, receiver, units) moves that bring each shard whose waiters wait for more
    than it has the difference, the largest lack first, from the shards without a
    waiter (richest first; a shard with a waiter lends none, shard_lend.lua)."""
    spare = {j: a for j, a in enumerate(available) if not waiting[j] and a > 0}
    lacking = sorted((k for k, w in enumerate(waiting) if w > available[k]),
                     key=lambda k: available[k] - waiting[k])
    return _fill([(k, waiting[k] - available[k]) for k in lacking], spare)


def _fill(needs: Sequence[tuple[int, int]], spare: dict[int, int]) -> list[tuple[int, int, int]]:
    """(donor, receiver, units) moves that give each (receiver, units needed), in turn,
    what the donors can spare (`spare`, used up as it goes), the richest first."""
    moves = []
    for k, need in needs:
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

    def __init__(self, shards: Shards, sweep_interval_ms: int = 250) -> None:
        self.shards = shards
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        """This process's lease token: whose rebalancer acts (host and pid, to read)."""
        self.lease_ms = max(LEASE_MIN_MS, LEASE_SWEEPS * sweep_interval_ms)
        self.held: set[str] = set()
        """Campaigns whose lease this process held at its last tick."""
        self._seen: dict[tuple[str, str], tuple[float, list[int]]] = {}
        self._rates: dict[tuple[str, str], list[float]] = {}
        self.moves = 0
        self.units = 0
        """Top-ups made and units they moved, by this process (benches and tests)."""

    async def tick(self, cid: str, n: int) -> int:
        """If this process holds (or takes) the campaign's lease: read every shard once
        (one command per slot) and top up the low ones; returns the units moved."""
        if not await self._lease(cid):
            return 0
        ids = [keys.shard_id(cid, k, n) for k in range(n)]
        async with self.shards.redis.pipeline(transaction=False) as pipe:
            for scid in ids:
                pipe.hgetall(keys.campaign_keys(scid).stock)
                pipe.zcard(keys.campaign_keys(scid).waitlist)
            raw = await pipe.execute()
        stocks = cast(list[dict[str, str]], raw[0::2])
        skus = sorted(f[:-2] for f in stocks[0] if f.endswith(".a"))
        waiting = await self._waiting(ids, skus) if any(raw[1::2]) else {}
        now = time.monotonic()
        moved = 0
        for sku in skus:
            available = [int(s.get(f"{sku}.a", 0)) for s in stocks]
            taken = [int(s.get(f"{sku}.h", 0)) + int(s.get(f"{sku}.s", 0)) for s in stocks]
            rates = self._rate(cid, sku, now, taken)
            moves = plan_for_waiters(available, waiting[sku]) if sku in waiting else []
            for donor, _, qty in moves:  # the receiver's waiters take what it gets
                available[donor] -= qty
            if rates is not None:
                moves += plan(available, rates)
            for donor, receiver, qty in moves:
                got = await self.shards.move(cid, n, donor, receiver, sku, qty)
                if got:
                    self.moves += 1
                    self.units += got
                    moved += got
        return moved

    async def _lease(self, cid: str) -> bool:
        got = int(await self.shards.scripts.run(
            "rebalance_lease", [keys.rebalance_lease_key(cid)], [self.token, self.lease_ms]))
        if got == 2:  # taken: the rates seen before (by a former lease) are stale
            for key in [k for k in self._seen if k[0] == cid]:
                self._seen.pop(key)
                self._rates.pop(key, None)
        if got:
            self.held.add(cid)
        else:
            self.held.discard(cid)
        return got > 0

    async def give_up(self) -> None:
        """Hand the leases this process holds back (a clean stop): another gateway
        takes them at its next sweep instead of after the lease time."""
        for cid in sorted(self.held):
            await self.shards.scripts.run("rebalance_lease", [keys.rebalance_lease_key(cid)],
                                          [self.token, 0])
        self.held.clear()

    async def _waiting(self, ids: Sequence[str], skus: Sequence[str]) -> dict[str, list[int]]:
        """Per SKU, the units each shard's waiters wait for (its first WAITERS_READ
        waiters): two reads of one command per slot."""
        redis = self.shards.redis
        async with redis.pipeline(transaction=False) as pipe:
            for scid in ids:
                for sku in skus:  # wl_range of include/common.lua: '}' is the byte after '|'
                    pipe.zrangebylex(keys.campaign_keys(scid).waitlist, f"[{sku}|",
                                     f"({sku}}}", 0, WAITERS_READ)
            members = cast(list[list[str]], await pipe.execute())
        async with redis.pipeline(transaction=False) as pipe:
            for i, scid in enumerate(ids):
                for j, sku in enumerate(skus):
                    users = [records.WL_MEMBER.decode(m).user for m in members[i * len(skus) + j]]
                    pipe.hmget(keys.campaign_keys(scid).wlentries,
                               [f"{u}|{sku}" for u in users] or ["-"])
            entries = cast(list[list[str | None]], await pipe.execute())
        waiting = {sku: [0] * len(ids) for sku in skus}
        for i in range(len(ids)):
            for j, sku in enumerate(skus):
                waiting[sku][i] = sum(records.ENTRY.decode(e).qty
                                      for e in entries[i * len(skus) + j] if e is not None)
        return waiting

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
