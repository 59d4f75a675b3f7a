"""`stampede recover`: rebuild a campaign's Redis state from the durable store.

    fence → drain the stream into the store → one MULTI that replaces every key → reopen

Fencing (meta `fenced`=1) makes claims, confirms and cancels answer FENCED
(503) while the store catches up; the rebuild is one MULTI/EXEC under WATCH,
so no request ever sees a half-built campaign, and a change that slipped in
after the drain aborts the transaction and the round starts again. The new
state carries a new epoch, written to Redis and the store: a Redis that later
comes back with older data shows an older epoch (or fewer events) than the
store, and `heal` fences and rebuilds it before it sells anything.
"""

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError
from sqlalchemy import func, select

from stampede.domain import pricing
from stampede.domain.models import CampaignSpec, ClaimView, from_ms, to_ms
from stampede.durable import (
    aftersale_recovery,
    allocation_recovery,
    bundle_recovery,
    coupon_recovery,
    presale_recovery,
    queue_recovery,
    shard_recovery,
)
from stampede.durable.events import (
    AllocationReturned,
    BundleHeld,
    CampaignDefined,
    CampaignPatched,
    ClaimCancelled,
    ClaimConfirmed,
    ClaimExpired,
    ClaimHeld,
    ClaimTransferred,
    Event,
    OfferAccepted,
    OfferDeclined,
    OfferLapsed,
    OfferMade,
    OfferSettled,
    StockAdjusted,
    WaitlistJoined,
    WaitlistLeft,
    WaitlistSkipped,
    WaveReleased,
    from_row,
    names,
    type_name,
)
from stampede.durable.persister import GROUP, Items, entries_of
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys, records
from stampede.state.idempotency import fingerprint, record
from stampede.state.records import (
    ClaimAnswerRecord,
    ClaimRecord,
    EntryRecord,
    StockAnswerRecord,
    WaveRecord,
    WlMemberRecord,
)

log = logging.getLogger("stampede.recovery")
_spec_waves = msgspec.json.Decoder(dict[str, Any])
_json = msgspec.json.Encoder()
_spec = msgspec.json.Decoder(CampaignSpec)
_PAGE = 1000
_ROUNDS = 20


@dataclass(frozen=True)
class Rebuilt:
    campaign_id: str
    epoch: int
    last_seq: int
    claims: int
    live_holds: int
    idempotency_answers: int


async def redis_behind(redis: "Redis", store: Store, cid: str) -> str | None:
    """Why Redis holds older state than the store for this campaign, or None if it does not."""
    async with store.read() as conn:
        row = (await conn.execute(select(t.campaigns).where(
            t.campaigns.c.campaign_id == cid))).one_or_none()
    if row is None or row.max_seq == 0:
        return None
    state, evseq, epoch = cast(list[str | None], await redis.hmget(
        keys.campaign_keys(cid).meta, "state", "evseq", "epoch"))
    if state is None:
        return "campaign missing from Redis"
    if int(epoch or 0) < row.epoch:
        return f"Redis epoch {epoch} is older than the store's {row.epoch}"
    if int(evseq or 0) < row.max_seq:
        return f"Redis has {evseq} events, the store {row.max_seq}"
    return None


async def in_store(store: Store, cid: str) -> bool:
    """Does the store know this campaign (with at least one event)?"""
    async with store.read() as conn:
        found = (await conn.execute(select(t.campaigns.c.max_seq).where(
            t.campaigns.c.campaign_id == cid))).scalar_one_or_none()
    return bool(found)


async def heal(redis: "Redis", store: Store, idem_ttl_ms: int) -> list[Rebuilt]:
    """Fence and rebuild every campaign whose Redis state is older than the store's."""
    async with store.read() as conn:
        cids = [r[0] for r in await conn.execute(select(t.campaigns.c.campaign_id))]
    done = []
    for cid in sorted(cids):
        reason = await redis_behind(redis, store, cid)
        if reason:
            log.warning("campaign %s: %s; fencing and rebuilding from the store", cid, reason)
            done.append(await recover_campaign(redis, store, cid, idem_ttl_ms))
    return done


