"""Every Redis key name Stampede uses is built here, and nowhere else.

A campaign's keys share its hash tag `{c:<id>}`, so each script touches one
Redis Cluster slot; Lua scripts receive keys, never build them.
"""

import functools
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from redis.crc import key_slot

CAMPAIGN_INDEX = "stampede:campaigns"
"""Set of all campaign ids, for the sweeper (outside any campaign's slot)."""

_CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_USER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_SKU = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A claim id names its campaign, or the campaign's shard ("<id>:s<k>[p<m>]", k >= 1).
_CLAIM_ID = re.compile(
    r"^([a-z0-9][a-z0-9_-]{0,63}(?::s[1-9][0-9]?(?:p[0-9]{1,6})?)?)\.([0-9a-f]{20})$")


class CampaignKeys(NamedTuple):
    """The fixed key set every campaign script takes as its first KEYS.

    The Lua table `K` (include/common.lua) is generated from these names in
    this order (stampede/state/luagen.py), so the two cannot drift apart; each
    key is `{c:<id>}:<name>`. What each holds is documented in common.lua.
    """
    meta: str
    stock: str
    users: str
    claims: str
    deadlines: str
    waves: str
    events: str
    counts: str
    waitlist: str
    wlentries: str
    offers: str
    queue: str
    admitted: str
    expiry: str
    """list: a sale claim's holds in creation order (include/holds.lua)"""


class DropKeys(NamedTuple):
    """A coupon drop's keys, taken right after its campaign key set (the Lua
    table `C` of include/coupons.lua, generated from these names)."""
    cpn: str
    codes: str
    cexp: str
    cday: str
    cstats: str
    redeems: str
    gifts: str
    cusers: str


@dataclass(frozen=True, slots=True)
class CouponKeys:
    """A drop's campaign key set and then its coupon keys, as coupon scripts take them."""
    campaign: CampaignKeys
    drop: DropKeys

    def __iter__(self) -> Iterator[str]:
        yield from self.campaign
        yield from self.drop


class GuardKeys(NamedTuple):
    """The guard's campaign-wide keys, taken by the claim scripts after their fixed
    key sets (include/guard.lua reads them by these names)."""
    limiter: str
    """the campaign's GCRA limiter"""
    lists: str
    """its block/allow lists hash"""
    state: str
    """the guard's short-lived state, one hash: "u:<user>" -> its GCRA TAT,
    "d:<device>" and "n:<network>" -> its TAT and the accounts seen there lately;
    every field expires on its own (include/guard.lua)"""


def valid_campaign_id(cid: str) -> bool:
    return bool(_CAMPAIGN_ID.match(cid))


def valid_user_id(user: str) -> bool:
    return bool(_USER_ID.match(user))


def valid_sku(sku: str) -> bool:
    return bool(_SKU.match(sku))


def tag(cid: str) -> str:
    return f"{{c:{cid}}}"


@functools.lru_cache(maxsize=4096)
def campaign_keys(cid: str) -> CampaignKeys:
    """The fixed key set every campaign script takes first (built once per campaign)."""
    t = tag(cid)
    return CampaignKeys._make(f"{t}:{name}" for name in CampaignKeys._fields)
COUPON_DROPS = "stampede:coupon_drops"
"""Set of the campaign ids that are coupon drops (for wallets and the expiry sweep)."""
DROP_NUMBERS = "stampede:drop_numbers"
"""Hash: a drop's number (the prefix of its codes) -> campaign id; `seq` the last one."""
MERCHANTS = "stampede:merchants"
"""Hash: merchant id -> its record (JSON, with the SHA-256 of its token)."""


@functools.lru_cache(maxsize=4096)
def coupon_keys(cid: str) -> CouponKeys:
    """The campaign key set and then a drop's coupon keys."""
    t = tag(cid)
    drop = DropKeys._make(f"{t}:{name}" for name in DropKeys._fields)
    return CouponKeys(campaign_keys(cid), drop)


def wallet_key(cid: str, user: str) -> str:
    """The coupons a user has ever owned in a drop."""
    return f"{tag(cid)}:wallet:{len(user)}:{user}"


def events_key(cid: str) -> str:
    return f"{tag(cid)}:events"


