"""Rebuilding a campaign's waiting room from its events (part of `stampede recover`).

queue_ticket.lua writes each new ticket as `queue_ticket_issued` (its place:
the score ZADD took), and advance_queue (include/common.lua) each admission
as `queue_admitted` (queue ranks first..first+count-1, admitted until
`until`, the bucket left) and each lapse as `queue_lapsed`. Folded in seq
order they give back the queue in its order, the serving counter, the
arrival counter (wr_seq), the bucket, and who is admitted now: admitted,
window not over, turn not used by a claim (the claim scripts take the turn
away with the hold, whose claim_held event says so).

A sharded campaign's queue is shard 0's (docs/shards.md): its claims on the other
shards use turns too, so those shards' stored claims are read as well. Each other
shard keeps the turns used on it (its admitted zset, user -> when): rebuilt from its
own stored claims (`used_turns`).

A campaign whose store has no ticket event (none taken, or all taken before
tickets were events), or whose events do not cover the room from its start
(an older version took some tickets or admitted some: arrival numbers with
gaps, a first admission past rank 0), is left as before: its queue keys
untouched, its counters those Redis kept.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from stampede.durable.events import (
    BundleHeld,
    ClaimHeld,
    Event,
    QueueAdmitted,
    QueueLapsed,
    QueueTicketIssued,
    from_row,
    names,
)
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys

log = logging.getLogger("stampede.recovery")
TYPES = names(QueueTicketIssued, QueueAdmitted, QueueLapsed)
_TURN_USED = names(ClaimHeld, BundleHeld)
_CHUNK = 10_000
"""Queue members per ZADD (one command's arguments stay bounded)."""


@dataclass
class RoomRebuild:
    places: dict[str, str] = field(default_factory=dict)
    """user -> the score their ticket took, as written"""
    line: list[str] = field(default_factory=list)
    """the users in queue order (ZSET order: score, then the user id)"""
    unsorted: bool = False
    seq: int = 0
    """the last arrival number given (meta wr_seq)"""
    served: int = 0
    bucket: tuple[int, int] | None = None
    """(tokens, at) as the last admission left them"""
    admitted: dict[str, tuple[int, int]] = field(default_factory=dict)
    """user -> (window end ms, the admission's seq)"""
    later: int = 0
    """tickets taken after the opening (places 1 + arrival number)"""
    began_before: bool = False
    """the room had tickets or admissions before its events (an older version took
    them): arrival numbers with gaps, or a first admission past rank 0"""
    tickets_twice: list[str] = field(default_factory=list)
    out_of_order: list[int] = field(default_factory=list)
    """seqs of admissions that did not start where the last one ended, or ran past the
    tickets taken (judged only for a room whose events cover it from the start)"""
    lapsed: int = 0

    @property
    def complete(self) -> bool:
        """Do the events describe the whole room (recovery may replace it with them)?"""
        return not (self.began_before or self.out_of_order or self.tickets_twice
                    or self.later != self.seq)

    def fold(self, ev: Event) -> None:
        match ev:
            case QueueTicketIssued(user=user, place=place):
                if user in self.places:
                    self.tickets_twice.append(user)
                    return
                self.places[user] = place
                self.line.append(user)
                score = float(place)
                if score >= 1:
                    self.later += 1
                    self.seq = max(self.seq, int(score) - 1)
                if len(self.line) > 1 and self._key(self.line[-2]) > (score, user):
                    self.unsorted = True  # an early arrival: sorted at the next admission
            case QueueAdmitted():
                self._admit(ev)
            case QueueLapsed():
                self.lapsed += ev.count
                self.admitted = {u: w for u, w in self.admitted.items() if w[0] > ev.ts}

    def used(self, ev: Event) -> None:
        """A claim after the user's admission used the turn (a user is admitted once:
        the serving counter only grows), so claims are applied after the room's events."""
        if isinstance(ev, ClaimHeld) and (ev.offer or ev.grant):
            return  # a waitlist offer or a grant is not the user's claim
        if isinstance(ev, ClaimHeld | BundleHeld) and ev.user in self.admitted \
                and ev.seq > self.admitted[ev.user][1]:
            del self.admitted[ev.user]

    def used_elsewhere(self, ev: Event) -> None:
        """A claim on another shard of the campaign used the turn: every claim there
        needs the pass, so it came after the admission (seqs of two shards do not
        compare; a user is admitted once)."""
        if isinstance(ev, ClaimHeld) and (ev.offer or ev.grant):
            return
        if isinstance(ev, ClaimHeld | BundleHeld):
            self.admitted.pop(ev.user, None)

    def _key(self, user: str) -> tuple[float, str]:
        return float(self.places[user]), user

    def _admit(self, ev: QueueAdmitted) -> None:
        if self.unsorted:
            self.line.sort(key=self._key)
            self.unsorted = False
        if self.bucket is None and ev.first != 0 or self.later != self.seq:
            self.began_before = True  # older tickets or admissions left no event
        if self.bucket is not None and ev.first != self.served or \
                not self.began_before and ev.first + ev.count > len(self.line):
            self.out_of_order.append(ev.seq)
        for user in self.line[ev.first:ev.first + ev.count]:
            self.admitted[user] = (ev.until, ev.seq)
        self.served = max(self.served, ev.first + ev.count)
        self.bucket = (ev.tokens, ev.at)

    def meta(self, old_meta: dict[str, str]) -> dict[str, str]:
        """The room's counters: served and arrivals from the events; the bucket as a
        live Redis kept it if it is newer than the last admission (a cap, a pause)."""
        m = {"wr_served": str(self.served), "wr_seq": str(self.seq)}
        if self.bucket is not None:
            tokens, at = self.bucket
            if "wr_at" in old_meta and int(old_meta["wr_at"]) >= at:
                tokens, at = int(old_meta.get("wr_tokens", tokens)), int(old_meta["wr_at"])
            m |= {"wr_tokens": str(tokens), "wr_at": str(at)}
        return m

    def queue(self, pipe: Any, cid: str, now: int) -> None:
        """Queue the commands that replace the room's keys (inside the rebuild's MULTI)."""
        k = keys.campaign_keys(cid)
        pipe.delete(k.queue, k.admitted)
        for i in range(0, len(self.line), _CHUNK):
            pipe.zadd(k.queue, {u: self.places[u] for u in self.line[i:i + _CHUNK]})
        live = {u: until for u, (until, _seq) in self.admitted.items() if until > now}
        if live:
            pipe.zadd(k.admitted, live)


async def load(store: Store, cid: str, applied_seq: int, now: int,
               siblings: Sequence[str] = ()) -> RoomRebuild | None:
    """The room folded from the store, or None if it holds no ticket of the campaign.
    `siblings`: a sharded campaign's other shards, whose claims use turns too."""
    room = RoomRebuild()
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid, t.events.c.type.in_(TYPES),
            t.events.c.seq <= applied_seq).order_by(t.events.c.seq))).all()
        if not rows:
            return None
        for row in rows:
            room.fold(from_row(row))
        if not room.complete:
            log.warning("campaign %s: its waiting room's events do not cover it from the "
                        "start (tickets older than them); its queue keys are left as they "
                        "are", cid)
            return None
        room.admitted = {u: w for u, w in room.admitted.items() if w[0] > now}
        if room.admitted:  # only claims since the oldest admission still open matter
            since = min(seq for _until, seq in room.admitted.values())
            for row in await conn.execute(select(t.events).where(
                    t.events.c.campaign_id == cid, t.events.c.type.in_(_TURN_USED),
                    t.events.c.seq > since, t.events.c.seq <= applied_seq)):
                room.used(from_row(row))
            if siblings:
                for row in await conn.execute(select(t.events).where(
                        t.events.c.campaign_id.in_(siblings),
                        t.events.c.type.in_(_TURN_USED))):
                    room.used_elsewhere(from_row(row))
    return room