async def recover_all(redis: "Redis", store: Store, idem_ttl_ms: int) -> list[Rebuilt]:
    async with store.read() as conn:
        cids = [r[0] for r in await conn.execute(select(t.campaigns.c.campaign_id))]
    return [await recover_campaign(redis, store, cid, idem_ttl_ms) for cid in sorted(cids)]


async def fence(redis: "Redis", store: Store, cid: str) -> None:
    """Refuse claims (503) from now on; a missing campaign gets a fenced meta first."""
    meta = keys.campaign_keys(cid).meta
    if await redis.hexists(meta, "state"):
        await redis.hset(meta, "fenced", "1")
        return
    async with store.read() as conn:
        row = (await conn.execute(select(t.campaigns).where(
            t.campaigns.c.campaign_id == cid))).one_or_none()
    if row is None:
        raise LookupError(f"campaign {cid} is not in the store")
    # No epoch: recover_campaign knows the campaign as lost until it is rebuilt.
    # (redis-py types mapping keys as an invariant union: a dict[str, str] is refused)
    await redis.hset(meta, mapping={**_meta_fields(row), "fenced": "1"})  # type: ignore[dict-item]


async def drain_stream(redis: "Redis", store: Store, cid: str,
                       epoch: int | None = None) -> int:
    """Copy every entry still in the campaign's stream into the store (duplicates ignored);
    with `epoch`, only the entries written under it."""
    key, start, n = keys.events_key(cid), "-", 0
    while True:
        items = cast(Items, await redis.xrange(key, min=start, count=_PAGE))
        items = [i for i in items if i[0] != start]
        if not items:
            return n
        events = [e for e in entries_of(key, items) if epoch is None or e.epoch == epoch]
        if events:
            async with store.begin() as conn:
                await store_events(conn, store, events)
        n += len(events)
        start = items[-1][0]


