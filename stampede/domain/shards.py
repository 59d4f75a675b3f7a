"""Hot campaigns split across shards: routing, the split spec, and moves of units.

A campaign defined with `shards: N` (N >= 2) is N campaigns in Redis, one per shard:
shard 0 is the campaign itself, shard k is `<id>:s<k>` (keys.shard_id), each a full
key set under a hash tag of its own, so each lives in one Cluster slot and the N
slots can sit on N nodes. Every shard holds a share of every SKU's waves. A user is
served by one shard, picked by a stable hash of their id, so their per-user limits,
idempotency keys and holds stay inside one slot and exact.

Moves. A claim its shard cannot serve is answered SHARD_DRY by the script (internal,
nothing written); the engine then borrows units from the other shards and sends the
claim again. A move is two atomic steps in two slots: `shard_lend` on the donor takes
the units and records the move in the donor's outbox in the same step, and
`shard_borrow` on the receiver adds them once per move id (its move log), after which
the outbox entry is deleted. A crash between the two leaves the outbox entry; the
sweeper delivers it again (every STAMPEDE_HOLD_SWEEP_INTERVAL_MS), and the receiver's
log makes a second delivery a no-op: no unit is lost or doubled.

The bound on a false sold-out: a claim is refused SOLD_OUT only after every other
shard was read with nothing available, so units that remained unsold elsewhere were
in transit in another gateway's move (two round trips), or in a crashed move (until
the next sweep), or in a wave a shard had not yet released (until its next script or
sweep). docs/shards.md states it and what it means for each feature.
"""

import asyncio
import hashlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar, cast

import msgspec
from redis.exceptions import RedisError

from stampede.domain.models import CampaignSpec, SkuSpec, Wave
from stampede.domain.status import CampaignSnapshot, SkuCounters
from stampede.errors import ValidationError
from stampede.outcomes import Outcome
from stampede.state import keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from stampede.state.scripts import ScriptRegistry

log = logging.getLogger("stampede.shards")
MAX_SHARDS = 64
"""The most shards a campaign may be split into (models.CampaignSpec.shards says so too)."""
MAX_ID_LENGTH = 53
"""A sharded campaign's id leaves room for the shard suffix ":s<k>p<m>" in 64 characters
(the store's campaign ids)."""
IN_TRANSIT_WAIT_S = 0.005
"""How long a borrow that found nothing waits before looking again, when this process
has other moves of the SKU in flight (their units are in neither shard meanwhile)."""
MAX_ROUNDS = 1000
"""Borrow-and-retry rounds of one claim before its shard's answer stands: a safety
net only. Every round moves at least one unit into the claim's shard, and the other
shards' units only shrink meanwhile (their own claims and our borrows take them), so
the rounds end when the units do."""

_UNSUPPORTED = (
    ("tickets", "tickets are not supported on a sharded campaign"),
    ("on_checkin", "tickets are not supported on a sharded campaign"),
    ("transfers", "a transfer moves a claim to a user served by another shard"),
    ("phases", "access phases and their segments live in one slot"),
)


def check(cid: str, spec: CampaignSpec) -> None:
    """Refuse (ValidationError naming the field) what a sharded campaign does not support."""
    if spec.shards == 1:
        return
    if len(cid) > MAX_ID_LENGTH:
        raise ValidationError(f"shards: a sharded campaign's id is at most {MAX_ID_LENGTH} "
                              "characters")
    for field, why in _UNSUPPORTED:
        value = getattr(spec, field)
        if value is not None and value != []:
            raise ValidationError(f"{field}: not supported with shards > 1 ({why})")
    if spec.limits.per_person is not None:
        raise ValidationError("limits.per_person: not supported with shards > 1 (a person's "
                              "accounts are served by different shards)")
    if spec.bundles:  # presales: bundles
        raise ValidationError("bundles: not supported with shards > 1 (a bundle holds its "
                              "SKUs in one slot, without borrowing between shards)")
    for i, s in enumerate(spec.skus):
        if s.allocations:
            raise ValidationError(f"skus[{i}].allocations: not supported with shards > 1 "
                                  "(an allocation is one pool in one slot)")
        if s.price_steps:
            raise ValidationError(f"skus[{i}].price_steps: not supported with shards > 1 "
                                  "(steps count the units taken in one slot)")


def room_fields(spec: CampaignSpec, k: int) -> dict[str, str]:
    """Shard k's waiting-room mode: shard 0 runs the campaign's one queue (its tickets,
    rate and admissions, FIFO across all shards); every other shard takes the admission
    token as a pass and keeps the turns used on it (include/common.lua room_mode)."""
    room = spec.waiting_room
    if k == 0 or room is None or not room.enabled:
        return {}
    return {"wr_on": "pass"}