def takes_passes(config: dict[str, str] | None) -> bool:
    """Is this a sharded campaign's shard k >= 1 whose claims need the queue's pass?"""
    return (config or {}).get("wr_on") == "pass"


async def used_turns(store: Store, cid: str, applied_seq: int) -> dict[str, int]:
    """The turns used on a shard that takes passes: each claimant (not an offer, not a
    grant) and when, from the shard's stored claims."""
    turns: dict[str, int] = {}
    async with store.engine.connect() as conn:
        for row in await conn.execute(select(t.events).where(
                t.events.c.campaign_id == cid, t.events.c.type.in_(_TURN_USED),
                t.events.c.seq <= applied_seq).order_by(t.events.c.seq)):
            ev = from_row(row)
            if isinstance(ev, ClaimHeld) and (ev.offer or ev.grant):
                continue
            if isinstance(ev, ClaimHeld | BundleHeld):
                turns.setdefault(ev.user, ev.ts)
    return turns


def queue_turns(pipe: Any, cid: str, turns: dict[str, int]) -> None:
    """Queue the commands that replace a pass shard's used turns (inside the MULTI)."""
    k = keys.campaign_keys(cid)
    pipe.delete(k.admitted)
    users = list(turns)
    for i in range(0, len(users), _CHUNK):
        pipe.zadd(k.admitted, {u: turns[u] for u in users[i:i + _CHUNK]})