async def recover_campaign(redis: "Redis", store: Store, cid: str,
                           idem_ttl_ms: int) -> Rebuilt:
    ks = keys.campaign_keys(cid)
    # Its state lost but its stream kept (keys deleted, not the whole Redis): the
    # stream's entries of the store's epoch are events nobody has persisted yet.
    # A meta without an epoch is the one `fence` wrote for a lost campaign: an
    # earlier attempt fenced it and failed, and this one must still drain.
    has_state, has_epoch = await redis.hmget(ks.meta, "state", "epoch")
    lost = has_state is None or has_epoch is None
    await fence(redis, store, cid)
    for _ in range(_ROUNDS):
        async with redis.pipeline(transaction=True) as pipe:
            # Every event bumps meta's evseq: watching meta sees any change.
            await pipe.watch(ks.meta)
            stale = await redis_behind(redis, store, cid)
            if stale is None:  # Redis is ahead or level: its unpersisted events count
                await drain_stream(redis, store, cid)
            elif lost:  # (nothing sold since the loss: a missing campaign refuses claims)
                await drain_stream(redis, store, cid, epoch=await _store_epoch(store, cid))
            old = cast(dict[str, str], await redis.hgetall(ks.meta))
            old_counts = cast(dict[str, str], await redis.hgetall(ks.counts))
            now_s, now_us = await redis.time()
            now = now_s * 1000 + now_us // 1000 + int(old.get("time_offset_ms", 0))
            state = await _load(store, cid)
            epoch = max(int(old.get("epoch", 0)), state.row.epoch) + 1
            drop = await coupon_recovery.load(store, cid, state.row, state.spec, old, redis)
            spec = state.spec
            refunds = await aftersale_recovery.load(
                store, cid, spec is not None and spec.tickets is not None,
                (spec.on_checkin.drop, spec.on_checkin.sku)
                if spec is not None and spec.on_checkin is not None else None,
                (spec.on_confirm.drop, spec.on_confirm.sku)
                if spec is not None and spec.on_confirm is not None else None)
            presale = await presale_recovery.load(store, cid)
            for sibling in shard_recovery.siblings(cid, state.config):  # sharded campaigns
                # The other shards' unpersisted moves count (a borrow of units this
                # shard's lost lend gave): store them first, as for this shard.
                if await redis_behind(redis, store, sibling) is None:
                    await drain_stream(redis, store, sibling)
            # (after the other shards' streams: their claims use the queue's turns too)
            room = await queue_recovery.load(store, cid, state.row.applied_seq, now,
                                             shard_recovery.siblings(cid, state.config))
            turns = await queue_recovery.used_turns(store, cid, state.row.applied_seq) \
                if queue_recovery.takes_passes(state.config) else None
            moves = await shard_recovery.load(store, cid, state.config)
            pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            idem = _rebuild(pipe, cid, state, epoch, old, old_counts, now, idem_ttl_ms,
                            refunds.partial, fenced=moves is not None and bool(moves.relend))
            if moves is not None:
                shard_recovery.queue(pipe, cid, moves)
            idem += aftersale_recovery.queue(
                pipe, cid, refunds, now, idem_ttl_ms,
                state.history.persons if state.history is not None else None)
            if drop is not None:
                drop.queue(pipe, now, idem_ttl_ms)
            presale.queue(pipe)
            if room is not None:  # the waiting room, in queue order (after _rebuild's meta)
                room.queue(pipe, cid, now)
                pipe.hset(ks.meta, mapping=room.meta(old))  # type: ignore[arg-type]
            if turns is not None:  # a sharded campaign's shard k >= 1: its used turns
                queue_recovery.queue_turns(pipe, cid, turns)
            try:
                await pipe.execute()
            except WatchError:
                continue
        if moves is not None and moves.relend:  # then it reopens
            await shard_recovery.relend(redis, cid, moves)
            await redis.hset(ks.meta, "fenced", "0")
        await redis.sadd(keys.CAMPAIGN_INDEX, cid)
        if drop is not None:
            await coupon_recovery.registered(redis, drop)
        async with store.begin() as conn:
            await conn.execute(t.campaigns.update().where(t.campaigns.c.campaign_id == cid)
                               .values(epoch=epoch))
        if state.row.applied_seq != state.row.max_seq:
            log.error("campaign %s: store has a gap after seq %d (audit shows it)", cid,
                      state.row.applied_seq)
        held = sum(1 for c in state.claims if c.status == "held")
        log.info("campaign %s rebuilt from the store at seq %d, epoch %d", cid,
                 state.row.max_seq, epoch)
        return Rebuilt(cid, epoch, state.row.max_seq, len(state.claims), held, idem)
    raise RuntimeError(f"campaign {cid} kept changing during its rebuild")


async def _store_epoch(store: Store, cid: str) -> int:
    async with store.read() as conn:
        return int((await conn.execute(select(t.campaigns.c.epoch).where(
            t.campaigns.c.campaign_id == cid))).scalar_one())


@dataclass
class _State:
    row: Any
    skus: list[Any]
    claims: list[Any]
    pending_waves: list[tuple[int, str, int, int]]
    """(index, sku, qty, at_ms) not yet released"""
    spec: CampaignSpec | None = None
    config: dict[str, str] | None = None
    """Meta fields of the waitlist, waiting room, throttle (and drop), as defined and
    then patched; th_lists is the lists hash as JSON. None: the store predates it."""
    waitlist: dict[str, EntryRecord] | None = None
    """Waitlist entries by "<user>|<sku>", folded from the events since the definition."""
    joins: int = 0
    """Waitlist joins ever: the floor of meta wlseq (offer ids derive from it)."""
    history: "_History | None" = None
    transferred_in: frozenset[str] = frozenset()
    """Claims a transfer made (the recipient's): confirm.lua never counted their revenue."""
    patched_steps: dict[str, str] = field(default_factory=dict)
    """Presales: SKU -> its price steps as last patched ("<sku>.ps"; '' removed)."""


