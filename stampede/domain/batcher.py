"""Coalesce claims into few script calls: a tick's claims, and those that wait for a slot.

Handlers submit claims and await a future; the first submission of a tick
schedules a flush with `call_soon`, which runs after every handler that was
ready in the same tick has submitted. One EVALSHA per campaign then carries
the whole batch: throughput is bounded by Redis and HTTP, not round trips.

Group commit: a campaign has at most `max_in_flight` batches out at once.
Claims that arrive while its slots are taken wait for the first to come
back and go together. Without it, a moderate load (say half the peak) was
sent as a stream of one- or two-claim calls, each paying the full client
cost of a round trip: the service saturated there, with a few ms of
queueing for everybody. A full batch (`max_batch`) goes at once regardless.
A large one (`EAGER_BATCH` claims) goes at once too while only one batch of
its campaign is out: under a rush, Valkey then has the next batch in hand
while this process answers the last one's claims and takes new ones (with
one slot, every claim of a closed loop rode in one batch, and Valkey and
this process took turns); at moderate load batches stay below it and wait.
A batch that comes back frees its slot before its answers are handed out,
so the claims that waited reach Redis while those answers are written; a
batch function that calls `reply_in` frees it earlier still, as soon as the
script's reply is in and before it is decoded into answers: Valkey then runs
the next batch while this process decodes the last one.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

from stampede.domain.throttle import NO_GUARD, Guard

R = TypeVar("R")

DURABLE_IN_FLIGHT = 32
"""Batches out at once per campaign under durable ack: each waits for an fsync
(up to a second under appendfsync everysec), so one slot would cap a campaign
at one batch per fsync; these share the fsync they wait for."""


REPLICA_IN_FLIGHT = 4
"""Batches out at once per campaign when each waits for a cluster replica's WAIT (a
network round trip, not an fsync): a few overlap the wait with the next script;
more would only split the batches and open more connections."""


def in_flight(durable_ack: bool, replica_ack: bool = False) -> int:
    """A campaign's batch slots: DURABLE_IN_FLIGHT under durable ack, REPLICA_IN_FLIGHT
    when each batch waits for a replica, else one."""
    return DURABLE_IN_FLIGHT if durable_ack else REPLICA_IN_FLIGHT if replica_ack else 1


@dataclass(slots=True)
class PendingClaim:
    """One claim waiting for its batch. Not frozen: a frozen dataclass sets each of
    its eleven fields through object.__setattr__, ~3x the cost of building it, once
    per claim; nothing changes one after it is made."""

    claim_id: str
    user: str
    sku: str
    qty: int
    idempotency_key: str | None
    admission_exp: int = -1
    """Expiry (ms) of the verified admission token the claim carries; -1 if none."""
    guard: Guard = NO_GUARD
    """Device, network, risk signals and verified challenge solution, for the scalper guard."""
    tiers: tuple[str, ...] = ()
    """Presales: the audience tiers of the claimant's credential (access phases)."""
    code: str = ""
    """Presales: the presale code's id once its signature is checked ('?' not genuine)."""
    identity: str = ""
    """Presales: the claimant's hashed real-person identity, for the per_person limit."""
    channel: str = ""
    """Presales: the credential's sales channel, for allocations."""


EAGER_BATCH = 128
"""Claims that leave as soon as they are this many, beside one batch of their campaign
already out (a slot more than max_in_flight): enough that a batch's fixed cost in the
script (the sweep, the campaign's config, the writes made once per batch) stays a
small share of each claim's."""


RunBatch = Callable[[str, Sequence[PendingClaim]], Awaitable[Sequence[R]]]

_slot: ContextVar[Callable[[], bool] | None] = ContextVar("batch_slot", default=None)
"""The running batch's slot release, set in each batch's own task (a task runs in a
copy of the context it was made in, so no other batch sees it)."""


async def reply_in() -> None:
    """For a batch function: its script's reply is in, not yet decoded. The batch's
    slot is freed now and the claims that waited for it leave first (their batch's
    task runs before this one resumes): Valkey runs their script while this process
    decodes the reply, instead of waiting for it. Outside a batcher's task (or once
    the slot is free) it does nothing."""
    release = _slot.get()
    if release is not None and release():
        await asyncio.sleep(0)


class ClaimBatcher(Generic[R]):
    def __init__(self, run_batch: RunBatch[R], max_batch: int, max_in_flight: int = 1) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: dict[str, list[tuple[PendingClaim, asyncio.Future[R]]]] = {}
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._out: dict[str, int] = {}
        """Batches in flight per campaign."""
        self.batches_sent = 0

    def submit(self, campaign_id: str, claim: PendingClaim) -> "asyncio.Future[R]":
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        queue = self._pending.setdefault(campaign_id, [])
        queue.append((claim, fut))
        if len(queue) >= self._max_batch or (
                len(queue) >= EAGER_BATCH
                and self._out.get(campaign_id, 0) <= self._max_in_flight):
            self._send(campaign_id, self._pending.pop(campaign_id))
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        for campaign_id in list(self._pending):
            if self._out.get(campaign_id, 0) < self._max_in_flight:
                self._send(campaign_id, self._pending.pop(campaign_id))
            # else: it goes when one of the campaign's batches comes back

    def _send(self, campaign_id: str,
              items: list[tuple[PendingClaim, "asyncio.Future[R]"]]) -> None:
        self._out[campaign_id] = self._out.get(campaign_id, 0) + 1
        released = False

        def release() -> bool:
            """Free the slot (once); True if claims that waited for it were sent."""
            nonlocal released
            if released:
                return False
            released = True
            return self._returned(campaign_id)

        task = asyncio.create_task(self._run(campaign_id, items, release))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        task.add_done_callback(lambda _: release())  # (a task cancelled before it ran)

    def _returned(self, campaign_id: str) -> bool:
        """A batch is back: the claims that waited for its slot go now, together
        (True if there were any)."""
        left = self._out[campaign_id] - 1
        if left:
            self._out[campaign_id] = left
        else:
            del self._out[campaign_id]
        waiting = self._pending.pop(campaign_id, None)
        if waiting:
            self._send(campaign_id, waiting)
        return bool(waiting)

    async def _run(self, campaign_id: str,
                   items: list[tuple[PendingClaim, "asyncio.Future[R]"]],
                   release: Callable[[], bool]) -> None:
        self.batches_sent += 1
        _slot.set(release)  # for reply_in (this task's own context)
        try:
            results = await self._run_batch(campaign_id, [claim for claim, _ in items])
        except BaseException as exc:  # every waiter learns of the failure
            release()
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        # The slot first: the claims that waited for it go to Redis (their task is
        # scheduled ahead of these answers' handlers, and writes its command first),
        # so Valkey runs the next batch while this one's responses are written.
        # Released after the answers, the next batch waited for all of them.
        release()
        for (_, fut), result in zip(items, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def drain(self) -> None:
        """Wait for every batch in flight and every claim waiting for one (on shutdown)."""
        if self._flush_scheduled:
            self._flush()
        while self._in_flight or self._pending:
            if self._in_flight:
                await asyncio.gather(*list(self._in_flight), return_exceptions=True)
            else:  # a batch came back and its waiting claims are about to go: let them
                self._flush()
                await asyncio.sleep(0)