async def turn_used(redis: "Redis", cid: str, user: str) -> None:
    """A claim held on another shard used `user`'s turn: shard 0's queue frees its slot
    for the next admission (as a claim on shard 0 does in its own script). Not atomic
    with the claim: if this is lost, the slot frees when the turn's window ends, and the
    turn stays used on the claim's shard either way. So a failure here is logged, never
    answered: the claim is held."""
    try:
        await redis.zrem(keys.campaign_keys(cid).admitted, user)
    except RedisError as exc:
        log.warning("campaign %s: the queue's slot of %s stays taken until its window "
                    "ends (%s)", cid, user, exc)


def shard_of_user(user: str, n: int) -> int:
    """The shard that serves `user` in a campaign of n shards: stable across processes,
    restarts and versions (a BLAKE2b of the id, never Python's randomised hash)."""
    if n <= 1:
        return 0
    digest = hashlib.blake2b(user.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def split(total: int, n: int, rotate: int = 0) -> list[int]:
    """`total` in n shares differing by at most one; the extra units start at `rotate`."""
    base, extra = divmod(total, n)
    return [base + (1 if (k - rotate) % n < extra else 0) for k in range(n)]


def shard_specs(spec: CampaignSpec) -> list[CampaignSpec]:
    """The spec of each shard: every SKU, every wave split (a wave's extra units go to a
    different shard each wave, so no shard is favoured); a zero share is left out."""
    n = spec.shards
    per_shard: list[list[SkuSpec]] = [[] for _ in range(n)]
    turn = 0
    for s in spec.skus:
        shares: list[list[Wave]] = [[] for _ in range(n)]
        for w in s.waves:
            for k, qty in enumerate(split(w.qty, n, turn)):
                if qty:
                    shares[k].append(Wave(at=w.at, qty=qty))
            turn += 1
        for k in range(n):
            per_shard[k].append(msgspec.structs.replace(s, waves=shares[k]))
    return [msgspec.structs.replace(spec, skus=skus) for skus in per_shard]


def merge(cid: str, snaps: Sequence[CampaignSnapshot]) -> CampaignSnapshot:
    """One view of all shards: counters, counts, waves and events added up."""
    first = snaps[0]
    totals: dict[str, list[int]] = {}
    for snap in snaps:
        for s in snap.skus:
            t = totals.setdefault(s.sku, [0, 0, 0, 0, 0])
            for i, v in enumerate((s.available, s.held, s.sold, s.released, s.revenue)):
                t[i] += v
    by_name = {s.sku: s for s in first.skus}
    skus = [SkuCounters(name, by_name[name].price, t[0], t[1], t[2], t[3],
                        by_name[name].per_user, t[4])
            for name, t in totals.items() if name in by_name]
    counts: dict[str, int] = {}
    for snap in snaps:
        for k, v in snap.counts.items():
            counts[k] = counts.get(k, 0) + v
    meta = dict(first.meta)
    meta["evseq"] = str(sum(int(s.meta.get("evseq", 0)) for s in snaps))
    waiting = tuple(sum(s.waiting[i] for s in snaps) for i in range(3))
    return CampaignSnapshot(cid, max(s.now_ms for s in snaps), meta, skus, counts,
                            [w for s in snaps for w in s.waves],
                            waiting)  # type: ignore[arg-type]


class Move(NamedTuple):
    move_id: str
    donor: int
    receiver: int
    sku: str
    qty: int


class _Answered(Protocol):
    @property
    def outcome(self) -> Outcome: ...


A = TypeVar("A", bound=_Answered)

DRY = "|dry"
"""Batcher key suffix: a shard's first try, answered SHARD_DRY when the shard is dry
(sale claims and a sharded drop's coupon claims alike)."""
DRY_AGAIN = "|dry-again"
"""A shard's claim sent again after a borrow: SHARD_DRY still, the guard skipped."""
AGAIN = "|again"
"""A shard's claim sent a last time (the shard's own answer stands), the guard skipped."""


class Shards:
    """Shard counts of campaigns, and the moves of units between their shards."""

    def __init__(self, redis: "Redis", scripts: "ScriptRegistry") -> None:
        self.redis = redis
        self.scripts = scripts
        self._counts: dict[str, int] = {}
        self._lookups: dict[str, asyncio.Future[int | None]] = {}
        self._borrows: dict[tuple[str, int, str], asyncio.Future[int]] = {}
        self.moves = 0
        """Moves this process completed (lend and borrow), for benches and tests."""
        self.dry = 0
        """Claims of this process that found their shard dry (the slow path: a borrow,
        then the claim sent again), for benches and tests."""

    async def count(self, cid: str) -> int | None:
        """How many shards the campaign has (1: not split), None if it does not exist.
        Cached: the number never changes once defined (define_campaign refuses)."""
        n = self._counts.get(cid)
        if n is not None:
            return n
        # One read per campaign however many claims ask at once (a rush's first
        # thousands would otherwise each wait for a connection to ask the same).
        lookup = self._lookups.get(cid)
        if lookup is None:
            lookup = self._lookups[cid] = asyncio.ensure_future(self._read_count(cid))
            lookup.add_done_callback(lambda _: self._lookups.pop(cid, None))
        return await asyncio.shield(lookup)

    async def _read_count(self, cid: str) -> int | None:
        meta = keys.campaign_keys(cid).meta
        state, raw = await self.redis.hmget(meta, ["state", "shards"])
        if state is None:
            return None
        self._counts[cid] = n = int(raw or 1)
        return n

    def forget(self, cid: str) -> None:
        self._counts.pop(cid, None)

    # -- moves --------------------------------------------------------------

    async def claim_borrowing(self, cid: str, n: int, scid: str,
                              submit: Callable[[str], Awaitable[A]],
                              dry_sku: Callable[[A], str], qty: int) -> A:
        """A claim on shard `scid`, sent by `submit(batcher key)`: while the shard answers
        SHARD_DRY, units of `dry_sku(answer)` are borrowed from the other shards and the
        claim sent again; once a borrow finds nothing (or after MAX_ROUNDS), a last try
        whose answer stands. So SOLD_OUT means every other shard was read dry after the
        shard's last try. Only the first try passes the guard."""
        k = keys.shard_of_id(scid)[1]
        suffix = DRY
        for _ in range(MAX_ROUNDS):
            answer = await submit(scid + suffix)
            if answer.outcome is not Outcome.SHARD_DRY:
                return answer
            suffix = DRY_AGAIN
            self.dry += 1
            if await self.borrow(cid, n, k, dry_sku(answer), qty) == 0:
                break
        return await submit(scid + AGAIN)


    async def borrow(self, cid: str, n: int, receiver: int, sku: str, want: int) -> int:
        """Move at least `want` units of `sku` into shard `receiver` if the other shards
        have them (else what they have); returns the units moved. One borrow per shard
        and SKU at a time in this process: concurrent claims wait for it and retry."""
        key = (cid, receiver, sku)
        running = self._borrows.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._borrows[key] = future
        try:
            got = await self._borrow(cid, n, receiver, sku, want)
            if got == 0 and any(c == cid and s == sku and r != receiver
                                for c, r, s in self._borrows):
                # Units may be in transit between two other shards of this process:
                # look once more after their move's round trips (never wait on the
                # other borrows themselves: two dry shards would wait on each other).
                await asyncio.sleep(IN_TRANSIT_WAIT_S)
                got = await self._borrow(cid, n, receiver, sku, want)
            future.set_result(got)
            return got
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody logs it as lost
            raise
        finally:
            del self._borrows[key]

    async def _borrow(self, cid: str, n: int, receiver: int, sku: str, want: int) -> int:
        donors = [k for k in range(n) if k != receiver]
        available = await self.available(cid, n, sku, donors)
        got = 0
        for k in sorted(donors, key=lambda d: -available[d]):
            avail = available[k]
            if avail <= 0 or got >= want:
                break
            # Borrow in batches: at least half of what the donor has, so a dry shard
            # does not come back for every claim; never more than the donor has.
            ask = min(avail, max(want - got, math.ceil(avail / 2)))
            got += await self.move(cid, n, k, receiver, sku, ask)
        return got

    async def available(self, cid: str, n: int, sku: str,
                        shards: Sequence[int] | None = None) -> dict[int, int]:
        """The available units of `sku` on each shard (one command per slot)."""
        ks = list(range(n)) if shards is None else list(shards)
        async with self.redis.pipeline(transaction=False) as pipe:
            for k in ks:
                pipe.hget(keys.campaign_keys(keys.shard_id(cid, k, n)).stock, f"{sku}.a")
            raw = await pipe.execute()
        return {k: int(v or 0) for k, v in zip(ks, raw, strict=True)}

    async def move(self, cid: str, n: int, donor: int, receiver: int, sku: str,
                   qty: int) -> int:
        """Lend up to `qty` units from `donor` and borrow them into `receiver`; returns the
        units moved (0 if the donor had none by then)."""
        move_id = uuid.uuid4().hex
        dcid = keys.shard_id(cid, donor, n)
        code, lent, _ = await self.scripts.run(
            "shard_lend", [*keys.campaign_keys(dcid), keys.moves_key(dcid)],
            [move_id, sku, qty, receiver])
        if int(code) != Outcome.OK or int(lent) == 0:
            return 0
        if not await self.deliver(cid, n, Move(move_id, donor, receiver, sku, int(lent))):
            return 0  # in the outbox: the sweeper delivers it once the receiver is back
        self.moves += 1
        return int(lent)

    async def deliver(self, cid: str, n: int, m: Move) -> bool:
        """The receiving side of a lent move, then the outbox entry closed (idempotent).
        False, the entry kept for the next sweep, when the receiver is missing."""
        rcid = keys.shard_id(cid, m.receiver, n)
        code, _, _ = await self.scripts.run(
            "shard_borrow", [*keys.campaign_keys(rcid), keys.moves_key(rcid)],
            [m.move_id, m.sku, m.qty, m.donor])
        if int(code) != Outcome.OK:  # the receiver is not there (yet: being recovered)
            return False
        await self.redis.hdel(keys.moves_key(keys.shard_id(cid, m.donor, n)), f"out:{m.move_id}")
        return True

    async def pending(self, scid: str) -> list[Move]:
        """Moves a shard lent that are not known delivered (its outbox)."""
        cid, donor = keys.shard_of_id(scid)
        raw = cast(dict[str, str], await self.redis.hgetall(keys.moves_key(scid)))
        moves = []
        for field, value in raw.items():
            if field.startswith("out:"):
                to, sku, qty = value.split("|")
                moves.append(Move(field[4:], donor, int(to), sku, int(qty)))
        return moves

    async def redeliver(self, scid: str) -> int:
        """Finish the moves a crash left half-done (lent, maybe not borrowed): the
        sweeper calls this for every shard. Returns the moves finished."""
        cid, _ = keys.shard_of_id(scid)
        moves = await self.pending(scid)
        n = await self.count(cid) if moves else None
        done = 0
        for m in moves:
            assert n is not None
            done += await self.deliver(cid, n, m)
        return done


class ShardAudit(msgspec.Struct, frozen=True):
    """The cross-shard invariants of one sharded campaign, read from Redis."""
    campaign: str
    shards: int
    skus: dict[str, dict[str, int]]
    """Per SKU: available, held, sold, released (added over shards), lent, borrowed,
    in_transit."""
    problems: list[str]


async def audit(redis: "Redis", cid: str, n: int) -> ShardAudit:
    """Each shard's own books balance (available + held + sold = released), every unit
    lent is borrowed or in transit (never lost or doubled), and each user's units sit
    on the shard that serves them (so per-user limits were counted whole)."""
    problems: list[str] = []
    skus: dict[str, dict[str, int]] = {}
    outbox: dict[str, str] = {}
    arrived: set[str] = set()
    for k in range(n):
        scid = keys.shard_id(cid, k, n)
        ck = keys.campaign_keys(scid)
        stock = cast(dict[str, str], await redis.hgetall(ck.stock))
        moves = cast(dict[str, str], await redis.hgetall(keys.moves_key(scid)))
        names = {f.rsplit(".", 1)[0] for f in stock if f.endswith(".a")}
        for sku in names:
            a, h, s, r = (int(stock.get(f"{sku}.{x}", 0)) for x in "ahsr")
            if a < 0 or a + h + s != r:
                problems.append(f"shard {k} sku {sku}: available {a} + held {h} + sold {s}"
                                f" != released {r}")
            t = skus.setdefault(sku, dict.fromkeys(("available", "held", "sold", "released",
                                                    "lent", "borrowed", "in_transit"), 0))
            for name, v in (("available", a), ("held", h), ("sold", s), ("released", r)):
                t[name] += v
        for field, value in moves.items():
            if field.startswith("~out:"):
                skus.setdefault(field[5:], {}).setdefault("lent", 0)
                skus[field[5:]]["lent"] += int(value)
            elif field.startswith("~in:"):
                skus.setdefault(field[4:], {}).setdefault("borrowed", 0)
                skus[field[4:]]["borrowed"] += int(value)
            elif field.startswith("out:"):
                outbox[field[4:]] = value
            elif field.startswith("in:"):
                arrived.add(field[3:])
        async for user, _ in redis.hscan_iter(ck.users):
            if "|" in user or user.startswith("~"):
                continue
            if shard_of_user(user, n) != k:
                problems.append(f"user {user!r} has units on shard {k}, "
                                f"not on shard {shard_of_user(user, n)} that serves them")
    for move_id, value in outbox.items():  # lent; in transit unless the receiver has it
        if move_id not in arrived:
            _, sku, qty = value.split("|")
            skus.setdefault(sku, {}).setdefault("in_transit", 0)
            skus[sku]["in_transit"] += int(qty)
    for sku, t in skus.items():
        if t.get("lent", 0) != t.get("borrowed", 0) + t.get("in_transit", 0):
            problems.append(f"sku {sku}: lent {t.get('lent', 0)} != borrowed "
                            f"{t.get('borrowed', 0)} + in transit {t.get('in_transit', 0)}")
    return ShardAudit(cid, n, skus, problems)