@dataclass
class _StockAnswer:
    """An idempotent stock adjustment and the waitlist offers its units went to."""
    key: str
    sku: str
    after: int
    released: int
    ts: int


@dataclass
class _History:
    """What the events since the definition say beyond the projections."""
    counts: Counter[str] = field(default_factory=Counter)
    """The outcome counters the scripts keep (meta of /stats), as far as events show."""
    lapses: Counter[str] = field(default_factory=Counter)
    """Holds each user let lapse or cancelled (the `lapses` risk signal)."""
    offers: dict[str, str] = field(default_factory=dict)
    """Every hold that was a waitlist offer: claim -> "<user>|<sku>"."""
    settled: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    """(op, claim, user, Idempotency-Key, ts) of confirms and cancels that sent a key."""
    stock: list[_StockAnswer] = field(default_factory=list)
    persons: dict[str, str] = field(default_factory=dict)
    """Presales: claim -> the real person (identity) a per_person campaign counted."""
    takes: dict[str, str] = field(default_factory=dict)
    """Presales: claim -> what it took from allocations ("name:n,...")."""
    returned: set[tuple[str, str]] = field(default_factory=set)
    """Presales: (sku, allocation) returned to the shared pool."""
    bundles: dict[str, BundleHeld] = field(default_factory=dict)
    """Presales: bundle claims, by the bundle's claim id."""


# Counters that events account for; the others (refusals, admissions) leave no
# event: a live Redis keeps its own, an emptied one starts them again.
DERIVED_COUNTS = frozenset({
    "held", "offered", "confirmed", "cancelled", "expired", "coupon_claims", "grants",
    "waitlist_joined", "waitlist_left", "waitlist_skipped",
    "offer_accepted", "offer_lapsed", "offer_declined", "bundles"})
_HISTORY_EVENTS = names(ClaimHeld, OfferMade, ClaimConfirmed, ClaimCancelled, ClaimExpired,
                        WaitlistJoined, WaitlistLeft, WaitlistSkipped, OfferAccepted,
                        OfferLapsed, OfferDeclined, StockAdjusted, AllocationReturned,
                        BundleHeld)


RELEASED = ("expired", "cancelled")
"""Statuses of a hold that release_hold (include/common.lua) gave back."""


def _held(h: _History, ev: ClaimHeld, drop: bool) -> None:
    """A claim's hold (not an offer), counted as the scripts count it."""
    # (a drop counts its claims as coupon_claims, confirmed at once)
    h.counts["grants" if ev.grant else "coupon_claims" if drop else "held"] += 1
    if ev.identity and not drop:  # only a per_person sale names it
        h.persons[ev.claim] = ev.identity
    if ev.alloc:
        h.takes[ev.claim] = ev.alloc


def _history(events: Iterable[Event], drop: bool,
             moves: Iterable[ClaimTransferred] = ()) -> _History:
    """Fold the events in seq order, counting as the scripts counted."""
    h = _History()
    for move in moves:  # a transfer's new claim counts against its recipient's person
        if move.identity:
            h.persons[move.new_claim] = move.identity
    run: _StockAnswer | None = None
    for ev in events:
        offer = isinstance(ev, ClaimHeld) and ev.offer
        if run is not None and not (ev.ts == run.ts and
                                    (offer or isinstance(ev, OfferMade | WaitlistSkipped))):
            h.stock.append(run)  # the adjustment's script ended: its answer is known
            run = None
        if isinstance(ev, ClaimHeld):
            if ev.offer:
                h.offers[ev.claim] = f"{ev.user}|{ev.sku}"
                if run is not None and ev.sku == run.sku:
                    run.after -= ev.qty  # added units went to the waitlist first
            else:
                _held(h, ev, drop)
        elif isinstance(ev, AllocationReturned):
            h.returned.add((ev.sku, ev.allocation))
        elif isinstance(ev, BundleHeld):  # its lines: in it, or (older) claim_held each
            for line in ev.held_lines():
                _held(h, line, drop)
            h.bundles[ev.claim] = ev
            h.counts["bundles"] += 1
        elif isinstance(ev, OfferMade):
            h.counts["offered"] += 1
        elif isinstance(ev, StockAdjusted):
            if ev.idem is not None and ev.after is not None and ev.released is not None:
                run = _StockAnswer(ev.idem, ev.sku, ev.after, ev.released, ev.ts)
        elif isinstance(ev, ClaimConfirmed):
            if not drop:
                h.counts["confirmed"] += 1
            if ev.idem:
                h.settled.append(("confirm", ev.claim, ev.user, ev.idem, ev.ts))
        elif isinstance(ev, ClaimCancelled | ClaimExpired):
            h.counts[type_name(ev)[len("claim_"):]] += 1
            h.lapses[ev.user] += 1
            if isinstance(ev, ClaimCancelled) and ev.idem:
                h.settled.append(("cancel", ev.claim, ev.user, ev.idem, ev.ts))
        else:
            h.counts[type_name(ev)] += 1
    if run is not None:
        h.stock.append(run)
    return h



