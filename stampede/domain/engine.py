"""`Engine`: the domain API of Stampede over Redis, free of HTTP.

Every state change is one Lua operation (lua/); this module builds keys and
arguments, decodes answers into typed views, and coalesces claims per tick.
"""

import asyncio
import contextlib
import functools
import math
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stampede.domain import (
    allocations,
    bundles,
    phases,
    pricing,
    rebalance,
    shard_guard,
    shard_waitlist,
    shards,
    throttle,
)
from stampede.domain import identity as person
from stampede.domain.admission import kept_secret, ticket_view
from stampede.domain.aftersale import aftersale_meta
from stampede.domain.batcher import ClaimBatcher, PendingClaim, in_flight, reply_in
from stampede.domain.coupons import sharded as sharded_drop
from stampede.domain.coupons.service import Coupons
from stampede.domain.coupons.templates import check_drop, check_paid_prices, drop_meta
from stampede.domain.explain import Explained, explain
from stampede.domain.gate import ClaimGate
from stampede.domain.grants import Grants
from stampede.domain.models import (
    BUNDLE_MAX_LINES,
    BundleLine,
    BundleSpec,
    CampaignPatch,
    CampaignPublic,
    CampaignSpec,
    CampaignStats,
    CampaignSummary,
    ClaimLineView,
    ClaimView,
    LiveSku,
    LiveState,
    QueueTicket,
    SkuPublic,
    SkuStats,
    SkuSummary,
    WaitingRoomStats,
    WaitlistEntry,
    from_ms,
    to_ms,
)
from stampede.domain.presale_codes import PresaleCodes
from stampede.domain.presale_codes import limiter_keys as code_limiter_keys
from stampede.domain.refunds import Refunds
from stampede.domain.seen import CampaignSeen, campaign_seen
from stampede.domain.segments import Segments
from stampede.domain.status import CampaignSnapshot
from stampede.domain.throttle import ChallengeView, ClientSignals
from stampede.domain.tickets import Tickets
from stampede.domain.transfers import Transfers
from stampede.errors import UnavailableError, ValidationError
from stampede.outcomes import GUARD_REFUSALS, OUTCOMES, REFUSALS, Outcome, parse_detail
from stampede.settings import Settings
from stampede.state import keys, records
from stampede.state.connection import engine_client
from stampede.state.records import BundleArg, BundleLineArg, ClaimArg
from stampede.state.scripts import ScriptRegistry


class ClaimResult(msgspec.Struct, frozen=True):
    outcome: Outcome
    claim: ClaimView | None = None
    reason: str | None = None
    """Which refusal (a key of REFUSALS: per_sku, no_campaign, ...); for the guard's
    refusals, its scope: the limit, a list, a concentration or risk rule."""
    retry_after_ms: int | None = None
    """THROTTLED: exactly when the limit admits the next request."""
    challenge: ChallengeView | None = None
    """CHALLENGE_REQUIRED: the proof-of-work to solve and send with the claim again."""
    params: dict[str, int] = {}
    """The numbers of a refusal (its limit, what is held, when it opens), named as
    REFUSALS[reason].values in stampede/outcomes.py."""
    line: int | None = None
    """Bundles: the line (0-based) a refusal is about, when it is one line's."""



class ClaimLookup(NamedTuple):
    claim: ClaimView | None
    campaign: CampaignSeen


_json = msgspec.json.Encoder()
_NEEDS_GUARD = ClaimResult(Outcome.GUARD_CONTEXT_NEEDED)