def idempotency_key(cid: str, user: str, key: str) -> str:
    # Length-prefixing the user keeps ("a:b", "c") apart from ("a", "b:c").
    return f"{tag(cid)}:idem:{len(user)}:{user}:{key}"


def response_key(cid: str, user: str, key: str) -> str:
    """Where the first answer of an idempotent confirm/cancel is kept."""
    return f"{tag(cid)}:resp:{len(user)}:{user}:{key}"


def limiter_key(cid: str, scope: str, subject: str) -> str:
    """A GCRA limiter's key: scope is user, device, network or campaign."""
    return f"{tag(cid)}:rl:{scope}:{subject}"


def guard_state_key(cid: str) -> str:
    """The guard's rate and account state (GuardKeys.state)."""
    return f"{tag(cid)}:guard"


def lists_key(cid: str) -> str:
    """The campaign's block/allow lists: "u:|d:|n:<subject>" -> 'a' or 'b'."""
    return f"{tag(cid)}:lists"


def guard_keys(cid: str) -> GuardKeys:
    """The guard's campaign-wide keys, taken by the claim scripts after their fixed key set."""
    return GuardKeys(limiter_key(cid, "campaign", "all"), lists_key(cid), guard_state_key(cid))


# -- presales: presale codes -------------------------------------------------------


class PresaleKeys(NamedTuple):
    """A campaign's presale keys (codes and segments), taken by claim_batch after the
    guard's keys and by presale_codes_issue and segment_edit after the campaign key set
    (the Lua table `P`)."""
    pbatches: str
    """hash: batch number -> presale_batch record; "seq" the last number given;
    "<batch>.codes" codes used at least once, "<batch>.claims" the claims they made;
    "#<segment>" the size of an audience segment"""
    pcodes: str
    """hash: "<batch>.<serial>.n" claims that spent the code, ".u" the user it is bound to"""
    segments: str
    """hash: "<segment>|<user>" -> 1 for each member of an ops-uploaded audience segment"""


def presale_keys(cid: str) -> PresaleKeys:
    t = tag(cid)
    return PresaleKeys(f"{t}:pbatches", f"{t}:pcodes", f"{t}:segments")


def nonce_key(cid: str, nonce: str) -> str:
    """A used proof-of-work nonce, kept until its challenge expires."""
    return f"{tag(cid)}:pow:{nonce}"


def recent_claims_key(user: str) -> str:
    """Campaigns a user placed holds in lately (zset cid -> ms): its own slot, not a campaign's."""
    return f"{{u:{user}}}:recent"


def gateway_limiter_keys(network: str) -> list[str]:
    """The gateway's per-network limiter: a clock-less meta key and the GCRA key, one slot."""
    return [f"{{n:{network}}}:clock", f"{{n:{network}}}:rl"]


class _RandomPool:
    """80-bit random ids from a buffer refilled from os.urandom in bulk.

    One urandom call per claim was 4% of a claim's CPU; one per 4096 is noise.
    The buffer is per process and never reused, so ids stay unguessable.
    """

    def __init__(self, ids_per_refill: int = 4096) -> None:
        self._size = 10 * ids_per_refill
        self._hex = ""
        self._pos = 0

    def take(self) -> str:
        if self._pos >= len(self._hex):
            self._hex, self._pos = secrets.token_hex(self._size), 0
        token = self._hex[self._pos:self._pos + 20]
        self._pos += 20
        return token


_pool = _RandomPool()


def new_claim_id(cid: str) -> str:
    """A random, unguessable claim id that names its campaign."""
    return f"{cid}.{_pool.take()}"  # 80 random bits


def campaign_of_claim(claim_id: str) -> str | None:
    """The campaign a claim id belongs to, or None if it is not one of ours."""
    m = _CLAIM_ID.match(claim_id)
    return m.group(1) if m else None


# -- after-sale: refunds ----------------------------------------------------------


def refunds_key(cid: str) -> str:
    """Refunds of a campaign's claims (hash): claim_id -> refund record."""
    return f"{tag(cid)}:refunds"


def refund_totals_key(cid: str) -> str:
    """Refunded units and amounts by SKU (hash): "<sku>.u" and "<sku>.amt", for stats."""
    return f"{tag(cid)}:refunded"