_WAITLIST_EVENTS = names(WaitlistJoined, WaitlistLeft, WaitlistSkipped, OfferMade,
                         OfferAccepted, OfferLapsed, OfferDeclined)


# Waiting-room counters and the lottery salt are state, not configuration: a live
# Redis keeps its own; an emptied one starts them from the definition, and then
# the room's events set the counters (queue_recovery).
_RUNTIME = ("wr_served", "wr_tokens", "wr_at", "wr_seq", "salt")


async def _load(store: Store, cid: str) -> _State:
    async with store.read() as conn:
        row = (await conn.execute(select(t.campaigns).where(
            t.campaigns.c.campaign_id == cid))).one()
        skus = (await conn.execute(select(t.skus).where(t.skus.c.campaign_id == cid))).all()
        claims = (await conn.execute(select(t.claims).where(
            t.claims.c.campaign_id == cid))).all()
        released = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid, t.events.c.type.in_(names(WaveReleased)),
            t.events.c.seq > row.defined_seq, t.events.c.seq <= row.applied_seq))).all()
        queue_events = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid, t.events.c.type.in_(_WAITLIST_EVENTS),
            t.events.c.seq > row.defined_seq, t.events.c.seq <= row.applied_seq)
            .order_by(t.events.c.seq))).all()
        history = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid, t.events.c.type.in_(_HISTORY_EVENTS),
            t.events.c.seq > row.defined_seq, t.events.c.seq <= row.applied_seq)
            .order_by(t.events.c.seq))).all()
        joins = (await conn.execute(select(func.count()).select_from(t.events).where(
            t.events.c.campaign_id == cid,
            t.events.c.type.in_(names(WaitlistJoined))))).scalar_one()
        changes = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid,
            t.events.c.type.in_(names(CampaignDefined, CampaignPatched)),
            t.events.c.seq >= row.defined_seq, t.events.c.seq <= row.applied_seq)
            .order_by(t.events.c.seq))).all()
        transfers = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid, t.events.c.type.in_(names(ClaimTransferred))))).all()
    moves = [ev for ev in map(from_row, transfers) if isinstance(ev, ClaimTransferred)]
    transferred_in = frozenset(ev.new_claim for ev in moves)
    done = set()
    for ev in map(from_row, released):
        if isinstance(ev, WaveReleased):
            done.add((ev.sku, ev.wave))
    pending = []
    spec = None
    if row.spec:
        spec = _spec.decode(row.spec)
        for s in spec.skus:
            for i, w in enumerate(s.waves):
                if (s.sku, i) not in done:
                    pending.append((i, s.sku, w.qty, to_ms(w.at)))
    drop = spec is not None and spec.coupons is not None
    return _State(row, list(skus), list(claims), pending, spec,
                  _config(map(from_row, changes)), _waitlist(map(from_row, queue_events)),
                  int(joins), _history(map(from_row, history), drop, moves), transferred_in,
                  _patched_steps(map(from_row, changes)))


