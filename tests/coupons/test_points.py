"""Points exchange against a real points service on loopback and a real Valkey."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from stampede import Engine, Outcome
from stampede.durable.points_client import HttpPoints
from tests.coupons.helpers import FIVE_OFF, drop_spec
from tests.coupons.points_service import PointsService, points_service

TEMPLATES = {"five": FIVE_OFF, "mug": {"kind": "exchange", "item": "mug", "face_value": 900,
                                       "valid_days": 30}}


@pytest.fixture
async def points(engine: Engine) -> AsyncIterator[PointsService]:
    async with points_service() as service:
        engine.coupons.points = HttpPoints(service.url, timeout_s=2)
        yield service
        await engine.coupons.points.close()


async def _drop(engine: Engine, stock: int = 100) -> None:
    await engine.define_campaign("d1", drop_spec(stock=stock, templates=TEMPLATES,
                                                 points={"mug": 300}))


async def _mugs(engine: Engine, user: str) -> int:
    return sum(c.template == "mug" for c in await engine.coupons.wallet(user))


async def test_an_exchange_debits_once_and_issues_once(engine: Engine,
                                                       points: PointsService) -> None:
    await _drop(engine)
    points.balances["ann"] = 1000
    r = await engine.coupons.claim("d1", "ann", "mug", 2, idempotency_key="x1")
    assert r.outcome is Outcome.OK, r
    assert [c.template for c in r.view.coupons] == ["mug", "mug"]
    assert points.balances["ann"] == 400
    again = await engine.coupons.claim("d1", "ann", "mug", 2, idempotency_key="x1")
    assert again.view == r.view and points.balances["ann"] == 400
    assert points.requests == 1  # answered from the claim, the service not asked again
    assert await _mugs(engine, "ann") == 2


async def test_a_refused_debit_issues_nothing(engine: Engine, points: PointsService) -> None:
    await _drop(engine)
    points.balances["ann"] = 299
    r = await engine.coupons.claim("d1", "ann", "mug", idempotency_key="x1")
    assert (r.outcome, r.reason) == (Outcome.CONFLICT, "points_refused")
    assert await _mugs(engine, "ann") == 0 and points.balances["ann"] == 299
    stats = await engine.coupons.stats("d1")
    assert stats and stats.totals.issued == 0
    assert (await engine.stats("d1")).skus[1].available == 100  # type: ignore[union-attr]


async def test_a_debit_retried_after_a_lost_reply_issues_one_coupon(
        engine: Engine, points: PointsService) -> None:
    await _drop(engine)
    points.balances["ann"] = 1000
    points.lose_replies = 1  # debited, the reply lost: the client asks again, same id
    r = await engine.coupons.claim("d1", "ann", "mug", idempotency_key="x1")
    assert r.outcome is Outcome.OK, r
    assert points.requests == 2 and len(points.debits) == 1
    assert points.balances["ann"] == 700 and await _mugs(engine, "ann") == 1


async def test_every_reply_lost_then_the_claim_retried_issues_one_coupon(
        engine: Engine, points: PointsService) -> None:
    await _drop(engine)
    points.balances["ann"] = 1000
    points.lose_replies = 3  # all three attempts: debited once, never answered
    r = await engine.coupons.claim("d1", "ann", "mug", idempotency_key="x1")
    assert (r.outcome, r.reason) == (Outcome.FENCED, "points_unavailable")
    assert points.balances["ann"] == 700 and await _mugs(engine, "ann") == 0
    r = await engine.coupons.claim("d1", "ann", "mug", idempotency_key="x1")  # the app retries
    assert r.outcome is Outcome.OK, r
    assert points.balances["ann"] == 700 and await _mugs(engine, "ann") == 1
    assert len(points.debits) == 1


async def test_a_claim_refused_after_its_debit_refunds_it(engine: Engine,
                                                          points: PointsService) -> None:
    await _drop(engine, stock=1)
    points.balances.update(ann=1000, bob=1000)
    assert (await engine.coupons.claim("d1", "ann", "mug", idempotency_key="a")).outcome \
        is Outcome.OK
    r = await engine.coupons.claim("d1", "bob", "mug", idempotency_key="b")
    assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "stock")
    assert points.balances == {"ann": 700, "bob": 1000}
    again = await engine.coupons.claim("d1", "bob", "mug", idempotency_key="b")
    assert again.reason == "stock" and points.balances["bob"] == 1000  # refunded once


async def test_concurrent_retries_of_one_exchange_debit_and_issue_once(
        engine: Engine, points: PointsService) -> None:
    await _drop(engine)
    points.balances["ann"] = 1000
    answers = await asyncio.gather(*(engine.coupons.claim("d1", "ann", "mug",
                                                          idempotency_key="same")
                                     for _ in range(30)))
    assert all(a.outcome is Outcome.OK for a in answers), answers
    assert len({a.view.claim_id for a in answers}) == 1
    assert points.balances["ann"] == 700 and await _mugs(engine, "ann") == 1
    # Different exchanges: as many as the balance pays for, never more.
    answers = await asyncio.gather(*(engine.coupons.claim("d1", "ann", "mug",
                                                          idempotency_key=f"k{i}")
                                     for i in range(10)))
    assert sum(a.outcome is Outcome.OK for a in answers) == 2
    assert {a.reason for a in answers if a.outcome is not Outcome.OK} == {"points_refused"}
    assert points.balances["ann"] == 100 and await _mugs(engine, "ann") == 3


async def test_points_need_a_key_and_a_service(engine: Engine) -> None:
    await _drop(engine)
    r = await engine.coupons.claim("d1", "ann", "mug")
    assert (r.outcome, r.reason) == (Outcome.INVALID, "points_key_required")
    r = await engine.coupons.claim("d1", "ann", "mug", idempotency_key="k")
    assert (r.outcome, r.reason) == (Outcome.FENCED, "points_unavailable")
    assert (await engine.coupons.claim("d1", "ann", "five")).outcome is Outcome.OK


async def test_an_exchange_whose_answer_was_forgotten_is_answered_from_its_claim(
        engine: Engine, points: PointsService) -> None:
    """The remembered answer gone (its TTL passed), a retry of the exchange finds the
    claim its debit made, and answers its coupons again: no second coupon."""
    await _drop(engine)
    points.balances["ann"] = 1000
    first = await engine.coupons.claim("d1", "ann", "mug", 2, idempotency_key="x1")
    assert first.outcome is Outcome.OK
    await engine.redis.delete(*await engine.redis.keys("{c:d1}:idem:*"))
    again = await engine.coupons.claim("d1", "ann", "mug", 2, idempotency_key="x1")
    assert again.outcome is Outcome.OK and again.view.claim_id == first.view.claim_id
    assert sorted(c.coupon_id for c in again.view.coupons) == \
        sorted(c.coupon_id for c in first.view.coupons)
    assert points.balances["ann"] == 400 and await _mugs(engine, "ann") == 2
