"""The batcher's group commit: the next batch leaves before the last one's answers.

These drive `ClaimBatcher` with a batch function of their own (no Redis: the
order of the event loop's steps is what is tested; the claims themselves are
tested against a real Valkey in tests/lua and tests/domain/test_model.py).
"""

import asyncio
from collections.abc import Sequence

import pytest

from stampede.domain.batcher import EAGER_BATCH, ClaimBatcher, PendingClaim, reply_in


def _claim(user: str) -> PendingClaim:
    return PendingClaim(f"c.{user}", user, "tee", 1, None)


async def test_waiting_claims_leave_before_the_returned_batch_is_answered() -> None:
    """While batch 1 is out, claim b waits. When batch 1 comes back, b's batch is
    sent (Redis can run it) before a's handler gets its answer and writes it."""
    sent: list[list[str]] = []
    replies: list[asyncio.Future[None]] = []

    async def run(cid: str, claims: Sequence[PendingClaim]) -> list[str]:
        sent.append([c.user for c in claims])
        reply = asyncio.get_running_loop().create_future()
        replies.append(reply)
        await reply
        return [c.user for c in claims]

    batcher: ClaimBatcher[str] = ClaimBatcher(run, max_batch=64)
    first = batcher.submit("c", _claim("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sent == [["a"]]
    second = batcher.submit("c", _claim("b"))
    third = batcher.submit("c", _claim("c"))
    await asyncio.sleep(0)
    assert sent == [["a"]]  # one batch out per campaign: b and c wait together
    replies[0].set_result(None)
    assert await first == "a"
    assert sent == [["a"], ["b", "c"]]  # already sent when a's answer arrived
    replies[1].set_result(None)
    assert (await second, await third) == ("b", "c")
    await batcher.drain()


async def test_a_failed_batch_frees_its_slot_and_fails_only_its_claims() -> None:
    calls = 0

    async def run(cid: str, claims: Sequence[PendingClaim]) -> list[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ConnectionError("redis went away")
        return [c.user for c in claims]

    batcher: ClaimBatcher[str] = ClaimBatcher(run, max_batch=64)
    first = batcher.submit("c", _claim("a"))
    await asyncio.sleep(0.001)
    second = batcher.submit("c", _claim("b"))
    with pytest.raises(ConnectionError):
        await first
    assert await second == "b"
    await batcher.drain()
    assert calls == 2


async def test_a_batch_cancelled_before_it_ran_frees_its_slot() -> None:
    async def run(cid: str, claims: Sequence[PendingClaim]) -> list[str]:
        return [c.user for c in claims]

    batcher: ClaimBatcher[str] = ClaimBatcher(run, max_batch=1)
    batcher.submit("c", _claim("a"))  # a full batch: its task is made at once
    for task in list(batcher._in_flight):
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.gather(*batcher._in_flight)
    assert batcher._out == {}  # the slot came back
    assert await batcher.submit("c", _claim("b")) == "b"


async def test_a_large_batch_leaves_beside_the_one_out() -> None:
    """EAGER_BATCH claims leave at once though a batch is out (one slot more), so Valkey
    has the next batch while the last one's claims are answered; fewer wait for a slot."""
    sent: list[int] = []
    replies: list[asyncio.Future[None]] = []

    async def run(cid: str, claims: Sequence[PendingClaim]) -> list[str]:
        sent.append(len(claims))
        reply = asyncio.get_running_loop().create_future()
        replies.append(reply)
        await reply
        return [c.user for c in claims]

    batcher: ClaimBatcher[str] = ClaimBatcher(run, max_batch=4 * EAGER_BATCH)
    futures = [batcher.submit("c", _claim(f"u{i}")) for i in range(2 * EAGER_BATCH + 5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sent == [EAGER_BATCH, EAGER_BATCH]  # two out; the last five wait for a slot
    more = [batcher.submit("c", _claim(f"v{i}")) for i in range(3)]
    await asyncio.sleep(0)
    assert sent == [EAGER_BATCH, EAGER_BATCH]  # small: they wait as before
    replies[0].set_result(None)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sent == [EAGER_BATCH, EAGER_BATCH, 8]
    for reply in replies[1:]:
        reply.set_result(None)
    assert [await f for f in futures + more] == \
        [f"u{i}" for i in range(2 * EAGER_BATCH + 5)] + ["v0", "v1", "v2"]
    await batcher.drain()


async def test_reply_in_sends_the_waiting_claims_before_the_reply_is_decoded() -> None:
    """A batch function that calls reply_in frees its slot there: the claims that waited
    leave (their script can run) before this batch decodes its reply."""
    order: list[str] = []
    replies: list[asyncio.Future[None]] = []

    async def run(cid: str, claims: Sequence[PendingClaim]) -> list[str]:
        order.append("send " + ",".join(c.user for c in claims))
        reply = asyncio.get_running_loop().create_future()
        replies.append(reply)
        await reply
        await reply_in()
        order.append("decode " + ",".join(c.user for c in claims))
        return [c.user for c in claims]

    batcher: ClaimBatcher[str] = ClaimBatcher(run, max_batch=64)
    first = batcher.submit("c", _claim("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = batcher.submit("c", _claim("b"))
    await asyncio.sleep(0)
    replies[0].set_result(None)
    assert await first == "a"
    assert order == ["send a", "send b", "decode a"]
    replies[1].set_result(None)
    assert await second == "b"
    await reply_in()  # outside a batch: nothing happens
    await batcher.drain()