def _waitlist(events: Iterable[Event]) -> dict[str, EntryRecord]:
    """Each user's entry per SKU: joined, then gone (left, skipped, its offer settled)
    or offered (a hold in their name, still open)."""
    entries: dict[str, EntryRecord] = {}
    for ev in events:
        match ev:
            case WaitlistJoined(user=user, sku=sku, qty=qty, wseq=str() as wseq):
                # (a join older than wseq has no place in line to restore)
                entries[f"{user}|{sku}"] = EntryRecord(status="waiting", seq=wseq, qty=qty,
                                                       joined=ev.ts, claim="")
            case WaitlistLeft(user=user, sku=sku) | WaitlistSkipped(user=user, sku=sku):
                entries.pop(f"{user}|{sku}", None)
            case OfferMade(user=user, sku=sku, claim=claim) if f"{user}|{sku}" in entries:
                entry = entries[f"{user}|{sku}"]
                entry.status, entry.claim = "offered", claim
            case OfferSettled(user=user, sku=sku, claim=claim):
                # accepted, lapsed or declined: the entry ends with the offer
                if f"{user}|{sku}" in entries and entries[f"{user}|{sku}"].claim == claim:
                    del entries[f"{user}|{sku}"]
    return entries


def _patched_steps(changes: Iterable[Event]) -> dict[str, str]:
    """Presales: each SKU's price steps as the patches since the definition left them."""
    steps: dict[str, str] = {}
    for ev in changes:
        if isinstance(ev, CampaignDefined):
            steps.clear()
        elif isinstance(ev, CampaignPatched):
            for k, v in _spec_waves.decode(ev.after or "{}").items():
                if k.startswith("ps:"):
                    steps[k[3:]] = str(v)
    return steps


def _config(changes: Iterable[Event]) -> dict[str, str] | None:
    """The definition's optional meta, then each patch's new values, in order."""
    config: dict[str, str] | None = None
    for ev in changes:
        match ev:
            case CampaignDefined(meta=meta):
                config = None if meta is None else dict(_spec_waves.decode(meta))
            case CampaignPatched(after=after) if config is not None:
                config.update({k: str(v) for k, v in _spec_waves.decode(after or "{}").items()
                               if k.startswith(("wr_", "wl_", "th", "ph", "bd", "al"))
                               and v is not False})  # bd, al: presale bundles, allocations
    return config


def _queue_waitlist(pipe: Any, k: keys.CampaignKeys, entries: dict[str, EntryRecord],
                    offers: dict[str, str]) -> None:
    """The waitlists as the store has them: waiting entries in their order, and every
    hold that was an offer (settled ones too: a claim's view says it was an offer)."""
    pipe.delete(k.waitlist, k.wlentries, k.offers)
    open_offers = {e.claim: f for f, e in entries.items() if e.status == "offered"}
    offers = {**offers, **open_offers}
    if offers:
        pipe.hset(k.offers, mapping=offers)
    if not entries:
        return
    pipe.hset(k.wlentries, mapping={f: records.ENTRY.encode(e) for f, e in entries.items()})
    line = {}
    for f, e in entries.items():
        if e.status == "waiting":
            user, sku = f.split("|", 1)
            line[records.WL_MEMBER.encode(WlMemberRecord(sku=sku, seq=e.seq, user=user))] = 0
    if line:
        pipe.zadd(k.waitlist, line)