# -- after-sale: tickets and check-in ---------------------------------------------

SCANNERS = "stampede:scanners"
"""Hash: scanner id -> its record (JSON: venue, gate, the SHA-256 of its token)."""


def tickets_key(cid: str) -> str:
    """Tickets that are no longer plain valid (hash): ticket_id -> ticket record
    (checked in, or refunded). A ticket is "<claim_id>-<n>", n in 1..qty."""
    return f"{tag(cid)}:tickets"


def checkin_counts_key(cid: str) -> str:
    """Check-ins by gate (hash): gate -> count, for stats."""
    return f"{tag(cid)}:checkins"


def ticket_holder_key(cid: str, user: str) -> str:
    """The confirmed claims of a user in a ticketed campaign (set of claim ids)."""
    return f"{tag(cid)}:tk:{len(user)}:{user}"


_TICKET_ID = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63}\.[0-9a-f]{20})-([1-9][0-9]{0,3})$")


def claim_of_ticket(ticket_id: str) -> tuple[str, int] | None:
    """(claim id, unit number) of a ticket id, or None if it is not one of ours."""
    m = _TICKET_ID.match(ticket_id)
    return (m.group(1), int(m.group(2))) if m else None


# -- after-sale: transfers ----------------------------------------------------------


def transfers_key(cid: str) -> str:
    """Transfer offers of sold claims (hash): SHA-256 of the token -> transfer record."""
    return f"{tag(cid)}:xfers"


# -- after-sale: grants -------------------------------------------------------------


def outbox_key(cid: str) -> str:
    """A sale's pending on_checkin and on_confirm grants (hash): ticket_id, or
    "confirm:<claim_id>", -> "<user>|<drop>|<sku>".
    Written by the check-in in the sale's slot; removed once the drop has granted."""
    return f"{tag(cid)}:outbox"


# -- hot campaigns split across shards ------------------------------------------------


_SHARD_ID = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63}):s([1-9][0-9]?)(?:p[0-9]{1,6})?$")
_SLOTS = 16384


@functools.lru_cache(maxsize=4096)
def shard_id(cid: str, k: int, n: int) -> str:
    """Shard k of a campaign split in n, as a campaign id of its own: shard 0 is the
    campaign itself (`{c:<id>}`), shard k >= 1 is `<id>:s<k>` or `<id>:s<k>p<m>` (its
    own hash tag, a full campaign key set in a slot of its own). Of these names, the
    first whose Cluster slot lies k/n of the way round the slot space from shard 0's:
    a cluster's primaries hold contiguous slot ranges, so evenly spaced slots put the
    shards on different nodes. A pure function of (id, k, n): every gateway finds the
    same names. The colon keeps it out of the public id space."""
    if k == 0:
        return cid
    target = key_slot(tag(cid).encode()) + k * _SLOTS // n
    window = max(1, _SLOTS // (8 * n))
    for m in range(1_000_000):
        sid = f"{cid}:s{k}" if m == 0 else f"{cid}:s{k}p{m}"
        if (key_slot(tag(sid).encode()) - target + window // 2) % _SLOTS < window:
            return sid
    raise AssertionError("unreachable: CRC16 covers every slot")  # pragma: no cover


def shard_of_id(scid: str) -> tuple[str, int]:
    """(campaign, shard number) of a campaign or shard id."""
    m = _SHARD_ID.match(scid)
    return (m.group(1), int(m.group(2))) if m else (scid, 0)


def is_shard(cid: str) -> bool:
    """A shard k >= 1 of a sharded campaign (never listed as a campaign of its own)."""
    return bool(_SHARD_ID.match(cid))


def rebalance_lease_key(cid: str) -> str:
    """A sharded campaign's rebalancer lease (string, in shard 0's slot): the token of
    the gateway whose rebalancer acts for the campaign, expiring unless kept."""
    return f"{tag(cid)}:rebalancer"


def moves_key(scid: str) -> str:
    """A shard's move outbox (hash): move_id -> "<to shard>|<sku>|<qty>" for units
    lent and not yet known borrowed; "~out:<sku>" / "~in:<sku>" units lent and
    borrowed over the campaign's life (the cross-shard audit adds them up)."""
    return f"{tag(scid)}:moves"