class _Instants:
    """Epoch ms as datetimes, each made once: a batch's answers share their instants
    (one creation time, one deadline), and making a datetime costs more than the
    rest of an answer's decoding."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[int | str, datetime] = {}

    def __call__(self, ms: int | str) -> datetime:
        t = self._seen.get(ms)
        if t is None:
            t = self._seen[ms] = from_ms(int(ms))
        return t


_SUMMARY_BATCH = 32
"""Campaign snapshots read at once by `campaign_summaries` (its Redis connections)."""


def _summary(snap: CampaignSnapshot) -> CampaignSummary:
    return CampaignSummary(
        id=snap.id, name=snap.meta.get("name", ""), state=snap.state(),
        opens_at=from_ms(snap.opens_ms), closes_at=from_ms(snap.closes_ms),
        waitlist=snap.waiting[0], claims_total=snap.counts.get("held", 0),
        skus=[SkuSummary(sku=s.sku, released=s.released, available=s.available, held=s.held,
                         sold=s.sold, pending_waves=snap.pending_wave_count(s.sku),
                         next_wave_at=snap.next_wave_at(s.sku)) for s in snap.skus])


class Engine:
    def __init__(self, redis: "Redis", settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.scripts = ScriptRegistry(
            redis, settings.durable_ack_timeout_ms if settings.durable_ack else 0,
            settings.cluster_wait_replicas, settings.cluster_wait_timeout_ms)
        slots = in_flight(settings.durable_ack, settings.replica_ack)
        self.batcher: ClaimBatcher[ClaimResult] = ClaimBatcher(
            self._claim_batch, settings.max_batch, slots)
        self.bundle_batcher: ClaimBatcher[ClaimResult] = ClaimBatcher(
            self._bundle_batch, settings.max_batch, slots)
        """Bundle claims (several SKUs each), coalesced as claims are (claim_bundle.lua)."""
        self._throttle_default = throttle.parse_default(settings.throttle)
        self.gate = ClaimGate(redis, settings, self._throttle_default)
        """Admission tokens, challenges and guard state, shared with `coupons`."""

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> "Engine":
        """On one server, or on a cluster with STAMPEDE_REDIS_CLUSTER (state/connection.py)."""
        return cls(engine_client(url, settings.redis_cluster), settings)

    @functools.cached_property
    def shards(self) -> shards.Shards:
        """Sharded campaigns: shard counts, and moves of units between shards."""
        return shards.Shards(self.redis, self.scripts)

    @functools.cached_property
    def rebalancer(self) -> rebalance.Rebalancer:
        """Sharded campaigns: units moved to a shard before it runs dry (by the sweeper)."""
        return rebalance.Rebalancer(self.shards, self.settings.hold_sweep_interval_ms)

    @functools.cached_property
    def coupons(self) -> Coupons:
        """Coupon drops: claims that issue coupons, wallets, redemption, gifting."""
        return Coupons(self.redis, self.scripts, self.settings, self.gate, self.shards)

    @functools.cached_property
    def refunds(self) -> Refunds:
        """Refunds of sold claims (after the sale)."""
        return Refunds(self.redis, self.scripts, self.settings)

    @functools.cached_property
    def tickets(self) -> Tickets:
        """Tickets of ticketed sales, their holders' codes, scanners and check-in."""
        return Tickets(self.redis, self.scripts, self.settings, self.coupons.keys, self.grants)

    @functools.cached_property
    def grants(self) -> Grants:
        """A drop's coupons granted to users: by ops, or by a ticket's check-in."""
        return Grants(self.redis, self.scripts)

    @functools.cached_property
    def transfers(self) -> Transfers:
        """Transfers of sold claims between users (single-use tokens)."""
        return Transfers(self.redis, self.scripts)

    @functools.cached_property
    def presale_codes(self) -> PresaleCodes:
        """Presale-code batches of sales: issue, check signatures, export, usage."""
        return PresaleCodes(self.redis, self.scripts, lambda: (
            self.settings.presale_secret
            or kept_secret(self.settings.data_dir / "presale.secret")).encode())

    @functools.cached_property
    def segments(self) -> Segments:
        """Audience segments of sales: user ids ops add and remove live."""
        return Segments(self.redis, self.scripts)

    async def start(self) -> None:
        await self.scripts.load_all()

    async def close(self) -> None:
        await self.batcher.drain()
        await self.bundle_batcher.drain()
        if "coupons" in self.__dict__:
            await self.coupons.batcher.drain()
        await self.gate.wait_background()  # after both batchers: their last records too
        if "rebalancer" in self.__dict__:
            with contextlib.suppress(RedisError, UnavailableError):  # it lapses anyway
                await self.rebalancer.give_up()
        await self.redis.aclose()

    # -- campaigns ---------------------------------------------------------

    async def define_campaign(self, cid: str, spec: CampaignSpec,
                              actor: str = "engine") -> tuple[Outcome, bool]:
        """Create or replace (before any claim) a campaign. Returns (outcome, created)."""
        _check_campaign_id(cid)
        shards.check(cid, spec)
        if spec.shards > 1 or await self.shards.count(cid) not in (None, 1):
            return await self._define_sharded(cid, spec, actor)
        skus = [s.sku for s in spec.skus]
        number = None
        if spec.on_checkin is not None and spec.tickets is None:
            raise ValidationError("on_checkin needs tickets: only a ticket is checked in")
        for name, pack in (("on_checkin", spec.on_checkin), ("on_confirm", spec.on_confirm)):
            if pack is not None and pack.drop == cid:
                raise ValidationError(f"{name}.drop must name a coupon drop, not the sale "
                                      f"{cid!r} itself")
        if spec.coupons is not None:
            _check_drop(spec)  # before taking a drop number
            number = await self.coupons.drop_number(cid)
        args = _define_args(cid, spec, actor, spec.throttle or self._throttle_default,
                            drop_meta(spec.coupons, skus, number))
        code, created = await self.scripts.run("define_campaign",
                                               [*keys.campaign_keys(cid), keys.lists_key(cid)],
                                               args)
        if code == Outcome.OK:
            await self.redis.sadd(keys.CAMPAIGN_INDEX, cid)
            await self.coupons.registered(cid, spec.coupons is not None)
        return Outcome(code), bool(created)

    async def _define_sharded(self, cid: str, spec: CampaignSpec,
                              actor: str) -> tuple[Outcome, bool]:
        """Define every shard (shard 0, the campaign itself, last: it makes the campaign
        routable); nothing is written unless every shard may be (re)defined."""
        before = await self.shards.count(cid)
        if before is not None and before != spec.shards:
            raise ValidationError(f"shards: campaign {cid!r} has {before} shard(s); the "
                                  "number cannot change once defined")
        n = spec.shards
        ids = [keys.shard_id(cid, k, n) for k in range(n)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for scid in ids:
                pipe.hlen(keys.campaign_keys(scid).claims)
            if any(await pipe.execute()):  # define_campaign.lua would refuse one shard
                return Outcome.CONFLICT, False
        subs = shards.shard_specs(spec)
        guard = shard_guard.meta_fields(spec.throttle or self._throttle_default, n)
        drops = [drop_meta(None, [], None) for _ in ids]
        if spec.coupons is not None:  # a drop number per shard: a code names its shard
            sharded_drop.check(spec.coupons)
            _check_drop(spec)
            skus = [s.sku for s in spec.skus]
            drops = [drop_meta(spec.coupons, skus, await self.coupons.drop_number(scid))
                     for scid in ids]
        args = [_define_args(scid, sub, actor, None,
                             guard | {"shards": str(n), "shard": str(k)} | drops[k]
                             | shards.room_fields(spec, k))
                for k, (scid, sub) in enumerate(zip(ids, subs, strict=True))]
        created = False
        for k in reversed(range(n)):
            code, made = await self.scripts.run(
                "define_campaign", [*keys.campaign_keys(ids[k]), keys.lists_key(ids[k])],
                args[k])
            if code != Outcome.OK:
                return Outcome(code), False
            created = bool(made)
        await self.redis.sadd(keys.CAMPAIGN_INDEX, *ids)
        for scid in ids:  # each shard a drop of its own (sweeps, wallets, codes)
            await self.coupons.registered(scid, spec.coupons is not None)
        return Outcome.OK, created

    async def patch_campaign(self, cid: str, patch: CampaignPatch, actor: str) -> Outcome:
        _check_campaign_id(cid)
        n = await self.shards.count(cid)
        if n is not None and n > 1:  # each shard in turn, each atomically
            if patch.bundles is not msgspec.UNSET:  # a bundle does not borrow between shards
                raise ValidationError(REFUSALS["bundles_excluded"].template)
            if patch.allocations is not msgspec.UNSET:
                raise ValidationError(REFUSALS["allocations_excluded"].template)
            outcome = Outcome.OK
            for k in range(n):
                # The waiting room's queue and its rate are shard 0's alone.
                one = patch if k == 0 else msgspec.structs.replace(
                    patch, waiting_room=msgspec.UNSET)
                outcome = await self._patch_one(keys.shard_id(cid, k, n), one, actor, n)
                if outcome is not Outcome.OK:
                    return outcome
            return outcome
        return await self._patch_one(cid, patch, actor)

    async def _patch_one(self, cid: str, patch: CampaignPatch, actor: str,
                         shards_of: int = 1) -> Outcome:
        """Patch one campaign, or one of a sharded campaign's `shards_of` shards (its
        throttle then gets the shard's share of the limits, shard_guard)."""
        pairs = _patch_pairs(patch)
        if patch.price_steps is not msgspec.UNSET:
            pairs += await self._price_step_pairs(cid, patch)
        if patch.bundles is not msgspec.UNSET:
            pairs += bundles.patch_pairs(patch.bundles)
        if patch.allocations is not msgspec.UNSET:
            pairs += await self._allocation_pairs(cid, patch)
        if not pairs and patch.throttle is msgspec.UNSET:  # nothing to change: a no-op
            exists = await self.redis.exists(keys.campaign_keys(cid).meta)
            return Outcome.OK if exists else Outcome.NOT_FOUND
        ck = keys.campaign_keys(cid)
        ks = [*ck, keys.lists_key(cid)]
        for _ in range(10):  # a throttle change is read, merged, then written if unchanged
            args: list[Any] = [actor, *pairs]
            if patch.throttle is not msgspec.UNSET:
                current = str(await self.redis.hget(ck.meta, "th_spec") or "")
                merged = throttle.merge(current, patch.throttle)
                fields = shard_guard.meta_fields(merged, shards_of) if shards_of > 1 \
                    else throttle.meta_fields(merged)
                if patch.throttle.block is msgspec.UNSET and patch.throttle.allow is msgspec.UNSET:
                    del fields["th_lists"]  # lists untouched: not rewritten
                args += ["if:th_spec", current, *[x for kv in fields.items() for x in kv]]
            code, before, _after = await self.scripts.run("patch_campaign", ks, args)
            if code == Outcome.INVALID and before == "wave":  # it would stay pending forever
                raise ValidationError("closes_at must come after every pending wave")
            if code == Outcome.INVALID and before in ("phases", "phases_excluded",
                                                      "price_steps_excluded",
                                                      "bundles_excluded"):
                raise ValidationError(REFUSALS[before].template)
            if code == Outcome.INVALID and patch.bundles is not msgspec.UNSET:
                bundles.raise_patch_refusal(str(before), patch.bundles)
            if code == Outcome.INVALID:
                bundles.raise_limit_refusal(str(before), patch)
            if code == Outcome.INVALID and before == "allocations_excluded":
                raise ValidationError(REFUSALS[before].template)
            refused = allocations.patch_refusal(str(before), "allocations")
            if code == Outcome.INVALID and refused is not None:
                raise refused
            if not (code == Outcome.CONFLICT and before == "precondition"):
                return Outcome(code)
        raise UnavailableError("throttle config changed concurrently too often; retry")

    async def _allocation_pairs(self, cid: str, patch: CampaignPatch) -> list[Any]:
        """Presales: the "alp:<sku>" pairs of a PATCH's allocations, each list checked as
        a spec's is against the schedule in force (or the one patched with it); what
        they may reserve, the script checks against the SKU's units."""
        assert patch.allocations is not msgspec.UNSET
        raw = await self.redis.hmget(keys.campaign_keys(cid).meta, "opens_ms", "closes_ms")
        opens = to_ms(patch.opens_at) if patch.opens_at is not msgspec.UNSET else \
            int(raw[0] or 0)
        closes = to_ms(patch.closes_at) if patch.closes_at is not msgspec.UNSET else \
            int(raw[1] or 0)
        pairs: list[Any] = []
        for sku, allocs in patch.allocations.items():
            allocations.check_list(f"allocations.{sku}", allocs, opens, closes)
            pairs += [f"alp:{sku}", allocations.patch_value(allocs)]
        return pairs

    async def _price_step_pairs(self, cid: str, patch: CampaignPatch) -> list[Any]:
        """Presales: the "ps:<sku>" pairs of a PATCH's price steps, each checked as a
        spec's are against the opening in force (or the one patched with them)."""
        assert patch.price_steps is not msgspec.UNSET
        if patch.opens_at is not msgspec.UNSET:
            opens = to_ms(patch.opens_at)
        else:
            raw = await self.redis.hget(keys.campaign_keys(cid).meta, "opens_ms")
            opens = int(raw) if raw is not None else 0  # no campaign: the script says so
        pairs: list[Any] = []
        for sku, steps in patch.price_steps.items():
            pricing.check_steps(f"price_steps.{sku}", steps, opens)
            pairs += [f"ps:{sku}", pricing.encode(steps)]
        return pairs

    async def adjust_stock(self, cid: str, sku: str, delta: int, actor: str,
                           op_key: str | None = None) -> tuple[Outcome, int]:
        """Add (or remove from available) units of a SKU. Returns (outcome, available)."""
        _check_campaign_id(cid)
        if delta == 0:
            raise ValidationError("delta must be non-zero")
        n = await self.shards.count(cid)
        if n is not None and n > 1:
            return await self._adjust_sharded(cid, n, sku, delta, actor, op_key)
        op = keys.idempotency_key(cid, actor, f"stock:{op_key or uuid.uuid4().hex}")
        code, available, _released = await self.scripts.run(
            "adjust_stock", [*keys.campaign_keys(cid), op],
            [sku, delta, actor, self.settings.idempotency_ttl_s * 1000])
        return Outcome(code), int(available)

    async def _adjust_sharded(self, cid: str, n: int, sku: str, delta: int, actor: str,
                              op_key: str | None) -> tuple[Outcome, int]:
        """Stock changes of a sharded campaign go to shard 0 (claims elsewhere borrow
        from it); a removal first gathers the units there. Returns the campaign's
        available units, all shards added up."""
        _check_sku(sku)
        if delta < 0:
            have = (await self.shards.available(cid, n, sku, [0]))[0]
            if have < -delta:
                await self.shards.borrow(cid, n, 0, sku, -delta - have)
        op = keys.idempotency_key(cid, actor, f"stock:{op_key or uuid.uuid4().hex}")
        code, _available, _released = await self.scripts.run(
            "adjust_stock", [*keys.campaign_keys(cid), op],
            [sku, delta, actor, self.settings.idempotency_ttl_s * 1000])
        return Outcome(code), sum((await self.shards.available(cid, n, sku)).values())

    async def return_allocation(self, cid: str, sku: str, name: str,
                                actor: str) -> tuple[Outcome, str, int]:
        """Presales: an allocation's unused units back to the shared pool now.
        Returns (outcome, reason, units returned)."""
        _check_campaign_id(cid)
        _check_sku(sku)
        code, reason, units = await self.scripts.run(
            "allocation_return", keys.campaign_keys(cid), [sku, name, actor])
        return Outcome(int(code)), reason, int(units)

    async def _snapshot(self, cid: str) -> CampaignSnapshot | None:
        return (await self._seen_snapshot(cid))[0]

    async def _seen_snapshot(self, cid: str) -> tuple[CampaignSnapshot | None, CampaignSeen]:
        """The campaign's state, and what the one script call saw of the campaign."""
        if not keys.valid_campaign_id(cid):
            return None, "live"
        n = await self.shards.count(cid)
        if n is not None and n > 1:  # the shards added up; seen as shard 0 sees it
            seen = await asyncio.gather(*(self._seen_snapshot_one(keys.shard_id(cid, k, n))
                                          for k in range(n)))
            present = [snap for snap, _ in seen if snap is not None]
            return (shards.merge(cid, present) if present else None), seen[0][1]
        return await self._seen_snapshot_one(cid)

    async def _seen_snapshot_one(self, cid: str) -> tuple[CampaignSnapshot | None,
                                                          CampaignSeen]:
        reply = await self.scripts.run("read_status", keys.campaign_keys(cid),
                                       [self.settings.sweep_batch])
        if reply[0] != Outcome.OK:
            return None, "missing"
        snap = CampaignSnapshot.from_reply(cid, reply)
        return snap, "fenced" if snap.meta.get("fenced") == "1" else "live"

    async def public_status(self, cid: str) -> CampaignPublic | None:
        return (await self.seen_public_status(cid))[0]

    async def seen_public_status(self, cid: str) -> tuple[CampaignPublic | None, CampaignSeen]:
        """The public status; None (with what was seen) for a campaign missing or
        fenced: a fenced one's stock and claims may not all be back yet."""
        snap, seen = await self._seen_snapshot(cid)
        if snap is None or seen != "live":
            return None, seen
        return CampaignPublic(
            id=cid, name=snap.meta["name"], state=snap.state(),
            opens_at=from_ms(snap.opens_ms), closes_at=from_ms(snap.closes_ms),
            skus=[SkuPublic(sku=s.sku, price=s.price, available=s.available,
                            next_wave_at=snap.next_wave_at(s.sku)) for s in snap.skus],
            phases=phases.decode(snap.meta.get(phases.META_FIELD, "")),
            bundles={name: BundleSpec(lines=lines) for name, lines in
                     bundles.decode(snap.meta.get(bundles.META_FIELD, "")).items()}), seen

    async def live_state(self, cid: str) -> LiveState | None:
        """What the live feed shows, from one script call (None: no such campaign)."""
        snap = await self._snapshot(cid)
        if snap is None:
            return None
        serving = int(snap.meta.get("wr_served", 0)) if snap.meta.get("wr_on") == "1" else None
        return LiveState(
            campaign=cid, state=snap.state(), serving=serving,
            skus=[LiveSku(sku=s.sku, available=s.available,
                          sold_out=s.available == 0 and snap.pending_wave_count(s.sku) == 0,
                          next_wave_at=snap.next_wave_at(s.sku)) for s in snap.skus])

    async def stats(self, cid: str) -> CampaignStats | None:
        snap = await self._snapshot(cid)
        if snap is None:
            return None
        room = None
        if snap.meta.get("wr_on") == "1":
            room = WaitingRoomStats(tickets=snap.waiting[1], served=int(snap.meta["wr_served"]),
                                    active=snap.waiting[2], rate_per_s=float(snap.meta["wr_rate"]),
                                    paused=snap.meta.get("wr_paused") == "1")
        return CampaignStats(
            id=cid, state=snap.state(), claims_by_outcome=snap.counts,
            waitlist=snap.waiting[0],
            waiting_room=room,
            events=int(snap.meta.get("evseq", 0)), fenced=snap.meta.get("fenced") == "1",
            throttle=throttle.in_force(snap.meta.get("th", ""), snap.meta.get("th_spec", "")),
            refunds=await self.refunds.totals(cid),
            checkins=await self.tickets.gate_counts(cid),
            presale_codes=await self.presale_codes.batches(cid),
            segments=await self.segments.sizes(cid),
            skus=[SkuStats(sku=s.sku, price=s.price, available=s.available, held=s.held,
                           sold=s.sold, released=s.released, revenue=s.revenue,
                           pending_waves=snap.pending_wave_count(s.sku),
                           pending_units=snap.pending_wave_qty(s.sku), per_user=s.per_user,
                           allocations=allocations.in_force(snap.meta, s.sku, snap.now_ms))
                  for s in snap.skus])

    async def explain(self, cid: str, outcome: Outcome, **context: Any) -> Explained:
        """Which refusal a bare outcome was (stampede/domain/explain.py): refusals only."""
        return await explain(self.redis, cid, outcome, **context)

    async def campaign_summaries(self) -> list[CampaignSummary]:
        """Every campaign at a glance: one script call (one round trip) per campaign."""
        summaries: list[CampaignSummary] = []
        ids = await self.campaign_ids()
        for start in range(0, len(ids), _SUMMARY_BATCH):  # bounded concurrency
            snaps = await asyncio.gather(*(self._snapshot(cid)
                                           for cid in ids[start:start + _SUMMARY_BATCH]))
            summaries.extend(_summary(snap) for snap in snaps if snap is not None)
        return summaries

    async def campaign_ids(self) -> list[str]:
        """The campaigns (a sharded campaign once: its shards are not listed)."""
        return [cid for cid in await self._indexed() if not keys.is_shard(cid)]

    async def _indexed(self) -> list[str]:
        """Every key set the index names: campaigns and the shards of sharded ones."""
        return sorted(cast(set[str], await self.redis.smembers(keys.CAMPAIGN_INDEX)))

    async def set_clock_offset(self, cid: str, offset_ms: int) -> None:
        """Shift this campaign's clock (tests and rehearsals): scripts add it to TIME.
        A sharded campaign's shards all move (a pass is judged on the claim's shard)."""
        n = await self.shards.count(cid) or 1
        for k in range(n):
            await self.redis.hset(keys.campaign_keys(keys.shard_id(cid, k, n)).meta,
                                  "time_offset_ms", offset_ms)

    # -- claims ------------------------------------------------------------

    async def claim(self, cid: str, user: str, sku: str, qty: int = 1,
                    idempotency_key: str | None = None,
                    admission_token: str | None = None,
                    client: ClientSignals | None = None,
                    tiers: Sequence[str] = (), code: str | None = None,
                    identity: str | None = None, channel: str | None = None) -> ClaimResult:
        """Place a hold; coalesced with the other claims of this loop tick.

        A campaign with a waiting room takes only claims that carry a valid
        admission token of this user and campaign (else ADMISSION_REQUIRED).
        A guarded campaign checks the claim's `client` signals first (THROTTLED,
        BLOCKED or CHALLENGE_REQUIRED, with retry-after or a challenge).
        A campaign with presale access phases takes a claim once the earliest phase
        of the claimant's `tiers` (or everyone's) has opened (else NOT_OPEN with that
        time, or NOT_ELIGIBLE when no phase admits them). A presale `code` lends the
        claim its batch's tier and spends one use with the hold (PRESALE_CODE_INVALID,
        PRESALE_CODE_USED, or THROTTLED for too many code attempts). A campaign with a
        `per_person` limit counts the units of the claimant's `identity` (the hashed real
        person) across accounts (LIMIT_EXCEEDED per_person, or person_required without one).
        A SKU with allocations lets the claim take from those of its `channel` or tiers
        and from the shared pool (else SOLD_OUT).
        """
        _check_campaign_id(cid)
        _check_user(user)
        _check_sku(sku)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise ValidationError("Idempotency-Key must be 1 to 255 characters")
        n = await self.shards.count(cid)
        if n is not None and n > 1:
            return await self._claim_sharded(
                cid, n, user, sku, qty, idempotency_key, client,
                self.gate.admission_exp(cid, user, admission_token))
        pending = PendingClaim(keys.new_claim_id(cid), user, sku, qty, idempotency_key,
                               self.gate.admission_exp(cid, user, admission_token),
                               self.gate.guard(cid, user, client),
                               phases.check_tiers(tiers) if tiers else (),
                               self.presale_codes.code_id(cid, code) if code else "",
                               person.check(identity) if identity is not None else "",
                               allocations.check_channel(channel) if channel else "")
        return await self.batcher.submit(cid, pending)

    async def _claim_sharded(self, cid: str, n: int, user: str, sku: str, qty: int,
                             idempotency_key: str | None,
                             client: ClientSignals | None = None,
                             admission_exp: int = -1) -> ClaimResult:
        """A claim on the user's shard; when that shard is dry, units are borrowed from
        the others and the claim sent again (as often as a borrow brings units: other
        claims of the shard may take them first), so SOLD_OUT means every other shard
        was read dry after the shard's last try. The shard's guard checks the first try
        only: a claim sent again is charged to the limiters once. With a waiting room
        the shard checks the admission token's expiry and uses the turn on that shard;
        then shard 0's queue is told (its slot frees)."""
        k = shards.shard_of_user(user, n)
        scid = keys.shard_id(cid, k, n)
        pending = PendingClaim(keys.new_claim_id(scid), user, sku, qty, idempotency_key,
                               admission_exp, guard=self.gate.guard(scid, user, client))
        result = await self.shards.claim_borrowing(
            cid, n, scid, lambda key: self.batcher.submit(key, pending),
            lambda _: pending.sku, pending.qty)
        if k and admission_exp != -1 and result.outcome is Outcome.OK:
            await shards.turn_used(self.redis, cid, user)
        return result

    async def claim_unbatched(self, cid: str, user: str, sku: str, qty: int = 1,
                              idempotency_key: str | None = None) -> ClaimResult:
        """One script call for one claim: the baseline the batcher is measured against."""
        pending = PendingClaim(keys.new_claim_id(cid), user, sku, qty, idempotency_key)
        return (await self._claim_batch(cid, [pending]))[0]

    async def _claim_batch(self, cid: str, claims: Sequence[PendingClaim]) -> list[ClaimResult]:
        return await self.gate.routed_batch(cid, claims, self._claim_batch_once, _NEEDS_GUARD)

    async def _claim_batch_once(self, cid: str, claims: Sequence[PendingClaim],
                                guarded: bool, dry: bool = False,
                                passed: bool = False) -> list[ClaimResult]:
        ks, batch = await self._claim_args(cid, claims, guarded)
        reply = await self.scripts.run("claim_batch", ks, [
            self.settings.idempotency_ttl_s * 1000, self.settings.sweep_batch,
            records.encode_claims(batch), "1" if dry else "0", "1" if passed else "0"])
        await reply_in()  # the next batch leaves while this reply is decoded
        campaign, at = keys.shard_of_id(cid)[0], _Instants()
        results = []
        for i, c in enumerate(claims):  # five elements a claim, read by position
            j = 5 * i
            code = reply[j]
            if code == 0:
                results.append(ClaimResult(Outcome.OK, ClaimView(
                    claim_id=reply[j + 1], campaign_id=campaign, sku=c.sku, qty=c.qty,
                    status="held", expires_at=at(reply[j + 2]), price=int(reply[j + 3]),
                    created_at=at(reply[j + 4]))))
            else:
                results.append(self._refused(cid, c.user, code, reply[j + 1], reply[j + 2]))
        self.gate.note(cid, int(reply[-1]), claims, results)
        return results

    async def _claim_args(self, cid: str, claims: Sequence[PendingClaim], guarded: bool
                          ) -> tuple[list[str], list[ClaimArg]]:
        """A claim batch's KEYS (the key sets, then each claim's idempotency key, guard
        and code-limiter keys) and its claims' arguments, for claim_batch or, each
        claim's context, claim_bundle (a bundle's sku '' and qty 0: its lines go beside)."""
        ks = [*keys.campaign_keys(cid), *keys.guard_keys(cid), *keys.presale_keys(cid)]
        slot = throttle.key_slots(ks)  # each guard key once per batch
        recent = await self.gate.recent_counts(cid, claims)
        args = []
        for c in claims:
            idem = 0
            if c.idempotency_key is not None:
                ks.append(keys.idempotency_key(cid, c.user, c.idempotency_key))
                idem = len(ks)
            guard = throttle.guard_arg(cid, c.user, c.guard, recent.get(c.user, -1), slot) \
                if guarded else None
            if isinstance(c, bundles.PendingBundle):
                sku, qty, fingerprint = "", 0, c.fingerprint
            else:
                sku, qty, fingerprint = c.sku, c.qty, f"{c.sku}:{c.qty}"
            k_code = (0, 0, 0)  # the code-attempt limiters: user, device, network
            if c.code:
                by_user, by_device, by_network = code_limiter_keys(
                    cid, c.user, c.guard.device, c.guard.network)
                k_code = (slot(by_user), slot(by_device) if by_device else 0,
                          slot(by_network) if by_network else 0)
            args.append(ClaimArg(claim_id=c.claim_id, user=c.user, sku=sku, qty=qty,
                                 idem_slot=idem, admission=c.admission_exp,
                                 fingerprint=fingerprint, guard=guard, tiers=list(c.tiers),
                                 code=c.code, k_code=k_code[0], k_code_device=k_code[1],
                                 k_code_network=k_code[2], identity=c.identity,
                                 channel=c.channel))
        return ks, args

    def _refused(self, cid: str, user: str, code: int, detail: str, value: str,
                 line: int = 0) -> ClaimResult:
        """A claim script's answer other than OK: the guard's refusals with their
        retry-after or challenge, others with their reason and numbers (and, for a
        bundle, the refused `line`, 1-based; 0 none)."""
        outcome = OUTCOMES[int(code)]
        if outcome is Outcome.GUARD_CONTEXT_NEEDED:  # guarded after all: sent again
            return _NEEDS_GUARD
        if outcome in GUARD_REFUSALS:
            r = self.gate.refusal(cid, user, outcome, detail, value)
            return ClaimResult(outcome, reason=r.reason, retry_after_ms=r.retry_after_ms,
                               challenge=r.challenge)
        reason, params = parse_detail(detail)
        return ClaimResult(outcome, reason=reason or None, params=params,
                           line=line - 1 if line else None)

    # -- bundles: claims of several SKUs ----------------------------------------

    async def claim_bundle(self, cid: str, user: str, *, bundle: str | None = None,
                           lines: Sequence[BundleLine] = (),
                           idempotency_key: str | None = None,
                           admission_token: str | None = None,
                           client: ClientSignals | None = None,
                           tiers: Sequence[str] = (), code: str | None = None,
                           identity: str | None = None,
                           channel: str | None = None) -> ClaimResult:
        """Hold several SKUs at once, all or nothing: the spec's `bundle` by name, or
        `lines`. Every line is checked as a claim of its SKU would be (the per-user
        limit counting every line) before any is held; a refusal names its `line`.
        Coalesced with the other bundle claims of this loop tick."""
        _check_campaign_id(cid)
        _check_user(user)
        if (bundle is None) == (not lines):
            raise ValidationError("a bundle claim names a `bundle` or its `lines`, not both")
        if len(lines) > BUNDLE_MAX_LINES:  # (a SKU twice: the script, after the campaign)
            raise ValidationError(f"lines: a claim has at most {BUNDLE_MAX_LINES} lines")
        for line in lines:
            _check_sku(line.sku)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise ValidationError("Idempotency-Key must be 1 to 255 characters")
        n = await self.shards.count(cid)
        if n is not None and n > 1:  # a user's shard holds only its share of each SKU
            return ClaimResult(Outcome.CONFLICT, reason="bundle_sharded")
        pending = bundles.PendingBundle(
            keys.new_claim_id(cid), user, "", sum(line.qty for line in lines),
            idempotency_key, self.gate.admission_exp(cid, user, admission_token),
            self.gate.guard(cid, user, client),
            phases.check_tiers(tiers) if tiers else (),
            self.presale_codes.code_id(cid, code) if code else "",
            person.check(identity) if identity is not None else "",
            allocations.check_channel(channel) if channel else "",
            name=bundle or "", lines=tuple((line.sku, line.qty) for line in lines))
        return await self.bundle_batcher.submit(cid, pending)

    async def _bundle_batch(self, cid: str, claims: Sequence[PendingClaim]
                            ) -> list[ClaimResult]:
        return await self.gate.guarded_batch(cid, claims, self._bundle_batch_once,
                                             _NEEDS_GUARD)

    async def _bundle_batch_once(self, cid: str, claims: Sequence[PendingClaim],
                                 guarded: bool) -> list[ClaimResult]:
        ks, args = await self._claim_args(cid, claims, guarded)
        batch = []
        for c, arg in zip(claims, args, strict=True):
            assert isinstance(c, bundles.PendingBundle)
            batch.append(BundleArg(claim=arg, name=c.name,
                                   lines=[BundleLineArg(sku, qty) for sku, qty in c.lines]))
        reply = await self.scripts.run("claim_bundle", ks, [
            self.settings.idempotency_ttl_s * 1000, self.settings.sweep_batch,
            records.encode_claims(batch)])
        await reply_in()
        at = _Instants()
        results = []
        for i, c in enumerate(claims):
            assert isinstance(c, bundles.PendingBundle)
            code, claim_id, deadline, price, created, lines, line = reply[7 * i:7 * i + 7]
            if code != 0:
                results.append(self._refused(cid, c.user, code, claim_id, deadline, int(line)))
                continue
            views = []
            for n, part in enumerate(str(lines).split(","), start=1):
                sku, qty, unit = part.rsplit(":", 2)
                views.append(ClaimLineView(claim_id=bundles.line_id(claim_id, n),
                                           sku=sku, qty=int(qty), price=int(unit),
                                           status="held"))
            view = ClaimView(claim_id=claim_id, campaign_id=cid, sku="", qty=1,
                             status="held", expires_at=at(deadline),
                             price=int(price), created_at=at(created),
                             lines=views, bundle=c.name or None)
            results.append(ClaimResult(Outcome.OK, view))
        self.gate.note(cid, int(reply[-1]), claims, results)
        return results

    async def confirm(self, claim_id: str, user: str,
                      idempotency_key: str | None = None) -> ClaimResult:
        return await self._settle("confirm", claim_id, user, idempotency_key)

    async def cancel(self, claim_id: str, user: str,
                     idempotency_key: str | None = None) -> ClaimResult:
        return await self._settle("cancel", claim_id, user, idempotency_key)

    async def _settle(self, op: str, claim_id: str, user: str,
                      idempotency_key: str | None) -> ClaimResult:
        """Confirm or cancel; the key rides in the event so recovery can rebuild the
        answer the API remembers under it (state.idempotency)."""
        cid = keys.campaign_of_claim(claim_id)
        if cid is None or not keys.valid_user_id(user):
            return ClaimResult(Outcome.NOT_FOUND)
        ks: list[str] = [*keys.campaign_keys(cid)]
        if op == "confirm":  # a ticketed campaign lists the claim among the buyer's tickets
            ks += [keys.ticket_holder_key(cid, user), keys.outbox_key(cid)]  # on_confirm's too
        reply = await self.scripts.run(op, ks, [claim_id, user, idempotency_key or ""])
        code, status = reply[0], reply[1]
        outcome = OUTCOMES[int(code)]
        if outcome is Outcome.OK and len(reply) > 3 and int(reply[3]):
            # on_confirm: the buyer's pack (pending in the outbox; one per line of a
            # bundle), granted now; a failure leaves it there for the sweeper
            ids = [str(i) for i in reply[4]] if len(reply) > 4 else [claim_id]
            await self.grants.drain_outbox(cid, [f"confirm:{i}" for i in ids])
        if outcome is Outcome.NOT_FOUND:  # (reason no_campaign: the campaign was missing)
            return ClaimResult(outcome, reason=str(status) or None)
        return ClaimResult(outcome, await self.get_claim(claim_id, user))

    async def get_claim(self, claim_id: str, user: str) -> ClaimView | None:
        """The claim, if it exists and is this user's (else None: not_found)."""
        return (await self.find_claim(claim_id, user)).claim

    async def find_claim(self, claim_id: str, user: str) -> ClaimLookup:
        """The claim, and whether its campaign was there and open to reads at that moment:
        one MULTI, so "no such claim" is never judged against a campaign that a
        rebuild restored in between."""
        cid = keys.campaign_of_claim(claim_id)
        if cid is None:
            return ClaimLookup(None, "live")
        ks = keys.campaign_keys(cid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(ks.meta, "state", "fenced")
            pipe.hget(ks.claims, claim_id)
            pipe.hexists(ks.offers, claim_id)
            pipe.hget(ks.users, f"~b|{claim_id}")  # bundles: a claim of several lines
            (state, fenced), raw, offer, bundle = await pipe.execute()
        campaign = campaign_seen(state, fenced)
        if raw is None and bundle is not None:
            return ClaimLookup(await self._bundle_view(cid, claim_id, user, bundle), campaign)
        if raw is None:
            return ClaimLookup(None, campaign)
        c = records.CLAIM.decode(raw)
        if c.user != user:
            return ClaimLookup(None, campaign)
        return ClaimLookup(ClaimView(
            claim_id=claim_id, campaign_id=keys.shard_of_id(cid)[0], sku=c.sku, qty=c.qty,
            status=c.status,  # type: ignore[arg-type]  # a claim status
            expires_at=from_ms(c.deadline), price=c.price, created_at=from_ms(c.created),
            offer=bool(offer)), campaign)

    async def _bundle_view(self, cid: str, claim_id: str, user: str,
                           mark: str) -> ClaimView | None:
        """A bundle claim from its lines ("~b|<id>" -> "<name>|<line>,..."): its status
        is its lines' (they move together; a line refunded or passed on after the sale
        leaves the others sold, and the bundle says so by its first line)."""
        name, _, ids = mark.partition("|")
        raws = await self.redis.hmget(keys.campaign_keys(cid).claims, ids.split(","))
        lines = [(i, records.CLAIM.decode(str(r))) for i, r in zip(ids.split(","), raws,
                                                               strict=True) if r is not None]
        if not lines or lines[0][1].user != user:
            return None
        first = lines[0][1]
        return ClaimView(
            claim_id=claim_id, campaign_id=cid, sku="", qty=1,
            status=first.status,  # type: ignore[arg-type]  # a claim status
            expires_at=from_ms(first.deadline), price=sum(c.price * c.qty for _, c in lines),
            created_at=from_ms(first.created), bundle=name or None,
            lines=[ClaimLineView(claim_id=i, sku=c.sku, qty=c.qty, price=c.price,
                                 status=c.status)  # type: ignore[arg-type]
                   for i, c in lines])

    # -- waitlists ---------------------------------------------------------

    async def join_waitlist(self, cid: str, user: str, sku: str, qty: int = 1,
                            admission_token: str | None = None
                            ) -> tuple[Outcome, WaitlistEntry | None, bool]:
        """Join a sold-out SKU's waitlist. Returns (outcome, entry, created)."""
        _check_campaign_id(cid)
        _check_user(user)
        _check_sku(sku)
        n = await self.shards.count(cid)
        scid = shard_waitlist.user_shard(cid, n, user)  # a sharded campaign: one per shard
        if n is not None and n > 1 and \
                await shard_waitlist.units_elsewhere(self.redis, cid, n, scid, sku):
            return Outcome.NOT_SOLD_OUT, None, False  # a claim borrows them: claim instead
        reply = await self.scripts.run("waitlist_join", keys.campaign_keys(scid), [
            user, sku, qty, self.gate.admission_exp(cid, user, admission_token),
            self.settings.sweep_batch])
        outcome = Outcome(int(reply[0]))
        if outcome is not Outcome.OK:
            return outcome, None, False
        _, created, status, position, n, joined, claim_id = reply
        entry = await self._entry(cid, user, [sku, status, position, n, joined, claim_id])
        return outcome, entry, bool(int(created))

    async def waitlist(self, cid: str, user: str,
                       sku: str | None = None) -> tuple[Outcome, list[WaitlistEntry]]:
        """The user's waitlist entries (one SKU's, or all), positions and offers current."""
        _check_campaign_id(cid)
        _check_user(user)
        if sku is not None:
            _check_sku(sku)
        scid = shard_waitlist.user_shard(cid, await self.shards.count(cid), user)
        reply = await self.scripts.run("waitlist_status", keys.campaign_keys(scid),
                                       [user, sku or "", self.settings.sweep_batch])
        outcome = Outcome(int(reply[0]))
        rows = [reply[i:i + 6] for i in range(2, len(reply), 6)]
        return outcome, [await self._entry(cid, user, row) for row in rows]

    async def leave_waitlist(self, cid: str, user: str,
                             sku: str) -> tuple[Outcome, WaitlistEntry | None]:
        """Leave a SKU's waitlist; leaving with an offer declines it (the hold is cancelled)."""
        _check_campaign_id(cid)
        _check_user(user)
        _check_sku(sku)
        scid = shard_waitlist.user_shard(cid, await self.shards.count(cid), user)
        reply = await self.scripts.run("waitlist_leave", keys.campaign_keys(scid), [user, sku])
        outcome = Outcome(int(reply[0]))
        if outcome is not Outcome.OK:
            return outcome, None
        _, _status, n, joined, claim_id = reply
        entry = await self._entry(cid, user, [sku, "left", 0, n, joined, claim_id])
        return outcome, entry

    async def _entry(self, cid: str, user: str, row: Sequence[Any]) -> WaitlistEntry:
        sku, status, position, qty, joined, claim_id = row
        offer = await self.get_claim(claim_id, user) if claim_id else None
        return WaitlistEntry(campaign_id=cid, sku=sku, qty=int(qty), status=status,
                             position=int(position) or None, joined_at=from_ms(int(joined)),
                             offer=offer)

    # -- waiting room ------------------------------------------------------

    async def take_ticket(self, cid: str, user: str) -> tuple[Outcome, QueueTicket | None, bool]:
        """A waiting-room ticket (one per user: a second call answers the first ticket)."""
        return await self._ticket(cid, user, create=True)

    async def ticket(self, cid: str, user: str) -> tuple[Outcome, QueueTicket | None]:
        """Poll a ticket: position, estimated wait, and once admitted the admission token."""
        outcome, view, _ = await self._ticket(cid, user, create=False)
        return outcome, view

    async def _ticket(self, cid: str, user: str,
                      create: bool) -> tuple[Outcome, QueueTicket | None, bool]:
        _check_campaign_id(cid)
        _check_user(user)
        draw = secrets.randbelow(2**52) / 2**52  # the early arrivals' lottery, in [0, 1)
        reply = await self.scripts.run("queue_ticket", keys.campaign_keys(cid),
                                       [user, int(create), repr(draw)])
        outcome = Outcome(int(reply[0]))
        if outcome is not Outcome.OK:
            return outcome, None, False
        return outcome, ticket_view(cid, user, reply, self.gate.admission), bool(int(reply[1]))

    # -- housekeeping ------------------------------------------------------

    async def sweep(self, cid: str) -> int:
        """Release due waves and expire lapsed holds of one campaign."""
        total = 0
        while True:
            expired, more = await self.scripts.run("sweep", keys.campaign_keys(cid),
                                                   [self.settings.sweep_batch])
            total += int(expired)
            if not more:
                n = await self.shards.count(cid)
                if n is not None and n > 1:
                    await self.shards.redeliver(cid)  # moves a crash left half-done
                    if self.settings.shard_rebalance and not keys.is_shard(cid):
                        await self.rebalancer.tick(cid, n)  # once per campaign, from shard 0
                await self.grants.drain_outbox(cid)  # packs a crash left pending
                return total + await self.coupons.expire(cid)

    async def sweep_all(self) -> int:
        counts = await asyncio.gather(*(self.sweep(cid) for cid in await self._indexed()))
        return sum(counts)


def _check_campaign_id(cid: str) -> None:
    if not keys.valid_campaign_id(cid):
        raise ValidationError("campaign id must match [a-z0-9][a-z0-9_-]{0,63}")


def _check_sku(sku: str) -> None:
    if not keys.valid_sku(sku):
        raise ValidationError("sku must match [A-Za-z0-9_-]{1,64}")


def _check_user(user: str) -> None:
    if not keys.valid_user_id(user):
        raise ValidationError("user id must match [A-Za-z0-9_.:@-]{1,128}")


def _define_args(cid: str, spec: CampaignSpec, actor: str,
                 guard: throttle.ThrottleSpec | None = None,
                 extra_meta: dict[str, str] | None = None) -> list[Any]:
    opens, closes = to_ms(spec.opens_at), to_ms(spec.closes_at)
    if closes <= opens:
        raise ValidationError("closes_at must be after opens_at")
    seen: set[str] = set()
    for s in spec.skus:
        if s.sku in seen:
            raise ValidationError(f"sku {s.sku!r} appears twice")
        seen.add(s.sku)
        if any(to_ms(w.at) >= closes for w in s.waves):  # it would stay pending forever
            raise ValidationError(f"sku {s.sku!r}: every wave's `at` must be before closes_at")
    _check_phases(spec, opens, closes)
    _check_per_person(spec)
    allocations.check(spec, opens, closes)
    bundles.check(spec)
    for i, s in enumerate(spec.skus):
        if s.price_steps and spec.coupons is not None:
            raise ValidationError(f"skus[{i}].price_steps: a coupon drop takes no price steps")
        pricing.check(i, s, opens)
    limit = spec.limits.per_user if spec.limits.per_user is not None else -1
    args: list[Any] = [cid, spec.name, opens, closes, spec.hold_ttl_s * 1000, limit,
                       spec.limits.max_per_claim, _json.encode(spec).decode(), actor,
                       _json.encode(_optional_meta(spec, opens) | throttle.meta_fields(guard)
                                    | (extra_meta or {})).decode(), len(spec.skus)]
    for s in spec.skus:
        args += [s.sku, s.price, s.per_user if s.per_user is not None else -1,
                 pricing.encode(s.price_steps)]
    for s in spec.skus:
        for i, w in enumerate(s.waves):
            args += [i, s.sku, w.qty, to_ms(w.at)]
    return args


def _optional_meta(spec: CampaignSpec, opens_ms: int) -> dict[str, str]:
    """Meta fields of the waitlist and waiting room (define_campaign.lua ARGV[10])."""
    meta = {"salt": secrets.token_hex(16), phases.META_FIELD: phases.encode(spec.phases),
            **aftersale_meta(spec)}
    # Always written: a redefinition without the limit must not keep the old one.
    limit = spec.limits.per_person
    meta[person.META_FIELD] = str(limit if limit is not None else -1)
    meta |= allocations.meta_fields(spec)
    meta |= bundles.meta_fields(spec)
    if spec.waitlist is not None:
        meta |= {"wl_max": str(spec.waitlist.max_length),
                 "offer_ttl_ms": str(spec.waitlist.offer_ttl_s * 1000)}
    room = spec.waiting_room
    if room is not None and room.enabled:
        burst = room.burst if room.burst is not None else max(1, math.ceil(room.rate_per_s))
        meta |= {"wr_on": "1", "wr_rate": repr(room.rate_per_s), "wr_burst": str(burst),
                 "wr_max_active": str(room.max_active),
                 "wr_window_ms": str(room.admission_window_s * 1000),
                 "wr_token_ttl_ms": str(room.token_ttl_s * 1000), "wr_paused": "0",
                 "wr_served": "0", "wr_tokens": "0", "wr_at": str(opens_ms), "wr_seq": "0"}
    return meta


def _check_drop(spec: CampaignSpec) -> None:
    """What a coupon drop may not have, and its own spec (before it takes a drop number)."""
    assert spec.coupons is not None
    if spec.tickets is not None:
        raise ValidationError("a coupon drop cannot issue tickets")
    if spec.on_confirm is not None:  # its claims are packs themselves
        raise ValidationError("on_confirm: a coupon drop grants no pack on confirm")
    check_drop(spec.coupons, [s.sku for s in spec.skus])
    check_paid_prices(spec.coupons, {s.sku: s.price for s in spec.skus})


def _check_per_person(spec: CampaignSpec) -> None:
    if spec.limits.per_person is None:
        return
    if spec.coupons is not None:
        raise ValidationError("limits.per_person: a coupon drop sets its own "
                              "coupons.per_person")
    if spec.waitlist is not None:  # an offer is made without the claimant's identity
        raise ValidationError("limits.per_person: a campaign limited per person takes "
                              "no waitlist")


def _check_phases(spec: CampaignSpec, opens: int, closes: int) -> None:
    if not spec.phases:
        return
    if spec.coupons is not None:
        raise ValidationError("phases: a coupon drop takes no access phases")
    if spec.waitlist is not None:  # an offer is made without the claimant's tiers
        raise ValidationError("phases: a campaign with access phases takes no waitlist")
    phases.check(spec.phases, opens, closes)


def _patch_pairs(patch: CampaignPatch) -> list[Any]:
    pairs: list[Any] = []
    if patch.phases is not msgspec.UNSET:  # the schedule is checked by the script
        phases.check(patch.phases)
        pairs += [phases.META_FIELD, phases.encode(patch.phases)]
    if patch.state is not msgspec.UNSET:
        pairs += ["state", "active" if patch.state == "open" else patch.state]
    if patch.opens_at is not msgspec.UNSET:
        pairs += ["opens_ms", to_ms(patch.opens_at)]
    if patch.closes_at is not msgspec.UNSET:
        pairs += ["closes_ms", to_ms(patch.closes_at)]
    if patch.hold_ttl_s is not msgspec.UNSET:
        pairs += ["hold_ttl_ms", patch.hold_ttl_s * 1000]
    if patch.limits is not msgspec.UNSET:
        if patch.limits.per_user is not msgspec.UNSET:
            pairs += ["per_user", -1 if patch.limits.per_user is None else patch.limits.per_user]
        if patch.limits.max_per_claim is not msgspec.UNSET:
            pairs += ["max_qty", patch.limits.max_per_claim]
    if patch.sku_limits is not msgspec.UNSET:
        for sku, lim in patch.sku_limits.items():
            pairs += [f"lim:{sku}", -1 if lim is None else lim]
    room = patch.waiting_room
    if room is not msgspec.UNSET:
        if room.rate_per_s is not msgspec.UNSET:
            pairs += ["wr_rate", repr(room.rate_per_s)]
        if room.burst is not msgspec.UNSET:
            pairs += ["wr_burst", room.burst]
        if room.max_active is not msgspec.UNSET:
            pairs += ["wr_max_active", room.max_active]
        if room.paused is not msgspec.UNSET:
            pairs += ["wr_paused", int(room.paused)]
    return pairs