def _queue_answers(pipe: Any, cid: str, st: _State, history: _History, now: int,
                   idem_ttl_ms: int) -> int:
    """The first answers of confirms, cancels and stock adjustments, as the API and
    adjust_stock.lua remembered them, for those still within the idempotency TTL."""
    rows = {c.claim_id: c for c in st.claims}
    n = 0
    bundle_of = {line: b for b, ev in history.bundles.items() for line in ev.lines.split(",")}
    for op, claim_id, user, key, ts in history.settled:
        c = rows.get(claim_id)
        ttl = ts + idem_ttl_ms - now
        if c is None or ttl <= 0:
            continue
        if claim_id in bundle_of:  # a bundle's lines settle together, answered as one
            bundle = history.bundles[bundle_of[claim_id]]
            whole = bundle_recovery.view(cid, bundle, rows)
            if whole is not None:
                pipe.set(keys.response_key(cid, user, key),
                         record(fingerprint(op, bundle.claim), 200, _json.encode(whole)),
                         px=ttl)
                n += 1
            continue
        view = ClaimView(claim_id=claim_id, campaign_id=cid, sku=c.sku, qty=c.qty,
                         status=c.status, expires_at=from_ms(c.deadline_ms), price=c.price,
                         created_at=from_ms(c.created_ms), offer=claim_id in history.offers)
        pipe.set(keys.response_key(cid, user, key),
                 record(fingerprint(op, claim_id), 200, _json.encode(view)), px=ttl)
        n += 1
    for s in history.stock:
        ttl = s.ts + idem_ttl_ms - now
        if ttl > 0:
            pipe.set(s.key, records.STOCK_ANSWER.encode(StockAnswerRecord(
                code=0, available=s.after, released=s.released)), px=ttl)
            n += 1
    return n


def _meta_fields(row: Any) -> dict[str, str]:
    return {"id": row.campaign_id, "name": row.name, "opens_ms": str(row.opens_ms),
            "closes_ms": str(row.closes_ms), "hold_ttl_ms": str(row.hold_ttl_ms),
            "per_user": str(row.per_user), "max_qty": str(row.max_qty), "state": row.state}


