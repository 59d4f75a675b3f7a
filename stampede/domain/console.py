"""What the ops console's live feed carries: every campaign, its coupon drop, the system.

One `ConsoleState` is built per tick from one pipelined Redis read (see
stampede/api/console_feed.py); rates (claims per second by outcome, requests
per second) are the difference of two successive counters over the time
between them, so they cost no extra state anywhere.
"""

from typing import Any, Literal

from msgspec import Struct

from stampede.domain import shards
from stampede.domain.coupons.spec import CouponStats
from stampede.domain.status import CampaignSnapshot
from stampede.domain.throttle import ThrottleSpec
from stampede.state import keys

OUTCOME_RATES = ("held", "sold_out", "limit_exceeded", "throttled", "blocked",
                 "challenge_required", "admission_required", "expired", "confirmed",
                 "cancelled")
"""The counters (K.counts) the console charts per second; `held` is a successful claim."""


class ConsoleSku(Struct, kw_only=True):
    sku: str
    price: int
    released: int
    available: int
    held: int
    sold: int
    pending_waves: int
    pending_units: int
    next_wave_ms: int | None
    per_user: int | None


class ConsoleShard(Struct, kw_only=True):
    """One shard of a sharded campaign, for the console's per-shard breakdown."""
    shard: int
    id: str
    """The shard's key set (`<campaign>` for shard 0, `<campaign>:s<k>...` after)."""
    skus: list[ConsoleSku]
    counts: dict[str, int]


class ConsoleRoom(Struct, kw_only=True):
    """The waiting room: tickets taken, turns served, users admitted now, its rate."""
    tickets: int
    served: int
    active: int
    rate_per_s: float
    paused: bool


class ConsoleCampaign(Struct, kw_only=True):
    id: str
    name: str
    state: Literal["scheduled", "open", "paused", "sold_out", "closed"]
    opens_ms: int
    closes_ms: int
    hold_ttl_s: int
    per_user: int | None
    max_per_claim: int
    skus: list[ConsoleSku]
    counts: dict[str, int]
    """Every counter the scripts keep (claims by outcome, expiries, offers, ...)."""
    rates: dict[str, float]
    """Per second since the previous tick, for OUTCOME_RATES."""
    waitlist: int
    offers_outstanding: int
    waiting_room: ConsoleRoom | None
    throttle: ThrottleSpec | None
    coupons: CouponStats | None = None
    shards: list[ConsoleShard] | None = None
    """A campaign split across shards: each shard's own counters (the campaign's are
    their sums); null for a campaign that is not split."""


class ConsoleWorker(Struct, kw_only=True):
    """A live gateway worker, as the metrics registry knows it (dead ones drop out)."""
    pid: int
    started_ms: int
    console_listeners: int


class ConsoleSystem(Struct, kw_only=True):
    worker_pid: int
    """The worker that serves this feed."""
    workers: list[ConsoleWorker]
    redis_used_memory: int | None
    redis_maxmemory: int | None
    persister: dict[str, Any]
    """The persister's health as /readyz details says it (state, lag, children)."""
    persister_lag_s: float
    persister_pending: int
    reconcile_differences: int
    """Sum of |Redis - store| over every counter the last reconcile compared."""
    requests_per_s: float
    errors_5xx_per_s: float
    restarts: dict[str, int]
    """Children serve restarted, by component (persister, deliverer, valkey)."""


class ConsoleState(Struct, kw_only=True):
    at_ms: int
    tick_s: float
    campaigns: list[ConsoleCampaign]
    system: ConsoleSystem


def campaign_view(snap: CampaignSnapshot, rates: dict[str, float],
                  coupons: CouponStats | None, throttle: ThrottleSpec | None) -> ConsoleCampaign:
    """A campaign as the console shows it, from its `read_status` snapshot."""
    meta = snap.meta
    counts = snap.counts
    # Every offer is settled once (accepted, lapsed or declined), each counted.
    offers = counts.get("offered", 0) - sum(
        counts.get(k, 0) for k in ("offer_accepted", "offer_lapsed", "offer_declined"))
    room = None
    if meta.get("wr_on") == "1":
        room = ConsoleRoom(tickets=snap.waiting[1], served=int(meta.get("wr_served", 0)),
                           active=snap.waiting[2], rate_per_s=float(meta.get("wr_rate", 0)),
                           paused=meta.get("wr_paused") == "1")
    per_user = int(meta.get("per_user", -1))
    skus = _skus(snap)
    return ConsoleCampaign(
        id=snap.id, name=meta.get("name", snap.id), state=snap.state(),
        opens_ms=snap.opens_ms, closes_ms=snap.closes_ms,
        hold_ttl_s=int(meta.get("hold_ttl_ms", 0)) // 1000,
        per_user=None if per_user < 0 else per_user,
        max_per_claim=int(meta.get("max_qty", 0)), skus=skus, counts=snap.counts,
        rates=rates, waitlist=snap.waiting[0], offers_outstanding=max(0, offers),
        waiting_room=room, throttle=throttle, coupons=coupons)


def _skus(snap: CampaignSnapshot) -> list[ConsoleSku]:
    skus = []
    for s in snap.skus:
        times = [at for sku, _, at in snap.waves if sku == s.sku]
        skus.append(ConsoleSku(sku=s.sku, price=s.price, released=s.released,
                               available=s.available, held=s.held, sold=s.sold,
                               pending_waves=snap.pending_wave_count(s.sku),
                               pending_units=snap.pending_wave_qty(s.sku),
                               next_wave_ms=min(times) if times else None,
                               per_user=s.per_user))
    return skus


def by_campaign(snaps: list[CampaignSnapshot]) -> list[
        tuple[CampaignSnapshot, list[ConsoleShard] | None]]:
    """One entry per campaign: a sharded campaign's shards added up (shards.merge)
    with each shard's own counters beside; any other campaign as it is. Shards whose
    shard 0 is gone (the campaign deleted meanwhile) are left out."""
    groups: dict[str, list[tuple[int, CampaignSnapshot]]] = {}
    for snap in snaps:
        base, k = keys.shard_of_id(snap.id)
        groups.setdefault(base, []).append((k, snap))
    found: list[tuple[CampaignSnapshot, list[ConsoleShard] | None]] = []
    for base, members in groups.items():
        members.sort(key=lambda m: m[0])
        if int(members[0][1].meta.get("shards", 1)) <= 1:
            if members[0][0] == 0:
                found.append((members[0][1], None))
            continue
        if members[0][0] != 0:
            continue
        parts = [ConsoleShard(shard=k, id=snap.id, skus=_skus(snap), counts=snap.counts)
                 for k, snap in members]
        found.append((shards.merge(base, [snap for _, snap in members]), parts))
    return found


def rates_between(before: dict[str, int] | None, after: dict[str, int],
                  seconds: float) -> dict[str, float]:
    """Per-second increase of each charted counter (0 on the first tick or a reset)."""
    if before is None or seconds <= 0:
        return {name: 0.0 for name in OUTCOME_RATES}
    return {name: round(max(0, after.get(name, 0) - before.get(name, 0)) / seconds, 2)
            for name in OUTCOME_RATES}