def _rebuild(pipe: Any, cid: str, st: _State, epoch: int, old_meta: dict[str, str],
             old_counts: dict[str, str], now: int, idem_ttl_ms: int,
             refunded: Mapping[tuple[str, str], int], fenced: bool = False) -> int:
    """Queue the commands that replace the campaign's keys; returns idempotency answers set."""
    k = keys.campaign_keys(cid)
    meta, stock, users, claims = k.meta, k.stock, k.users, k.claims
    deadlines, waves, events, counts = k.deadlines, k.waves, k.events, k.counts
    # Only the keys the store can rebuild; meta is overwritten field by field so
    # fields other features keep there survive a rebuild of a live Redis.
    pipe.delete(stock, users, claims, deadlines, k.expiry, waves, events, counts)
    pipe.hdel(meta, "xtail")  # holds are rebuilt into the deadlines zset
    m = {**_meta_fields(st.row), "epoch": str(epoch), "evseq": str(st.row.max_seq),
         "fenced": "1" if fenced else "0"}
    if "time_offset_ms" in old_meta:
        m["time_offset_ms"] = old_meta["time_offset_ms"]
    m["wlseq"] = str(max(int(old_meta.get("wlseq", 0)), st.joins))
    history = st.history or _History()
    _queue_waitlist(pipe, k, st.waitlist or {}, history.offers)
    if st.config is not None:
        config = dict(st.config)
        lists = config.pop("th_lists", None)
        m |= {k: old_meta.get(k, v) if k in _RUNTIME else v for k, v in config.items()}
        if lists is not None:
            pipe.delete(keys.lists_key(cid))
            entries = _spec_waves.decode(lists)
            if entries:
                pipe.hset(keys.lists_key(cid), mapping=entries)
    if st.spec is not None:  # presales: allocations' reserved units
        m |= allocation_recovery.rebuild(st.spec, history.returned, history.takes, st.claims,
                                         st.config)
        pending = allocation_recovery.next_return({**old_meta, **m})
        if pending is not None:
            m["al_next"] = pending
    pipe.hset(meta, mapping=m)
    stock_fields: dict[str, Any] = {}
    for s in st.skus:
        stock_fields.update({f"{s.sku}.a": s.available, f"{s.sku}.h": s.held,
                             f"{s.sku}.s": s.sold, f"{s.sku}.r": s.released,
                             f"{s.sku}.price": s.price, f"{s.sku}.lim": s.per_user})
    if st.spec is not None:  # presales: price steps as defined, revenue as confirmed
        for sku_spec in st.spec.skus:
            if sku_spec.price_steps:
                stock_fields[f"{sku_spec.sku}.ps"] = pricing.encode(sku_spec.price_steps)
        for sku, steps in st.patched_steps.items():  # then as patched live
            stock_fields.pop(f"{sku}.ps", None)
            if steps:
                stock_fields[f"{sku}.ps"] = steps
    revenue: Counter[str] = Counter()
    drop = st.spec is not None and st.spec.coupons is not None  # coupons confirm no sale
    for c in st.claims:  # as confirm.lua counted it: every unit once confirmed, refunds kept
        if c.status in ("confirmed", "refunded", "transferred") and not drop \
                and c.claim_id not in st.transferred_in:
            revenue[c.sku] += c.price * c.qty
    stock_fields.update({f"{sku}.rev": n for sku, n in revenue.items() if n})
    if stock_fields:
        pipe.hset(stock, mapping=stock_fields)
    units: dict[str, int | str] = {f"{user}|~lapsed": n for user, n in history.lapses.items()}
    by_user: dict[str, Counter[str]] = {}  # user -> units held+sold by SKU
    person_units: Counter[str] = Counter()
    for (user, sku), n in refunded.items():  # refunded units no longer count (refund.lua)
        by_user.setdefault(user, Counter())[sku] -= n
    stored: dict[str, str] = {}
    idem = 0
    for c in st.claims:
        stored[c.claim_id] = records.CLAIM.encode(ClaimRecord(
            status=c.status, user=c.user_id, sku=c.sku, qty=c.qty, deadline=c.deadline_ms,
            price=c.price, created=c.created_ms, person=history.persons.get(c.claim_id, ""),
            alloc=history.takes.get(c.claim_id, "")))  # as claim_batch.lua's record keeps them
        if c.status in ("held", "confirmed"):
            by_user.setdefault(c.user_id, Counter())[c.sku] += c.qty
        person = history.persons.get(c.claim_id)
        if person is not None and c.status not in RELEASED:
            # As the scripts count it: a held or sold claim's units are its person's;
            # a release, a refund or a transfer gives them back (a partial refund's,
            # or a ticket moved out alone, by aftersale_recovery).
            if c.status in ("held", "confirmed"):
                person_units[f"~p|{person}"] += c.qty
        if c.status == "held":
            pipe.zadd(deadlines, {c.claim_id: c.deadline_ms})
        ttl = c.created_ms + idem_ttl_ms - now
        if c.idem_key and ttl > 0:  # the first answer, as claim_batch.lua remembers it
            pipe.set(c.idem_key, records.CLAIM_ANSWER.encode(ClaimAnswerRecord(
                fingerprint=c.fingerprint or "", code=0, claim_id=c.claim_id,
                deadline=c.deadline_ms, price=c.price, created=c.created_ms)),
                     px=ttl)
            idem += 1
    if stored:
        pipe.hset(claims, mapping=stored)
    for user, by_sku in by_user.items():
        raw = records.encode_units(dict(by_sku))
        if raw:
            units[user] = raw
    units.update(person_units)
    units.update(bundle_recovery.marks(history.bundles))  # bundles: lines <-> bundle
    if units:
        pipe.hset(users, mapping=units)
    tally = {name: n for name, n in old_counts.items() if name not in DERIVED_COUNTS}
    tally |= {name: str(n) for name, n in history.counts.items() if n}
    if tally:
        pipe.hset(counts, mapping=tally)
    idem += _queue_answers(pipe, cid, st, history, now, idem_ttl_ms)
    idem += bundle_recovery.queue_answers(pipe, history.bundles, now, idem_ttl_ms)
    for i, sku, qty, at in st.pending_waves:
        pipe.zadd(waves, {records.WAVE.encode(WaveRecord(idx=i, sku=sku, qty=qty)): at})
    # A fresh stream whose group starts at its end: old entries are in the store.
    pipe.xgroup_create(events, GROUP, id="$", mkstream=True)
    return idem
